"""Benchmark 3, refinement: PSNR against optimisation steps, started from the regressor's w versus
from w_avg (the optimisation baseline), on held-out synthetic images. Target: started from the
regressor, reach the PSNR of the --baseline-steps (500) baseline within --refine-steps (50).

All runs use optimize.optimize_w (the code of `gen --refine-steps`) at the regressor's predicted
camera, as `gen --refine-steps` does. The refinement uses gen's default optimiser (--optimizer,
L-BFGS); the baseline uses --baseline-optimizer (Adam with StyleGAN's projector schedule, as
EG3D's projectors and PTI). So that the start's share of the gain is seen apart from the
optimiser's, the table also has the refinement's optimiser started from w_avg for the same
steps. A run's PSNR at step k is that of the best w so far (the optimiser keeps it), i.e. what
stopping there would give; a step is one render with gradients (every L-BFGS line-search trial
counts). The images are rendered with the ray-sampling seed that re-renders use (see
common.held_out); the "jitter floor" column is the true w's PSNR at another seed.

On a CPU the images are measured in parallel, one process per image (--jobs, at most one per
core), each with its share of the threads: renders of one small image keep two threads only
partly busy, and the target counts steps, not seconds. The seconds in the JSON are therefore
those of a process with fewer threads; every run of one image is timed in the same process.

    python benchmarks/refine.py                       # tiny preset, a regressor trained here
    python benchmarks/refine.py --quick               # < 2 minutes
    python benchmarks/refine.py --optimizer adam      # Adam for both starts
    python benchmarks/refine.py --network ffhq512-128.pkl --regressor regressor.pt --device cuda
"""

import os

import click
import numpy as np
import torch

import common
from eg3d_regressor_plugin import cameras
from eg3d_regressor_plugin.optimize import OPTIMIZERS, optimize_w, w_avg_init

CHECKPOINTS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
# Half the other scripts' training set: rendering 2400 pairs (~6 min on 2 cores) and the 500-step
# baseline would not both fit in 15 minutes from a fresh clone; refinement needs only a fair start.
PAIRS = common.CPU_PAIRS // 2


def best_so_far(hist):
    return np.maximum.accumulate([h['psnr'] for h in hist])


def measure(G, inverter, sample, baseline_steps, refine_steps, optimizer, baseline_optimizer, lr, device):
    """The three runs on one held-out image: (row, curve)."""
    out = inverter(sample['img'])
    c = cameras.pose_to_label(out['yaw'], out['pitch'], device=device)
    w_avg = w_avg_init(G, device=device)
    _, h_base = optimize_w(G, sample['img'], c, w_avg, baseline_steps, lr=lr, optimizer=baseline_optimizer)
    _, h_same = optimize_w(G, sample['img'], c, w_avg, refine_steps, lr=lr, optimizer=optimizer)
    _, h_reg = optimize_w(G, sample['img'], c, out['w'], refine_steps, lr=lr, optimizer=optimizer)
    base, same, ref = best_so_far(h_base), best_so_far(h_same), best_so_far(h_reg)
    goal = float(base[-1])
    hit = next((k for k, v in enumerate(ref) if v >= goal), None)
    row = dict(seed=sample['seed'], baseline_final=goal, baseline_s=h_base[-1]['seconds'],
               same_final=float(same[-1]), regressor_start=float(ref[0]), refined_final=float(ref[-1]),
               refine_s=h_reg[-1]['seconds'], steps_to_baseline=hit, meets_target=hit is not None,
               jitter_floor=common.jitter_floor(G, sample))
    curve = dict(seed=sample['seed'], from_w_avg=[float(v) for v in base],
                 from_w_avg_same=[float(v) for v in same], from_regressor=[float(v) for v in ref])
    print(f'seed {sample["seed"]}: baseline ({baseline_optimizer}) {goal:.2f} dB after {baseline_steps} steps; '
          f'from the regressor ({optimizer}) {ref[0]:.2f} -> {ref[-1]:.2f} dB in {refine_steps}, reaching the '
          f'baseline at step {hit}; from w_avg ({optimizer}) {same[-1]:.2f} dB in {refine_steps}', flush=True)
    return row, curve


