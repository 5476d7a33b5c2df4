"""The bridge to EG3D: find a checkout, import it, fix what breaks on today's PyTorch and on
CPUs, and load EG3D network pickles.

This is the only module that touches ``sys.path``, and it depends on nothing else in the package
but its error type. EG3D's code is imported at run time from the user's checkout and never
copied here.
"""

import contextlib
import functools
import importlib
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import torch

from .errors import UserError, check_file

PINNED_COMMIT = '7cf1fd1e99e1061e8b6ba850f91c94fe56e7afe4'
EG3D_URL = 'https://github.com/NVlabs/eg3d'
HOW_TO_GET = (f'get it with: git clone {EG3D_URL} ../eg3d && git -C ../eg3d checkout {PINNED_COMMIT[:7]} '
              '(next to this repository), or pass --eg3d PATH / set EG3D_ROOT')
# Files that make a folder an EG3D code folder (the repo's eg3d/ subfolder).
_REQUIRED = ['dnnlib/__init__.py', 'torch_utils/persistence.py', 'torch_utils/ops/bias_act.py',
             'training/triplane.py', 'training/superresolution.py', 'legacy.py', 'camera_utils.py']
_EG3D_MODULES = ('dnnlib', 'torch_utils', 'training', 'legacy', 'camera_utils', 'shape_utils')

_state = {'root': None, 'fixes': []}

#----------------------------------------------------------------------------
# Finding and importing the checkout.

def _code_dir(path: Path):
    """The EG3D code folder for a repo root or the code folder itself, or None."""
    for cand in (path / 'eg3d', path):
        if all((cand / f).is_file() for f in _REQUIRED):
            return cand.resolve()
    return None


def find_eg3d(path=None) -> Path:
    """Locate the EG3D code folder: explicit path, then $EG3D_ROOT, then a sibling ../eg3d."""
    if path:
        source = '--eg3d'
    elif os.environ.get('EG3D_ROOT'):
        path, source = os.environ['EG3D_ROOT'], 'EG3D_ROOT'
    else:
        # Next to this repository (editable install), or next to the working folder.
        siblings = [Path(__file__).resolve().parent.parent.parent / 'eg3d', Path.cwd().resolve().parent / 'eg3d']
        for sibling in siblings:
            found = _code_dir(sibling) if sibling.is_dir() else None
            if found is not None:
                return found
        raise UserError(f'no EG3D checkout found (looked at --eg3d, EG3D_ROOT and {siblings[0]}); {HOW_TO_GET}')
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserError(f'{source} path {path} does not exist or is not a folder; {HOW_TO_GET}')
    found = _code_dir(p)
    if found is None:
        missing = [f for f in _REQUIRED if not (p / 'eg3d' / f).is_file() and not (p / f).is_file()]
        raise UserError(f'{source} path {path} is not an EG3D checkout (missing {", ".join(missing[:3])}); {HOW_TO_GET}')
    return found


def import_eg3d(path=None) -> Path:
    """Put the EG3D checkout first on sys.path, import its modules and apply the fixes.
    Idempotent; a second call with a different checkout is refused."""
    root = find_eg3d(path)
    if _state['root'] is not None:
        if _state['root'] != root:
            raise UserError(f'EG3D is already imported from {_state["root"]}; cannot switch to {root} in one process')
        return root
    # Modules of the same names from elsewhere (PyPI's torch-utils, legacy) would shadow EG3D's.
    for name in list(sys.modules):
        if name.split('.')[0] in _EG3D_MODULES:
            mod_file = getattr(sys.modules[name], '__file__', None) or ''
            if not mod_file.startswith(str(root)):
                del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        persistence = importlib.import_module('torch_utils.persistence')
        importlib.import_module('dnnlib')
        importlib.import_module('legacy')
        importlib.import_module('camera_utils')
        importlib.import_module('training.triplane')
        importlib.import_module('training.dual_discriminator')
    except ImportError as e:
        sys.path.remove(str(root))
        raise UserError(f'EG3D at {root} cannot be imported: {e} (is the plugin installed with its dependencies?)') from None
    if not str(getattr(persistence, '__file__', '')).startswith(str(root)):
        raise UserError(f'torch_utils.persistence comes from {persistence.__file__}, not from EG3D at {root}; '
                        'uninstall the unrelated "torch-utils" package')
    _state['root'] = root
    _apply_fixes()
    return root


