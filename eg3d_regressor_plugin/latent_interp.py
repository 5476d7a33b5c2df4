"""Moving EG3D latent codes: interpolation, per-level style mixing and InterFaceGAN-style edits.

Pure numpy (torch tensors are accepted and given back as tensors) plus scikit-learn for
`train_boundary`; nothing here needs EG3D, so boundaries can be trained and inspected without it.

Codes are W+ codes of shape [1, num_ws, w_dim] (EG3D FFHQ: [1, 14, 512]) or [num_ws, w_dim]; a
plain w [1, w_dim] is the W+ code whose levels are all equal (what the mapping network outputs).

Boundaries (InterFaceGAN, arXiv 2005.09635) are unit normals of a linear SVM's hyperplane:
  - shape [1, w_dim]            trained in w (the first level of each code), applied to every
                                chosen level;
  - shape [1, num_ws * w_dim]   trained in W+ flattened, applied level by level;
  - shape [1, num_ws, w_dim]    EG3D's published form (identical rows = a w direction), likewise.
An edit moves each chosen level l of w by alpha * B[l], B being the boundary as [num_ws, w_dim].
"""

import json
import math
import re
import warnings
from collections import namedtuple
from pathlib import Path

import numpy as np

from .errors import UserError, check_file

#----------------------------------------------------------------------------
# numpy / torch in, the same out.

def _np(x):
    if hasattr(x, 'detach'):  # torch.Tensor, without importing torch
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _like(out, *refs):
    """`out` (float64 numpy) as a tensor on the first tensor ref's device, else as float32 numpy."""
    for ref in refs:
        if hasattr(ref, 'detach'):
            import torch
            return torch.from_numpy(out).to(device=ref.device, dtype=ref.dtype)
    return out.astype(np.float32)

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
        raise UserError(f'--steps {steps}: need at least 2 (the two ends)')
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
    if layers == list(range(num_ws)):
        return 'all'
    runs, start = [], None
    for i, l in enumerate(layers):
        if start is None:
            start = l
        if i + 1 == len(layers) or layers[i + 1] != l + 1:
            runs.append(f'{start}' if start == l else f'{start}-{l}')
            start = None
    return ','.join(runs)


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
# Boundaries.

