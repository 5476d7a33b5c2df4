"""Measure a regressor: latent, pose, image and depth errors on held-out synthetic images, and
image and identity similarity on real photos, each beside the mean-w baseline."""

import csv
import json
import math
import time
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from . import bridge, devices
from . import metrics as M
from . import render
from .errors import UserError, extra_available
from .files import atomic_path, save_image
from .images import image_grid, to_uint8
from .options import Command, device_option, eg3d_option, parse_range, refine_options

DEFAULT_SEEDS = '1000-1063'

#----------------------------------------------------------------------------

def _render(G, w, c):
    out = render.render(G, w, c)
    return to_uint8(out['image'])[0], out['image_depth']


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _image_metrics(row, target, images):
    """PSNR/SSIM of each method's render against the target, as row[metric + suffix]."""
    for suffix, img in images.items():
        row['psnr' + suffix] = M.psnr(target, img)
        row['ssim' + suffix] = M.ssim(target, img)


def evaluate_synthetic(G, inverter, seeds, refine, w_std=None, grid_rows=8):
    """Held-out synthetic pairs (training/data.py's sampler with plain seeds, which training never
    draws): returns (rows, grid images). The regressor's render is at the predicted pose; the
    baseline is w_avg at the same (predicted) pose and, for the pose error, the frontal pose; depth
    errors compare renders at the true pose with the generator's own depth of the true w.
    refine: reconstruct's refine_* keyword arguments."""
    from .gen_from_image import reconstruct
    from .optimize import w_avg_init
    from .training.data import PairSampler
    sampler = PairSampler(G, resolution=G.img_resolution)
    device = G.backbone.mapping.w_avg.device
    w_avg = w_avg_init(G, device=device)
    rows, grid = [], []
    for seed in tqdm(seeds, desc='synthetic', unit='img', disable=None):
        s = sampler.sample_seeds([seed])
        img = to_uint8(s['img'])[0]  # as it would be read from a file
        rec = reconstruct(G, inverter, img, **refine)
        (recon, _), render_s = _timed(_render, G, rec['w_regressor'], rec['c_pred'])
        base, _ = _render(G, w_avg, rec['c_pred'])
        _, depth_true = _render(G, s['w'], s['c'])
        _, depth_reg = _render(G, rec['w_regressor'], s['c'])
        _, depth_base = _render(G, w_avg, s['c'])
        row = dict(set='synthetic', name=f'seed{seed:04d}', regress_s=rec['seconds']['regress'], render_s=render_s)
        images = {'': recon, '_baseline': base}
        methods = {'': rec['w_regressor'], '_baseline': w_avg}
        depths = {'': depth_reg, '_baseline': depth_base}
        if rec['history'] is not None:
            images['_refined'], _ = _render(G, rec['w'], rec['c_pred'])
            methods['_refined'] = rec['w']
            _, depths['_refined'] = _render(G, rec['w'], s['c'])
            row['refine_s'] = rec['seconds']['refine']
        for suffix, w in methods.items():
            for k, v in M.latent_errors(w, s['w'], w_std).items():
                row[k + suffix] = float(v[0])
            row['depth_err' + suffix] = float(M.depth_error(depths[suffix], depth_true)[0])
        _image_metrics(row, img, images)
        yaw_t, pitch_t = s['pose'][:, 0], s['pose'][:, 1]
        for k, v in M.pose_errors(rec['yaw'], rec['pitch'], yaw_t, pitch_t).items():
            row[k] = float(v[0])
        for k, v in M.pose_errors(torch.zeros(1), torch.zeros(1), yaw_t, pitch_t).items():
            row[k + '_baseline'] = float(v[0])
        rows.append(row)
        if len(grid) < grid_rows:
            grid.append([img, recon, base] + ([images['_refined']] if rec['history'] is not None else []))
    return rows, grid


