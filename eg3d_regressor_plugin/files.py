"""Writing outputs atomically (a temporary file or folder, renamed into place only when complete),
and checking an output folder before any work."""

import contextlib
import errno
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


# A write that fails for one of these reasons is the user's to fix (free space, quota, file-size
# limit, permissions, a read-only disk): it ends in one line naming the path, not a traceback.
WRITE_ERRNOS = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'disk quota exceeded',
                errno.EFBIG: 'file too large for the file system', errno.EROFS: 'read-only file system',
                errno.EACCES: 'permission denied', errno.EPERM: 'operation not permitted'}


class WriteError(UserError):
    """An output could not be written (disk full, quota, read-only, ...): `path` names it. The
    half-written file or folder has already been removed when this is raised."""

    def __init__(self, path, reason):
        self.path, self.reason = Path(path), reason
        super().__init__(f'could not write {path}: {reason}; nothing was left half-written')

    def __reduce__(self):  # picklable across processes despite the two-argument constructor
        return WriteError, (self.path, self.reason)


def _write_error(e):
    """The OSError `e` (possibly wrapped by a library in its __cause__/__context__ chain) that is a
    write failure the user can fix, or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def _final_name(name, tmp, final):
    """A path inside the temporary `tmp` as the user will know it: the same path inside `final`."""
    try:
        return Path(final) / Path(name).relative_to(tmp)
    except ValueError:
        return Path(name) if name else Path(final)


@contextlib.contextmanager
def _creating(path):
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise WriteError(path, WRITE_ERRNOS[e.errno]) from None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    A write failure the user can fix (WRITE_ERRNOS: a full disk, a quota, ...) becomes a
    WriteError naming `path`, after the temporary file is removed."""
    path = Path(path)
    with _creating(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Keep the suffix: writers such as imageio pick the format from it.
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix=f'.tmp{path.suffix}', dir=path.parent)
        os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should be as readable as any file
    try:
        yield tmp
        os.replace(tmp, path)
    except WriteError:
        raise
    except Exception as e:
        cause = _write_error(e)
        if cause is None:
            raise
        _remove(tmp)
        raise WriteError(path, WRITE_ERRNOS[cause.errno]) from None
    finally:
        _remove(tmp)


def _remove(tmp):
    try:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; it becomes `path` (replacing an old one) only if the
    block succeeds, so a failure leaves no half-written output folder. A write failure the user can
    fix (WRITE_ERRNOS), inside the block or renaming, becomes a WriteError naming the file as it
    would have been in `path` (e.g. out/face/w.npy), after the temporary folder is removed."""
    path = Path(path)
    with _creating(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except WriteError as e:
        _remove(tmp)
        raise WriteError(_final_name(e.path, tmp, path), e.reason) from None
    except Exception as e:
        cause = _write_error(e)
        if cause is None:
            raise
        _remove(tmp)
        raise WriteError(_final_name(cause.filename, tmp, path), WRITE_ERRNOS[cause.errno]) from None
    finally:
        _remove(tmp)


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