def train_boundary(codes, scores, chosen_num_or_ratio=0.02, split_ratio=0.7, invalid_value=None,
                   svm='linear_svc', seed=0):
    """InterFaceGAN's boundary: codes [N, D] (more axes are flattened), scores [N] or [N, 1].

    The codes are sorted by score; the top and bottom `chosen_num_or_ratio` (a fraction of N if in
    (0, 1], else a count; capped at N // 2) become positives and negatives; each is split
    `split_ratio` : rest into train / validation (shuffled with `seed`); a linear SVM
    (scikit-learn's LinearSVC, or SVC(kernel='linear') as InterFaceGAN itself) is fitted to the
    training codes. The codes in between, labelled by the threshold (max + min) / 2 of the scores,
    are only used to report accuracy. Codes whose score equals `invalid_value` are dropped first.

    Returns (boundary: float32 [1, D] of unit norm, pointing toward higher scores, info dict with
    counts and train/validation/remaining accuracy)."""
    X = _np(codes)
    y = _np(scores).reshape(-1)
    if X.ndim < 2 or len(X) != len(y):
        raise UserError(f'train_boundary: {len(X)} codes but {len(y)} scores')
    X = X.reshape(len(X), -1)
    if not 0 < split_ratio <= 1:
        raise UserError(f'split ratio {split_ratio}: expected a value in (0, 1]')
    if not chosen_num_or_ratio > 0:
        raise UserError(f'--ratio {chosen_num_or_ratio}: expected a fraction in (0, 1] or a count > 1')
    if invalid_value is not None:
        keep = y != invalid_value
        X, y = X[keep], y[keep]
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(y)):
        raise UserError('train_boundary: codes or scores hold NaN or infinite values')
    n, dim = X.shape
    order = np.argsort(-y, kind='stable')  # highest score first
    X, y = X[order], y[order]
    chosen = int(n * chosen_num_or_ratio) if chosen_num_or_ratio <= 1 else int(chosen_num_or_ratio)
    chosen = min(chosen, n // 2)
    train_num = int(chosen * split_ratio)
    val_num = chosen - train_num
    if train_num < 1:
        raise UserError(f'too few codes for a boundary: {n} codes with ratio {chosen_num_or_ratio:g} give {chosen} '
                        f'positives and negatives, {train_num} to train on; label more codes or raise --ratio')
    if y[chosen - 1] <= y[n - chosen]:
        raise UserError(f'scores do not separate: the top {chosen} and bottom {chosen} codes share the score '
                        f'{y[chosen - 1]:g}; use scores that vary or a smaller --ratio')
    rng = np.random.RandomState(seed)
    pos, neg = X[:chosen][rng.permutation(chosen)], X[n - chosen:][rng.permutation(chosen)]
    x_train = np.concatenate([pos[:train_num], neg[:train_num]])
    l_train = np.r_[np.ones(train_num, int), np.zeros(train_num, int)]
    x_val = np.concatenate([pos[train_num:], neg[train_num:]])
    l_val = np.r_[np.ones(val_num, int), np.zeros(val_num, int)]
    threshold = (y[0] + y[-1]) / 2
    x_rest, y_rest = X[chosen:n - chosen], y[chosen:n - chosen]
    l_rest = (y_rest >= threshold).astype(int)

    from .errors import require_extra
    require_extra('edit')
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import SVC, LinearSVC
    if svm == 'linear_svc':
        clf = LinearSVC(max_iter=10000, random_state=seed)
    elif svm == 'svc':
        clf = SVC(kernel='linear')
    else:
        raise UserError(f'svm {svm!r}: expected linear_svc or svc')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', ConvergenceWarning)
        clf.fit(x_train.astype(np.float32), l_train)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    def accuracy(x, labels):
        return float(np.mean(clf.predict(x.astype(np.float32)) == labels)) if len(labels) else None

    a = np.asarray(clf.coef_, dtype=np.float64).reshape(1, dim)
    norm = np.linalg.norm(a)
    if not norm > 0:
        raise UserError('the SVM found no direction (all weights zero); check that the scores follow the codes')
    info = dict(num_codes=int(n), dim=int(dim), chosen_num=int(chosen), svm=svm, seed=int(seed),
                split_ratio=float(split_ratio), threshold=float(threshold), converged=converged,
                train=dict(positive=int(train_num), negative=int(train_num), accuracy=accuracy(x_train, l_train)),
                val=dict(positive=int(val_num), negative=int(val_num), accuracy=accuracy(x_val, l_val)),
                remaining=dict(positive=int(l_rest.sum()), negative=int(len(l_rest) - l_rest.sum()),
                               accuracy=accuracy(x_rest, l_rest)))
    return (a / norm).astype(np.float32), info


def _orth_basis(C, tol=1e-9):
    """Orthonormal basis [k, D] of the row space of C [m, D] (SVD, rank-revealing)."""
    _, s, vt = np.linalg.svd(C, full_matrices=False)
    return vt[s > tol * max(s.max(), 1e-300)]


def project_boundary(primal, *conditions):
    """InterFaceGAN's conditional boundary: `primal` [1, D] minus its projection on the span of
    the condition boundaries (each [1, D]), normalised: unit norm and orthogonal to every condition.
    One or two conditions use InterFaceGAN's closed form (conditions normalised first); more, or
    two (nearly) parallel ones, an orthonormal basis of their span (SVD)."""
    p = _np(primal).reshape(1, -1)
    conds = [_np(c).reshape(1, -1) for c in conditions]
    for i, c in enumerate(conds):
        if c.shape[1] != p.shape[1]:
            raise UserError(f'condition {i + 1} has {c.shape[1]} dimensions, the primal boundary {p.shape[1]}; '
                            f'train them in the same space (--space)')
        if not np.linalg.norm(c) > 0:
            raise UserError(f'condition {i + 1} is a zero vector')
    conds = [c / np.linalg.norm(c) for c in conds]
    if not conds:
        new = p
    elif len(conds) == 1:
        c = conds[0]
        new = p - (p @ c.T) * c
    elif len(conds) == 2 and abs((conds[0] @ conds[1].T).item()) < 1 - 1e-6:
        c1, c2 = conds
        pc1, pc2, c12 = (p @ c1.T).item(), (p @ c2.T).item(), (c1 @ c2.T).item()
        alpha = (pc1 - pc2 * c12) / (1 - c12 ** 2)
        beta = (pc2 - pc1 * c12) / (1 - c12 ** 2)
        new = p - alpha * c1 - beta * c2
    else:
        Q = _orth_basis(np.concatenate(conds))
        new = p - (p @ Q.T) @ Q
    norm = np.linalg.norm(new)
    if not norm > 1e-6 * max(np.linalg.norm(p), 1e-300):
        raise UserError('the primal boundary lies in the span of the conditions: nothing is left after projection')
    return _like(new / norm, primal)


def boundary_levels(boundary, num_ws, w_dim):
    """A boundary as the per-level direction [num_ws, w_dim] it applies: a w boundary ([1, w_dim])
    repeated on every level, a W+ one ([1, num_ws * w_dim] or [1, num_ws, w_dim]) reshaped."""
    b = _np(boundary)
    if b.size == w_dim and b.ndim <= 2:
        return np.tile(b.reshape(1, w_dim), (num_ws, 1))
    if (b.ndim <= 2 and b.size == num_ws * w_dim and (b.ndim == 1 or b.shape[0] == 1)) or \
            b.shape in ((1, num_ws, w_dim), (num_ws, w_dim)):
        return b.reshape(num_ws, w_dim)
    raise UserError(f'boundary of shape {tuple(b.shape)} fits neither w [1, {w_dim}] nor W+ [1, {num_ws * w_dim}] '
                    f'or [1, {num_ws}, {w_dim}] of this generator')


def boundary_space(boundary, w_dim):
    """'w' for a [1, w_dim] boundary (or EG3D's [1, num_ws, w_dim] with identical rows), else 'wplus'."""
    b = _np(boundary)
    if b.size == w_dim:
        return 'w'
    if b.ndim == 3 and b.shape[-1] == w_dim and np.allclose(b[0], b[0, :1]):
        return 'w'
    return 'wplus'


def as_space(boundary, space, num_ws, w_dim):
    """A boundary as a [1, D] vector in `space` ('w': D = w_dim, 'wplus': D = num_ws * w_dim), for
    combining boundaries saved in different forms (conditions). A w boundary in W+ is repeated on
    every level and renormalised; a W+ boundary in w must have identical levels."""
    B = boundary_levels(boundary, num_ws, w_dim)
    if space == 'wplus':
        v = B.reshape(1, -1)
        return v / np.linalg.norm(v)
    if not np.allclose(B, B[:1], atol=1e-6 * np.abs(B).max()):
        raise UserError('a W+ boundary with different levels cannot serve as a condition in w space; '
                        'train with --space wplus')
    return B[:1] / np.linalg.norm(B[:1])


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

#----------------------------------------------------------------------------
# Files: boundaries, codes, scores.

def boundary_json_path(path):
    return Path(path).with_suffix('.json')


def save_boundary(path, boundary, meta):
    """Write the boundary as float32 .npy (InterFaceGAN's format) and `meta` (attribute, space,
    layers, accuracy, counts, generator fingerprint, ...) as .json beside it, each atomically;
    the .npy last, so a boundary never appears without its description."""
    from .files import atomic_path, save_npy
    path = Path(path)
    if path.suffix != '.npy':
        path = path.with_name(path.name + '.npy')
    with atomic_path(boundary_json_path(path)) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + '\n')
    save_npy(path, _np(boundary).astype(np.float32))
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (np.ndarray, Path)):
        return o.tolist() if isinstance(o, np.ndarray) else str(o)
    raise TypeError(type(o).__name__)


