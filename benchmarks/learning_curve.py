"""Benchmark 4, learning curve: held-out latent L1 (on normalised w) against training time for
each regressor architecture, on the `tiny` preset on the CPU, beside the mean-w baseline
(predicting w_avg). Target: L1 <= 0.5 x the baseline.

Every architecture trains with the project's own training loop for the same training-time
budget, one after the other in this process, on the same fixed set of --pairs pairs rendered
once at the start (`eg3d-regress dataset`'s code, as the seed trained on a fixed set; its
rendering time is reported beside), or with --pairs 0 on pairs rendered on the fly; the
validation set (the same held-out seeds for all) is evaluated every tick.

Settings for a CPU (the defaults; each is an option): 32 px input for the UNet and the pSp
encoder (a CPU trains them ~4x more pairs per second than at 64 px, and 64 px did not pay that
back in 150 s), 64 px for the ViT (its 16-px patches of a 64-px image cost what 8-px patches of a
32-px image do, and see every pixel: 0.46x against 0.51-0.54x the baseline, two seeds each), a
single w for all levels (EG3D's mapping network broadcasts one w to every level, so synthetic
targets are in W; W+ heads cost the pSp encoder half its speed), the learning rate ramped down
over the last half of the budget. Below 64 px input the networks take ViT patches of 8 px and
three UNet downsamplings by themselves.

    python benchmarks/learning_curve.py                 # 2400 pairs + 3 archs x 2.5 minutes (under 15 minutes)
    python benchmarks/learning_curve.py --quick         # 3 archs x 10 s on the fly (under 2 minutes: most of it renders)
    python benchmarks/learning_curve.py --network G.pkl --minutes 30 --input-res 256 --w-plus --device cuda
"""

import json
import tempfile
import time
from pathlib import Path

import click

import common
from eg3d_regressor_plugin.training.training_loop import training_loop

TARGET = 0.5


def run_arch(arch, network_pkl, seconds, device, eg3d, opts):
    """Train one architecture for `seconds` of training time; returns its row and curve."""
    opts = dict(opts, input_res=opts['input_res'] or common.cpu_input_res(arch))
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        model = training_loop(run_dir, str(network_pkl), arch=arch, kimg=1e6,
                              time_budget=seconds, snap=10 ** 6, device=device, eg3d=eg3d, workers=0, **opts)
        wall = time.perf_counter() - t0
        stats = [json.loads(l) for l in (Path(run_dir) / 'stats.jsonl').read_text().splitlines()]
    curve = [dict(train_s=s['Timing/train_sec'], kimg=s['Progress/kimg'], w_l1=s['Val/w_l1_norm'],
                  w_l1_raw=s['Val/w_l1'], pose_err_deg=s['Val/pose_err_deg']) for s in stats]
    last = stats[-1]
    best = min(c['w_l1'] for c in curve)
    base = last['Val/baseline_w_l1_norm']
    row = dict(arch=arch, config=model.config, params=sum(p.numel() for p in model.parameters()),
               train_s=last['Timing/train_sec'], wall_s=wall, kimg=last['Progress/kimg'], rendered=last['Progress/rendered_this_session'],
               w_l1=last['Val/w_l1_norm'], best_w_l1=best, baseline=base, ratio=last['Val/w_l1_ratio'],
               best_ratio=best / base, w_l1_raw=last['Val/w_l1'], baseline_raw=last['Val/baseline_w_l1'],
               pose_err_deg=last['Val/pose_err_deg'], baseline_pose_deg=last['Val/baseline_pose_err_deg'],
               meets_target=best / base <= TARGET)
    return row, curve


@click.command()
@click.option('--network', default=None, help='Network pickle  [default: the tiny preset, seed 0]')
@click.option('--archs', default='vit,unet,psp', show_default=True)
@click.option('--minutes', type=float, default=2.5, show_default=True, help='Training time per architecture')
@click.option('--pairs', type=int, default=None, help='Fixed training set size, 0: render on the fly  [default: 2400; quick: 0]')
@click.option('--batch', type=int, default=None, help='Batch size  [default: train\'s]')
@click.option('--lr', type=float, default=None, help='Learning rate  [default: train\'s]')
@click.option('--lr-rampdown', type=float, default=common.CPU_TRAINING['lr_rampdown'], show_default=True,
              help='Ramp-down fraction of the budget')
