"""Moving EG3D latent codes: interpolation, per-level style mixing and InterFaceGAN-style edits.

Pure numpy (torch tensors are accepted and given back as tensors); nothing here needs EG3D.

Codes are W+ codes of shape [1, num_ws, w_dim] (EG3D FFHQ: [1, 14, 512]) or [num_ws, w_dim]; a
plain w [1, w_dim] is the W+ code whose levels are all equal (what the mapping network outputs).
An edit moves each chosen level l of w by alpha * B[l], B being a boundary (boundaries.py: trained,
conditioned, saved and loaded there) as [num_ws, w_dim].
"""

import re

import numpy as np

from .arrays import as_numpy as _np, format_runs, like as _like
from .boundaries import boundary_levels
from .errors import UserError

#----------------------------------------------------------------------------
# Interpolation.

def lerp(w0, w1, t):
    """(1 - t) * w0 + t * w1. A scalar t gives w0's shape; a sequence of ts stacks them on a new
    first axis. t = 0 and t = 1 return w0 and w1 exactly."""
    a, b = _np(w0), _np(w1)
    ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
    out = np.stack([a if ti == 0 else b if ti == 1 else a + ti * (b - a) for ti in ts])
    return _like(out if np.ndim(t) else out[0], w0, w1)


def _orthogonal_unit(u):
    """A unit vector orthogonal to unit u (rows): the basis vector where |u| is smallest, minus
    its projection on u. Deterministic, for the antiparallel case of slerp."""
    e = np.zeros_like(u)
    np.put_along_axis(e, np.argmin(np.abs(u), axis=-1)[..., None], 1.0, axis=-1)
    p = e - np.sum(e * u, -1, keepdims=True) * u
    return p / np.linalg.norm(p, axis=-1, keepdims=True)


def slerp(w0, w1, t, center=None):
    """Spherical interpolation of each row (each level of each code) about `center` (default the
    origin; the interp command uses the generator's w_avg, the centre truncation pulls toward).

    Norm path: slerp on the *directions* with *linearly interpolated norms*. For every row,
    the angle between (w(t) - center) and (w0 - center) is t * theta (theta the angle between the
    ends), and |w(t) - center| = (1 - t) |w0 - center| + t |w1 - center|: constant when the ends
    have equal norms. (Plain slerp, sin((1-t)theta)/sin(theta) w0 + sin(t theta)/sin(theta) w1,
    has the same directions but its norm sags between ends of unequal norms.) Parallel rows follow
    the common direction; antiparallel rows turn through a fixed orthogonal direction; a zero row
    takes the other end's direction. t = 0 and t = 1 return w0 and w1 exactly; a sequence of ts
    stacks them on a new first axis."""
    a, b = _np(w0), _np(w1)
    c = 0.0 if center is None else _np(center)
    a0, b0 = np.broadcast_arrays(a - c, b - c)
    na, nb = np.linalg.norm(a0, axis=-1, keepdims=True), np.linalg.norm(b0, axis=-1, keepdims=True)
    eps = 1e-12
    ua = np.where(na > eps, a0 / np.maximum(na, eps), 0.0)
    ub = np.where(nb > eps, b0 / np.maximum(nb, eps), 0.0)
    ua = np.where(na > eps, ua, ub)  # a zero end takes the other end's direction
    ub = np.where(nb > eps, ub, ua)
    cos = np.clip(np.sum(ua * ub, -1, keepdims=True), -1.0, 1.0)
    theta = np.arccos(cos)
    # Orthonormal partner of ua in the plane of (ua, ub): dir(t) = cos(t theta) ua + sin(t theta) p.
    perp = ub - cos * ua
    perp_norm = np.linalg.norm(perp, axis=-1, keepdims=True)
    fallback = _orthogonal_unit(np.where(np.abs(ua).sum(-1, keepdims=True) > 0, ua, 1.0))
    p = np.where(perp_norm > 1e-9, perp / np.maximum(perp_norm, 1e-300), fallback)
    ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
    out = []
    for ti in ts:
        if ti == 0:
            out.append(np.broadcast_to(a, a0.shape).copy())
        elif ti == 1:
            out.append(np.broadcast_to(b, b0.shape).copy())
        else:
            direction = np.cos(ti * theta) * ua + np.sin(ti * theta) * p
            out.append(c + ((1 - ti) * na + ti * nb) * direction)
    out = np.stack(out)
    return _like(out if np.ndim(t) else out[0], w0, w1)


def _as_codes(codes):
    """A list of codes, or an array [K, ...], -> float64 array [K, num_ws, w_dim]."""
    arrs = [_np(c) for c in codes]
    arrs = [a.reshape(a.shape[-2:]) if a.ndim == 3 else a.reshape(1, -1) if a.ndim == 1 else a for a in arrs]
    if any(a.ndim != 2 or a.shape != arrs[0].shape for a in arrs):
        raise UserError(f'codes to interpolate differ in shape: {", ".join(str(a.shape) for a in arrs)}')
    return np.stack(arrs)


