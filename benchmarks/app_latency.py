"""Benchmark: slider-to-new-view latency of `eg3d-regress app` against a bare render of the same
generator. Target: at most 1.2x.

Three contenders, interleaved in each repetition on one generator (tiny preset, CPU by default),
each rendering the same face at a new yaw every time:

  bare     render.render(G, w, c) with the camera label c made beforehand (what EG3D costs);
  handler  webapp.rerender(state, session, yaw, pitch): the page's slider handler (the camera
           label from degrees, the render, the uint8 image), as the queue calls it;
  http     the same event through the running page over HTTP with gradio_client: the queue,
           the PNG the page sends, its download (skipped with --no-http).

The ratio of each is the median over repetitions of its time / the bare render's in that
repetition (the order of the three is shuffled in each); the ratio of the fastest runs is printed
beside it, the better estimate where other processes share the CPU. The regressor has fresh
weights (time does not depend on them).

    python benchmarks/app_latency.py             # tiny, CPU, 30 repetitions
    python benchmarks/app_latency.py --quick     # < 2 minutes
"""

import math
import tempfile
from pathlib import Path

import click

import common
from eg3d_regressor_plugin import render, webapp
from eg3d_regressor_plugin.files import save_image
from eg3d_regressor_plugin.invert import Inverter

TARGET = 1.2


@click.command()
@click.option('--preset', default='tiny', show_default=True, help='Generator preset (without --network)')
@click.option('--network', default=None, help='Network pickle to measure instead of the preset')
@click.option('--reps', type=int, default=None, help='Repetitions  [default: 30; quick: 5]')
@click.option('--device', default='cpu', show_default=True)
@click.option('--http/--no-http', default=True, show_default=True, help='Also time the HTTP round trip (gradio_client)')
@click.option('--quick', is_flag=True, help='A smoke run under 2 minutes')
@click.option('--eg3d', default=None, help='EG3D checkout')
def main(preset, network, reps, device, http, quick, eg3d):
    from eg3d_regressor_plugin import cameras, devices
    device = devices.get_device(device)
    reps = reps or (5 if quick else 30)
    G, _ = common.generator(network, preset, device=device, eg3d=eg3d)
    reg = common.untrained_regressor(G, 'unet', min(256, G.img_resolution))
    state = webapp.AppState(G, Inverter(G, reg, device=device), device=device, shape_res=32)
    tmp = Path(tempfile.mkdtemp(prefix='app-latency-'))
    photo = tmp / 'face.png'
    save_image(photo, common.held_out(G, [1000])[0]['img'])
    out = webapp.reconstruct_upload(state, None, str(photo), no_align=True)
    session, pitch = out['session'], out['pitch_deg']
    w = session['w']

    client = None
    if http:
        from gradio_client import Client, handle_file
        import socket
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        demo = webapp.launch(state, port=port, block=False, quiet=True)
        client = Client(f'http://127.0.0.1:{port}/', verbose=False)
        client.predict(handle_file(str(photo)), True, 0, api_name='/reconstruct')  # this client's session

    import random
    order = random.Random(0)
    yaws = [(-40 + 80 * (i % 9) / 8) for i in range(reps + 2)]
    times = dict(bare=[], handler=[], http=[])
    for i, yaw in enumerate(yaws):  # the first two are warm-up
        c = cameras.pose_to_label(math.radians(yaw), math.radians(pitch), device=device)
        runs = dict(bare=lambda: render.render(G, w, c), handler=lambda: webapp.rerender(state, session, yaw, pitch))
        if client is not None:
            runs['http'] = lambda: client.predict(yaw, pitch, api_name='/rerender')
        names = list(runs)
        order.shuffle(names)  # no contender always runs right after another (caches, other processes' load)
        took = {}
        for name in names:
            result, took[name] = common.timed(runs[name], device)
            if name == 'http':
                assert Path(result).is_file(), result
        if i >= 2:
            for name, t in took.items():
                times[name].append(t)
    if client is not None:
        client.close() if hasattr(client, 'close') else None
        demo.close()

    rows = []
    for name in ('bare', 'handler', 'http'):
        if not times[name]:
            continue
        ratio = common.median([t / b for t, b in zip(times[name], times['bare'])])
        best = min(times[name]) / min(times['bare'])
        rows.append(dict(contender=name, seconds=common.median(times[name]), min_seconds=min(times[name]), ratio=ratio,
                         ratio_of_min=best, meets_target=None if name == 'bare' else ratio <= TARGET,
                         reps=len(times[name])))
        print(f'{name}: {rows[-1]["seconds"]:.4f} s, {ratio:.3f}x (fastest runs: {best:.3f}x)', flush=True)
    print()
    print(common.table(rows, [('contender', 'slider -> new view'), ('seconds', 'median s'), ('min_seconds', 'min s'),
                              ('ratio', 'x bare (median)'), ('ratio_of_min', 'x bare (min)'),
                              ('meets_target', f'<= {TARGET}x'), ('reps', 'reps')]))
    path = common.save('app_latency', dict(benchmark='app_latency', target=f'<= {TARGET}x', preset=preset,
                                           resolution=G.img_resolution, machine=common.machine(device), quick=quick,
                                           rows=rows), quick)
    print(f'\nWrote {path}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