def _load_npy(path, what):
    path = check_file(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UserError(f'{what} {path} is not a .npy array ({type(e).__name__}: {str(e)[:80]})') from None
    if not np.issubdtype(arr.dtype, np.number):
        raise UserError(f'{what} {path} holds {arr.dtype}, not numbers')
    return arr


def load_boundary(path, G=None, num_ws=None, w_dim=None):
    """(boundary float32 array as saved, meta dict from the .json beside it or {}). Refuses (one
    UserError line) a missing or unreadable file, non-finite values, a zero vector, a shape that
    fits neither w nor W+ of the generator (G, or num_ws/w_dim), and a boundary whose .json names
    another generator than G."""
    path = Path(path)
    b = _load_npy(path, 'boundary')
    if not np.all(np.isfinite(b)):
        raise UserError(f'boundary {path} holds NaN or infinite values')
    if not np.linalg.norm(b.astype(np.float64)) > 0:
        raise UserError(f'boundary {path} is a zero vector')
    meta = {}
    jpath = boundary_json_path(path)
    if jpath.is_file():
        try:
            meta = json.loads(jpath.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f'{jpath}: not valid JSON ({e})') from None
    if G is not None:
        from . import fingerprint
        num_ws, w_dim = int(G.backbone.num_ws), int(G.w_dim)
        if meta.get('generator'):
            fingerprint.check_fingerprint(meta['generator'], G, what=f'boundary {path.name}')
    if num_ws is not None and w_dim is not None:
        try:
            boundary_levels(b, num_ws, w_dim)
        except UserError as e:
            raise UserError(f'{path}: {e.message}') from None
    elif not (b.ndim == 1 or (b.ndim in (2, 3) and b.shape[0] == 1)):
        raise UserError(f'boundary {path} has shape {b.shape}; expected [1, D] or [1, num_ws, w_dim]')
    return b.astype(np.float32), meta


def load_code(path, num_ws=None, w_dim=None):
    """A latent code file -> float32 [1, num_ws, w_dim]. Accepts [1, num_ws, w_dim] (EG3D's
    projectors and PTI), [num_ws, w_dim] and a plain w [1, w_dim] (repeated on every level when
    num_ws is given)."""
    path = Path(path)
    a = _load_npy(path, 'latent code')
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or (w_dim is not None and a.shape[1] != w_dim) or \
            (num_ws is not None and a.shape[0] not in (1, num_ws)):
        want = f'[1, {num_ws or "num_ws"}, {w_dim or "w_dim"}] or [1, {w_dim or "w_dim"}]'
        raise UserError(f'latent code {path} has shape {np.load(path).shape}; expected {want}')
    if not np.all(np.isfinite(a)):
        raise UserError(f'latent code {path} holds NaN or infinite values')
    if num_ws is not None and a.shape[0] == 1 and num_ws != 1:
        a = np.repeat(a, num_ws, axis=0)
    return a[None].astype(np.float32)


Scores = namedtuple('Scores', 'codes scores paths unlabelled')
Scores.__doc__ = """codes float32 [N, num_ws, w_dim], scores float64 [N], paths [N] (resolved),
unlabelled (how many rows had an empty score and were skipped)."""


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_scores(csv_path, codes_dir=None, num_ws=None, w_dim=None):
    """Read a `code_path,score` CSV (header optional) and the codes it names -> Scores.

    A code path is taken as written if absolute, else relative to the CSV's folder, then to
    `codes_dir`. Rows with an empty score (an unfilled sample-codes template) are skipped and
    counted. One UserError line, naming the row, for: a missing or unreadable code file, a score
    that is not a finite number, a code listed twice, codes of different shapes; and for a CSV
    that is missing, empty or has no scored row."""
    import csv
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserError(f'scores CSV not found: {csv_path}')
    try:
        rows = list(csv.reader(csv_path.read_text().splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f'scores CSV {csv_path}: not a readable CSV ({e})') from None
    numbered = [(i + 1, r) for i, r in enumerate(rows) if r and any(c.strip() for c in r)]
    if numbered and len(numbered[0][1]) >= 2 and not numbered[0][1][0].strip().endswith('.npy') \
            and not _is_number(numbered[0][1][1]):
        numbered = numbered[1:]  # header
    if not numbered:
        raise UserError(f'scores CSV {csv_path} is empty: expected rows of code_path,score')
    bases = [csv_path.parent] + ([Path(codes_dir)] if codes_dir is not None else [])
    codes, scores, paths, seen, unlabelled = [], [], [], {}, 0
    for line, row in numbered:
        where = f'{csv_path.name} row {line}'
        if len(row) < 2:
            raise UserError(f'{where}: expected code_path,score, got {",".join(row)!r}')
        name, score = row[0].strip(), row[1].strip()
        if score == '':
            unlabelled += 1
            continue
        try:
            value = float(score)
        except ValueError:
            raise UserError(f'{where}: score {score!r} is not a number') from None
        if not math.isfinite(value):
            raise UserError(f'{where}: score {score!r} is not a finite number')
        candidates = [Path(name)] if Path(name).is_absolute() else [b / name for b in bases]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise UserError(f'{where}: code file {name} not found (looked in {", ".join(str(b) for b in bases)})')
        key = found.resolve()
        if key in seen:
            raise UserError(f'{where}: code {name} is listed twice (also row {seen[key]})')
        seen[key] = line
        try:
            code = load_code(found, num_ws, w_dim)[0]
        except UserError as e:
            raise UserError(f'{where}: {e.message}') from None
        codes.append(code)
        scores.append(value)
        paths.append(found)
    if not codes:
        raise UserError(f'scores CSV {csv_path} has no scores yet ({unlabelled} rows with an empty score): '
                        f'fill in the score column')
    levels = max(c.shape[0] for c in codes)
    codes = [np.repeat(c, levels, 0) if c.shape[0] == 1 else c for c in codes]  # plain w -> W+
    shapes = {c.shape for c in codes}
    if len(shapes) > 1:
        raise UserError(f'scores CSV {csv_path}: codes of different shapes {sorted(shapes)}')
    return Scores(np.stack(codes), np.asarray(scores, dtype=np.float64), paths, unlabelled)


def codes_in_space(codes, space):
    """Codes [N, num_ws, w_dim] -> the vectors a boundary is trained on: 'w' = the first level
    [N, w_dim] (all levels are equal for sampled codes), 'wplus' = W+ flattened [N, num_ws*w_dim]."""
    codes = _np(codes)
    if space == 'w':
        return codes[:, 0]
    if space == 'wplus':
        return codes.reshape(len(codes), -1)
    raise UserError(f'--space {space!r}: expected w or wplus')