def evaluate_real(G, inverter, paths, align, refine, grid_rows=8):
    """Real photos: PSNR/SSIM of the re-render (at the predicted pose) against the aligned input,
    and identity similarity of dlib face embeddings; baseline w_avg at the same pose. Returns
    (rows, grid images, failures)."""
    from .gen_from_image import reconstruct
    from .invert import load_input
    from .optimize import w_avg_init
    identity = extra_available('align')
    if identity:
        from .align import face_embedding
    w_avg = w_avg_init(G, device=G.backbone.mapping.w_avg.device)
    rows, grid, failures = [], [], []
    for path in tqdm(paths, desc='photos', unit='img', disable=None):
        try:
            img, _ = load_input(path, align=align, size=G.img_resolution)
        except UserError as e:
            failures.append(dict(name=path.name, reason=e.message))
            continue
        rec = reconstruct(G, inverter, img, **refine)
        (recon, _), render_s = _timed(_render, G, rec['w_regressor'], rec['c_pred'])
        base, _ = _render(G, w_avg, rec['c_pred'])
        images = {'': recon, '_baseline': base}
        row = dict(set='real', name=path.name, regress_s=rec['seconds']['regress'], render_s=render_s)
        if rec['history'] is not None:
            images['_refined'], _ = _render(G, rec['w'], rec['c_pred'])
            row['refine_s'] = rec['seconds']['refine']
        _image_metrics(row, img, images)
        row.update(yaw_deg=math.degrees(float(rec['yaw'][0])), pitch_deg=math.degrees(float(rec['pitch'][0])))
        if identity:
            # dlib finds no face in a poor render: the similarity is then NaN (counted in the summary).
            e_in = face_embedding(img)
            for suffix, im in images.items():
                e = face_embedding(im)
                row['id_cos' + suffix] = M.cosine_similarity(e_in, e)
                row['id_dist' + suffix] = M.embedding_distance(e_in, e)
        rows.append(row)
        if len(grid) < grid_rows:
            grid.append([img, recon, base] + ([images['_refined']] if rec['history'] is not None else []))
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
    metrics = [k for k in summary if not k.endswith(('_baseline', '_refined'))]
    refined = any(k.endswith('_refined') for k in summary)
    head = f'{"metric":<16}{"regressor":>12}{"baseline":>12}' + (f'{"refined":>12}' if refined else '')
    lines = [head]
    for k in metrics:
        cells = [summary.get(k + s, {}).get('mean') for s in ('', '_baseline') + (('_refined',) if refined else ())]
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

#----------------------------------------------------------------------------

@click.command('eval', cls=Command)
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='EG3D network pickle')
@click.option('--regressor', 'regressor_path', required=True, metavar='PT', help='Regressor checkpoint')
@click.option('--seeds', default=None, metavar='LIST',
              help=f'Held-out synthetic sample seeds, e.g. 1000-1063  [default: {DEFAULT_SEEDS} unless --images]')
@click.option('--images', 'images_spec', default=None, metavar='DIR|GLOB', help='Real photos to evaluate')
@click.option('--no-align', is_flag=True, help='The photos are already EG3D-style crops')
@click.option('--outdir', default=None, metavar='DIR',
              help='Where to write metrics.json, metrics.csv, grid.png  [default: beside the regressor, eval-<name>]')
