"""Writing outputs atomically (a temporary file or folder, renamed into place only when complete),
and checking an output folder before any work."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from .errors import UserError
from .images import to_uint8


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: writers such as imageio pick the format from it.
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix=f'.tmp{path.suffix}', dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should be as readable as any file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; it becomes `path` (replacing an old one) only if the
    block succeeds, so a failure leaves no half-written output folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_npy(path, array):
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.save(f, np.asarray(array))


def save_image(path, img):
    """Save a tensor in [-1,1] (CHW or 1CHW) or a uint8 HWC array as an image, atomically."""
    if isinstance(img, torch.Tensor):
        img = to_uint8(img[0] if img.ndim == 4 else img)
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    path = Path(path)
    with atomic_path(path) as tmp:
        PIL.Image.fromarray(img).save(tmp, format=PIL.Image.registered_extensions().get(path.suffix.lower(), 'PNG'))


def check_outdir(outdir, what='output folder'):
    """Refuse an output folder that cannot be created or written, before any work and without
    leaving anything behind (a probe folder is made and removed in the nearest existing folder).
    `what` names the folder in the message (a command passes its option's name)."""
    p = Path(outdir).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise UserError(f'{what} {outdir} exists and is not a folder')
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f'{what} {outdir} cannot be created: {parent} is not a folder')
    try:
        tempfile.TemporaryDirectory(dir=parent, prefix='.write-test.').cleanup()
    except OSError as e:
        raise UserError(f'{what} {outdir} is not writable ({e.strerror or e})') from None
