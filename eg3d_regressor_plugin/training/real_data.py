"""Real images as training material: what `label` pseudo-labels and what `train --real` mixes in.

A real image set is named by one SPEC:

    an EG3D dataset zip   images (EG3D crops already) and, optionally, dataset.json's camera
                          labels, as EG3D's dataset_tool writes them (e.g. FFHQ's zip)
    a `label` zip         the same layout plus each image's w (ws/*.npy) and regressor_dataset.json
                          (a `dataset` zip reads the same way); made for one generator, refused
                          for another
    photos                a file, a folder or a glob: each photo is aligned (EG3D's crop, the
                          "align" extra) in a small pool of worker processes, so that dlib's
                          detector does not hold the caller up; a photo without a face, or one
                          that does not read, is skipped and listed

read_entries lists the inputs; prepare_images loads (and aligns) them; load_real gives a whole
set for training: in memory, or, for a zip too large for that (EG3D's FFHQ zip: 70,000 images,
14 GB as uint8 at 256 px), as a ZipImages dataset read on demand by DataLoader workers.
"""

import concurrent.futures
import copy
import io
import json
import multiprocessing
import os
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ..errors import UserError, check_file
from . import data

ALIGN_WORKERS = 2  # processes that align photos (dlib's detector is single-threaded)
STREAM_BYTES = 2 << 30  # a zip whose images, as uint8 at the training resolution, exceed this streams


def is_zip_spec(spec):
    return str(spec).lower().endswith('.zip') or (Path(str(spec)).is_file() and zipfile.is_zipfile(str(spec)))


def read_zip(path, what='--real'):
    """An EG3D-layout zip -> dict(names [image members], labels float32 [N,25] or None (with
    has_label [N] bool when only some have one), meta (regressor_dataset.json) or None). A file
    that is no readable zip, or holds no image, is a UserError naming `what`."""
    check_file(path, what)
    if not zipfile.is_zipfile(str(path)):
        raise UserError(f'{what} {path} is not a zip archive (or it is damaged)')
    try:
        with zipfile.ZipFile(str(path)) as z:
            members = z.namelist()
            meta = json.loads(z.read(data.DATASET_META)) if data.DATASET_META in members else None
            labels = json.loads(z.read('dataset.json')).get('labels') if 'dataset.json' in members else None
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError) as e:
        raise UserError(f'{what} {path} cannot be read ({type(e).__name__}: {e})') from None
    from ..images import IMAGE_EXTS
    names = sorted(m for m in members if not m.startswith('ws/') and os.path.splitext(m)[1].lower() in IMAGE_EXTS)
    if not names:
        raise UserError(f'{what} {path} holds no images')
    out = dict(names=names, labels=None, has_label=None, meta=meta)
    if labels:
        try:
            by_name = {fname: label for fname, label in labels}
        except (TypeError, ValueError):
            raise UserError(f'{what} {path}: dataset.json does not hold [name, label] pairs') from None
        has = np.array([by_name.get(n) is not None for n in names])
        arr = np.zeros((len(names), 25), dtype=np.float32)
        for i, n in enumerate(names):
            if has[i]:
                lab = np.asarray(by_name[n], dtype=np.float32).reshape(-1)
                if lab.size != 25:
                    raise UserError(f'{what} {path}: the camera label of {n} has {lab.size} values, not 25')
                arr[i] = lab
        if has.any():
            out.update(labels=arr, has_label=has)
    return out


def read_entries(spec, what='--real'):
    """The inputs of a SPEC -> (kind, entries, zip info or None): kind 'zip' or 'photos'; entries
    are dicts of name (for messages and the CSV) and source (a path, or (zip path, member))."""
    if is_zip_spec(spec):
        info = read_zip(spec, what)
        return 'zip', [dict(name=n, source=(str(spec), n)) for n in info['names']], info
    from ..images import list_images
    return 'photos', [dict(name=p.name, source=str(p)) for p in list_images(spec)], None


