"""The one error type for a user's mistake, and the optional extras: click prints a
UserError as one line on stderr and exits non-zero."""

import importlib
import importlib.util

import click

# extra name -> (import name, pip package) for every optional dependency; setup.cfg lists the same.
EXTRAS = {
    'align': [('dlib', 'dlib-bin'), ('face_recognition_models', 'face-recognition-models')],
    'video': [('imageio_ffmpeg', 'imageio-ffmpeg')],
    'edit': [('sklearn', 'scikit-learn')],
    'tensorboard': [('tensorboard', 'tensorboard')],
}


class UserError(click.ClickException):
    """A mistake the user can fix (missing file, wrong network, bad option value)."""

    exit_code = 2


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
