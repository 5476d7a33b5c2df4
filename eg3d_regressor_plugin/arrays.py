"""Arrays in, the same kind out: the latent-code modules (latent_interp, boundaries, codes) work in
float64 numpy and hand back what they were given (a torch tensor on its device, else float32
numpy), without importing torch. Also the one reader of numeric .npy files they share."""

import numpy as np

from .errors import UserError, check_file


def as_numpy(x):
    """x (numpy, list or torch tensor) as float64 numpy."""
    if hasattr(x, 'detach'):  # torch.Tensor, without importing torch
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def like(out, *refs):
    """`out` (float64 numpy) as a tensor on the first tensor ref's device, else as float32 numpy."""
    for ref in refs:
        if hasattr(ref, 'detach'):
            import torch
            return torch.from_numpy(out).to(device=ref.device, dtype=ref.dtype)
    return out.astype(np.float32)


def load_npy(path, what):
    """A .npy file of numbers (no pickles), refused in one UserError line naming `what` it should
    have been when missing, unreadable or not numeric."""
    path = check_file(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UserError(f'{what} {path} is not a .npy array ({type(e).__name__}: {str(e)[:80]})') from None
    if not np.issubdtype(arr.dtype, np.number):
        raise UserError(f'{what} {path} holds {arr.dtype}, not numbers')
    return arr


def format_runs(values, sep=','):
    """Sorted distinct integers as runs: [0, 1, 2, 3, 8] -> '0-3,8' (sep between the runs)."""
    values = sorted(set(int(v) for v in values))
    runs, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            runs.append(f'{start}' if start == v else f'{start}-{v}')
            start = None
    return sep.join(runs)