@click.command()
@click.option('--seeds', default=None, help='Held-out seeds  [default: 1000-1001; quick: 1000]')
@click.option('--baseline-steps', type=int, default=None, help='Steps from w_avg  [default: 500; quick: 10]')
@click.option('--refine-steps', type=int, default=None, help='Steps from the regressor  [default: 50; quick: 3]')
@click.option('--optimizer', type=click.Choice(OPTIMIZERS), default='lbfgs', show_default=True,
              help='Optimiser of the refinement (and of the same-optimiser run from w_avg)')
@click.option('--baseline-optimizer', type=click.Choice(OPTIMIZERS), default='adam', show_default=True,
              help='Optimiser of the baseline from w_avg')
@click.option('--lr', type=float, default=0.01, show_default=True, help='Learning rate of Adam runs')
@click.option('--jobs', type=click.IntRange(min=1), default=None,
              help='Images measured in parallel processes  [default: on a CPU one per image, at most one per core; on a GPU 1]')
@common.regressor_options(pairs=PAIRS)
def main(preset, network, regressor, seeds, baseline_steps, refine_steps, optimizer, baseline_optimizer, lr, jobs,
         train_kimg, train_pairs, device, quick, eg3d):
    from eg3d_regressor_plugin.options import parse_range
    seeds = parse_range(seeds or ('1000' if quick else '1000-1001'))
    baseline_steps = baseline_steps or (10 if quick else 500)
    refine_steps = refine_steps or (3 if quick else 50)
    device, G, pkl, reg = common.measured(preset, network, regressor, train_kimg, train_pairs, device, quick, eg3d)
    if jobs is None:
        jobs = min(len(seeds), os.cpu_count() or 1) if torch.device(device).type == 'cpu' else 1
    results = common.measure_all(measure, G, common.held_out(G, seeds), jobs, pkl, reg, device, eg3d,
                          baseline_steps=baseline_steps, refine_steps=refine_steps, optimizer=optimizer,
                          baseline_optimizer=baseline_optimizer, lr=lr)
    rows, curves = [r for r, _ in results], [c for _, c in results]

    # PSNR (mean over images) at a few step counts, both starts side by side.
    steps = [k for k in CHECKPOINTS if k <= max(baseline_steps, refine_steps)]
    curve_rows = []
    for k in steps:
        row = dict(step=k)
        for name, key in [('from_w_avg', 'from_w_avg'), ('from_w_avg_same', 'from_w_avg_same'),
                          ('from_regressor', 'from_regressor')]:
            vals = [c[key][k] for c in curves if k < len(c[key])]
            row[name] = float(np.mean(vals)) if len(vals) == len(curves) else None
        curve_rows.append(row)
    print()
    print(common.table(curve_rows, [('step', 'step'), ('from_w_avg', f'PSNR from w_avg ({baseline_optimizer})'),
                                    ('from_w_avg_same', f'from w_avg ({optimizer})'),
                                    ('from_regressor', f'from regressor ({optimizer})')]))
    print()
    print(common.table(rows, [('seed', 'seed'), ('jitter_floor', 'jitter floor'),
                              ('baseline_final', f'baseline@{baseline_steps}'),
                              ('same_final', f'w_avg@{refine_steps} ({optimizer})'),
                              ('regressor_start', 'regressor@0'), ('refined_final', f'regressor@{refine_steps}'),
                              ('steps_to_baseline', 'steps to baseline'),
                              ('meets_target', f'within {refine_steps}')]))
    path = common.save('refine', dict(benchmark='refine', machine=common.machine(device), network=str(pkl),
                                      regressor=str(reg), lr=lr, optimizer=optimizer, jobs=jobs,
                                      baseline_optimizer=baseline_optimizer, baseline_steps=baseline_steps,
                                      refine_steps=refine_steps, quick=quick,
                                      target=f'from the regressor, reach the {baseline_steps}-step baseline PSNR '
                                             f'within {refine_steps} steps',
                                      meets_target=all(r['meets_target'] for r in rows), table=curve_rows,
                                      rows=rows, curves=curves), quick)
    print(f'\nWrote {path}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
