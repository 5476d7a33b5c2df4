"""Benchmark 7, pivotal tuning: PSNR against steps and seconds for (a) PTI as published — a W
projection from w_avg (optimize.optimize_w, Adam with the projector's schedule), then tuning of
the generator's synthesis weights (tuning.tune_generator) — and (b) the regressor's pivot (one
forward pass) + the same tuning, and (c) the regressor's pivot refined for a few L-BFGS steps (as
`gen --refine-steps`) + the same tuning, side by side on the same held-out images; and the per-face file
(tuning.save_tuned) against a full network pickle. Targets: (b) reaches (a)'s final PSNR within
1/4 of (a)'s total time; the per-face file is <= 1/10 of the network pickle.

The images are renders of held-out seeds (common.held_out) pushed out of the generator's range by
a colour shift and a horizontal ramp, so that no latent reaches them and the tuning has work to
do. All runs use the regressor's predicted camera (as `gen` does; PTI takes its camera from a
pose estimator, whose time is not counted). (a) runs PTI's published settings: 450 projection
steps, 350 tuning steps at lr 3e-4 from the first step, no locality regulariser
(use_locality_regularization = False; --locality-every N turns it on for all three). The
projection optimises one w repeated at every level, as PTI's projector does (--space w); --space
w+ fits every level apart, which absorbs more of an out-of-range change (a colour shift costs it
little) and makes (a) a stronger baseline than PTI as published. (b) and (c) tune as `gen` does:
from the bare pivot at the full rate, from a refined pivot with the rate ramped up over
tuning.REFINED_PIVOT_WARMUP steps, and the first half of the steps rendered at half the neural
rendering resolution (tuning.COARSE_FRACTION, gen --tune-coarse; --coarse 0 for PTI's full-resolution
steps); only full-resolution renders count towards reaching (a). (b)'s and (c)'s times include the regressor's forward pass
(and (c)'s refinement); "time to (a)" is when their PSNR (of the generator that stopping there
returns) first reaches (a)'s final PSNR, and they stop there (--full-curves: run all their
steps). Identity similarity (face_identity's port of dlib's face-recognition network, when
face-recognition-models is installed) compares each final tuned render, and each pivot's
render before tuning, with the target.

The file sizes are those of save_tuned for (b)'s tuned generator on each image, in every delta
format measured (fp16 deltas; rank-r factors of each matrix/convolution delta), against the
network pickle of the same generator (presets.save_network_pkl: G, D, G_ema) and against a pickle of
the generator alone; "PSNR loss" is the exact tuned generator's PSNR minus the rebuilt one's.

On a CPU the images are measured in parallel, one process per image (--jobs), as refine.py does.

    python benchmarks/tuning.py            # tiny preset, one image, ~11 minutes on 2 CPU cores
                                           # (+5 when the regressor is not cached yet)
    python benchmarks/tuning.py --seeds 1000-1001   # two images side by side, ~18 minutes
    python benchmarks/tuning.py --quick    # ~2 minutes
"""

import copy
import os
import pickle
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

import common
from eg3d_regressor_plugin import tuning
from eg3d_regressor_plugin.optimize import optimize_w

CHECKPOINTS = [0, 1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 350]
PAIRS = common.CPU_PAIRS // 2  # refine.py's training set: the two share the cached regressor
COLOUR_SHIFT = (0.4, -0.2, 0.1)
RAMP = 0.3
FORMATS = dict(fp16=dict(delta_format='fp16'), **{f'lowrank{r}': dict(delta_format='lowrank', rank=r)
                                                  for r in (4, 8, 16, 32)})


