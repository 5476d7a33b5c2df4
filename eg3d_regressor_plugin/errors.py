"""The one error type for a user's mistake, and the optional extras.

Library code raises UserError (a ValueError) with a message that names the parameter or file at
fault; the commands turn it into one line on stderr and a non-zero exit (options.Command)."""

import importlib
import importlib.util

# extra name -> (import name, pip package) for every optional dependency; setup.cfg lists the same.
EXTRAS = {
    'align': [('dlib', 'dlib-bin'), ('face_recognition_models', 'face-recognition-models')],
    'video': [('imageio_ffmpeg', 'imageio-ffmpeg')],
    'edit': [('sklearn', 'scikit-learn')],
    'tensorboard': [('tensorboard', 'tensorboard')],
    'mesh': [('fast_simplification', 'fast-simplification')],
    'app': [('gradio', 'gradio')],
}


class UserError(ValueError):
    """A mistake the user can fix (missing file, wrong network, bad value)."""

    exit_code = 2

    def __init__(self, *args, message=None):
        # message=: how torch's DataLoader re-raises an error a worker raised (a damaged zip member),
        # as "Caught UserError in DataLoader worker ..." and the worker's traceback; the error's own
        # line is the last one.
        if message is not None and not args:
            args = (str(message).strip().splitlines()[-1].split('UserError: ', 1)[-1],)
        super().__init__(*args)

    @property
    def message(self) -> str:
        return str(self)


def extra_available(extra: str) -> bool:
    return all(importlib.util.find_spec(mod) is not None for mod, _ in EXTRAS[extra])


def require_extra(extra: str, module: str = None):
    """Import an optional dependency (by default the extra's first module) or fail with the
    exact pip line that installs the extra."""
    module = module or EXTRAS[extra][0][0]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkgs = ' '.join(p for _, p in EXTRAS[extra])
        raise UserError(f'this needs the "{extra}" extra ({e}); install it with: pip install {pkgs}') from None


def check_file(path, what):
    """Refuse a path that is missing, a folder or empty, naming `what` it should have been (e.g.
    'network pickle'); returns it as a pathlib.Path."""
    from pathlib import Path
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f'{what} not found: {p} (no such file)')
    if not p.is_file():
        raise UserError(f'{what} {p} is a folder, not a file' if p.is_dir() else f'{what} {p} is not a file')
    if p.stat().st_size == 0:
        raise UserError(f'{what} {p} is empty (0 bytes)')
    return p
