"""A generator's fingerprint: what regressor checkpoints, code folders, datasets and tuned faces
record of the generator they were made for, so that another generator is refused."""

import hashlib

import torch

from .errors import UserError


def generator_fingerprint(G) -> dict:
    """num_ws, w_dim, img_resolution and a hash of w_avg: cheap to compute, and two generators
    trained apart differ in w_avg."""
    w_avg = G.backbone.mapping.w_avg.detach().to('cpu', torch.float32).contiguous().numpy()
    return dict(num_ws=int(G.backbone.num_ws), w_dim=int(G.w_dim), img_resolution=int(G.img_resolution),
                w_avg_sha=hashlib.sha256(w_avg.tobytes()).hexdigest()[:16])


def check_fingerprint(expected: dict, G, what='this regressor'):
    """Refuse G when it is not the generator `expected` (a recorded fingerprint) describes."""
    actual = generator_fingerprint(G)
    diffs = [f'{k} {expected.get(k)} != {actual[k]}' for k in actual if expected.get(k) != actual[k]]
    if diffs:
        raise UserError(f'{what} was trained for another generator ({", ".join(diffs)})')
