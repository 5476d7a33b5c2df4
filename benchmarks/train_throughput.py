"""Benchmark 6, training throughput: pairs per second rendered and trained by `eg3d-regress train`,
one process against two processes (DDP, gloo backend on the CPU), side by side in one run.

Each pair is rendered once and trained on once (--reuse 1), so pairs/s counts both. Both
settings run the same command (`python -m eg3d_regressor_plugin.cli train`) on the same generator
with the same total batch, alternating, `--reps` times each; the rate of a run is taken over its
ticks after the first (the first tick includes the start-up: imports, loading, the first pool).

    python benchmarks/train_throughput.py               # under 15 minutes on 2 CPU cores
    python benchmarks/train_throughput.py --quick       # under 2 minutes
    python benchmarks/train_throughput.py --network G.pkl --device cuda --gpus 2
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

import common


def run(network_pkl, gpus, kimg, tick, batch, arch, input_res, device, eg3d):
    """One training run; returns (pairs/s after the first tick, its log)."""
    with tempfile.TemporaryDirectory() as outdir:
        cmd = [sys.executable, '-m', 'eg3d_regressor_plugin.cli', 'train', '--network', str(network_pkl),
               '--outdir', outdir, '--arch', arch, '--batch', str(batch), '--kimg', str(kimg), '--tick', str(tick),
               '--snap', '1000000', '--reuse', '1', '--val-seeds', '0-3', '--gpus', str(gpus), '--device', device]
        if input_res:
            cmd += ['--input-res', str(input_res)]
        if eg3d:
            cmd += ['--eg3d', eg3d]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO,
                              env=dict(os.environ, PYTHONWARNINGS='ignore'))
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f'training with --gpus {gpus} failed:\n{proc.stderr[-2000:]}')
        (run_dir,) = Path(outdir).iterdir()
        stats = [json.loads(l) for l in (run_dir / 'stats.jsonl').read_text().splitlines()]
    later = stats[1:]
    pairs = sum(s['Progress/nimg'] - p['Progress/nimg'] for p, s in zip(stats, later))
    secs = sum(s['Timing/sec_per_tick'] for s in later)
    return pairs / secs, wall


@click.command()
@click.option('--network', default=None, help='Network pickle  [default: the tiny preset, seed 0]')
@click.option('--arch', default='unet', show_default=True)
@click.option('--batch', type=int, default=16, show_default=True, help='Total batch (split between the processes)')
@click.option('--kimg', type=float, default=0.384, show_default=True, help='Pairs per run (thousands)')
@click.option('--input-res', type=int, default=None, help='Input resolution  [default: train\'s]')
@click.option('--gpus', type=int, default=2, show_default=True, help='Processes of the DDP setting')
@click.option('--reps', type=int, default=2, show_default=True, help='Runs of each setting, alternating')
@click.option('--device', default='cpu', show_default=True)
@click.option('--quick', is_flag=True, help='A smoke run under 2 minutes (one short run of each)')
@click.option('--eg3d', default=None, help='EG3D checkout')
def main(network, arch, batch, kimg, input_res, gpus, reps, device, quick, eg3d):
    G, network_pkl = common.generator(network, 'tiny', device='cpu', eg3d=eg3d)
    del G
    if quick:
        kimg, reps = 0.064, 1
    tick = kimg / 4
    settings = sorted({1, gpus})  # --gpus 1: the single process alone (one GPU, say)
    rates = {n: [] for n in settings}
    walls = {n: [] for n in settings}
    for rep in range(reps):
        for n in settings:
            rate, wall = run(network_pkl, n, kimg, tick, batch, arch, input_res, device, eg3d)
            rates[n].append(rate)
            walls[n].append(wall)
            print(f'rep {rep + 1}: {n} process{"es" if n > 1 else ""}: {rate:.2f} pairs/s (run {wall:.0f} s)', flush=True)
    single = common.median(rates[1])
    rows = [dict(setting=f'{n} process{"es" if n > 1 else ""}' + (' (DDP, gloo)' if n > 1 and device == 'cpu' else
                                                                   ' (DDP)' if n > 1 else ''),
                 pairs_per_s=common.median(rates[n]), speedup=common.median(rates[n]) / single,
                 run_s=common.median(walls[n]), runs=len(rates[n])) for n in settings]
    print()
    print(common.table(rows, [('setting', 'setting'), ('pairs_per_s', 'pairs/s (rendered + trained)'),
                              ('speedup', 'vs 1 process'), ('run_s', 'run s'), ('runs', 'runs')]))
    result = dict(benchmark='train_throughput', machine=common.machine(device), network=str(network or 'tiny preset, seed 0'),
                  settings=dict(arch=arch, batch=batch, kimg=kimg, tick_kimg=tick, input_res=input_res, reuse=1),
                  rows=rows, rates=rates)
    print(f'Wrote {common.save("train_throughput", result, quick)}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
