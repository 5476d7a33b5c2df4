"""`eg3d-regress train`: the run folder, snapshots, exact resume, kill -9 + --resume latest,
2-process DDP on CPU, and the one-line errors of bad options."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import assert_one_line_error, run_cli
from eg3d_regressor_plugin.training import checkpoint, sources, training_loop as loop

# Tiny, fast settings: 32 px input, 2 held-out pairs, batches of 4.
FAST = dict(arch='unet', arch_kwargs={'size': 'tiny'}, input_res=32, batch=4, lr=1e-3, tick_kimg=0.004, snap=1,
            seed=0, reuse=2, val_seeds=[0, 1], grid=2, w_stats_samples=200)
FAST_CLI = ['--arch', 'unet', '--input-res', 32, '--batch', 4, '--reuse', 2, '--val-seeds', '0-1',
            '--device', 'cpu']


def _weights(path):
    return torch.load(path, weights_only=True)['state_dict']


def test_lr_rampdown_schedule():
    assert loop.lr_factor(0.5, 0.0, 0.0) == 1.0  # no ramp-down
    assert loop.lr_factor(0.69, 0.0, 0.3) == 1.0  # before the last 30 %
    assert loop.lr_factor(0.85, 0.0, 0.3) == pytest.approx(0.5)  # halfway down the cosine
    assert loop.lr_factor(1.0, 0.0, 0.3) == pytest.approx(0.0)
    # A time budget that ends training before --kimg drives the ramp instead.
    assert loop.lr_factor(0.1, 0.85, 0.3) == pytest.approx(0.5)
    factors = [loop.lr_factor(t / 100, 0.0, 1.0) for t in range(101)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


@pytest.mark.eg3d
def test_train_run_folder_and_snapshot(tmp_path, tiny_pkl, tiny_G):
    proc = run_cli('train', '--network', tiny_pkl, '--outdir', tmp_path, '--kimg', 0.008, '--tick', 0.004,
                   '--snap', 1, *FAST_CLI)
    assert proc.returncode == 0, proc.stderr
    (run,) = tmp_path.iterdir()
    assert run.name == '00000-unet-synth-gpus1-batch4'
    files = {p.name for p in run.iterdir()}
    assert {'training_options.json', 'log.txt', 'stats.jsonl', 'regressor-snapshot-000000.pt',
            'val-grid-000000.png'} <= files
    assert any(f.startswith('events.out.tfevents') for f in files)  # tensorboard is installed in the test env
    opts = json.loads((run / 'training_options.json').read_text())
    assert opts['arch'] == 'unet' and opts['batch'] == 4 and opts['val_seeds'] == [0, 1]
    stats = [json.loads(l) for l in (run / 'stats.jsonl').read_text().splitlines()]
    assert [s['Progress/nimg'] for s in stats] == [4, 8]
    for key in ('Val/w_l1_norm', 'Val/w_l1', 'Val/pose_err_deg', 'Val/baseline_w_l1_norm', 'Loss/w_l1', 'Loss/pose'):
        assert key in stats[-1]
    assert 'tick 2' in (run / 'log.txt').read_text()
    ckpt = torch.load(run / 'regressor-snapshot-000000.pt', weights_only=True)
    assert ckpt['state']['cur_nimg'] == 8 and ckpt['arch'] == 'unet'
    # The network standardises its input with 64 images rendered for it, the same on every rank.
    from eg3d_regressor_plugin.training.data import PairSampler
    imgs = PairSampler(tiny_G, 32).sample(sources.RenderSource.STAT_IMAGES, 0, sources.INPUT_STATS_KEY)['img']
    assert torch.allclose(ckpt['state_dict']['input_mean'][0], imgs.mean(0), atol=1e-5)
    assert 'Input statistics from 64 training images' in (run / 'log.txt').read_text()
    pred = checkpoint.load_regressor(run / 'regressor-snapshot-000000.pt', G=tiny_G)
    w, pose = pred(torch.zeros(1, 3, 64, 64))
    assert w.shape == (1, 14, 512) and pose.shape == (1, 2)


@pytest.mark.eg3d
def test_resume_continues_exactly(tmp_path, tiny_pkl):
    a, c = tmp_path / 'a', tmp_path / 'c'
    a.mkdir(), c.mkdir()
    loop.training_loop(a, tiny_pkl, kimg=0.008, **FAST)  # 2 steps, then stop
    snap = a / 'regressor-snapshot-000000.pt'
    first = _weights(snap)
    loop.training_loop(a, tiny_pkl, kimg=0.016, resume=snap, **FAST)  # 2 more
    loop.training_loop(c, tiny_pkl, kimg=0.016, **FAST)  # 4 in one go
    resumed, straight = torch.load(snap, weights_only=True), torch.load(c / snap.name, weights_only=True)
    assert resumed['state']['cur_nimg'] == straight['state']['cur_nimg'] == 16
    assert resumed['state']['step'] == 4 and resumed['state']['cur_tick'] == 4
    assert any(not torch.equal(first[k], resumed['state_dict'][k]) for k in first)
    for k, v in straight['state_dict'].items():
        assert torch.allclose(resumed['state_dict'][k], v, atol=1e-6), k
    assert 'Resuming from' in (a / 'log.txt').read_text()


@pytest.mark.eg3d
def test_train_from_a_dataset_zip(tmp_path, tiny_pkl, tiny_G):
    from eg3d_regressor_plugin.training.dataset_writer import make_dataset_zip
    zip_path = make_dataset_zip(tiny_G, tmp_path / 'pairs.zip', count=4, batch=4, resolution=32, progress=False)
    run = tmp_path / 'run'
    run.mkdir()
    loop.training_loop(run, tiny_pkl, kimg=0.012, data_zip=zip_path, workers=0, **FAST)  # 3 steps: one epoch wraps
    stats = [json.loads(l) for l in (run / 'stats.jsonl').read_text().splitlines()]
    assert stats[-1]['Progress/nimg'] == 12 and stats[-1]['Progress/rendered_this_session'] == 0
    snap = torch.load(run / 'regressor-snapshot-000000.pt', weights_only=True)
    assert snap['state']['step'] == 3
    # Input statistics from the dataset's images (all 4 of them here).
    from eg3d_regressor_plugin.training.data import PairDataset
    ds = PairDataset(zip_path)
    imgs = torch.stack([ds[i]['img'] for i in range(4)])
    assert torch.allclose(snap['state_dict']['input_mean'][0], imgs.mean(0), atol=1e-6)
    assert torch.allclose(snap['state_dict']['input_std'][0], imgs.std(0).clamp_min(0.1 * float(imgs.std(0).mean())),
                          atol=1e-6)


@pytest.mark.eg3d
@pytest.mark.slow
def test_kill_9_then_resume_latest(tmp_path, tiny_pkl):
    args = ['train', '--network', tiny_pkl, '--outdir', tmp_path, '--tick', 0.004, '--snap', 1, *FAST_CLI]
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    proc = subprocess.Popen([sys.executable, '-m', 'eg3d_regressor_plugin.cli', *map(str, args), '--kimg', '1'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            runs = list(tmp_path.glob('00000-*'))
            stats = runs[0] / 'stats.jsonl' if runs else None
            if stats and stats.is_file() and len(stats.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    (run,) = tmp_path.iterdir()
    killed_at = max(json.loads(l)['Progress/nimg'] for l in (run / 'stats.jsonl').read_text().splitlines()
                    if l.strip().endswith('}'))
    done = run_cli(*args, '--kimg', (killed_at + 8) / 1000, '--resume', 'latest')
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == [run]  # continued in the same run folder
    assert not list(run.glob('.*tmp*'))
    log = (run / 'log.txt').read_text()
    assert 'Resuming from' in log and log.count('Run folder') == 2
    nimgs = [json.loads(l)['Progress/nimg'] for l in (run / 'stats.jsonl').read_text().splitlines()]
    assert nimgs == sorted(set(nimgs)) and nimgs[-1] == killed_at + 8
    ckpt = torch.load(run / 'regressor-snapshot-000000.pt', weights_only=True)
    assert ckpt['state']['cur_nimg'] == killed_at + 8


@pytest.mark.eg3d
@pytest.mark.slow
def test_two_process_gloo_ddp(tmp_path, tiny_pkl):
    proc = run_cli('train', '--network', tiny_pkl, '--outdir', tmp_path, '--kimg', 0.016, '--tick', 0.008,
                   '--snap', 1, '--gpus', 2, *FAST_CLI)
    assert proc.returncode == 0, proc.stderr
    (run,) = tmp_path.iterdir()
    assert run.name == '00000-unet-synth-gpus2-batch4'
    log = (run / 'log.txt').read_text()
    assert 'the 2 ranks hold identical weights' in log
    assert log.count('tick ') == 2  # only rank 0 writes
    ckpt = torch.load(run / 'regressor-snapshot-000000.pt', weights_only=True)
    assert ckpt['state']['cur_nimg'] == 16 and ckpt['state']['world'] == 2


@pytest.mark.eg3d
@pytest.mark.slow
def test_ddp_time_budget_with_lr_rampdown_keeps_ranks_identical(tmp_path, tiny_pkl):
    # Each rank measures its own training time; the lr ramp and the stop must follow one clock.
    from eg3d_regressor_plugin.training import launch
    kwargs = dict(FAST, run_dir=str(tmp_path), network_pkl=str(tiny_pkl), kimg=100.0, time_budget=4.0,
                  lr_rampdown=1.0, tick_kimg=0.04, snap=100)
    torch.multiprocessing.spawn(fn=launch.subprocess_fn, args=(kwargs, torch.device('cpu'), 2, str(tmp_path)),
                                nprocs=2)
    log = (tmp_path / 'log.txt').read_text()
    assert 'the 2 ranks hold identical weights' in log
    ckpt = torch.load(next(tmp_path.glob('regressor-snapshot-*.pt')), weights_only=True)
    assert ckpt['state']['train_time'] >= 4.0 and ckpt['state']['cur_nimg'] < 100_000


@pytest.mark.eg3d
def test_bad_options_are_one_line_errors(tmp_path, tiny_pkl):
    base = ['train', '--outdir', tmp_path, '--device', 'cpu']
    cases = [
        (['--network', tiny_pkl, '--arch', 'resnet'], 'unknown architecture'),
        (['--network', tiny_pkl, '--batch', 5, '--gpus', 2], 'not divisible'),
        (['--network', tmp_path / 'missing.pkl'], 'not found'),
        (['--network', tiny_pkl, '--data', tmp_path / 'missing.zip'], 'not found'),
        (['--network', tiny_pkl, '--resume', 'latest'], 'no run folder'),
        (['--network', tiny_pkl, '--arch-opt', 'size=huge'], 'unknown size'),
        (['--network', tiny_pkl, '--lr-rampdown', 1.5], 'between 0 and 1'),
    ]
    (tmp_path / 'junk.zip').write_text('not a zip')
    cases.append((['--network', tiny_pkl, '--data', tmp_path / 'junk.zip'], 'not a zip'))
    for extra, message in cases:
        line = assert_one_line_error(run_cli(*base, *extra))
        assert message in line, (extra, line)
    assert not list(tmp_path.glob('0*'))  # no run folder was made