@click.option('--input-res', type=int, default=None,
              help='Input resolution of every architecture  [default: 64 for vit, 32 for the others]')
@click.option('--single-w/--w-plus', default=common.CPU_TRAINING['single_w'], show_default=True,
              help='Predict one w, or one per level')
@click.option('--val-seeds', type=int, default=64, show_default=True, help='Number of held-out pairs')
@click.option('--device', default='cpu', show_default=True)
@click.option('--quick', is_flag=True, help='A smoke run under 2 minutes (10 s per architecture, 8 held-out pairs)')
@click.option('--save-as', default='learning_curve', show_default=True, help='Result name (benchmarks/NAME.json)')
@click.option('--eg3d', default=None, help='EG3D checkout')
def main(network, archs, minutes, pairs, batch, lr, lr_rampdown, input_res, single_w, val_seeds, device, quick, save_as,
         eg3d):
    from eg3d_regressor_plugin import train as train_cmd
    G, network_pkl = common.generator(network, 'tiny', device='cpu', eg3d=eg3d)
    defaults = {p.name: p.default for p in train_cmd.train.params}
    opts = dict(batch=batch or defaults['batch'], lr=lr or defaults['lr'], lr_rampdown=lr_rampdown,
                reuse=defaults['reuse'], input_res=input_res, single_w=single_w,
                trunc_range=data_range(defaults['trunc_range']),
                val_seeds=tuple(range(8 if quick else val_seeds)), tick_kimg=0.064 if quick else 0.128, grid=4)
    seconds = 10 if quick else minutes * 60
    pairs = (0 if quick else common.CPU_PAIRS) if pairs is None else pairs
    render_s = None
    if pairs:
        opts['data_zip'], render_s = common.training_set(G, pairs)
        opts['data_zip'] = str(opts['data_zip'])
        opts['tick_kimg'] = 2.0
        print(f'Training set: {pairs} pairs (rendering took {render_s:.0f} s)', flush=True)
    del G
    rows, curves = [], {}
    for arch in archs.split(','):
        print(f'--- {arch}: {seconds:.0f} s of training', flush=True)
        row, curve = run_arch(arch, network_pkl, seconds, device, eg3d, opts)
        rows.append(row)
        curves[arch] = curve
    cols = [('arch', 'arch'), ('params', 'params'), ('train_s', 'train s'), ('kimg', 'kimg'),
            ('rendered', 'rendered'), ('w_l1', 'val w-L1'), ('best_w_l1', 'best'), ('baseline', 'mean-w'),
            ('best_ratio', 'best/mean-w'), ('pose_err_deg', 'pose err deg'), ('baseline_pose_deg', 'frontal deg'),
            ('meets_target', f'<= {TARGET}x')]
    print()
    print(common.table(rows, cols))
    for arch, curve in curves.items():
        print(f'\n{arch}: ' + '  '.join(f'{c["train_s"]:.0f}s:{c["w_l1"]:.3f}' for c in curve))
    if pairs:
        print(f'\nTraining set: {pairs} fixed pairs, rendered once in {render_s:.0f} s (not in the training times above)')
    met = [r['arch'] for r in rows if r['meets_target']]
    print(f'\nTarget (held-out latent L1 <= {TARGET} x mean-w baseline): '
          + (f'met by {", ".join(met)}' if met else 'NOT met by any architecture'))
    settings = dict(opts, input_res={r['arch']: r['config']['input_resolution'] for r in rows}, seconds=seconds,
                    val_seeds=len(opts['val_seeds']), pairs=pairs, pairs_render_s=render_s)
    result = dict(benchmark='learning_curve', machine=common.machine(device), target_ratio=TARGET,
                  network=str(network or 'tiny preset, seed 0'), settings=settings,
                  rows=rows, curves=curves, target_met_by=met)
    print(f'Wrote {common.save(save_as, result, quick)}')


def data_range(s):
    from eg3d_regressor_plugin.options import parse_trunc_range
    return parse_trunc_range(s)


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
