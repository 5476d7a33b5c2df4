"""Benchmark 3, refinement: PSNR against optimisation steps, started from the regressor's w versus
from w_avg (the optimisation baseline), on held-out synthetic images. Target: started from the
regressor, reach the PSNR of the --baseline-steps (500) baseline within --refine-steps (50).

Both runs use optimize.optimize_w (the code of `gen --refine-steps`) at the regressor's predicted
camera, as `gen --refine-steps` does. A run's PSNR at step k is that of the best w so far (the
optimiser keeps it), i.e. what stopping there would give.

    python benchmarks/refine.py                       # tiny preset, a regressor trained here
    python benchmarks/refine.py --quick               # < 2 minutes
    python benchmarks/refine.py --network ffhq512-128.pkl --regressor regressor.pt --device cuda
"""

import click
import numpy as np

import common
from eg3d_regressor_plugin import cameras
from eg3d_regressor_plugin.invert import Inverter
from eg3d_regressor_plugin.optimize import optimize_w, w_avg_init

CHECKPOINTS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]


def best_so_far(hist):
    return np.maximum.accumulate([h['psnr'] for h in hist])


@click.command()
@click.option('--seeds', default=None, help='Held-out seeds  [default: 1000-1001; quick: 1000]')
@click.option('--baseline-steps', type=int, default=None, help='Steps from w_avg  [default: 500; quick: 10]')
@click.option('--refine-steps', type=int, default=None, help='Steps from the regressor  [default: 50; quick: 3]')
@click.option('--lr', type=float, default=0.01, show_default=True, help='Learning rate of both runs')
@common.regressor_options
def main(preset, network, regressor, seeds, baseline_steps, refine_steps, lr, train_kimg, train_pairs, device, quick, eg3d):
    from eg3d_regressor_plugin.options import parse_range
    seeds = parse_range(seeds or ('1000' if quick else '1000-1001'))
    baseline_steps = baseline_steps or (10 if quick else 500)
    refine_steps = refine_steps or (3 if quick else 50)
    device, G, pkl, reg = common.measured(preset, network, regressor, train_kimg, train_pairs, device, quick, eg3d)
    inverter = Inverter(G, reg, device=device)
    rows, curves = [], []
    for sample in common.held_out(G, seeds):
        out = inverter(sample['img'])
        c = cameras.pose_to_label(out['yaw'], out['pitch'], device=device)
        _, h_base = optimize_w(G, sample['img'], c, w_avg_init(G, device=device), baseline_steps, lr=lr)
        _, h_reg = optimize_w(G, sample['img'], c, out['w'], refine_steps, lr=lr)
        base, ref = best_so_far(h_base), best_so_far(h_reg)
        goal = float(base[-1])
        hit = next((k for k, v in enumerate(ref) if v >= goal), None)
        rows.append(dict(seed=sample['seed'], baseline_final=goal, baseline_s=h_base[-1]['seconds'],
                         regressor_start=float(ref[0]), refined_final=float(ref[-1]), refine_s=h_reg[-1]['seconds'],
                         steps_to_baseline=hit, meets_target=hit is not None))
        curves.append(dict(seed=sample['seed'], from_w_avg=[float(v) for v in base], from_regressor=[float(v) for v in ref]))
        print(f'seed {sample["seed"]}: baseline {goal:.2f} dB after {baseline_steps} steps; from the regressor '
              f'{ref[0]:.2f} -> {ref[-1]:.2f} dB in {refine_steps}, reaching the baseline at step {hit}', flush=True)

    # PSNR (mean over images) at a few step counts, both starts side by side.
    steps = [k for k in CHECKPOINTS if k <= max(baseline_steps, refine_steps)]
    curve_rows = []
    for k in steps:
        row = dict(step=k)
        for name, key in [('from_w_avg', 'from_w_avg'), ('from_regressor', 'from_regressor')]:
            vals = [c[key][k] for c in curves if k < len(c[key])]
            row[name] = float(np.mean(vals)) if len(vals) == len(curves) else None
        curve_rows.append(row)
    print()
    print(common.table(curve_rows, [('step', 'step'), ('from_w_avg', 'PSNR from w_avg'),
                                    ('from_regressor', 'PSNR from regressor')]))
    print()
    print(common.table(rows, [('seed', 'seed'), ('baseline_final', f'baseline@{baseline_steps}'),
                              ('regressor_start', 'regressor@0'), ('refined_final', f'regressor@{refine_steps}'),
                              ('steps_to_baseline', 'steps to baseline'),
                              ('meets_target', f'within {refine_steps}')]))
    path = common.save('refine', dict(benchmark='refine', machine=common.machine(device), network=str(pkl),
                                      regressor=str(reg), lr=lr, baseline_steps=baseline_steps,
                                      refine_steps=refine_steps, quick=quick,
                                      target=f'from the regressor, reach the {baseline_steps}-step baseline PSNR '
                                             f'within {refine_steps} steps',
                                      meets_target=all(r['meets_target'] for r in rows), table=curve_rows,
                                      rows=rows, curves=curves), quick)
    print(f'\nWrote {path}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
