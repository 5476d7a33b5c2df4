"""Benchmark 1, regressor overhead: time of image -> w -> render (what `gen` does) against the
bare render of the same w (EG3D's G.synthesis), per generator preset, regressor architecture and
device. Target: at most 1.1x.

The regressors have fresh weights unless --regressor is given: time does not depend on the
weights. Each repetition runs the bare render and every pipeline back to back; the ratio is the
median over repetitions of pipeline / bare render within one repetition, so that load from other
processes and slow drifts hit both sides alike.

    python benchmarks/overhead.py                     # tiny and ffhq512 presets, CPU (and GPU if any)
    python benchmarks/overhead.py --quick             # < 2 minutes
    python benchmarks/overhead.py --network ffhq512-128.pkl --regressor regressor.pt
"""

import click
import torch

import common
from eg3d_regressor_plugin import render
from eg3d_regressor_plugin.invert import Inverter

TARGET = 1.1


def measure(G, regressors, device, reps, image):
    """Rows of {arch, regress_s, render_s, pipeline_s, ratio} for one generator on one device."""
    inverters = {name: Inverter(G, path, device=device) for name, path in regressors.items()}
    # The bare render draws the w the pipeline produces, so both render the same thing.
    ws = {}
    for name, inv in inverters.items():  # warm-up (first calls allocate, build kernels)
        out = inv(image)
        ws[name] = (out['w'], out['c'])
        render.render(G, out['w'], out['c'])
    times = {name: dict(bare=[], regress=[], pipeline=[]) for name in inverters}
    for _ in range(reps):
        for name, inv in inverters.items():
            w, c = ws[name]
            times[name]['bare'].append(common.timed(lambda: render.render(G, w, c), device)[1])

            def pipeline():
                out = inv(image)
                return render.render(G, out['w'], out['c'])
            times[name]['regress'].append(common.timed(lambda: inv(image), device)[1])
            times[name]['pipeline'].append(common.timed(pipeline, device)[1])
    rows = []
    for name, t in times.items():
        bare, pipe = common.median(t['bare']), common.median(t['pipeline'])
        ratio = common.median([p / b for p, b in zip(t['pipeline'], t['bare'])])
        rows.append(dict(arch=name, params=sum(p.numel() for p in inverters[name].predictor.model.parameters()),
                         regress_s=common.median(t['regress']), render_s=bare, pipeline_s=pipe, ratio=ratio,
                         meets_target=ratio <= TARGET, reps=reps))
    return rows


@click.command()
@click.option('--presets', default='tiny,ffhq512', show_default=True, help='Generator presets (without --network)')
@click.option('--network', default=None, help='Measure this network pickle instead of the presets')
@click.option('--regressor', default=None, help='Measure this regressor (for --network) instead of fresh ones')
@click.option('--archs', default='unet,vit,psp', show_default=True, help='Architectures of the fresh regressors')
@click.option('--reps', type=int, default=None, help='Repetitions  [default: 10 tiny, 5 others; quick: 3, 1]')
@click.option('--devices', default=None, help='cpu,cuda  [default: cpu, and cuda when available]')
@click.option('--quick', is_flag=True, help='A smoke run under 2 minutes (UNet only, fewer repetitions)')
@click.option('--eg3d', default=None, help='EG3D checkout')
def main(presets, network, regressor, archs, reps, devices, quick, eg3d):
    devices = devices.split(',') if devices else ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    archs = ['unet'] if quick else archs.split(',')
    setups = [('network', network)] if network else [(p, None) for p in presets.split(',')]
    rows = []
    for device in devices:
        for preset, net in setups:
            G, _ = common.generator(net, preset if not net else None, device=device, eg3d=eg3d)
            image = common.held_out(G, [1000])[0]['img']
            res = min(256, G.img_resolution)
            regs = {'given': regressor} if regressor else {a: common.untrained_regressor(G, a, res) for a in archs}
            n = reps or ((3 if G.img_resolution <= 128 else 1) if quick else (10 if G.img_resolution <= 128 else 5))
            for row in measure(G, regs, device, n, image):
                rows.append(dict(preset=preset, resolution=G.img_resolution, device=device, **row))
                print(f'{preset} {device} {row["arch"]}: {row["ratio"]:.3f}x', flush=True)
            del G
    cols = [('preset', 'generator'), ('device', 'device'), ('arch', 'regressor'), ('params', 'params'),
            ('regress_s', 'regress s'), ('render_s', 'render s'), ('pipeline_s', 'image->w->render s'),
            ('ratio', 'ratio'), ('meets_target', f'<= {TARGET}x')]
    print()
    print(common.table(rows, cols))
    dev = 'cuda' if 'cuda' in devices else 'cpu'
    path = common.save('overhead', dict(benchmark='overhead', target=f'<= {TARGET}x', machine=common.machine(dev),
                                        quick=quick, rows=rows), quick)
    print(f'\nWrote {path}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