@refine_options('Also measure w refined by N optimisation steps')
@click.option('--grid-rows', type=click.IntRange(min=0), default=8, show_default=True, help='Rows per set in grid.png')
@click.option('--reload-modules', is_flag=True, help='Rebuild the generator from the checkout\'s code')
@eg3d_option
@device_option
def calc_metrics(network_pkl, regressor_path, seeds, images_spec, no_align, outdir, refine_steps, refine_optimizer,
                 refine_lr, grid_rows, reload_modules, eg3d, device):
    """Evaluate a regressor against the mean-w baseline.

    \b
    On held-out synthetic seeds: latent L1/L2 (raw, and in units of the training std: *_norm),
    pose error (degrees: yaw, pitch, angle between the cameras), PSNR and SSIM of the re-render
    against the input, depth error against the generator's own depth at the true pose.
    On real photos (--images): PSNR and SSIM against the aligned input, identity similarity
    (cosine and distance of dlib face embeddings; NaN where dlib finds no face in the render).
    Time per image. The baseline renders w_avg at the same camera as the regressor's render.
    Writes metrics.json (means), metrics.csv (per image) and grid.png (input | regressor |
    baseline [| refined]).

    Examples:

    \b
    # Held-out synthetic images.
    eg3d-regress eval --network=G.pkl --regressor=regressor.pt --seeds=1000-1063 --outdir=eval

    \b
    # A folder of photos, and 50 refinement steps per image.
    python -m eg3d_regressor_plugin.calc_metrics --network=ffhq512-128.pkl --regressor=regressor.pt \\
        --images=photos/ --seeds=1000-1015 --refine-steps=50 --outdir=eval
    """
    from .files import check_outdir
    # Synthetic seeds by default; only photos when --images is given without --seeds.
    seed_list = parse_range(seeds) if seeds is not None else ([] if images_spec else parse_range(DEFAULT_SEEDS))
    paths = []
    if images_spec:
        from .images import list_images
        paths = list_images(images_spec)
    if paths and not no_align:
        from .errors import require_extra
        require_extra('align')
    if outdir is None:
        outdir = Path(regressor_path).parent / f'eval-{Path(regressor_path).stem}'
    check_outdir(outdir)
    device = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=device, reload_modules=reload_modules, eg3d=eg3d)
    from .invert import Inverter
    inverter = Inverter(G, regressor_path, device=device)
    w_std = inverter.predictor.w_stats['scale']

    refine = dict(refine_steps=refine_steps, refine_optimizer=refine_optimizer, refine_lr=refine_lr)
    rows, grid, failures, report = [], [], [], {}
    if seed_list:
        r, g = evaluate_synthetic(G, inverter, seed_list, refine, w_std, grid_rows)
        rows += r
        grid += g
        report['synthetic'] = dict(count=len(r), seeds=seeds or DEFAULT_SEEDS, metrics=summarise(r))
    if paths:
        r, g, failures = evaluate_real(G, inverter, paths, not no_align, refine, grid_rows)
        rows += r
        grid += g
        report['real'] = dict(count=len(r), images=str(images_spec), metrics=summarise(r) if r else {},
                              failures=failures, identity=extra_available('align'))
    if not rows:
        raise UserError(f'nothing to evaluate: every image failed (first: {failures[0]["reason"]})')

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    report = dict(network=str(network_pkl), regressor=str(regressor_path), device=str(device),
                  refine_steps=refine_steps, refine_optimizer=refine_optimizer if refine_steps else None,
                  baseline='w_avg (in every W+ level) at the same camera; '
                  'frontal pose for the pose error', columns='grid.png: input | regressor | baseline'
                  + (' | refined' if refine_steps else ''), **report)
    with atomic_path(outdir / 'metrics.json') as tmp:
        with open(tmp, 'w') as f:
            json.dump(_jsonable(report), f, indent=2)
    write_csv(outdir / 'metrics.csv', rows)
    if grid:
        save_image(outdir / 'grid.png', image_grid([im for row in grid for im in row], cols=len(grid[0])))

    for name in ('synthetic', 'real'):
        if name in report and report[name]['metrics']:
            click.echo(f'{name} ({report[name]["count"]} images):')
            for line in table(report[name]['metrics']):
                click.echo('  ' + line)
    for f in failures:
        click.echo(f'  skipped: {f["reason"]}', err=True)
    click.echo(f'Wrote {outdir / "metrics.json"}, metrics.csv, grid.png')


if __name__ == '__main__':
    calc_metrics()  # pylint: disable=no-value-for-parameter