def _decode(source, zf=None):
    """uint8 [H,W,3] of a path or a (zip, member) source (UserError when it does not read); zf: that
    zip already open (a large zip's directory costs a read of its own each time it is opened)."""
    if isinstance(source, (tuple, list)):
        zpath, member = source
        try:
            if zf is not None:
                return np.asarray(PIL.Image.open(io.BytesIO(zf.read(member))).convert('RGB'))
            with zipfile.ZipFile(zpath) as z:
                return np.asarray(PIL.Image.open(io.BytesIO(z.read(member))).convert('RGB'))
        except Exception as e:  # a damaged member
            raise UserError(f'{zpath}: cannot read {member} ({type(e).__name__}: {e})') from None
    from ..images import load_image
    return load_image(source)


def prepare_one(source, align, size, zf=None):
    """(uint8 [size,size,3] crop, None) or (None, reason): one input loaded, aligned when `align`
    (else resized). Runs in the worker processes."""
    try:
        img = _decode(source, zf)
        if align:
            from ..align import align_face
            name = Path(source[1] if isinstance(source, (tuple, list)) else source).name
            img, _ = align_face(img, output_size=size, name=name)
        elif img.shape[:2] != (size, size):
            img = np.asarray(PIL.Image.fromarray(img).resize((size, size), PIL.Image.LANCZOS))
        return img, None
    except UserError as e:
        return None, str(e)


def _worker_init():
    torch.set_num_threads(1)


