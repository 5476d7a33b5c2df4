"""Regressor checkpoints: one torch file that loads with `torch.load(..., weights_only=True)`,
so opening a regressor never runs code, and that carries everything needed to rebuild the
network, turn its output into real W+ codes and refuse a generator it was not trained for.

Stored dict (format 'eg3d-regressor/1'):

    format      'eg3d-regressor/1'
    arch        'vit' | 'unet' | 'psp'
    config      build_regressor(**config) rebuilds the network
    state_dict  its weights (CPU tensors)
    w_stats     {'center': [num_ws, w_dim] (w_avg repeated), 'scale': [num_ws, w_dim] (per-dim std)}
    generator   eg3d.generator_identity(G): num_ws, w_dim, img_resolution, w_avg fingerprint
    state       resume state or None (optimizer state, counters, RNG states)
    meta        small JSON-able dict (training options, kimg) or None

This module imports EG3D only inside `load_regressor` when a generator is checked.
"""

import json
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..cudagraph import GraphedCall
from ..errors import UserError, check_file
from ..files import atomic_path
from .networks import FORMER_DEFAULTS, build_regressor, resize_input

FORMAT = 'eg3d-regressor/1'
_FORMAT_NAME, _FORMAT_VERSION = FORMAT.split('/')
_KEYS = ('format', 'arch', 'config', 'state_dict', 'w_stats', 'generator', 'state', 'meta')

#----------------------------------------------------------------------------
# Latent normalisation.

def normalize_w(w, stats):
    """Real W+ codes [..., num_ws, w_dim] -> the networks' normalised offsets from w_avg."""
    return (w - stats['center'].to(w)) / stats['scale'].to(w)


def denormalize_w(w_norm, stats):
    """The networks' normalised offsets -> real W+ codes."""
    return w_norm * stats['scale'].to(w_norm) + stats['center'].to(w_norm)

#----------------------------------------------------------------------------
# RNG state in forms that weights_only loading accepts (tensors, ints, floats, strings, lists).

def _cuda_index(device):
    device = torch.device(device) if device is not None else None
    return device.index if device is not None and device.type == 'cuda' and device.index is not None else None


def capture_rng_state(device=None) -> dict:
    """The torch CPU, CUDA (of `device`, or the current CUDA device, if CUDA is in use), numpy and
    Python `random` RNG states."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = dict(torch=torch.get_rng_state(),
                 numpy=dict(kind=str(kind), keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                            has_gauss=int(has_gauss), cached_gaussian=float(cached)),
                 python=dict(version=int(version), internal=torch.tensor(internal, dtype=torch.int64),
                             gauss_next=gauss_next))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        index = _cuda_index(device)
        state['cuda'] = torch.cuda.get_rng_state('cuda' if index is None else index)
    return state


def restore_rng_state(state: dict, device=None):
    """Undo `capture_rng_state`; parts that are absent are left alone (a CUDA state without CUDA too)."""
    if 'torch' in state:
        torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        index = _cuda_index(device)
        torch.cuda.set_rng_state(state['cuda'].cpu(), 'cuda' if index is None else index)
    if 'numpy' in state:
        s = state['numpy']
        np.random.set_state((s['kind'], s['keys'].numpy().astype(np.uint32), s['pos'], s['has_gauss'],
                             s['cached_gaussian']))
    if 'python' in state:
        s = state['python']
        random.setstate((s['version'], tuple(int(x) for x in s['internal'].tolist()), s['gauss_next']))

#----------------------------------------------------------------------------
# Saving.

_SAFE = (torch.Tensor, str, int, float, bool, type(None))


def _check_loadable(obj, where='state'):
    """Refuse (as a programming error) what weights_only loading would refuse later, when it is
    too late: numpy arrays and scalars, arbitrary objects."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f'checkpoint {where}: key {k!r} must be a str or int')
            _check_loadable(v, f'{where}.{k}')
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_loadable(v, f'{where}[{i}]')
    elif not isinstance(obj, _SAFE):
        raise TypeError(f'checkpoint {where}: {type(obj).__name__} would not load with weights_only=True; '
                        f'store tensors, numbers, strings, lists or dicts')


