"""Benchmark 5, memory: peak resident memory of the real `gen --shapes` command at several shape
resolutions, beside the same command without --shapes. Target: under 2 GB at --shape-res 256.

Each run is a fresh subprocess; its peak RSS is the kernel's own count for that process
(os.wait4 -> ru_maxrss), cross-checked by polling with psutil. The regressor has fresh weights
unless --regressor is given: memory does not depend on the weights.

    python benchmarks/shape_memory.py                  # ffhq512 preset, 128 256 512, .mrc (+ .ply at 256)
    python benchmarks/shape_memory.py --quick          # tiny preset, 64 128: under 2 minutes
    python benchmarks/shape_memory.py --network ffhq512-128.pkl --regressor regressor.pt
"""

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import psutil

import common
from eg3d_regressor_plugin.files import save_image

TARGET_GB, TARGET_RES = 2.0, 256


def peak_rss(cmd, env):
    """(exit code, peak RSS in bytes by ru_maxrss, peak RSS by psutil polling, seconds, stderr tail)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    polled = [0]

    def poll():
        try:
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                polled[0] = max(polled[0], rss)
                time.sleep(0.05)
        except psutil.Error:
            pass
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    thread.join()
    return proc.returncode, usage.ru_maxrss * 1024, polled[0], time.perf_counter() - t0, stderr.strip()[-300:]


@click.command()
@click.option('--preset', default=None, help='Generator preset  [default: ffhq512; quick: tiny]')
@click.option('--network', default=None, help='Measure this network pickle instead of a preset')
@click.option('--regressor', default=None, help='Regressor for --network (default: fresh weights)')
@click.option('--resolutions', default=None, help='Shape resolutions  [default: 128,256,512; quick: 64,128]')
@click.option('--device', default='cpu', show_default=True, help='Device of the gen runs (peak RSS is host memory)')
@click.option('--quick', is_flag=True, help='A smoke run under 2 minutes')
@click.option('--eg3d', default=None, help='EG3D checkout')
def main(preset, network, regressor, resolutions, device, quick, eg3d):
    preset = preset or ('tiny' if quick else 'ffhq512')
    resolutions = [int(r) for r in (resolutions or ('64,128' if quick else '128,256,512')).split(',')]
    G, pkl = common.generator(network, preset, device='cpu', eg3d=eg3d)
    reg = Path(regressor) if regressor else common.untrained_regressor(G, 'unet', min(256, G.img_resolution))
    runs = [('none', None)] + [(r, '.mrc') for r in resolutions]
    if not quick and TARGET_RES in resolutions:
        runs.append((TARGET_RES, '.ply'))
    env = dict(os.environ, PYTHONWARNINGS='ignore',
               PYTHONPATH=os.pathsep.join(filter(None, [str(common.REPO), os.environ.get('PYTHONPATH')])))
    if eg3d:
        env['EG3D_ROOT'] = str(eg3d)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / 'face.png'
        save_image(image, common.held_out(G, [1000])[0]['img'])
        del G
        for res, fmt in runs:
            cmd = [sys.executable, '-m', 'eg3d_regressor_plugin.gen_from_image', '--network', str(pkl),
                   '--regressor', str(reg), '--image', str(image), '--no-align', '--views', '0',
                   '--outdir', str(Path(tmp) / f'out-{res}'), '--device', device]
            if fmt:
                cmd += ['--shapes', '--shape-res', str(res), '--shape-format', fmt]
            code, maxrss, polled, seconds, err = peak_rss(cmd, env)
            if code:
                raise SystemExit(f'gen failed at shape-res {res}: {err}')
            row = dict(shape_res=res if fmt else '-', format=fmt or '(no --shapes)', peak_rss_gb=maxrss / 2 ** 30,
                       polled_rss_gb=polled / 2 ** 30, seconds=seconds, volume_gb=(res ** 3 * 4 / 2 ** 30) if fmt else 0.0)
            if res == TARGET_RES:
                row['meets_target'] = row['peak_rss_gb'] < TARGET_GB
            rows.append(row)
            print(f'shape-res {row["shape_res"]} {row["format"]}: peak {row["peak_rss_gb"]:.3f} GB in {seconds:.1f} s',
                  flush=True)
    cols = [('shape_res', 'shape-res'), ('format', 'format'), ('peak_rss_gb', 'peak RSS GB'),
            ('polled_rss_gb', 'polled GB'), ('volume_gb', 'volume GB'), ('seconds', 'seconds'),
            ('meets_target', f'< {TARGET_GB:g} GB at {TARGET_RES}')]
    print()
    print(common.table(rows, cols))
    path = common.save('shape_memory', dict(benchmark='shape_memory', target=f'< {TARGET_GB} GB at shape-res {TARGET_RES}',
                                            preset=None if network else preset, network=network, device=device,
                                            machine=common.machine('cpu'), quick=quick, rows=rows), quick)
    print(f'\nWrote {path}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