class Preparer:
    """prepare_one over many inputs, in `workers` spawned processes when aligning (the order is
    kept); in this process otherwise. Use as a context manager."""

    def __init__(self, align, size, workers=ALIGN_WORKERS):
        self.align, self.size = align, size
        self.pool = None
        if align and workers > 1:
            from ..errors import require_extra
            require_extra('align', 'dlib')  # fail here, once, with the pip line
            self.pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context('spawn'), initializer=_worker_init)
        elif align:
            from ..errors import require_extra
            require_extra('align', 'dlib')

    def __call__(self, sources):
        """[(img or None, reason or None)] for sources, in order."""
        args = [(s, self.align, self.size) for s in sources]
        if self.pool is None:
            return [prepare_one(*a) for a in args]
        return list(self.pool.map(prepare_one, *zip(*args))) if args else []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class ZipImages(torch.utils.data.Dataset):
    """A zip's real images read on demand: item i -> dict(img uint8 [3,R,R], w [num_ws,w_dim], has_w,
    c [25], has_c), the rows load_real holds in memory, resized the same way. For a label (or
    dataset) zip the w and labels are the zip's (and the generator is checked); for an EG3D zip w
    is unknown. A damaged member is a UserError when it is read (it cannot be skipped ahead of time
    without reading the whole zip)."""

    def __init__(self, spec, G, resolution, info):
        self.path, self.resolution = str(spec), int(resolution)
        self.pairs = data.PairDataset(spec, G=G) if info['meta'] is not None else None
        if self.pairs is not None:
            self.pairs.with_masks = False  # real images: a pairs zip's masks are not used
            self.names = list(self.pairs.fnames)
            self.c = torch.from_numpy(self.pairs.labels)
            self.has_c = torch.ones(len(self.names), dtype=torch.bool)
        else:
            self.names = list(info['names'])
            have = info['labels'] is not None
            self.c = torch.from_numpy(info['labels']) if have else torch.zeros(len(self.names), 25)
            self.has_c = torch.from_numpy(info['has_label']) if have else torch.zeros(len(self.names), dtype=torch.bool)
        self.has_w = torch.full((len(self.names),), self.pairs is not None)
        self.w_shape = (G.backbone.num_ws, G.w_dim)
        self.indices = list(range(len(self.names)))
        self._zip = None

    def __len__(self):
        return len(self.indices)

    def __getstate__(self):  # each DataLoader worker opens its own handle
        return dict(self.__dict__, _zip=None)

    def subset(self, sl):
        """The items of slice `sl` (of this dataset's order), as a ZipImages."""
        out = copy.copy(self)
        out.indices = self.indices[sl]
        return out

    def __getitem__(self, i):
        j = self.indices[i]
        if self.pairs is not None:
            img, w, _ = self.pairs._read(j)
            img = torch.from_numpy(img).permute(2, 0, 1)[None]
            if img.shape[-1] != self.resolution:
                img = _resize_uint8(img, self.resolution)
            img, w = img[0], torch.from_numpy(w).float()
        else:
            if self._zip is None:
                self._zip = zipfile.ZipFile(self.path)
            im, reason = prepare_one((self.path, self.names[j]), False, self.resolution, self._zip)
            if im is None:
                raise UserError(reason)
            img, w = torch.from_numpy(np.array(im)).permute(2, 0, 1), torch.zeros(self.w_shape)
        return dict(img=img.contiguous(), w=w, has_w=self.has_w[j], c=self.c[j].float(), has_c=self.has_c[j])

    def load(self):
        """All its items in memory: load_real's dict of stacked rows."""
        rows = [self[i] for i in range(len(self))]
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def load_real(spec, G, resolution, align=True, workers=ALIGN_WORKERS, log=print, stream=None):
    """A real image set for training: dict(img uint8 [N,3,R,R], w [N,num_ws,w_dim] (zeros where
    unknown), has_w [N] bool, c [N,25], has_c [N] bool, kind: 'label', 'eg3d-zip' or 'photos',
    names). Photos are aligned once here (unless align is False); skipped ones are logged. A zip
    streams instead (stream=True, or None and its images would take more than STREAM_BYTES): the
    dict then holds `stream` (a ZipImages) in place of img and w."""
    kind, entries, info = read_entries(spec)
    num_ws, w_dim = G.backbone.num_ws, G.w_dim
    nbytes = len(info['names']) * 3 * int(resolution) ** 2 if kind == 'zip' else 0
    if kind == 'zip' and (stream or (stream is None and nbytes > STREAM_BYTES)):
        items = ZipImages(spec, G, resolution, info)
        log(f'Real images: {len(items)} from {spec} stream from disk ({nbytes / 2 ** 30:.1f} GB at {resolution} px '
            f'is more than the {STREAM_BYTES / 2 ** 30:g} GB held in memory)')
        return dict(stream=items, has_w=items.has_w, c=items.c, has_c=items.has_c, names=items.names,
                    kind='label' if info['meta'] is not None else 'eg3d-zip')
    if kind == 'zip' and info['meta'] is not None:  # a label (or dataset) zip: images, w and labels, all read
        items = ZipImages(spec, G, resolution, info)
        return dict(items.load(), kind='label', names=items.names)
    with Preparer(align and kind == 'photos', resolution, workers) as prep:
        results = prep([e['source'] for e in entries])
    keep = [i for i, (im, _) in enumerate(results) if im is not None]
    for e, (im, reason) in zip(entries, results):
        if im is None:
            log(f'Skipping {e["name"]}: {reason}')
    if not keep:
        raise UserError(f'--real {spec}: no usable image (all {len(entries)} skipped)')
    img = torch.from_numpy(np.stack([results[i][0] for i in keep])).permute(0, 3, 1, 2).contiguous()
    n = len(keep)
    c = torch.zeros(n, 25)
    has_c = torch.zeros(n, dtype=torch.bool)
    if kind == 'zip' and info['labels'] is not None:
        c = torch.from_numpy(info['labels'][keep])
        has_c = torch.from_numpy(info['has_label'][keep])
    return dict(img=img, w=torch.zeros(n, num_ws, w_dim), has_w=torch.zeros(n, dtype=torch.bool), c=c, has_c=has_c,
                kind='eg3d-zip' if kind == 'zip' else 'photos', names=[entries[i]['name'] for i in keep])


def _resize_uint8(img, size):
    """uint8 [N,3,H,W] -> uint8 [N,3,size,size] (antialiased)."""
    from .networks import resize_input
    x = resize_input(data.uint8_to_float(img), size)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def split_holdout(real, holdout):
    """(train, held-out) parts of a load_real set: the last `holdout` images are held out (none
    when the set is too small to spare them). The held-out part is in memory, also of a streamed set."""
    n = len(real['names'])
    k = min(int(holdout), n - 1) if n > 1 else 0
    def part(sl):
        return {key: (v[sl] if torch.is_tensor(v) or isinstance(v, list) else v.subset(sl) if key == 'stream' else v)
                for key, v in real.items()}
    held = part(slice(n - k, n)) if k > 0 else None
    if held is not None and 'stream' in held:
        held = dict(held, **held.pop('stream').load())
    return part(slice(0, n - k)), held
