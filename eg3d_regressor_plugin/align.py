"""Face detection and the crop EG3D's FFHQ model was trained on (optional extra "align": dlib from
the `dlib-bin` wheel and the model files of `face-recognition-models`; nothing is downloaded).

EG3D's in-the-wild preprocessing (dataset_preprocessing/ffhq: MTCNN 5 points, then
Deep3DFaceRecon's `align_img` with target_size=1024, rescale_factor=300, then a centre crop of 700
px resized to 512 px) is reproduced here, not approximated:

1. dlib finds the face (HOG; upsampled once if nothing is found; optionally the CNN detector) and
   its 68 landmarks. The 5 points are derived from them as Deep3DFaceRecon does for 68-point
   input: the eye centres (mean of each eye's two corners), the nose tip, the mouth corners.
2. Those points are fitted to the 3-D 5-point template of Deep3DFaceRecon (`TEMPLATE_3D` below) by
   its least-squares affine camera: x = a.X + tx, y = b.X + ty. The fit gives only a scale,
   s = (|a| + |b|) / 2, and the image position (tx, ty) of the template origin: the crop is NOT
   rotated (roll stays in the image, as in EG3D's data, whose camera labels carry it).
3. The image is scaled by 300 / s (300 px per template unit in a 1024-px frame centred on
   (tx, ty)), the central 700 px are kept and resized to 512 px. This module cuts the same
   square out of the original image directly, with one antialiased Lanczos resampling instead of
   EG3D's bicubic upscale followed by Lanczos, and pads with black outside the photo as EG3D's
   PIL crop does.

The differences to EG3D's crop come from the landmark detector (dlib's 68 points instead of
MTCNN's 5; the eye centres are corner means rather than pupil estimates), not from the geometry.
"""

import functools
import importlib.util
import os

import numpy as np
import PIL.Image

from .errors import UserError, require_extra

# Deep3DFaceRecon's standard 5 landmarks in 3-D (BFM units, y up): subject's right eye (image
# left), left eye, nose tip, right and left mouth corner. Computed from BFM/similarity_Lm3D_all.mat
# of github.com/sicxu/Deep3DFaceRecon_pytorch (MIT licence) as its `load_lm3d` does (68 points ->
# 5: eye corner means 37/40 and 43/46, nose 31, mouth 49 and 55); EG3D's crop uses these numbers.
TEMPLATE_3D = np.array([
    [-0.31148657, 0.29036078, 0.13377953],
    [0.30979887, 0.28972036, 0.13179526],
    [0.00325350, -0.04617932, 0.55244243],
    [-0.25216928, -0.38133916, 0.22405732],
    [0.24846620, -0.38128236, 0.22235769],
])

# EG3D's crop constants (crop_images_in_the_wild.py).
TARGET_SIZE = 1024      # frame the face is scaled into
RESCALE_FACTOR = 300    # px per template unit in that frame
CENTER_CROP = 700       # central square kept ...
OUTPUT_SIZE = 512       # ... and resized to this (the FFHQ-512 model's input)

DETECT_MAX_SIDE = 1600  # detect on a downscaled copy of bigger photos (HOG time grows with area)
MODEL_FILES = {
    'landmarks68': 'shape_predictor_68_face_landmarks.dat',
    'cnn_detector': 'mmod_human_face_detector.dat',
    'recognition': 'dlib_face_recognition_resnet_model_v1.dat',
}


def template_positions(output_size=OUTPUT_SIZE):
    """Where the template's 5 points land in the aligned crop of a frontal face (x right, y down)."""
    xy = TEMPLATE_3D[:, :2] * [1, -1] * RESCALE_FACTOR + CENTER_CROP / 2
    return xy * (output_size / CENTER_CROP)


