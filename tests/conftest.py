"""Shared fixtures. Tests that need EG3D carry `@pytest.mark.eg3d` and are skipped, with the
reason, when no checkout is found (EG3D_ROOT or ../eg3d)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eg3d_regressor_plugin import bridge, fingerprint, presets
from eg3d_regressor_plugin.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def _find_eg3d():
    try:
        return bridge.find_eg3d(), None
    except UserError as e:
        return None, e.message


EG3D_ROOT, EG3D_MISSING = _find_eg3d()


def pytest_collection_modifyitems(config, items):
    if EG3D_ROOT is not None:
        return
    skip = pytest.mark.skip(reason=f'needs an EG3D checkout: {EG3D_MISSING}')
    for item in items:
        if 'eg3d' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def eg3d_root():
    return bridge.import_eg3d()


@pytest.fixture(scope='session')
def tiny_networks(eg3d_root):
    """A randomly initialised `tiny` generator (128 px, 14 x 512 w) and its discriminator, CPU."""
    return presets.build_networks('tiny', seed=0, w_avg_samples=2000)


@pytest.fixture(scope='session')
def tiny_G(tiny_networks):
    return tiny_networks[0]


@pytest.fixture(scope='session')
def tiny_pkl(tmp_path_factory, tiny_networks):
    """The same generator written as an EG3D network pickle."""
    path = tmp_path_factory.mktemp('net') / 'tiny.pkl'
    presets.save_network_pkl(path, *tiny_networks)
    return path


def run_cli(*args, cwd=None, env=None, timeout=900):
    """Run `python -m eg3d_regressor_plugin.cli ARGS` in a subprocess; returns CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault('PYTHONWARNINGS', 'ignore')
    return subprocess.run([sys.executable, '-m', 'eg3d_regressor_plugin.cli', *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)


def assert_one_line_error(proc):
    """A user error: non-zero exit, one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def make_tiny_regressor(G, path, steps=30, seed=0):
    """A small U-Net regressor checkpoint for G, fitted for a few steps on 8 synthetic pairs: the
    file format is real, the quality is not the point."""
    from eg3d_regressor_plugin.training.checkpoint import normalize_w, save_checkpoint
    from eg3d_regressor_plugin.training.data import PairSampler, estimate_w_stats
    from eg3d_regressor_plugin.training.networks import build_regressor
    torch.manual_seed(seed)
    stats = estimate_w_stats(G, num=256)
    model = build_regressor('unet', num_ws=G.backbone.num_ws, w_dim=G.w_dim, input_resolution=32,
                            base_channels=8, max_channels=16, depth=2, head_channels=32)
    batch = PairSampler(G, resolution=32).sample_seeds(range(50000, 50008))
    target = normalize_w(batch['w'], stats)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        out = model(batch['img'])
        loss = (out['w'] - target).abs().mean() + (out['pose'] - batch['pose']).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_checkpoint(path, model.eval(), stats, fingerprint.generator_fingerprint(G))


@pytest.fixture(scope='session')
def tiny_regressor(tmp_path_factory, tiny_G):
    """A regressor checkpoint (.pt) for tiny_G (see make_tiny_regressor)."""
    return make_tiny_regressor(tiny_G, tmp_path_factory.mktemp('regressor') / 'tiny-regressor.pt')