def eg3d_root():
    """The imported checkout's code folder, or None before import_eg3d()."""
    return _state['root']


def eg3d_commit(root: Path):
    """The checkout's git commit, or None when it is no git checkout (an archive, say). An
    unpacked copy inside some other repository (a project's ignored folder) is no checkout: git
    would answer with that repository's commit."""
    try:
        out = subprocess.run(['git', '-C', str(root), 'rev-parse', '--show-toplevel', 'HEAD'], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2:
        return None
    root = Path(root).resolve()
    return lines[1] if Path(lines[0]).resolve() in (root, root.parent) else None  # the repo holds eg3d/ or is it

#----------------------------------------------------------------------------
# Run-time compatibility fixes (patches/ holds the same fixes as patch files).

def _sr_forward_fix(forward):
    """SuperresolutionHybrid*.forward(rgb, x, ws) adds into `rgb` in place (SynthesisBlock's
    img.add_), and `rgb` is a view of the rendered feature image: on torch 2.x backward then fails
    ("modified by an inplace operation") and image_raw is corrupted. Hand it a copy."""
    if getattr(forward, '_eg3d_plugin_fixed', False):
        return forward

    @functools.wraps(forward)
    def fixed(self, rgb, x, ws, **kwargs):
        return forward(self, rgb.clone(), x, ws, **kwargs)
    fixed._eg3d_plugin_fixed = True
    return fixed


def fix_superresolution_class(cls):
    """Apply the in-place fix to one super-resolution class (also one unpickled from a temporary
    module, whose class differs from the checkout's)."""
    # persistent_class wraps each class in a subclass, so `forward` is usually inherited.
    if callable(getattr(cls, 'forward', None)) and not getattr(cls.forward, '_eg3d_plugin_fixed', False):
        cls.forward = _sr_forward_fix(cls.forward)


@contextlib.contextmanager
def _extensions_in_sys_modules():
    """custom_ops.get_plugin builds an op with torch.utils.cpp_extension.load, then imports it by
    name. torch 2.x's load returns the module without putting it in sys.modules, so that import
    failed ("No module named 'bias_act_plugin'") after every successful build: register it."""
    import torch.utils.cpp_extension as ext  # here: it costs 0.1 s to import (setuptools); EG3D imports it anyway
    load = ext.load

    @functools.wraps(load)
    def load_and_register(*args, **kwargs):
        module = load(*args, **kwargs)
        if isinstance(module, types.ModuleType):
            sys.modules.setdefault(kwargs.get('name', args[0] if args else module.__name__), module)
        return module
    ext.load = load_and_register
    try:
        yield
    finally:
        ext.load = load


def _op_init_fallback(module, op_name):
    """custom_ops.get_plugin re-raises a failed CUDA build, which kills the run on a GPU: fall back
    to the reference implementation with one warning instead."""
    init = module._init
    if getattr(init, '_eg3d_plugin_fixed', False):
        return

    def _init():
        if getattr(module, '_eg3d_plugin_failed', False):
            return False
        try:
            with _extensions_in_sys_modules():
                return init()
        except Exception as e:  # the build can fail in many ways (no nvcc, bad compiler, ...)
            module._eg3d_plugin_failed = True
            warnings.warn(f'EG3D custom op {op_name} could not be built ({type(e).__name__}: {e}); '
                          'using the slower reference implementation')
            return False
    _init._eg3d_plugin_fixed = True
    module._init = _init


def _apply_fixes():
    sr = importlib.import_module('training.superresolution')
    for name in dir(sr):
        obj = getattr(sr, name)
        if isinstance(obj, type) and name.startswith('Superresolution'):
            fix_superresolution_class(obj)
    _state['fixes'].append('superresolution: no in-place add into the rendered feature image')
    for op in ('bias_act', 'upfirdn2d', 'filtered_lrelu'):
        _op_init_fallback(importlib.import_module(f'torch_utils.ops.{op}'), op)
    _state['fixes'].append('custom ops: built ops are importable on torch 2.x; a failed build falls back to the reference path')
    # grid_sample_gradfix calls a private torch API that changed in torch 2.x; keep it off.
    importlib.import_module('torch_utils.ops.grid_sample_gradfix').enabled = False
    _state['fixes'].append('grid_sample_gradfix: kept off (broken on torch 2.x)')


def applied_fixes():
    return list(_state['fixes'])


def custom_ops_status(device):
    """{op: 'compiled' | 'reference (...)'} — tries the CUDA build only on a CUDA device."""
    status = {}
    for op in ('bias_act', 'upfirdn2d', 'filtered_lrelu'):
        if device.type != 'cuda':
            status[op] = 'reference (no CUDA device)'
            continue
        mod = importlib.import_module(f'torch_utils.ops.{op}')
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            ok = mod._init()
        status[op] = 'compiled' if ok else 'reference (build failed)'
    return status

#----------------------------------------------------------------------------
# Network pickles.

def is_triplane_generator(G) -> bool:
    # By name: a class unpickled from a temporary module is not the checkout's class.
    return isinstance(G, torch.nn.Module) and type(G).__name__ == 'TriPlaneGenerator' and hasattr(G, 'backbone')


def _open(path):
    path = str(path)
    if '://' in path:
        import dnnlib
        return dnnlib.util.open_url(path)
    return open(path, 'rb')


def _diagnose(path):
    """Why a file that legacy.load_network_pkl refused is not an EG3D snapshot, in a few words."""
    legacy = importlib.import_module('legacy')
    try:
        with _open(path) as f:
            data = legacy._LegacyUnpickler(f).load()
    except Exception as e:
        return f'not a network pickle ({type(e).__name__}: {str(e)[:120]})'
    if not isinstance(data, dict):
        return f'not an EG3D snapshot (holds a {type(data).__name__}, not a dict of networks)'
    if 'G_ema' not in data:
        return f'not an EG3D snapshot (no G_ema; keys: {", ".join(map(str, list(data)[:6]))})'
    return 'not an EG3D snapshot'


def load_network_pkl(path, eg3d=None):
    """Load an EG3D snapshot dict through EG3D's own legacy.load_network_pkl."""
    path = str(path)
    if '://' not in path:  # the file's problems first: they are the likelier mistake
        check_file(path, 'network pickle')
    import_eg3d(eg3d)
    legacy = importlib.import_module('legacy')
    try:
        with _open(path) as f:
            data = legacy.load_network_pkl(f)
    except Exception:
        raise UserError(f'{path}: {_diagnose(path)}') from None
    return data


def load_generator(path, device='cpu', reload_modules=False, eg3d=None):
    """G_ema from an EG3D pickle, fixed, in eval mode, without gradients, on `device`.
    reload_modules rebuilds it from the checkout's own classes (as EG3D's gen_samples.py does),
    so that code changes take effect and the result can be pickled again."""
    return load_snapshot(path, device, reload_modules, eg3d)[0]


def load_snapshot(path, device='cpu', reload_modules=False, eg3d=None):
    """(G_ema as load_generator gives it, the snapshot's training_set_kwargs as a dict, {} when it
    has none), from one read of the pickle."""
    data = load_network_pkl(path, eg3d)
    G = data['G_ema']
    if not is_triplane_generator(G):
        raise UserError(f'{path}: G_ema is a {type(G).__name__}, not an EG3D TriPlaneGenerator')
    if reload_modules:
        G = rebuild_generator(G)
    kwargs = data.get('training_set_kwargs')
    return prepare_generator(G).to(device), (dict(kwargs) if isinstance(kwargs, dict) else {})


def prepare_generator(G):
    """A loaded (or unpickled) G with the fixes applied, in eval mode, without gradients."""
    fix_superresolution_class(type(G.superresolution))
    return G.eval().requires_grad_(False)


def rebuild_generator(G):
    """A TriPlaneGenerator of the checkout's own class with G's parameters and settings."""
    from torch_utils import misc
    from training.triplane import TriPlaneGenerator
    G_new = TriPlaneGenerator(*G.init_args, **G.init_kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(G, G_new, require_all=True)
    G_new.neural_rendering_resolution = G.neural_rendering_resolution
    G_new.rendering_kwargs = G.rendering_kwargs
    return G_new.to(next(G.parameters()).device)