def interpolate(codes, steps, mode='linear', layers=None, center=None):
    """Codes along the path through `codes` (2 or more; each [1,num_ws,w_dim] or [num_ws,w_dim]):
    `steps` codes per segment including both ends, joints not repeated, so K codes give
    (K - 1) * (steps - 1) + 1 codes [n, num_ws, w_dim] and every given code appears exactly.
    mode: 'linear' (lerp) or 'spherical' (slerp about `center`). With `layers`, only those levels
    move; the others keep the first code's values (per-level style interpolation)."""
    if mode not in ('linear', 'spherical'):
        raise UserError(f'interpolation mode {mode!r}: expected linear or spherical')
    if len(codes) < 2:
        raise UserError(f'interpolation needs 2 or more codes, got {len(codes)}')
    if int(steps) < 2:
        raise UserError(f'steps {steps}: need at least 2 (the two ends)')
    arr = _as_codes(codes)
    ts = np.linspace(0.0, 1.0, int(steps))
    out = [arr[0][None]]
    for a, b in zip(arr[:-1], arr[1:]):
        seg = lerp(a, b, ts[1:]) if mode == 'linear' else slerp(a, b, ts[1:], center=center)
        out.append(np.asarray(seg, dtype=np.float64))
    out = np.concatenate(out)
    if layers is not None:
        out = mix_layers(np.broadcast_to(arr[0], out.shape), out, layers).astype(np.float64)
    ref = codes if hasattr(codes, 'detach') else codes[0]
    return _like(out, ref)

#----------------------------------------------------------------------------
# Levels (layers) of W+.

def level_ranges(num_ws=14):
    """Named level ranges. In StyleGAN2's synthesis network (EG3D's tri-plane backbone) level i
    modulates the block at resolution 4 * 2^ceil(i/2) (level 0 the 4x4 block, 1-2 8x8, ...), so
      coarse = levels 0-3  (4^2-8^2 blocks: overall 3D shape, head pose-independent geometry),
      middle = levels 4-7  (16^2-32^2: facial features, expression, hair style),
      fine   = levels 8-    (64^2 and up: colour, texture, fine detail),
    for any num_ws >= 9 (EG3D FFHQ: 14 levels, so fine = 8-13). Smaller W+ (num_ws <= 8, not an
    EG3D backbone) is split into thirds."""
    if num_ws >= 9:
        bounds = [0, 4, 8, num_ws]
    else:
        bounds = [0] + [round(num_ws * k / 3) for k in (1, 2)] + [num_ws]
    return {name: list(range(lo, hi)) for name, lo, hi in zip(('coarse', 'middle', 'fine'), bounds, bounds[1:])}


def parse_layers(s, num_ws=14):
    """'0-7' | 'coarse' | 'coarse,fine' | '3,5,8-10' | 'all' | None -> sorted level indices.
    None and 'all' mean every level."""
    if s is None or (isinstance(s, str) and s.strip().lower() in ('', 'all')):
        return list(range(num_ws))
    named = level_ranges(num_ws)
    out = set()
    parts = s if isinstance(s, (list, tuple)) else str(s).split(',')
    for part in parts:
        part = str(part).strip().lower()
        if part in named:
            if not named[part]:
                raise UserError(f'--layers {s}: {part!r} is empty for a W+ of {num_ws} levels')
            out.update(named[part])
            continue
        m = re.fullmatch(r'(\d+)(?:\s*-\s*(\d+))?', part)
        if not m:
            raise UserError(f'--layers {s!r}: expected level numbers and ranges like 0-3,8 or coarse, middle, fine, all')
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UserError(f'--layers {s!r}: range {part} ends before it starts')
        if hi >= num_ws:
            raise UserError(f'--layers {s!r}: level {hi} out of range (this W+ has levels 0-{num_ws - 1})')
        out.update(range(lo, hi + 1))
    return sorted(out)


def format_layers(layers, num_ws):
    """[0,1,2,3,8] -> '0-3,8'; every level -> 'all'."""
    layers = sorted(set(int(l) for l in layers))
    return 'all' if layers == list(range(num_ws)) else format_runs(layers)


def mix_layers(w_a, w_b, layers):
    """w_a with the levels in `layers` taken from w_b (style mixing). Both [..., num_ws, w_dim]
    (broadcast); `layers` as accepted by parse_layers."""
    a, b = _np(w_a), _np(w_b)
    a, b = np.broadcast_arrays(a, b)
    idx = parse_layers(layers, a.shape[-2])
    out = a.copy()
    out[..., idx, :] = b[..., idx, :]
    return _like(out, w_a, w_b)

#----------------------------------------------------------------------------
# Edits.

def edit(w, boundary, alphas, layers=None):
    """InterFaceGAN edits of one code: for each alpha, w with every level l in `layers` (default
    all) moved by alpha * B[l], B = boundary_levels(boundary). w: [1, num_ws, w_dim] or
    [num_ws, w_dim]. Returns [len(alphas), num_ws, w_dim] (a tensor if w is one)."""
    a = _np(w)
    a = a.reshape(a.shape[-2:]) if a.ndim == 3 else a
    if a.ndim != 2:
        raise UserError(f'edit: w of shape {tuple(_np(w).shape)}; expected [1, num_ws, w_dim]')
    num_ws, w_dim = a.shape
    B = boundary_levels(boundary, num_ws, w_dim)
    mask = np.zeros((num_ws, 1))
    mask[parse_layers(layers, num_ws)] = 1
    al = np.asarray(alphas, dtype=np.float64).reshape(-1, 1, 1)
    return _like(a[None] + al * (mask * B)[None], w)
