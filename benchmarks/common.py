"""Shared pieces of the benchmark scripts: the generator and regressor they measure, held-out
synthetic images, timing, a description of the machine, and the printed table / JSON result.

Every script compares its contenders in one process, on one generator, interleaved where it can,
so that ratios hold on a noisy machine. Results go to benchmarks/<name>.json (<name>.gpu.json when
measured on a GPU, <name>.quick.json with --quick, so a smoke run never replaces a real result).
"""

import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / '.cache'  # built generators and quickly trained regressors, reused between scripts

sys.path.insert(0, str(REPO))  # run from a fresh clone without installing

from eg3d_regressor_plugin import bridge, devices, fingerprint, presets  # noqa: E402
from eg3d_regressor_plugin import render as rendering  # noqa: E402


def machine(device):
    """Where and when the numbers were taken."""
    try:
        commit = subprocess.run(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    # A copy of the tree on another machine names its commit itself: its .git, when it has one,
    # need not hold the commit of the files that run.
    commit = os.environ.get('BENCHMARK_COMMIT') or commit
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), cpu)
    except OSError:
        pass
    info = dict(date=datetime.datetime.now().isoformat(timespec='seconds'), commit=commit, cpu=cpu,
                cpu_cores=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                python=platform.python_version(), device=str(device))
    if torch.device(device).type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return info


def sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device):
    """(result, seconds) of fn(), with the GPU synchronised on both sides."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0

#----------------------------------------------------------------------------
# What is measured.

def generator(network=None, preset='tiny', device='cpu', eg3d=None):
    """(G, path of its network pickle): loaded from --network, or built from a preset (seed 0)
    and cached as a pickle, so that subprocesses (`gen`) can load the same generator."""
    bridge.import_eg3d(eg3d)
    if network:
        return bridge.load_generator(network, device=device), Path(network)
    recipe = repr((presets.PRESETS.get(preset), presets.STYLE_GAIN, presets.DENSITY_BIAS))
    path = CACHE / f'{preset}-seed0-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}.pkl'  # rebuilt when a preset changes
    if path.is_file():
        return bridge.load_generator(path, device=device), path
    G, D = presets.build_networks(preset, seed=0, w_avg_samples=2000)
    presets.save_network_pkl(path, G, D)
    return G.to(device), path


def untrained_regressor(G, arch='unet', input_resolution=256, path=None, **arch_kwargs):
    """A regressor checkpoint with the given architecture and fresh weights: enough wherever only
    time or memory is measured (they do not depend on the weights). Returns its path."""
    from eg3d_regressor_plugin.training.checkpoint import save_checkpoint
    from eg3d_regressor_plugin.training.networks import build_regressor
    torch.manual_seed(0)
    model = build_regressor(arch, num_ws=G.backbone.num_ws, w_dim=G.w_dim, input_resolution=input_resolution,
                            **arch_kwargs)
    w_avg = G.backbone.mapping.w_avg.detach().cpu().float()
    stats = dict(center=w_avg.reshape(1, -1).repeat(G.backbone.num_ws, 1), scale=torch.ones(G.backbone.num_ws, G.w_dim))
    path = Path(path or CACHE / f'untrained-{arch}-{input_resolution}-{fingerprint.generator_fingerprint(G)["w_avg_sha"]}.pt')
    save_checkpoint(path, model.eval(), stats, fingerprint.generator_fingerprint(G))
    return path


# learning_curve.py's defaults for training on a CPU, which speedup.py and refine.py train their
# regressor with too (see learning_curve.py for why); CPU_INPUT_RES gives an architecture its own
# input resolution.
CPU_TRAINING = dict(input_res=32, single_w=True, lr_rampdown=0.5)
CPU_INPUT_RES = dict(vit=64)
CPU_PAIRS = 2400


def cpu_input_res(arch):
    return CPU_INPUT_RES.get(arch, CPU_TRAINING['input_res'])


def training_set(G, pairs, resolution=64):
    """(path, seconds) of a dataset zip of `pairs` synthetic pairs of G at `resolution` px made by
    `eg3d-regress dataset`'s code (with its default worker processes): a fixed training set, as
    the seed trained on. Cached by generator and size; the seconds are those its rendering took,
    when it was rendered. Regressors with a smaller input are fed it resized."""
    from eg3d_regressor_plugin.training.dataset_writer import default_workers, make_dataset_zip
    path = CACHE / f'pairs-{fingerprint.generator_fingerprint(G)["w_avg_sha"]}-{pairs}-{resolution}px.zip'
    took = path.with_suffix('.seconds')
    if path.is_file() and not _has_masks(path):  # from before the zips held background masks: render again
        took.unlink(missing_ok=True)
    if not (path.is_file() and took.is_file()):
        print(f'Rendering {pairs} training pairs at {resolution} px (cached in {path})...', flush=True)
        path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        make_dataset_zip(G, path, pairs, resolution=resolution, workers=default_workers(G.backbone.mapping.w_avg.device))
        took.write_text(f'{time.perf_counter() - t0:.1f}\n')
    return path, float(took.read_text())


def _has_masks(path):
    from eg3d_regressor_plugin.training.data import PairDataset
    return PairDataset(path).has_masks


def trained_regressor(G, network_pkl, regressor=None, kimg=60.0, pairs=CPU_PAIRS, arch='psp', device='cpu', eg3d=None):
    """The checkpoint to measure: --regressor when given, else one trained here for `kimg` thousand
    pairs shown from a fixed set of `pairs` rendered pairs (0: rendered on the fly) with the
    project's own training loop, with learning_curve.py's CPU settings (cached by generator,
    network configuration and budget, so the scripts share it). Returns its path."""
    if regressor:
        return Path(regressor)
    from eg3d_regressor_plugin.training.networks import build_regressor
    from eg3d_regressor_plugin.training.training_loop import training_loop
    ident = fingerprint.generator_fingerprint(G)['w_avg_sha']
    opts = dict(CPU_TRAINING, input_res=cpu_input_res(arch))
    # The key hashes the network's resolved configuration, so that a regressor cached before a
    # default changed (a UNet head, a size preset) is not reused; "-std": networks standardise
    # their input since then.
    config = build_regressor(arch, num_ws=G.backbone.num_ws, w_dim=G.w_dim, input_resolution=opts['input_res'],
                             single_w=opts['single_w']).config
    config_sha = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    run_dir = CACHE / f'train-{arch}-{config_sha}-std-{kimg:g}kimg-{pairs}pairs-{ident}'
    final = sorted(run_dir.glob('regressor-snapshot-*.pt')) if run_dir.is_dir() else []
    if final and (run_dir / 'done').is_file():
        return final[-1]
    data_zip = training_set(G, pairs)[0] if pairs else None
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f'Training a {arch} regressor on {kimg:g} kimg for the benchmark (cached in {run_dir})...', flush=True)
    t0 = time.perf_counter()
    training_loop(run_dir, str(network_pkl), arch=arch, kimg=kimg, tick_kimg=max(kimg / 4, 0.016), **opts,
                  snap=1000, val_seeds=tuple(range(8)), grid=4, w_stats_samples=2000, data_zip=data_zip, workers=0,
                  device=device, eg3d=eg3d)
    (run_dir / 'done').write_text(f'{time.perf_counter() - t0:.1f} s\n')
    return sorted(run_dir.glob('regressor-snapshot-*.pt'))[-1]


def regressor_options(pairs=CPU_PAIRS):
    """The options of the scripts that measure a trained regressor against optimisation (speedup,
    refine): what to measure, and where; `pairs`: the script's default training set size, which
    the command receives as train_pairs unless --train-pairs is given (0 with --quick)."""
    import functools

    import click
    opts = [
            click.option('--preset', default='tiny', show_default=True, help='Generator preset (without --network)'),
            click.option('--network', default=None, help='Network pickle to measure instead of the preset'),
            click.option('--regressor', default=None, help='Regressor checkpoint (default: train one here)'),
            click.option('--train-kimg', type=float, default=None,
                         help='Training budget without --regressor  [default: 60; quick: 0.032]'),
            click.option('--train-pairs', type=int, default=None,
                         help=f'Fixed training set without --regressor, 0: on the fly  [default: {pairs}; quick: 0]'),
            click.option('--device', default='auto', show_default=True),
            click.option('--quick', is_flag=True, help='A smoke run under 2 minutes'),
            click.option('--eg3d', default=None, help='EG3D checkout')]

    def decorate(f):
        @functools.wraps(f)
        def command(*args, train_pairs, quick, **kwargs):
            if train_pairs is None:
                train_pairs = 0 if quick else pairs
            return f(*args, train_pairs=train_pairs, quick=quick, **kwargs)
        for opt in reversed(opts):
            command = opt(command)
        return command
    return decorate


def measured(preset, network, regressor, train_kimg, train_pairs, device, quick, eg3d):
    """(device, G, its pickle, the regressor checkpoint) for regressor_options' values."""
    device = devices.get_device(device)
    G, pkl = generator(network, preset, device=device, eg3d=eg3d)
    reg = trained_regressor(G, pkl, regressor, kimg=train_kimg or (0.032 if quick else 60), pairs=train_pairs,
                            device=device, eg3d=eg3d)
    return device, G, pkl, reg


