"""Measuring a regressor (the work of `eval`): latent, pose, image and depth errors on held-out
synthetic images, image and identity similarity on real photos, each beside the mean-w baseline
(w_avg in every W+ level, rendered at the same camera; the frontal pose for the pose error)."""

import csv
import json
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from . import metrics as M
from .errors import UserError, extra_available
from .files import atomic_path
from .inputs import load_input
from .invert import reconstruct
from .optimize import w_avg_init
from .render import render_image


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def identity_scorer(spec, device):
    """(uint8 crop, [uint8 renders]) -> cosine similarities of the identity network's embeddings
    (face_identity: dlib's face-recognition ResNet ported to PyTorch, or an ArcFace checkpoint), on
    the aligned crops themselves: no face detection, so a poor render still gets a value. None for
    spec None."""
    if spec in (None, '', 'none'):
        return None
    from .face_identity import identity_similarity, load_face_identity
    from .images import to_tensor
    net = load_face_identity(spec, device)

    def score(img, others):
        with torch.no_grad():
            x = torch.cat([to_tensor(im, device=device) for im in [img] + list(others)])
            e = net.embed(x)
            return identity_similarity(e[:1].expand(len(others), -1), e[1:]).tolist()
    return score


def _measure(G, inverter, img, refine, w_avg, row, identity=None):
    """Reconstruct one input and render each method at the predicted camera. Returns (rec, images:
    {suffix: uint8 render}, codes: {suffix: w}); row gets the timings, PSNR/SSIM and, with an
    identity scorer, the identity similarity (id_sim) per method."""
    rec = reconstruct(G, inverter, img, **refine)
    (recon, _), row['render_s'] = _timed(render_image, G, rec['w_regressor'], rec['c_pred'])
    row['regress_s'] = rec['seconds']['regress']
    images = {'': recon, '_baseline': render_image(G, w_avg, rec['c_pred'])[0]}
    codes = {'': rec['w_regressor'], '_baseline': w_avg}
    if rec['history'] is not None:
        images['_refined'] = render_image(G, rec['w'], rec['c_pred'])[0]
        codes['_refined'] = rec['w']
        row['refine_s'] = rec['seconds']['refine']
    if rec['G'] is not None:  # the tuned generator at the final w (its latent errors are the refined ones)
        images['_tuned'] = render_image(rec['G'], rec['w'], rec['c_pred'])[0]
        row['tune_s'] = rec['seconds']['tune']
    for suffix, im in images.items():
        row['psnr' + suffix] = M.psnr(img, im)
        row['ssim' + suffix] = M.ssim(img, im)
    if identity is not None:
        for suffix, sim in zip(images, identity(img, list(images.values()))):
            row['id_sim' + suffix] = sim
    return rec, images, codes


def _grid_row(img, images):
    return [img] + [images[k] for k in ('', '_baseline', '_refined', '_tuned') if k in images]


def evaluate_synthetic(G, inverter, seeds, refine, w_std=None, grid_rows=8, identity=None):
    """Held-out synthetic pairs (training/data.py's sampler with plain seeds, which training never
    draws): returns (rows, grid images). Depth errors compare renders at the true pose with the
    generator's own depth of the true w. refine: reconstruct's refine_* keyword arguments."""
    from .images import to_uint8
    from .training.data import PairSampler
    sampler = PairSampler(G, resolution=G.img_resolution)
    w_avg = w_avg_init(G, device=G.backbone.mapping.w_avg.device)
    rows, grid = [], []
    for seed in tqdm(seeds, desc='synthetic', unit='img', disable=None):
        s = sampler.sample_seeds([seed])
        img = to_uint8(s['img'])[0]  # as it would be read from a file
        row = dict(set='synthetic', name=f'seed{seed:04d}')
        rec, images, codes = _measure(G, inverter, img, refine, w_avg, row, identity)
        depth_true = render_image(G, s['w'], s['c'])[1]['image_depth']
        for suffix, w in codes.items():
            for k, v in M.latent_errors(w, s['w'], w_std).items():
                row[k + suffix] = float(v[0])
            depth = render_image(G, w, s['c'])[1]['image_depth']
            row['depth_err' + suffix] = float(M.depth_error(depth, depth_true)[0])
        yaw_t, pitch_t = s['pose'][:, 0], s['pose'][:, 1]
        for k, v in M.pose_errors(rec['yaw'], rec['pitch'], yaw_t, pitch_t).items():
            row[k] = float(v[0])
        for k, v in M.pose_errors(torch.zeros(1), torch.zeros(1), yaw_t, pitch_t).items():
            row[k + '_baseline'] = float(v[0])
        rows.append(row)
        if len(grid) < grid_rows:
            grid.append(_grid_row(img, images))
    return rows, grid


