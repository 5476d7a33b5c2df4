"""The EG3D bridge: finding the checkout, the run-time fixes, loading and building networks."""

import pickle
import sys
import warnings

import pytest
import torch

from conftest import assert_one_line_error, run_cli
from eg3d_regressor_plugin import cameras
from eg3d_regressor_plugin import bridge, devices, fingerprint, presets
from eg3d_regressor_plugin.training import networks
from eg3d_regressor_plugin.errors import UserError


def test_missing_path_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        bridge.find_eg3d(tmp_path / 'nope')
    (tmp_path / 'notes.txt').write_text('not EG3D')
    with pytest.raises(UserError, match='is not an EG3D checkout'):
        bridge.find_eg3d(tmp_path)


def test_env_var_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv('EG3D_ROOT', str(tmp_path))
    with pytest.raises(UserError, match='EG3D_ROOT path .* is not an EG3D checkout'):
        bridge.find_eg3d()


def test_device_choice():
    assert devices.get_device('cpu').type == 'cpu'
    assert devices.get_device('auto').type in ('cpu', 'cuda')
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match='no CUDA device'):
            devices.get_device('cuda')
    with pytest.raises(UserError):
        devices.get_device('tpu')


def test_cli_lists_every_command():
    proc = run_cli('--help')
    assert proc.returncode == 0, proc.stderr
    from eg3d_regressor_plugin.cli import COMMANDS
    for name in COMMANDS:
        assert f'  {name}' in proc.stdout, f'{name} missing from --help'


def test_cli_wrong_eg3d_path(tmp_path):
    line = assert_one_line_error(run_cli('init-network', '--out', tmp_path / 'G.pkl', '--eg3d', tmp_path / 'nowhere'))
    assert 'does not exist' in line
    line = assert_one_line_error(run_cli('init-network', '--out', tmp_path / 'G.pkl', '--eg3d', tmp_path))
    assert 'not an EG3D checkout' in line
    assert not (tmp_path / 'G.pkl').exists()


@pytest.mark.eg3d
def test_both_checkout_layouts_accepted(eg3d_root):
    assert bridge.find_eg3d(eg3d_root) == eg3d_root
    if (eg3d_root.parent / 'eg3d' / 'training').is_dir() and eg3d_root.name == 'eg3d':
        assert bridge.find_eg3d(eg3d_root.parent) == eg3d_root


@pytest.mark.eg3d
def test_eg3d_modules_come_from_the_checkout(eg3d_root):
    import legacy
    import torch_utils.persistence
    import training.triplane
    for mod in (legacy, torch_utils.persistence, training.triplane):
        assert str(mod.__file__).startswith(str(eg3d_root))


@pytest.mark.eg3d
def test_forward_and_backward_through_synthesis(tiny_G):
    """Unmodified EG3D fails here on torch 2.x (in-place add in super-resolution) without the fix."""
    c = cameras.pose_to_label(0.2, -0.1)
    with torch.no_grad():
        w = tiny_G.mapping(torch.randn(1, tiny_G.z_dim, generator=torch.Generator().manual_seed(1)), cameras.frontal_label(1))
    w = w.clone().requires_grad_(True)
    out = tiny_G.synthesis(w, c, noise_mode='const')
    assert out['image'].shape == (1, 3, 128, 128)
    out['image'].square().mean().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    # image_raw is the sigmoid-clamped rendering: it must stay (about) in [-1, 1].
    assert out['image_raw'].min() >= -1.01 and out['image_raw'].max() <= 1.01


@pytest.mark.eg3d
def test_custom_op_build_failure_falls_back(eg3d_root, monkeypatch):
    import torch_utils.custom_ops as custom_ops
    from torch_utils.ops import bias_act
    monkeypatch.setattr(bias_act, '_plugin', None)
    monkeypatch.setattr(bias_act, '_eg3d_plugin_failed', False, raising=False)

    def broken(*args, **kwargs):
        raise RuntimeError('nvcc not found')
    monkeypatch.setattr(custom_ops, 'get_plugin', broken)
    with pytest.warns(UserWarning, match='could not be built'):
        assert bias_act._init() is False
    assert bias_act._init() is False  # warns once, then stays on the reference path