def jitter_floor(G, sample, seed=rendering.SEED + 1):
    """PSNR (dB) of the true w of a held_out sample rendered with another ray-sampling seed: what
    EG3D's random depth jitter alone costs."""
    from eg3d_regressor_plugin.images import to_uint8
    from eg3d_regressor_plugin.metrics import psnr
    img = rendering.render(G, sample['w'], sample['c'], seed=seed)['image'].clamp(-1, 1)
    return float(psnr(sample['img'], to_uint8(img)[0]))


def held_out(G, seeds):
    """Held-out synthetic pairs (the sampler's plain seeds, which training never draws), one per
    seed: dict(img uint8 [R,R,3] as read from a file, w [1,num_ws,w_dim], yaw, pitch, c [1,25]).

    They are rendered with the ray-sampling seed that render.render (and so the optimiser and
    every re-render) uses, so that the true w reproduces its image up to 8-bit rounding. EG3D
    jitters its depth samples at random: at another seed the true w itself scores only ~46 dB on
    the tiny preset (12 + 12 samples per ray; see jitter_floor), and any PSNR above that would be
    fitting the jitter, not finding w."""
    from eg3d_regressor_plugin.images import to_uint8
    from eg3d_regressor_plugin.training.data import PairSampler
    sampler = PairSampler(G, resolution=G.img_resolution)
    out = []
    for seed in seeds:
        s = sampler.sample_seeds([seed], render_seed=rendering.SEED)
        out.append(dict(seed=seed, img=to_uint8(s['img'])[0], w=s['w'], yaw=float(s['pose'][0, 0]),
                        pitch=float(s['pose'][0, 1]), c=s['c']))
    return out

#----------------------------------------------------------------------------
# Output.

def fmt(v, digits=4):
    if v is None:
        return '-'
    if isinstance(v, float):
        return f'{v:.{digits}g}'
    return str(v)


def table(rows, columns):
    """A plain-text table of dict rows; columns: list of (key, header)."""
    cells = [[h for _, h in columns]] + [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ['  '.join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def save(name, result, quick=False):
    """Write the result as benchmarks/<name>.json and return the path: <name>.gpu.json when it was
    measured on a GPU (so that a GPU run never replaces the CPU figures), .quick.json for --quick."""
    gpu = str(result.get('machine', {}).get('device', '')).startswith('cuda')
    path = HERE / f'{name}{".gpu" if gpu else ""}{".quick" if quick else ""}.json'
    tmp = path.with_suffix('.json.tmp')
    command = ' '.join(['python', f'benchmarks/{Path(sys.argv[0]).name}'] + sys.argv[1:])
    tmp.write_text(json.dumps(dict(result, command=command), indent=2, default=float) + '\n')
    os.replace(tmp, path)
    return path


def median(xs):
    return float(np.median(np.asarray(xs, dtype=np.float64)))

#----------------------------------------------------------------------------
# Measuring held-out images in parallel processes (refine.py, tuning.py).

_WORKER = {}


def _init_worker(threads, network_pkl, regressor, device, eg3d):
    from eg3d_regressor_plugin.invert import Inverter
    torch.set_num_threads(threads)
    G, _ = generator(network_pkl, device=device, eg3d=eg3d)
    _WORKER.update(G=G, inverter=Inverter(G, regressor, device=device, cuda_graph=False))


def _measure_in_worker(measure, sample, kwargs):
    return measure(_WORKER['G'], _WORKER['inverter'], sample, **kwargs)


def measure_all(measure, G, samples, jobs, network_pkl, regressor, device, eg3d, **kwargs):
    """measure(G, inverter, sample, device=..., **kwargs) for every sample: in this process, or in
    `jobs` worker processes (spawned: fork after torch started its thread pools can hang) sharing
    this process's threads. measure must be a module-level function (it is sent by reference)."""
    import concurrent.futures
    import multiprocessing
    from eg3d_regressor_plugin.invert import Inverter
    if jobs <= 1:
        inverter = Inverter(G, regressor, device=device, cuda_graph=False)
        return [measure(G, inverter, s, device=device, **kwargs) for s in samples]
    threads = max(1, torch.get_num_threads() // jobs)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context('spawn'),
                                                initializer=_init_worker,
                                                initargs=(threads, str(network_pkl), str(regressor), str(device),
                                                          eg3d)) as pool:
        n = len(samples)
        return list(pool.map(_measure_in_worker, [measure] * n, samples, [dict(kwargs, device=str(device))] * n))