def model_path(key) -> str:
    """Path of one of face_recognition_models' .dat files, found without importing the package
    (its __init__ imports pkg_resources, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec('face_recognition_models')
    if spec is None:
        require_extra('align', 'face_recognition_models')  # raises the UserError with the pip line
    dirs = list(spec.submodule_search_locations or [os.path.dirname(spec.origin)])
    for d in dirs:
        p = os.path.join(d, 'models', MODEL_FILES[key])
        if os.path.isfile(p):
            return p
    raise UserError(f'{MODEL_FILES[key]} is missing from face_recognition_models in {dirs[0]}; '
                    'reinstall it with: pip install --force-reinstall face-recognition-models')


@functools.lru_cache(maxsize=None)
def _model(key):
    dlib = require_extra('align', 'dlib')
    if key == 'hog_detector':
        return dlib.get_frontal_face_detector()
    if key == 'landmarks68':
        return dlib.shape_predictor(model_path(key))
    if key == 'cnn_detector':
        return dlib.cnn_face_detection_model_v1(model_path(key))
    if key == 'recognition':
        return dlib.face_recognition_model_v1(model_path(key))
    raise KeyError(key)


def _as_rgb(img):
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f'expected a uint8 [H,W,3] RGB array, got {a.dtype} {list(a.shape)}')
    return np.ascontiguousarray(a)


WEAK_SCORE = 0.3


def detect_faces(img, cnn_fallback=False):
    """Face boxes [(left, top, right, bottom), ...] in image pixels, largest first. Detections
    scoring under WEAK_SCORE are dropped when a stronger one exists, and a weak detection (score
    < 0.5) counts as up to 25% smaller, so a marginal false positive does not come first."""
    img = _as_rgb(img)
    h, w = img.shape[:2]
    f = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = img
    if f < 1:
        small = np.asarray(PIL.Image.fromarray(img).resize((max(1, round(w * f)), max(1, round(h * f))), PIL.Image.BILINEAR))
    hog = _model('hog_detector')
    rects, scores, _ = hog.run(small, 0)
    if len(rects) == 0:
        rects, scores, _ = hog.run(small, 1)  # small faces: one 2x upsampling, as dlib's examples do
    if len(rects) == 0 and cnn_fallback:
        # no upsampling: the CNN takes ~5 s per 512x512 px on a CPU core pair, 4x that upsampled
        dets = _model('cnn_detector')(small, 0)
        rects, scores = [d.rect for d in dets], [d.confidence for d in dets]
    boxes = [tuple(v / f for v in (r.left(), r.top(), r.right(), r.bottom())) for r in rects]
    # Marginal HOG hits (a badge, a print on clothing) score near 0, real faces well above: drop them
    # whenever a confident detection exists.
    if len(scores) and max(scores) >= WEAK_SCORE:
        keep = [i for i, s in enumerate(scores) if s >= WEAK_SCORE]
        boxes, scores = [boxes[i] for i in keep], [scores[i] for i in keep]
    rank = [(b[2] - b[0]) * (b[3] - b[1]) * min(1.0, 0.75 + 0.5 * max(s, 0.0)) for b, s in zip(boxes, scores)]
    return [boxes[i] for i in np.argsort(-np.array(rank), kind='stable')]


def landmarks68(img, box):
    """dlib's 68 landmarks [68, 2] (x, y in pixels) inside a face box."""
    dlib = require_extra('align', 'dlib')
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = _model('landmarks68')(_as_rgb(img), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def five_points(lm68):
    """68 landmarks -> the 5 points of TEMPLATE_3D's order (eye centres, nose tip, mouth corners)."""
    lm = np.asarray(lm68, dtype=np.float64)
    return np.stack([lm[[36, 39]].mean(0), lm[[42, 45]].mean(0), lm[30], lm[48], lm[54]])


def fit_template(lm5):
    """Deep3DFaceRecon's least-squares affine camera from TEMPLATE_3D to 5 image points.
    Returns (scale in px per template unit, (x, y) image position of the template origin)."""
    X = np.concatenate([TEMPLATE_3D, np.ones((5, 1))], axis=1)
    coef, *_ = np.linalg.lstsq(X, np.asarray(lm5, dtype=np.float64), rcond=None)  # [4, 2]: (a|tx, b|ty)
    scale = (np.linalg.norm(coef[:3, 0]) + np.linalg.norm(coef[:3, 1])) / 2
    return float(scale), coef[3].copy()


def crop_box(lm5, center_crop=CENTER_CROP):
    """The square [left, top, right, bottom] of the original image (PIL's continuous coordinates,
    pixel i spans [i, i+1]) that EG3D's 1024 -> 700 -> 512 crop keeps."""
    scale, (tx, ty) = fit_template(lm5)
    side = center_crop * scale / RESCALE_FACTOR
    # EG3D fits in a y-flipped frame (y' = H-1-y) and crops with PIL; traced back, its crop is
    # centred on (tx, ty+1) in continuous coordinates for landmarks given at pixel indices.
    cx, cy = tx, ty + 1
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def crop_resize(img, box, output_size):
    """Cut a float box out of the image (black outside it) and resize it to a square with Lanczos."""
    pil = PIL.Image.fromarray(_as_rgb(img))
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    region = pil.crop((x0, y0, x1, y1))  # pads with black where the box leaves the photo
    sub = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    return np.asarray(region.resize((output_size, output_size), PIL.Image.LANCZOS, box=sub))


def _pick(img, face_index, name, cnn_fallback):
    boxes = detect_faces(img, cnn_fallback=cnn_fallback)
    if not boxes:
        raise UserError(f'no face found in {name} (for an image that is already an aligned face crop, use --no-align)')
    i = 0 if face_index is None else int(face_index)
    if not 0 <= i < len(boxes):
        raise UserError(f'face index {i} is out of range: {len(boxes)} face(s) found in {name} (0 = largest)')
    return boxes, i


def align_face(img_uint8, face_index=None, output_size=OUTPUT_SIZE, name='the image', cnn_fallback=False):
    """Detect a face and crop it as EG3D's FFHQ preprocessing does (see the module docstring).

    face_index: which face, counting from the largest (0, the default). Returns the aligned uint8
    [S,S,3] crop and info: num_faces, face_index, box (left, top, right, bottom), landmarks
    (68 [x, y]), landmarks5 (in the input), landmarks5_aligned (in the crop), crop_box.
    """
    img = _as_rgb(img_uint8)
    boxes, i = _pick(img, face_index, name, cnn_fallback)
    lm = landmarks68(img, boxes[i])
    lm5 = five_points(lm)
    box = crop_box(lm5)
    aligned = crop_resize(img, box, output_size)
    k = output_size / (box[2] - box[0])
    # crop coordinates of pixel-index points: continuous (x+0.5) relative to the box, scaled, -0.5
    lm5_out = (lm5 + 0.5 - box[:2]) * k - 0.5
    info = dict(num_faces=len(boxes), face_index=i, box=[float(v) for v in boxes[i]],
                landmarks=lm.tolist(), landmarks5=lm5.tolist(), landmarks5_aligned=lm5_out.tolist(),
                crop_box=box.tolist())
    return aligned, info


def face_embedding(img_uint8, face_index=None):
    """dlib's 128-d face-recognition descriptor of the largest (or face_index-th) face, or None when
    there is no face. Same person: Euclidean distance below ~0.6 (dlib's threshold)."""
    img = _as_rgb(img_uint8)
    boxes = detect_faces(img)
    if not boxes:
        return None
    i = 0 if face_index is None else int(face_index)
    if not 0 <= i < len(boxes):
        return None
    dlib = require_extra('align', 'dlib')
    rect = dlib.rectangle(*(int(round(v)) for v in boxes[i]))
    shape = _model('landmarks68')(img, rect)
    return np.array(_model('recognition').compute_face_descriptor(img, shape), dtype=np.float64)