def evaluate_heads(G, inverter, seeds, refine, grid_rows=8, identity=None):
    """For a generator trained by train-heads: held-out procedural heads rendered by heads.py
    itself (heads_training.truth_sample; not the generator's renders), whose pose and depth are
    known. Per head: the regressor's pose error against the true camera, PSNR/SSIM of its
    re-render against the true image, and the depth error (EG3D world units, over the pixels the
    head covers) of its reconstruction at the true camera against the true depth; the same for
    the generator's own render of the head's z (suffix _G: how well it learnt the head), beside
    the mean-w baseline. Returns (rows, grid images)."""
    from .heads_training import synthesize, truth_sample
    from .images import to_uint8
    w_avg = w_avg_init(G, device=G.backbone.mapping.w_avg.device)
    device = G.backbone.mapping.w_avg.device
    nr = int(G.neural_rendering_resolution)
    rows, grid = [], []
    for seed in tqdm(seeds, desc='heads', unit='img', disable=None):
        t = truth_sample(seed, G.z_dim, G.img_resolution, nr)
        img, c = t['image'], t['c'].to(device)
        row = dict(set='heads', name=f'seed{seed:04d}')
        rec, images, codes = _measure(G, inverter, img, refine, w_avg, row, identity)
        with torch.no_grad():
            own = synthesize(G, t['z'].to(device), c)
        own_img = to_uint8(own['image'].clamp(-1, 1))[0]
        row.update(psnr_G=M.psnr(img, own_img), depth_err_G=float(M.depth_error(own['image_depth'], t['depth'],
                                                                                t['mask'])[0]))
        for suffix, w in codes.items():
            depth = render_image(G, w, c)[1]['image_depth']
            row['depth_err' + suffix] = float(M.depth_error(depth, t['depth'], t['mask'])[0])
        for k, v in M.pose_errors(rec['yaw'], rec['pitch'], t['yaw'], t['pitch']).items():
            row[k] = float(v[0])
        for k, v in M.pose_errors(torch.zeros(1), torch.zeros(1), t['yaw'], t['pitch']).items():
            row[k + '_baseline'] = float(v[0])
        rows.append(row)
        if len(grid) < grid_rows:
            grid.append(_grid_row(img, images))
    return rows, grid


def evaluate_real(G, inverter, paths, align, refine, grid_rows=8, face_index=None, identity=None):
    """Real photos: PSNR/SSIM of the re-render (at the predicted pose) against the aligned input,
    and identity similarity of dlib face embeddings (dlib's detector and descriptor on each image:
    id_cos, id_dist) and of the identity scorer (id_sim). Returns (rows, grid images, failures)."""
    dlib_identity = extra_available('align')
    if dlib_identity:
        from .align import face_embedding
    w_avg = w_avg_init(G, device=G.backbone.mapping.w_avg.device)
    rows, grid, failures = [], [], []
    for path in tqdm(paths, desc='photos', unit='img', disable=None):
        try:
            img, _ = load_input(path, align=align, face_index=face_index, size=G.img_resolution)
        except UserError as e:
            failures.append(dict(name=path.name, reason=str(e)))
            continue
        row = dict(set='real', name=path.name)
        rec, images, _ = _measure(G, inverter, img, refine, w_avg, row, identity)
        row.update(yaw_deg=math.degrees(float(rec['yaw'][0])), pitch_deg=math.degrees(float(rec['pitch'][0])))
        if dlib_identity:
            # dlib finds no face in a poor render: the similarity is then NaN (counted in the summary).
            e_in = face_embedding(img)
            for suffix, im in images.items():
                e = face_embedding(im)
                row['id_cos' + suffix] = M.cosine_similarity(e_in, e)
                row['id_dist' + suffix] = M.embedding_distance(e_in, e)
        rows.append(row)
        if len(grid) < grid_rows:
            grid.append(_grid_row(img, images))
    return rows, grid, failures


def summarise(rows):
    """Mean of every numeric column over rows (NaN ignored), and how many rows had a value."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], (float, int)) and not isinstance(rows[0][k], bool)]
    out = {}
    for k in keys:
        vals = np.array([r.get(k, math.nan) for r in rows], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        out[k] = dict(mean=float(finite.mean()) if finite.size else None, count=int(finite.size))
    return out


def table(summary):
    """Lines 'metric  regressor  baseline  [refined]' for the printed report."""
    extra = [s for s in ('_refined', '_tuned') if any(k.endswith(s) for k in summary)]
    metrics = [k for k in summary if not k.endswith(('_baseline', '_refined', '_tuned'))]
    head = f'{"metric":<16}{"regressor":>12}{"baseline":>12}' + ''.join(f'{s[1:]:>12}' for s in extra)
    lines = [head]
    for k in metrics:
        cells = [summary.get(k + s, {}).get('mean') for s in ['', '_baseline'] + extra]
        lines.append(f'{k:<16}' + ''.join(f'{"-" if v is None else f"{v:.4g}":>12}' for v in cells))
    return lines


def write_csv(path, rows):
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with atomic_path(path) as tmp:
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in r.items()})


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def write_json(path, report):
    """The report as JSON (NaN and infinities as null), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(_jsonable(report), f, indent=2)