@pytest.mark.eg3d
def test_built_custom_op_is_imported(eg3d_root, monkeypatch, tmp_path):
    """torch 2.x's cpp_extension.load no longer registers the module that EG3D's get_plugin then
    imports by name: with a load that builds nothing and behaves like torch 2.x's, the op loads."""
    import types

    import torch.utils.cpp_extension
    import torch_utils.custom_ops as custom_ops
    from torch_utils.ops import bias_act
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path))
    monkeypatch.setattr(custom_ops, '_get_mangled_gpu_name', lambda: 'test-gpu')
    monkeypatch.setattr(custom_ops, '_cached_plugins', {})
    monkeypatch.setattr(bias_act, '_plugin', None)
    monkeypatch.setattr(bias_act, '_eg3d_plugin_failed', False, raising=False)
    built = types.ModuleType('bias_act_plugin')
    loads = []

    def load(name, sources, **kwargs):  # returns the module; sys.modules does not get it
        loads.append(name)
        return built
    monkeypatch.setattr(torch.utils.cpp_extension, 'load', load)
    unwrapped = torch.utils.cpp_extension.load
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # no fallback warning
            assert bias_act._init() is True
        assert bias_act._plugin is built and loads == ['bias_act_plugin']
        assert torch.utils.cpp_extension.load is unwrapped  # only wrapped while building
    finally:
        sys.modules.pop('bias_act_plugin', None)


@pytest.mark.eg3d
def test_presets_build_with_expected_shapes(eg3d_root):
    G, D = presets.build_networks('tiny', w_avg_samples=100)
    assert G.img_resolution == 128 and G.backbone.num_ws == 14 and G.w_dim == 512
    assert 1_000_000 < networks.count_params(G) < 3_000_000
    G, D = presets.build_networks('ffhq512', w_avg_samples=0)
    # The released ffhq512-128.pkl: 30,662,136 generator parameters, 8XDC super-resolution, 128 rendering.
    assert networks.count_params(G) == 30_662_136
    assert type(G.superresolution).__name__ == 'SuperresolutionHybrid8XDC'
    assert G.neural_rendering_resolution == 128 and G.backbone.num_ws == 14
    shapes = {k: tuple(v.shape) for k, v in G.named_parameters()}
    assert shapes['backbone.synthesis.b4.const'] == (512, 4, 4)
    assert shapes['superresolution.block1.torgb.weight'] == (3, 128, 1, 1)
    assert shapes['backbone.mapping.embed.weight'] == (512, 25)


@pytest.mark.eg3d
def test_calibrated_preset_renders_opaque_images_that_depend_on_w(tiny_G):
    """EG3D's own initialisation renders largely clamped (black or white) frames; calibrate_init
    undoes that (and its inverse gives the plain initialisation back)."""
    import copy
    from eg3d_regressor_plugin.training.data import PairSampler

    def renders(G):
        img = PairSampler(G).sample_seeds([0, 1])['img']
        return float((img.abs() >= 0.99).float().mean()), float((img[0] - img[1]).abs().mean())
    clamped, diff = renders(tiny_G)
    assert clamped < 0.05 and diff > 0.01
    plain = presets.calibrate_init(copy.deepcopy(tiny_G), style_gain=1 / presets.STYLE_GAIN,
                                  density_bias=-presets.DENSITY_BIAS)
    assert renders(plain)[0] > 0.4  # 53 % here
    assert tiny_G.z_dim == 32 and networks.count_params(plain) == networks.count_params(tiny_G)


