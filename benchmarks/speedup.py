"""Benchmark 2, speed-up over optimisation: on held-out synthetic images, the optimisation
baseline (W+ optimisation from w_avg, optimize.optimize_w: the same code as `gen --refine-steps`;
Adam by default, as EG3D's projectors and PTI, or --optimizer lbfgs, gen's default) runs until
it reaches the regressor's latent error or its image PSNR; the ratio of the times is the
speed-up. Target: >= 1000x.

The baseline is given the true camera (an optimisation-only inversion would need a pose from
elsewhere, as PTI takes it from Deep3DFaceRecon): this favours the baseline. It is capped at
--max-steps; where it never reaches the regressor, the ratio is a lower bound (">=").
Times: the regressor's is the image -> w forward pass (median of 3), the baseline's the time to
the first step whose w reaches the criterion (its renders included). "end to end" adds the one
render the regressor needs to produce the image, which the optimisation has already made.

    python benchmarks/speedup.py                      # tiny preset, a regressor trained here
    python benchmarks/speedup.py --quick              # < 2 minutes
    python benchmarks/speedup.py --optimizer lbfgs    # the baseline with L-BFGS
    python benchmarks/speedup.py --network ffhq512-128.pkl --regressor regressor.pt --device cuda
"""

import click
import numpy as np

import common
from eg3d_regressor_plugin import cameras, render
from eg3d_regressor_plugin.invert import Inverter
from eg3d_regressor_plugin.images import to_uint8
from eg3d_regressor_plugin.metrics import latent_errors, psnr
from eg3d_regressor_plugin.optimize import OPTIMIZERS, optimize_w, w_avg_init

TARGET = 1000


def run_image(G, inverter, sample, max_steps, lr, optimizer, device):
    img = sample['img']
    t_reg = common.median([common.timed(lambda: inverter(img), device)[1] for _ in range(3)])
    out = inverter(img)
    c_pred = cameras.pose_to_label(out['yaw'], out['pitch'], device=device)
    recon, t_render = common.timed(lambda: render.render(G, out['w'], c_pred)['image'], device)
    reg_l1 = float(latent_errors(out['w'], sample['w'])['w_l1'][0])
    reg_psnr = psnr(img, to_uint8(recon)[0])
    reached = dict(latent=None, psnr=None)

    def check(step, w, record):
        l1 = float(latent_errors(w, sample['w'])['w_l1'][0])
        if reached['latent'] is None and l1 <= reg_l1:
            reached['latent'] = (step, record['seconds'])
        if reached['psnr'] is None and record['psnr'] >= reg_psnr:
            reached['psnr'] = (step, record['seconds'])
        record['w_l1'] = l1
        return all(v is not None for v in reached.values())
    _, hist = optimize_w(G, img, sample['c'].to(device), w_avg_init(G, device=device), max_steps, lr=lr,
                         callback=check, optimizer=optimizer)
    total = hist[-1]['seconds']
    row = dict(seed=sample['seed'], regress_s=t_reg, render_s=t_render, reg_w_l1=reg_l1, reg_psnr=reg_psnr,
               base_steps=len(hist) - 1, base_s=total, base_best_psnr=max(h['psnr'] for h in hist),
               base_best_w_l1=min(h['w_l1'] for h in hist))
    for crit, hit in reached.items():
        if hit is None:  # not reached within the cap: the ratio is at least total / t_reg
            row[f'{crit}_step'], row[f'{crit}_s'], row[f'{crit}_bound'] = None, total, '>='
        else:
            row[f'{crit}_step'], row[f'{crit}_s'], row[f'{crit}_bound'] = hit[0], hit[1], '='
        row[f'{crit}_speedup'] = row[f'{crit}_s'] / t_reg
        row[f'{crit}_speedup_e2e'] = row[f'{crit}_s'] / (t_reg + t_render)
    return row


def summary(rows, crit):
    """Geometric mean of the speed-ups; a lower bound when any image did not reach."""
    vals = np.array([r[f'{crit}_speedup'] for r in rows])
    e2e = np.array([r[f'{crit}_speedup_e2e'] for r in rows])
    bound = '>=' if any(r[f'{crit}_bound'] == '>=' for r in rows) else '='
    return dict(criterion=crit, speedup=float(np.exp(np.log(vals).mean())), speedup_e2e=float(np.exp(np.log(e2e).mean())),
                bound=bound, reached=sum(r[f'{crit}_bound'] == '=' for r in rows), images=len(rows),
                meets_target=bool(np.exp(np.log(vals).mean()) >= TARGET))


@click.command()
@click.option('--seeds', default=None, help='Held-out seeds  [default: 1000-1002; quick: 1000]')
@click.option('--max-steps', type=int, default=None, help='Cap of the baseline  [default: 300; quick: 10]')
@click.option('--optimizer', type=click.Choice(OPTIMIZERS), default='adam', show_default=True,
              help='Optimiser of the baseline')
@click.option('--lr', type=float, default=0.01, show_default=True, help='Learning rate of the optimisation (adam)')
@common.regressor_options()
def main(preset, network, regressor, seeds, max_steps, optimizer, lr, train_kimg, train_pairs, device, quick, eg3d):
    from eg3d_regressor_plugin.options import parse_range
    seeds = parse_range(seeds or ('1000' if quick else '1000-1002'))
    max_steps = max_steps or (10 if quick else 300)
    device, G, pkl, reg = common.measured(preset, network, regressor, train_kimg, train_pairs, device, quick, eg3d)
    inverter = Inverter(G, reg, device=device)
    rows = []
    for sample in common.held_out(G, seeds):
        row = run_image(G, inverter, sample, max_steps, lr, optimizer, device)
        rows.append(row)
        print(f'seed {row["seed"]}: psnr {row["psnr_bound"]} {row["psnr_speedup"]:.0f}x, '
              f'latent {row["latent_bound"]} {row["latent_speedup"]:.0f}x', flush=True)
    cols = [('seed', 'seed'), ('regress_s', 'regress s'), ('reg_psnr', 'reg PSNR'), ('reg_w_l1', 'reg w L1'),
            ('base_best_psnr', 'opt best PSNR'), ('base_best_w_l1', 'opt best w L1'),
            ('psnr_step', 'opt steps to PSNR'), ('psnr_s', 'opt s'), ('psnr_bound', ''), ('psnr_speedup', 'speed-up'),
            ('latent_step', 'opt steps to w L1'), ('latent_s', 'opt s'), ('latent_bound', ''),
            ('latent_speedup', 'speed-up')]
    print()
    print(common.table(rows, cols))
    sums = [summary(rows, 'psnr'), summary(rows, 'latent')]
    print()
    print(common.table(sums, [('criterion', 'reach the regressor\'s'), ('bound', ''), ('speedup', 'speed-up (w)'),
                              ('speedup_e2e', 'speed-up (end to end)'), ('reached', 'reached'), ('images', 'of'),
                              ('meets_target', f'>= {TARGET}x')]))
    path = common.save('speedup', dict(benchmark='speedup', target=f'>= {TARGET}x', machine=common.machine(device),
                                       network=str(pkl), regressor=str(reg), max_steps=max_steps, optimizer=optimizer,
                                       lr=lr, quick=quick,
                                       summary=sums, rows=rows), quick)
    print(f'\nWrote {path}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
