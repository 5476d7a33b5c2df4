"""InterFaceGAN's semantic boundaries (arXiv 2005.09635): training one from scored codes, making it
orthogonal to others (conditional boundaries), reading its shape as w or W+ levels, and saving
and loading it with its description.

Pure numpy plus scikit-learn for `train_boundary`; nothing here needs EG3D, so boundaries can be
trained and inspected without it. A boundary is the unit normal of a linear SVM's hyperplane:
  - shape [1, w_dim]            trained in w (the first level of each code), applied to every
                                chosen level;
  - shape [1, num_ws * w_dim]   trained in W+ flattened, applied level by level;
  - shape [1, num_ws, w_dim]    EG3D's published form (identical rows = a w direction), likewise.
latent_interp.edit applies one to a code.
"""

import json
import warnings
from pathlib import Path

import numpy as np

from .arrays import as_numpy as _np, like as _like, load_npy
from .errors import UserError

#----------------------------------------------------------------------------
# Training and combining.

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
        raise UserError(f'chosen_num_or_ratio {chosen_num_or_ratio}: expected a fraction in (0, 1] or a count > 1')
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
                        f'positives and negatives, {train_num} to train on; label more codes or raise chosen_num_or_ratio')
    if y[chosen - 1] <= y[n - chosen]:
        raise UserError(f'scores do not separate: the top {chosen} and bottom {chosen} codes share the score '
                        f'{y[chosen - 1]:g}; use scores that vary or a smaller chosen_num_or_ratio')
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
    require_extra('edit')  # scikit-learn: only training needs it
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
                            f'train them in the same space (w or wplus)')
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
                        'train it in space wplus')
    return B[:1] / np.linalg.norm(B[:1])

#----------------------------------------------------------------------------
# Files.

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


def load_boundary(path, G=None, num_ws=None, w_dim=None):
    """(boundary float32 array as saved, meta dict from the .json beside it or {}). Refuses (one
    UserError line) a missing or unreadable file, non-finite values, a zero vector, a shape that
    fits neither w nor W+ of the generator (G, or num_ws/w_dim), and a boundary whose .json names
    another generator than G."""
    path = Path(path)
    b = load_npy(path, 'boundary')
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


def load_conditions(paths, space, num_ws, w_dim, generator=None):
    """The boundaries at `paths` as [1, D] unit vectors in `space` (as_space), to condition a new
    boundary on; one trained for another generator than the fingerprint `generator` is refused."""
    conds = []
    for path in paths:
        b, meta = load_boundary(path, num_ws=num_ws, w_dim=w_dim)
        if generator and meta.get('generator') and meta['generator'] != generator:
            raise UserError(f'condition {path} was trained for another generator than these codes')
        conds.append(as_space(b, space, num_ws, w_dim))
    return conds
