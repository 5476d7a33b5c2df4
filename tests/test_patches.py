"""patches/: each applies cleanly to the pinned EG3D commit, and the plugin and EG3D's own
gen_samples.py work on the patched checkout on a CPU."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

PATCHES = sorted((REPO / 'patches').glob('*.patch'))
pytestmark = pytest.mark.eg3d


def _git_apply(args, cwd):
    return subprocess.run(['git', 'apply', *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope='module')
def patched_checkout(tmp_path_factory, eg3d_root):
    if shutil.which('git') is None:
        pytest.skip('git is needed to apply the patches')
    root = tmp_path_factory.mktemp('patched')
    shutil.copytree(eg3d_root, root / 'eg3d', ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    for patch in PATCHES:
        proc = _git_apply([str(patch)], root)
        assert proc.returncode == 0, f'{patch.name} does not apply: {proc.stderr}'
    return root


def test_there_are_patches():
    assert [p.name[:4] for p in PATCHES] == ['0001', '0002', '0003', '0004']
    readme = (REPO / 'patches' / 'README.md').read_text()
    for p in PATCHES:
        assert p.name in readme, f'{p.name} is not described in patches/README.md'


def test_each_patch_applies_alone(tmp_path, eg3d_root):
    for patch in PATCHES:
        root = tmp_path / patch.stem
        shutil.copytree(eg3d_root, root / 'eg3d', ignore=shutil.ignore_patterns('__pycache__'))
        proc = _git_apply(['--check', str(patch)], root)
        assert proc.returncode == 0, f'{patch.name}: {proc.stderr}'


def _run(code, root, timeout=600):
    env = dict(os.environ, EG3D_ROOT=str(root), PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=timeout)


def test_plugin_works_on_patched_checkout(patched_checkout):
    code = '''
import torch
from eg3d_regressor_plugin import bridge, cameras, presets
root = bridge.import_eg3d()
import training.triplane as t
assert str(t.__file__).startswith(str(root)), t.__file__
G, D = presets.build_networks('tiny', w_avg_samples=100)
c = cameras.pose_to_label(0.1, 0.0)
w = G.mapping(torch.randn(1, G.z_dim), cameras.frontal_label(1)).detach().requires_grad_(True)
out = G.synthesis(w, c)
out['image'].mean().backward()
assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
assert out['image_raw'].min() >= -1.01
print('ok', root)
'''
    proc = _run(code, patched_checkout)
    assert proc.returncode == 0, proc.stderr
    assert str(patched_checkout) in proc.stdout


def test_eg3d_gen_samples_runs_on_cpu_when_patched(patched_checkout, tiny_pkl, tmp_path):
    proc = subprocess.run([sys.executable, 'gen_samples.py', '--network', str(tiny_pkl), '--seeds', '0',
                           '--outdir', str(tmp_path / 'out'), '--shapes', 'True', '--shape-res', '32',
                           '--reload_modules', 'True'],
                          cwd=patched_checkout / 'eg3d', capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / 'out' / 'seed0000.png').is_file() and (tmp_path / 'out' / 'seed0000.mrc').is_file()


def test_patched_custom_ops_use_the_module_load_returns(patched_checkout, tmp_path):
    """EG3D's own get_plugin, patched and without the plugin: with a load() that behaves like
    torch 2.x's (the module is returned, not put in sys.modules), the op still loads."""
    code = f'''
import sys, types
sys.path.insert(0, {str(patched_checkout / 'eg3d')!r})
import torch.utils.cpp_extension
import torch_utils.custom_ops as custom_ops
from torch_utils.ops import bias_act
built = types.ModuleType('bias_act_plugin')
torch.utils.cpp_extension.load = lambda name, sources, **kwargs: built
custom_ops._get_mangled_gpu_name = lambda: 'test-gpu'
assert bias_act._init() is True and bias_act._plugin is built
assert 'bias_act_plugin' not in sys.modules
print('ok')
'''
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path), PYTHONWARNINGS='ignore')
    env.pop('EG3D_ROOT', None)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-2000:]