@pytest.mark.eg3d
def test_init_network_pickle_loads_with_eg3d_legacy(tmp_path, eg3d_root):
    out = tmp_path / 'G.pkl'
    proc = run_cli('init-network', '--preset', 'tiny', '--out', out, '--seed', '3')
    assert proc.returncode == 0, proc.stderr
    import legacy
    with open(out, 'rb') as f:
        data = legacy.load_network_pkl(f)
    for key in ('G', 'D', 'G_ema'):
        assert isinstance(data[key], torch.nn.Module)
    G = bridge.load_generator(out)
    assert bridge.is_triplane_generator(G)
    c = cameras.frontal_label(1)
    with torch.no_grad():
        img = G.synthesis(G.mapping(torch.randn(1, G.z_dim), c), c)['image']
    assert img.shape == (1, 3, 128, 128) and torch.isfinite(img).all()
    # Same seed, same weights.
    proc = run_cli('init-network', '--preset', 'tiny', '--out', tmp_path / 'G2.pkl', '--seed', '3')
    G2 = bridge.load_generator(tmp_path / 'G2.pkl')
    assert fingerprint.generator_fingerprint(G) == fingerprint.generator_fingerprint(G2)


@pytest.mark.eg3d
def test_reload_modules_rebuilds_from_checkout_class(tiny_pkl):
    from training.triplane import TriPlaneGenerator
    G = bridge.load_generator(tiny_pkl, reload_modules=True)
    assert isinstance(G, TriPlaneGenerator)
    G0 = bridge.load_generator(tiny_pkl)
    for (n, a), (_, b) in zip(G0.named_parameters(), G.named_parameters()):
        assert torch.equal(a, b), n
    pickle.dumps(G)  # a rebuilt generator can be pickled again


@pytest.mark.eg3d
def test_bad_pickles_are_refused(tmp_path, eg3d_root):
    cases = {
        'missing.pkl': (None, 'not found'),
        'empty.pkl': (b'', 'empty'),
        'junk.pkl': (b'this is not a pickle at all', 'not a network pickle'),
        'list.pkl': (pickle.dumps([1, 2, 3]), 'not an EG3D snapshot'),
        'noema.pkl': (pickle.dumps({'G': 1}), 'no G_ema'),
    }
    for name, (content, msg) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match=msg):
            bridge.load_generator(tmp_path / name)
    # A real snapshot whose G_ema is not a TriPlaneGenerator.
    with open(tmp_path / 'wrong.pkl', 'wb') as f:
        pickle.dump(dict(G=torch.nn.Linear(2, 2), D=torch.nn.Linear(2, 2), G_ema=torch.nn.Linear(2, 2)), f)
    with pytest.raises(UserError, match='not an EG3D TriPlaneGenerator'):
        bridge.load_generator(tmp_path / 'wrong.pkl')


@pytest.mark.eg3d
def test_identity_check(tiny_G):
    ident = fingerprint.generator_fingerprint(tiny_G)
    fingerprint.check_fingerprint(ident, tiny_G)
    with pytest.raises(UserError, match='another generator'):
        fingerprint.check_fingerprint(dict(ident, w_avg_sha='0' * 16), tiny_G)


@pytest.mark.eg3d
def test_doctor_exits_zero():
    proc = run_cli('doctor', '--device', 'cpu')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'EG3D:' in proc.stdout and 'render:  ok' in proc.stdout


def test_eg3d_commit_only_for_eg3d_own_repository(tmp_path):
    """The commit of a git checkout of EG3D (code folder eg3d/ in it, or the repository itself);
    none for an archive, or a copy unpacked inside another project's repository."""
    import os
    import shutil
    import subprocess
    if shutil.which('git') is None:
        pytest.skip('needs git')

    def commit_all(repo):
        env = dict(GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@t', GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@t')
        for args in (['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'x']):
            subprocess.run(['git', '-C', str(repo), *args], check=True, env={**os.environ, **env})
        return subprocess.run(['git', '-C', str(repo), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()

    code = tmp_path / 'eg3d' / 'eg3d'
    code.mkdir(parents=True)
    (code / 'camera_utils.py').write_text('')
    assert bridge.eg3d_commit(code) is None  # not under git
    head = commit_all(tmp_path / 'eg3d')
    assert bridge.eg3d_commit(code) == head and bridge.eg3d_commit(tmp_path / 'eg3d') == head
    project = tmp_path / 'project'
    shutil.copytree(tmp_path / 'eg3d' / 'eg3d', project / '.eg3d' / 'eg3d' / 'eg3d')
    commit_all(project)
    assert bridge.eg3d_commit(project / '.eg3d' / 'eg3d' / 'eg3d') is None