def out_of_range(img):
    """uint8 HWC image + a colour shift and a horizontal ramp (in [-1,1] units), as uint8."""
    x = img.astype(np.float32) / 127.5 - 1
    ramp = np.linspace(-RAMP, RAMP, x.shape[1], dtype=np.float32)[None, :, None]
    x = np.clip(x + np.asarray(COLOUR_SHIFT, np.float32) + ramp, -1, 1)
    return np.clip((x + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def identity_or_none(device):
    """The benchmark's identity scorer (dlib's network, ported), or None without face-recognition-models."""
    from eg3d_regressor_plugin.evaluate import identity_scorer
    try:
        return identity_scorer('dlib', device)
    except Exception as e:  # the align extra is optional: the PSNR figures stand without it
        print(f'identity similarity skipped: {e}', flush=True)
        return None


def measure(G, inverter, sample, w_steps, tune_steps, refine_steps, locality_every, full_pkl_bytes, device, space='w',
            full_curves=False, coarse=0.0):
    from eg3d_regressor_plugin.render import render_image
    target = out_of_range(sample['img'])
    hist_a, hist_b, hist_c = [], [], []
    out = inverter(target)  # warm-up, so that (b)'s time is the forward pass itself
    t0 = time.perf_counter()
    out = inverter(target)
    c = out['c']
    t_reg = time.perf_counter() - t0
    kw = dict(locality_every=locality_every, seed=0)
    G_a, w_a = tuning.pti_baseline(G, target, c, w_steps=w_steps, tune_steps=tune_steps, space=space,
                                   callback=lambda step, r: hist_a.append(r), **kw)
    goal = hist_a[-1]['psnr']

    def reached(r):  # a coarse step's PSNR is that of its half-resolution render: only full renders count
        return not r['coarse'] and r['psnr'] >= goal

    def until_goal(hist):  # record, and stop at (a)'s final PSNR unless full curves are asked for
        return lambda step, r: hist.append(r) or (not full_curves and reached(r))
    G_b = tuning.tune_generator(G, target, c, out['w'], tune_steps, time_offset=t_reg, callback=until_goal(hist_b),
                                coarse=coarse, **kw)
    # (c): the regressor's w refined as `gen --refine-steps` does (L-BFGS), then tuned as gen tunes
    # a refined pivot.
    t0 = time.perf_counter()
    w_c, h_ref = optimize_w(G, target, c, out['w'], refine_steps, optimizer='lbfgs')
    G_c = tuning.tune_generator(G, target, c, w_c, tune_steps, time_offset=t_reg + time.perf_counter() - t0,
                                callback=until_goal(hist_c), warmup=tuning.REFINED_PIVOT_WARMUP, coarse=coarse, **kw)
    identity = identity_or_none(device)
    ids = {}
    if identity is not None:  # final tuned renders and the pivots' renders before tuning
        renders = dict(a=(G_a, w_a), b=(G_b, out['w']), c=(G_c, w_c), a_pivot=(G, w_a), b_pivot=(G, out['w']),
                       c_pivot=(G, w_c))
        ids = {f'{k}_id': s for k, s in zip(renders, identity(target, [render_image(g, w, c)[0]
                                                                        for g, w in renders.values()]))}
    total_a = hist_a[-1]['seconds']
    hit = next((r for r in hist_b if reached(r)), None)
    hit_c = next((r for r in hist_c if reached(r)), None)
    a_w_end = hist_a[w_steps]
    row = dict(seed=sample['seed'], a_pivot_psnr=a_w_end['psnr'], a_pivot_s=a_w_end['seconds'], a_final=goal,
               a_total_s=total_a, b_pivot_psnr=hist_b[0]['psnr'], regressor_s=t_reg, b_final=hist_b[-1]['psnr'],
               b_total_s=hist_b[-1]['seconds'], b_steps_to_a=None if hit is None else hit['step'],
               b_s_to_a=None if hit is None else hit['seconds'],
               time_ratio=None if hit is None else hit['seconds'] / total_a)
    row['meets_time_target'] = row['time_ratio'] is not None and row['time_ratio'] <= 0.25
    row.update(c_pivot_psnr=hist_c[0]['psnr'], c_final=hist_c[-1]['psnr'],
               c_s_to_a=None if hit_c is None else hit_c['seconds'],
               c_time_ratio=None if hit_c is None else hit_c['seconds'] / total_a)
    row['c_meets_time_target'] = row['c_time_ratio'] is not None and row['c_time_ratio'] <= 0.25
    row.update(ids)

    # The per-face file of (b)'s tuned generator, in each format.
    with tempfile.TemporaryDirectory() as tmp:
        g_only = Path(tmp) / 'G.pkl'
        with open(g_only, 'wb') as f:
            pickle.dump(copy.deepcopy(G).cpu(), f)
        files = dict(full_pkl_bytes=full_pkl_bytes, g_pkl_bytes=g_only.stat().st_size, formats={})
        exact = tuning.psnr_of(G_b, out['w'], c, target)
        for name, fmt in FORMATS.items():
            path = tuning.save_tuned(Path(tmp) / f'{name}.pt', G, G_b, out['w'], c, dict(seed=sample['seed']), **fmt)
            G_r, w_r, c_r, _ = tuning.load_tuned(path, G)
            size = path.stat().st_size
            files['formats'][name] = dict(bytes=size, vs_full_pkl=size / full_pkl_bytes,
                                          vs_g_pkl=size / files['g_pkl_bytes'],
                                          psnr_loss_db=exact - tuning.psnr_of(G_r, w_r, c_r, target))
    default = files['formats'][f'lowrank{16}']
    row.update(file_bytes=default['bytes'], file_vs_pkl=default['vs_full_pkl'],
               file_psnr_loss=default['psnr_loss_db'], meets_size_target=default['vs_full_pkl'] <= 0.1)
    strip = lambda h: [dict(step=r['step'], psnr=r['psnr'], seconds=r['seconds'], coarse=r.get('coarse', False),
                            **({'stage': r['stage']} if 'stage' in r else {})) for r in h]
    curve = dict(seed=sample['seed'], pti=strip(hist_a), regressor=strip(hist_b), refined=strip(hist_c),
                 refine_psnr=[r['psnr'] for r in h_ref])
    print(f'seed {sample["seed"]}: (a) PTI: w projection {a_w_end["psnr"]:.2f} dB after {w_steps} steps '
          f'({a_w_end["seconds"]:.0f} s), tuned {goal:.2f} dB at {total_a:.0f} s; (b) regressor pivot '
          f'{hist_b[0]["psnr"]:.2f} dB, tuned {hist_b[-1]["psnr"]:.2f} dB at {hist_b[-1]["seconds"]:.0f} s, '
          f'reaching (a) ' + ('never' if hit is None else f'at step {hit["step"]}, {hit["seconds"]:.0f} s '
                              f'({row["time_ratio"]:.2f}x of (a))') + f'; (c) refined pivot {hist_c[0]["psnr"]:.2f} dB, tuned '
          f'{hist_c[-1]["psnr"]:.2f} dB at {hist_c[-1]["seconds"]:.0f} s, reaching (a) ' +
          ('never' if hit_c is None else f'at {hit_c["seconds"]:.0f} s ({row["c_time_ratio"]:.2f}x of (a))'), flush=True)
    return row, curve, files


def at_step(hist, k):
    return hist[k] if k < len(hist) else None


@click.command()
@click.option('--seeds', default=None, help='Held-out seeds  [default: 1000]')
@click.option('--w-steps', type=int, default=None, help='PTI\'s W projection steps  [default: PTI\'s 450; quick: 6]')
@click.option('--tune-steps', type=int, default=None, help='Tuning steps (at most, for (b) and (c))  [default: PTI\'s 350; quick: 4]')
@click.option('--refine-steps', type=int, default=None,
              help='(c): L-BFGS steps on the regressor\'s w before tuning  [default: 20; quick: 2]')
@click.option('--space', type=click.Choice(['w', 'w+']), default='w', show_default=True,
              help='(a)\'s projection: one w at every level (PTI) or W+')
@click.option('--locality-every', type=int, default=0, show_default=True,
              help='Locality regulariser every N tuning steps (0: off, as PTI publishes; gen: 4)')
@click.option('--coarse', type=click.FloatRange(0, 1, max_open=True), default=tuning.COARSE_FRACTION, show_default=True,
              help='(b) and (c): share of the tuning steps at half the neural rendering resolution, as gen --tune-coarse '
                   '((a) is PTI as published: 0)')
@click.option('--full-curves', is_flag=True, help='Run (b) and (c) for all their steps, not only until they reach (a)')
@click.option('--jobs', type=click.IntRange(min=1), default=None,
              help='Images measured in parallel processes  [default: on a CPU one per image, at most one per core; on a GPU 1]')
@common.regressor_options(pairs=PAIRS)
def main(preset, network, regressor, seeds, w_steps, tune_steps, refine_steps, space, locality_every, coarse, full_curves, jobs,
         train_kimg, train_pairs, device, quick, eg3d):
    from eg3d_regressor_plugin.options import parse_range
    seeds = parse_range(seeds or '1000')
    w_steps = w_steps if w_steps is not None else (6 if quick else tuning.PTI_W_STEPS)
    tune_steps = tune_steps if tune_steps is not None else (4 if quick else tuning.PTI_TUNE_STEPS)
    refine_steps = refine_steps if refine_steps is not None else (2 if quick else 20)
    device, G, pkl, reg = common.measured(preset, network, regressor, train_kimg, train_pairs, device, quick, eg3d)
    if jobs is None:
        jobs = min(len(seeds), os.cpu_count() or 1) if torch.device(device).type == 'cpu' else 1
    # The full network pickle of this generator: --network, or the preset's, which
    # presets.save_network_pkl wrote (G, D, G_ema).
    full_bytes = Path(pkl).stat().st_size
    results = common.measure_all(measure, G, common.held_out(G, seeds), jobs, pkl, reg, device, eg3d, w_steps=w_steps,
                          tune_steps=tune_steps, refine_steps=refine_steps, locality_every=locality_every,
                          full_pkl_bytes=full_bytes, space=space, full_curves=full_curves, coarse=coarse)
    rows, curves, files = [r for r, _, _ in results], [c for _, c, _ in results], [f for _, _, f in results]

    # Mean over images at a few tuning steps: PSNR and seconds of each run.
    table = []
    for k in [k for k in CHECKPOINTS if k <= tune_steps] + ([tune_steps] if tune_steps not in CHECKPOINTS else []):
        a = [at_step(c['pti'], w_steps + 1 + k) for c in curves]
        b = [at_step(c['regressor'], k) for c in curves]
        r3 = [at_step(c['refined'], k) for c in curves]
        row = dict(tune_step=k)
        for tag, recs in (('a', a), ('b', b), ('c', r3)):  # '-' where a run stopped before step k
            complete = all(r is not None for r in recs)
            row[f'{tag}_psnr'] = float(np.mean([r['psnr'] for r in recs])) if complete else None
            row[f'{tag}_s'] = float(np.mean([r['seconds'] for r in recs])) if complete else None
        table.append(row)
    print()
    print(f'PSNR (dB) and seconds against tuning steps, mean over {len(rows)} image(s); (a) tunes after '
          f'{w_steps} {space.upper()} projection steps; (b) and (c) render the first {int(tune_steps * coarse)} '
          f'at half the neural rendering resolution (their PSNR there is of that render)')
    print(common.table(table, [('tune_step', 'tuning step'), ('a_psnr', '(a) PTI PSNR'), ('a_s', '(a) s'),
                               ('b_psnr', '(b) regressor PSNR'), ('b_s', '(b) s'),
                               ('c_psnr', f'(c) +{refine_steps} L-BFGS PSNR'), ('c_s', '(c) s')]))
    print()
    print(common.table(rows, [('seed', 'seed'), ('a_pivot_psnr', '(a) pivot'), ('a_final', '(a) final'),
                              ('a_total_s', '(a) s'), ('b_pivot_psnr', '(b) pivot'), ('b_final', '(b) final'),
                              ('b_s_to_a', '(b) s to (a)'), ('time_ratio', 'ratio'),
                              ('meets_time_target', '<= 1/4'), ('c_pivot_psnr', '(c) pivot'),
                              ('c_final', '(c) final'), ('c_s_to_a', '(c) s to (a)'), ('c_time_ratio', 'ratio'),
                              ('c_meets_time_target', '<= 1/4')]))
    if 'a_id' in rows[0]:
        print()
        print('Identity similarity to the target (dlib\'s network, ported): the pivot before tuning -> after')
        print(common.table(rows, [('seed', 'seed'), ('a_pivot_id', '(a) pivot'), ('a_id', '(a) tuned'),
                                  ('b_pivot_id', '(b) pivot'), ('b_id', '(b) tuned'),
                                  ('c_pivot_id', '(c) pivot'), ('c_id', '(c) tuned')]))
    size_rows = []
    for name in FORMATS:
        vals = [f['formats'][name] for f in files]
        size_rows.append(dict(format=name, bytes=int(np.mean([v['bytes'] for v in vals])),
                              vs_full_pkl=float(np.mean([v['vs_full_pkl'] for v in vals])),
                              vs_g_pkl=float(np.mean([v['vs_g_pkl'] for v in vals])),
                              psnr_loss_db=float(np.max([v['psnr_loss_db'] for v in vals]))))
    print()
    print(f'Per-face file of (b)\'s tuned generator (network pickle {files[0]["full_pkl_bytes"]} bytes, '
          f'the generator alone {files[0]["g_pkl_bytes"]}); PSNR loss: worst image')
    print(common.table(size_rows, [('format', 'format'), ('bytes', 'bytes'), ('vs_full_pkl', 'x network pickle'),
                                   ('vs_g_pkl', 'x G pickle'), ('psnr_loss_db', 'PSNR loss dB')]))
    print()
    for tag, what in (('', '(b) the bare pivot'), ('c_', f'(c) the pivot refined for {refine_steps} L-BFGS steps')):
        ratios = [r[f'{tag}time_ratio'] for r in rows]
        print(f'Target: {what} reaches (a)\'s final PSNR in <= 1/4 of (a)\'s time: '
              + ('met' if all(r[f'{tag}meets_time_target'] for r in rows) else 'NOT met')
              + ' (ratios ' + ', '.join('never' if x is None else f'{x:.2f}' for x in ratios) + ')')
    print('Target per-face file <= 1/10 of the network pickle: '
          + ('met' if all(r['meets_size_target'] for r in rows) else 'NOT met')
          + f' ({np.mean([r["file_vs_pkl"] for r in rows]):.3f}x with rank-16 deltas)')
    path = common.save('tuning', dict(
        benchmark='tuning', machine=common.machine(device), network=str(pkl), regressor=str(reg), jobs=jobs,
        w_steps=w_steps, tune_steps=tune_steps, locality_every=locality_every, lr=tuning.PTI_LR, quick=quick,
        warmup=dict(a=0, b=0, c=tuning.REFINED_PIVOT_WARMUP), coarse=dict(a=0.0, b=coarse, c=coarse), full_curves=full_curves,
        out_of_range=dict(colour_shift=COLOUR_SHIFT, ramp=RAMP), space=space,
        identity='dlib (face_identity)' if 'a_id' in rows[0] else 'skipped: face-recognition-models not installed',
        default_format='lowrank16',
        target='(b) reaches (a)\'s final PSNR within 1/4 of (a)\'s total time; per-face file <= 1/10 of the network pickle',
        meets_time_target=all(r['meets_time_target'] for r in rows), refine_steps=refine_steps,
        c_meets_time_target=all(r['c_meets_time_target'] for r in rows),
        meets_size_target=all(r['meets_size_target'] for r in rows),
        table=table, rows=rows, sizes=size_rows, files=files, curves=curves), quick)
    print(f'\nWrote {path}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
