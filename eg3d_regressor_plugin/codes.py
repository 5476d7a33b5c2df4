"""Latent code folders: w codes sampled per seed (as EG3D's gen_samples.py draws them), the
scores.csv template to label them and the generator fingerprint beside them; reading code files
and scored CSVs back, and the vectors a boundary is trained on.

Reading needs numpy only; sampling imports torch and renders with EG3D when called."""

import csv
import io
import json
import math
from collections import namedtuple
from pathlib import Path

import numpy as np

from .arrays import as_numpy as _np, load_npy
from .errors import UserError

GENERATOR_JSON = 'generator.json'   # the generator fingerprint beside sampled codes
SCORES_CSV = 'scores.csv'

#----------------------------------------------------------------------------
# Sampling a code folder.

def code_name(seed):
    return f'seed{seed:04d}'


def seed_z(seed, z_dim):
    """z [1, z_dim] (float32 numpy) of a seed as EG3D's gen_samples.py draws it."""
    return np.random.RandomState(seed).randn(1, z_dim).astype(np.float32)


def sample_w(G, seed, truncation_psi=1.0, device='cpu'):
    """w [1, num_ws, w_dim] of a seed as EG3D's gen_samples.py draws it: z from
    np.random.RandomState(seed) (seed_z), mapped with the frontal camera as conditioning."""
    import torch

    from . import cameras
    z = torch.from_numpy(seed_z(seed, G.z_dim)).to(device)
    c = cameras.frontal_label(1, device=device)
    with torch.no_grad():
        return G.mapping(z, c, truncation_psi=truncation_psi)


def filled_scores(csv_path):
    """How many rows of an existing scores CSV already hold a score (to refuse overwriting them)."""
    try:
        rows = list(csv.reader(Path(csv_path).read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0
    return sum(1 for r in rows[1:] if len(r) >= 2 and r[1].strip())


def write_codes(folder, G, seeds, truncation_psi=1.0, images=True, device='cpu', network=None, scores=None,
                attribute=None):
    """Write into `folder` (existing, e.g. a temporary one) <code_name>.npy per seed (float32
    [1, num_ws, w_dim]), with `images` <code_name>.png (rendered at the frontal camera), the
    scores CSV (empty scores, or `scores` [one per seed] when known, of `attribute`) and the
    generator fingerprint."""
    from tqdm import tqdm

    from . import cameras, fingerprint, render
    from .files import save_image, save_npy
    from .images import to_uint8
    folder = Path(folder)
    c = cameras.frontal_label(1, device=device)
    for s in tqdm(seeds, desc='codes', unit='code', disable=None):
        w = sample_w(G, s, truncation_psi, device)
        save_npy(folder / f'{code_name(s)}.npy', w.cpu().numpy().astype(np.float32))
        if images:
            save_image(folder / f'{code_name(s)}.png', to_uint8(render.render(G, w, c)['image'])[0])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['code_path', 'score'])
    values = [''] * len(seeds) if scores is None else [f'{float(v):.6g}' for v in scores]
    writer.writerows([f'{code_name(s)}.npy', v] for s, v in zip(seeds, values))
    (folder / SCORES_CSV).write_text(buf.getvalue())
    (folder / GENERATOR_JSON).write_text(json.dumps(dict(
        generator=fingerprint.generator_fingerprint(G), network=str(network), truncation_psi=truncation_psi,
        seeds=[seeds[0], seeds[-1]], conditioning='frontal', attribute=attribute), indent=2) + '\n')

#----------------------------------------------------------------------------
# Reading codes back.

def read_fingerprint(codes_dir):
    """The generator fingerprint written beside the codes (write_codes), or None."""
    path = Path(codes_dir) / GENERATOR_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())['generator']
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UserError(f'{path}: not a generator fingerprint written by sample-codes') from None


def match_fingerprint(recorded, G, codes_dir, network=None):
    """G's fingerprint, refused when the codes in `codes_dir` record (`recorded`, from
    read_fingerprint) another generator; `network` names G in the message."""
    from .fingerprint import generator_fingerprint
    actual = generator_fingerprint(G)
    if recorded is not None and recorded != actual:
        diffs = ', '.join(f'{k} {recorded.get(k)} != {v}' for k, v in actual.items() if recorded.get(k) != v)
        raise UserError(f'the codes in {codes_dir} were sampled from another generator than {network} ({diffs})')
    return actual


def load_code(path, num_ws=None, w_dim=None):
    """A latent code file -> float32 [1, num_ws, w_dim]. Accepts [1, num_ws, w_dim] (EG3D's
    projectors and PTI), [num_ws, w_dim] and a plain w [1, w_dim] (repeated on every level when
    num_ws is given)."""
    path = Path(path)
    a = load_npy(path, 'latent code')
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
    raise UserError(f'space {space!r}: expected w or wplus')
