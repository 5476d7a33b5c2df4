"""Reading and aligning input photos: the part of `gen` that runs in worker processes when a
folder is read (pipeline.py). Nothing here imports torch, so a worker starts in a fraction of a
second."""

from pathlib import Path

import numpy as np

from .errors import UserError
from .images import load_image


def load_input(path, align=True, face_index=None, size=512):
    """An input image as uint8 [size,size,3]: EG3D's in-the-wild crop when `align` (needs the
    "align" extra), else the image itself resized (for inputs that are already EG3D-style crops).
    Returns (image, info): info is align.align_face's ({} without alignment)."""
    img = load_image(path)
    info = {}
    if align:
        from .align import align_face
        img, info = align_face(img, face_index=face_index, output_size=size, name=Path(path).name)
    elif img.shape[0] != size or img.shape[1] != size:
        import PIL.Image
        img = np.asarray(PIL.Image.fromarray(img).resize((size, size), PIL.Image.LANCZOS))
    return img, info


def align_all_faces(img, size=512, name='the image'):
    """Every face of a photo, in align.detect_faces' order (the most confident / largest first),
    each cropped as align.align_face crops it. Returns [(crop, info)], info as align_face's."""
    from . import align
    img = align._as_rgb(img)  # pylint: disable=protected-access
    boxes = align.detect_faces(img)
    if not boxes:
        raise UserError(f'no face found in {name}, so --all-faces has nothing to reconstruct')
    out = []
    for i, b in enumerate(boxes):
        lm = align.landmarks68(img, b)
        lm5 = align.five_points(lm)
        box = align.crop_box(lm5)
        crop = align.crop_resize(img, box, size)
        k = size / (box[2] - box[0])
        out.append((crop, dict(num_faces=len(boxes), face_index=i, box=[float(v) for v in b], landmarks=lm.tolist(),
                               landmarks5=lm5.tolist(), landmarks5_aligned=((lm5 + 0.5 - box[:2]) * k - 0.5).tolist(),
                               crop_box=box.tolist())))
    return out


def load_faces(path, align=True, face_index=None, size=512, all_faces=False):
    """The faces to reconstruct from one photo: [(suffix, crop, info)], suffix '' for the one face
    of load_input, or '_face0', '_face1', ... (align.detect_faces' order) with all_faces."""
    if not all_faces:
        img, info = load_input(path, align=align, face_index=face_index, size=size)
        return [('', img, info)]
    if not align:
        raise UserError('all_faces needs face detection: it cannot be combined with no_align')
    faces = align_all_faces(load_image(path), size=size, name=Path(path).name)
    return [(f'_face{i}', crop, info) for i, (crop, info) in enumerate(faces)]


def load_job(path, align=True, face_index=None, size=512, all_faces=False):
    """load_faces timed, for a worker process: (faces, seconds)."""
    import time
    t0 = time.perf_counter()
    faces = load_faces(path, align=align, face_index=face_index, size=size, all_faces=all_faces)
    return faces, time.perf_counter() - t0