def _cpu(obj):
    """Detached CPU copies of every tensor in a nested structure."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def _unwrap(model):
    # DistributedDataParallel / DataParallel hold the regressor in .module.
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def save_checkpoint(path, model, w_stats, generator, state=None, meta=None):
    """Write a regressor checkpoint atomically (a killed process leaves the old file or none)."""
    model = _unwrap(model)
    ckpt = dict(format=FORMAT, arch=model.arch, config=dict(model.config), state_dict=_cpu(model.state_dict()),
                w_stats={k: w_stats[k].detach().to('cpu', torch.float32).clone() for k in ('center', 'scale')},
                generator=dict(generator), state=_cpu(state),
                meta=None if meta is None else json.loads(json.dumps(meta)))  # JSON-able, plain types
    _check_loadable(ckpt, 'checkpoint')
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)

#----------------------------------------------------------------------------
# Loading.

def load_checkpoint(path, map_location='cpu') -> dict:
    """Read and validate a checkpoint with `weights_only=True`; every way it can be wrong is a
    one-line UserError."""
    path = check_file(path, 'regressor checkpoint')
    if not zipfile.is_zipfile(path):
        # torch.save writes a zip archive; anything else is not ours and is never unpickled.
        with open(path, 'rb') as f:
            head = f.read(4)
        if head == b'PK\x03\x04':
            raise UserError(f'regressor checkpoint {path} is truncated or corrupt (its zip directory is missing)')
        raise UserError(f'{path} is not a regressor checkpoint: ' + (
            'it is a plain Python pickle (an EG3D network pickle goes to --network)' if head[:1] == b'\x80'
            else 'it is not a torch file'))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch's notes on pickle protocols would add lines
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # The weights-only unpickler wraps its reason in a long text; keep the reason.
        reason = re.search(r'WeightsUnpickler error:\s*(.*?)(?:\n\n|$)', str(e).strip(), re.S)
        reason = ' '.join(reason.group(1).split()) if reason else _first_line(e)
        glob = re.search(r'Unsupported global: GLOBAL (\S+)', reason)
        if glob:
            raise UserError(f'{path} is not a regressor checkpoint: it holds Python objects ({glob.group(1)}), '
                            f'which are not loaded for safety') from None
        raise UserError(f'{path} is not a regressor checkpoint or is corrupt ({_shorten(reason)})') from None
    except Exception as e:  # a damaged archive fails in many ways (RuntimeError, EOFError, KeyError, ...)
        raise UserError(f'{path} is not a regressor checkpoint or is corrupt ({type(e).__name__}: '
                        f'{_first_line(e)})') from None
    fmt = ckpt.get('format') if isinstance(ckpt, dict) else None
    name, _, version = fmt.partition('/') if isinstance(fmt, str) else (None, None, None)
    if name != _FORMAT_NAME or not version.isdigit():
        raise UserError(f'{path} is a torch file but not an eg3d-regressor checkpoint')
    if int(version) > int(_FORMAT_VERSION):
        raise UserError(f'{path} has format {fmt}, newer than this plugin reads ({FORMAT}); '
                        f'upgrade eg3d-regressor-plugin')
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise UserError(f'regressor checkpoint {path} is incomplete (missing {", ".join(missing)})')
    return ckpt


def _shorten(text, limit=160):
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _first_line(e):
    lines = str(e).strip().splitlines()
    return _shorten(lines[0] if lines else type(e).__name__)


def build_from_checkpoint(ckpt, path=None):
    """The network of a loaded checkpoint, with its weights, in eval mode on the CPU."""
    where = f'regressor checkpoint {path}' if path else 'the regressor checkpoint'
    config = ckpt['config']
    model = build_regressor(**{**FORMER_DEFAULTS.get(config.get('arch'), {}), **config})
    state = dict(ckpt['state_dict'])
    for key in ('input_mean', 'input_std'):  # checkpoints from before input standardisation: identity
        state.setdefault(key, getattr(model, key))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserError(f'{where} does not match its own architecture ({_first_line(e)})') from None
    return model.eval()


class Predictor:
    """A loaded regressor: images in [-1, 1] of any size -> (real W+ codes, pose).

    Attributes: model, ckpt, w_stats (on `device`), device, input_resolution, num_ws, w_dim, arch.
    """

    def __init__(self, ckpt, device='cpu', path=None, cuda_graph=True):
        self.ckpt = ckpt
        self.device = torch.device(device)
        self.model = build_from_checkpoint(ckpt, path).to(self.device)
        self.w_stats = {k: v.to(self.device, torch.float32) for k, v in ckpt['w_stats'].items()}
        shape = (self.model.num_ws, self.model.w_dim)
        if any(tuple(self.w_stats[k].shape) != shape for k in ('center', 'scale')):
            raise UserError(f'regressor checkpoint {path or ""} has latent statistics of another shape than '
                            f'its network ({list(shape)})')
        self.arch = self.model.arch
        self.input_resolution = self.model.input_resolution
        self.num_ws, self.w_dim = self.model.num_ws, self.model.w_dim
        # Without gradients on a GPU the forward pass replays as a CUDA graph (kernel launches
        # dominate a regressor at batch 1); cuda_graph=False runs it eagerly.
        self._forward = GraphedCall(self.forward_eager) if cuda_graph else self.forward_eager

    def forward_eager(self, img):
        """Images [N, 3, H, W] (float32, on the device) -> dict(w, pose), never graphed."""
        out = self.model(resize_input(img, self.input_resolution))
        return dict(w=denormalize_w(out['w'], self.w_stats), pose=out['pose'])

    def as_batch(self, img):
        """[N, 3, H, W] or [3, H, W] -> float32 [N, 3, H, W] on the device."""
        if img.ndim == 3:
            img = img.unsqueeze(0)
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f'expected images [N, 3, H, W], got {list(img.shape)}')
        return img.to(self.device, torch.float32)

    def regress(self, img, grad=False):
        """[N, 3, H, W] (or [3, H, W]) in [-1, 1] -> (w [N, num_ws, w_dim], pose [N, 2]). Resizes
        with antialiased bilinear interpolation; with grad=True gradients flow to the image and
        the weights."""
        with torch.set_grad_enabled(grad):
            out = self._forward(self.as_batch(img))
            return out['w'], out['pose']

    def __call__(self, img):
        return self.regress(img, grad=False)


def load_regressor(path, G=None, device='cpu', cuda_graph=True) -> Predictor:
    """Load a regressor checkpoint; with G, refuse it unless it was trained for G."""
    ckpt = load_checkpoint(path, map_location='cpu')
    if G is not None:
        from .. import fingerprint  # lazily: this module works without an EG3D checkout
        fingerprint.check_fingerprint(ckpt['generator'], G, what=f'regressor {path}')
    return Predictor(ckpt, device=device, path=path, cuda_graph=cuda_graph)
