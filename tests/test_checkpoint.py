"""Regressor checkpoints: weights-only round trip, latent normalisation, RNG state, the one-line
errors for bad files, the mismatched-generator refusal and the Predictor."""

import pickle
import random

import numpy as np
import pytest
import torch

from eg3d_regressor_plugin.errors import UserError
from eg3d_regressor_plugin.training.checkpoint import (FORMAT, Predictor, build_from_checkpoint, capture_rng_state,
                                                       denormalize_w, load_checkpoint, load_regressor,
                                                       normalize_w, restore_rng_state, save_checkpoint)
from eg3d_regressor_plugin.training.networks import build_regressor

NUM_WS, W_DIM = 14, 32
FAKE_GENERATOR = dict(num_ws=NUM_WS, w_dim=W_DIM, img_resolution=128, w_avg_sha='0123456789abcdef')


def _model(arch='vit', **kwargs):
    torch.manual_seed(0)
    small = dict(vit=dict(dim=32, depth=1, heads=2), unet=dict(base_channels=4, max_channels=16, head_channels=16),
                 psp=dict(base_channels=4, blocks=[1, 1, 1, 1], style_channels=8))[arch]
    return build_regressor(arch, num_ws=NUM_WS, w_dim=W_DIM, input_resolution=64, **dict(small, **kwargs))


def _stats(num_ws=NUM_WS, w_dim=W_DIM):
    g = torch.Generator().manual_seed(1)
    return {'center': torch.randn(1, w_dim, generator=g).repeat(num_ws, 1),
            'scale': torch.rand(num_ws, w_dim, generator=g) + 0.5}


def _images(n, res, seed=0):
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _train_step(model):
    """One optimizer step, so that the optimizer has state and the weights are no longer the init."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model(_images(2, model.input_resolution))
    ((out['w'] - 1).abs().mean() + out['pose'].abs().mean()).backward()
    opt.step()
    return opt


def _user_error(fn, *args, **kwargs):
    with pytest.raises(UserError) as e:
        fn(*args, **kwargs)
    message = e.value.message
    assert '\n' not in message and 'Traceback' not in message
    return message


@pytest.mark.parametrize('arch', ['vit', 'unet', 'psp'])
def test_round_trip_weights_only(tmp_path, arch):
    model = _model(arch)
    opt = _train_step(model)
    path = tmp_path / 'runs' / 'regressor.pt'
    state = dict(optimizer=opt.state_dict(), cur_nimg=1234, cur_tick=5, rng=capture_rng_state())
    save_checkpoint(path, model, _stats(), FAKE_GENERATOR, state=state, meta=dict(kimg=1.234, batch=2, note=None))

    raw = torch.load(path, weights_only=True)  # loads without running code
    assert raw['format'] == FORMAT and raw['arch'] == arch and raw['generator'] == FAKE_GENERATOR
    assert raw['meta'] == dict(kimg=1.234, batch=2, note=None) and raw['state']['cur_nimg'] == 1234
    assert [p.name for p in path.parent.iterdir()] == ['regressor.pt']  # no temp file left

    ckpt = load_checkpoint(path)
    rebuilt = build_from_checkpoint(ckpt)
    assert rebuilt.config == model.config and not rebuilt.training
    x = _images(3, 64)
    model.eval()  # the same mode, so the transformer takes the same (fast inference) path
    with torch.no_grad():
        assert torch.equal(rebuilt(x)['w'], model(x)['w']) and torch.equal(rebuilt(x)['pose'], model(x)['pose'])
    # The optimizer resumes from the stored state.
    opt2 = torch.optim.Adam(rebuilt.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt['state']['optimizer'])
    first = next(iter(opt.state.values()))['exp_avg']
    assert torch.equal(next(iter(opt2.state.values()))['exp_avg'], first)


def test_checkpoint_holds_no_module_prefix_or_gpu_tensors(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / 'a.pt', torch.nn.DataParallel(model), _stats(), FAKE_GENERATOR)
    ckpt = load_checkpoint(tmp_path / 'a.pt')
    assert list(ckpt['state_dict']) == list(model.state_dict())
    assert ckpt['state'] is None and ckpt['meta'] is None


def test_unloadable_state_is_refused_before_writing(tmp_path):
    path = tmp_path / 'a.pt'
    save_checkpoint(path, _model(), _stats(), FAKE_GENERATOR, meta=dict(kimg=1))
    before = path.read_bytes()
    with pytest.raises(TypeError, match='weights_only'):
        save_checkpoint(path, _model(), _stats(), FAKE_GENERATOR, state=dict(noise=np.zeros(3)))
    with pytest.raises(TypeError):
        save_checkpoint(path, _model(), _stats(), FAKE_GENERATOR, meta=dict(array=np.zeros(3)))  # not JSON-able
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['a.pt']


def test_normalize_denormalize():
    stats = _stats()
    w = torch.randn(4, NUM_WS, W_DIM) * 3 + 1
    assert torch.allclose(denormalize_w(normalize_w(w, stats), stats), w, atol=1e-5)
    assert torch.allclose(normalize_w(stats['center'].expand(2, -1, -1), stats), torch.zeros(2, NUM_WS, W_DIM))
    # Per dimension: the offset is divided by that dimension's scale.
    assert torch.allclose(normalize_w(stats['center'] + stats['scale'], stats), torch.ones(NUM_WS, W_DIM))
    assert normalize_w(w.double(), stats).dtype == torch.float64  # follows w's dtype and device


def _draws():
    return (torch.rand(5), torch.randn(3), np.random.rand(5), np.random.randn(3),
            random.random(), random.gauss(0, 1), random.getrandbits(64))


def _same(a, b):
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y)
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y)
        else:
            assert x == y


def test_rng_capture_restore_through_a_checkpoint(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.randn(1), random.gauss(0, 1)  # leave a cached Gaussian in numpy's and Python's state
    path = tmp_path / 'rng.pt'
    save_checkpoint(path, _model(), _stats(), FAKE_GENERATOR, state=dict(rng=capture_rng_state()))
    expected = _draws()
    assert not torch.equal(_draws()[0], expected[0])  # the generators did move on
    restore_rng_state(load_checkpoint(path)['state']['rng'])
    _same(_draws(), expected)


def test_rng_restore_ignores_missing_parts():
    torch.manual_seed(0)
    state = capture_rng_state()
    a = torch.rand(3)
    restore_rng_state({'torch': state['torch']})
    assert torch.equal(torch.rand(3), a)


def test_bad_files_are_one_line_user_errors(tmp_path):
    good = tmp_path / 'good.pt'
    save_checkpoint(good, _model(), _stats(), FAKE_GENERATOR)

    assert 'not found' in _user_error(load_checkpoint, tmp_path / 'missing.pt')
    assert 'not a file' in _user_error(load_checkpoint, tmp_path)
    (tmp_path / 'empty.pt').touch()
    assert 'empty' in _user_error(load_checkpoint, tmp_path / 'empty.pt')
    (tmp_path / 'text.pt').write_text('hello\n')
    assert 'not a torch file' in _user_error(load_checkpoint, tmp_path / 'text.pt')
    with open(tmp_path / 'net.pkl', 'wb') as f:
        pickle.dump({'G_ema': [1, 2, 3]}, f)  # the shape of an EG3D network pickle
    assert '--network' in _user_error(load_checkpoint, tmp_path / 'net.pkl')
    data = good.read_bytes()
    (tmp_path / 'truncated.pt').write_bytes(data[:len(data) // 2])
    assert 'truncated or corrupt' in _user_error(load_checkpoint, tmp_path / 'truncated.pt')

    torch.save({'x': torch.zeros(2)}, tmp_path / 'foreign.pt')
    assert 'not an eg3d-regressor checkpoint' in _user_error(load_checkpoint, tmp_path / 'foreign.pt')
    torch.save(torch.zeros(2), tmp_path / 'tensor.pt')
    assert 'not an eg3d-regressor checkpoint' in _user_error(load_checkpoint, tmp_path / 'tensor.pt')
    torch.save(dict(format='eg3d-regressor/99'), tmp_path / 'future.pt')
    assert 'newer' in _user_error(load_checkpoint, tmp_path / 'future.pt')
    torch.save(dict(format=FORMAT, arch='vit'), tmp_path / 'partial.pt')
    assert 'missing config' in _user_error(load_checkpoint, tmp_path / 'partial.pt')
    torch.save(dict(format=FORMAT, obj=torch.nn.Identity()), tmp_path / 'objects.pt')
    assert 'Python objects' in _user_error(load_checkpoint, tmp_path / 'objects.pt')


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = tmp_path / 'a.pt'
    save_checkpoint(path, _model(), _stats(), FAKE_GENERATOR)
    ckpt = load_checkpoint(path)
    ckpt['config']['depth'] = 2
    assert 'does not match' in _user_error(build_from_checkpoint, ckpt)
    ckpt['config']['arch'] = 'resnet'
    assert 'unknown regressor architecture' in _user_error(build_from_checkpoint, ckpt)
    save_checkpoint(path, _model(), _stats(num_ws=5), FAKE_GENERATOR)
    assert 'latent statistics' in _user_error(load_regressor, path)


@pytest.mark.parametrize('missing', [('block', 'head'), ('head',)])
def test_unet_checkpoint_from_before_an_option_loads_as_built(tmp_path, missing):
    # UNet checkpoints written before `block` existed have plain double convs and the strided
    # head, with neither key; those written before `head` existed have the strided head.
    former = dict(block='plain', head='strided')
    model = _model('unet', **{k: former[k] for k in missing})
    path = tmp_path / 'a.pt'
    save_checkpoint(path, model, _stats(), FAKE_GENERATOR)
    ckpt = load_checkpoint(path)
    for key in missing:
        del ckpt['config'][key]
    old = build_from_checkpoint(ckpt)
    assert old.config == model.config
    x = _images(2, 64)
    with torch.no_grad():
        assert torch.equal(old(x)['w'], model.eval()(x)['w'])
    assert _model('unet').config['block'] == 'residual' and _model('unet').config['head'] == 'full'  # new ones


def test_checkpoint_without_input_statistics_loads_as_identity(tmp_path):
    # Checkpoints written before the networks standardised their input.
    model = _model('psp')
    model.set_input_stats(torch.rand(8, 3, *model.input_mean.shape[-2:]))
    path = tmp_path / 'a.pt'
    save_checkpoint(path, model, _stats(), FAKE_GENERATOR)
    ckpt = load_checkpoint(path)
    assert torch.equal(build_from_checkpoint(ckpt).input_mean, model.input_mean)
    for key in ('input_mean', 'input_std'):
        del ckpt['state_dict'][key]
    old = build_from_checkpoint(ckpt)
    assert torch.all(old.input_mean == 0) and torch.all(old.input_std == 1)
    assert torch.equal(old.state_dict()['stem.0.weight'], model.state_dict()['stem.0.weight'])


def test_predictor_resizes_and_denormalises(tmp_path):
    model = _model('unet')
    _train_step(model)
    stats = _stats()
    path = tmp_path / 'a.pt'
    save_checkpoint(path, model, stats, FAKE_GENERATOR)
    pred = load_regressor(path, device='cpu')
    assert isinstance(pred, Predictor) and pred.input_resolution == 64 and pred.device == torch.device('cpu')
    assert (pred.arch, pred.num_ws, pred.w_dim) == ('unet', NUM_WS, W_DIM)
    for res in (40, 64, 150):  # smaller, equal and larger than the network's input
        img = _images(2, res, seed=res)
        w, pose = pred(img)
        assert w.shape == (2, NUM_WS, W_DIM) and pose.shape == (2, 2) and not w.requires_grad
        small = img if res == 64 else torch.nn.functional.interpolate(img, size=(64, 64), mode='bilinear',
                                                                       antialias=True)
        with torch.no_grad():
            out = model(small)
        assert torch.allclose(w, denormalize_w(out['w'], stats), atol=1e-5)
        assert torch.allclose(pose, out['pose'], atol=1e-6)
    w3, _ = pred(_images(1, 80)[0])  # a single [3, H, W] image
    assert w3.shape == (1, NUM_WS, W_DIM)


def test_predictor_untrained_predicts_the_center_and_passes_gradients(tmp_path):
    stats = _stats()
    save_checkpoint(tmp_path / 'a.pt', _model('psp'), stats, FAKE_GENERATOR)
    pred = load_regressor(tmp_path / 'a.pt')
    w, _ = pred(_images(2, 64))
    assert (w - stats['center']).abs().max() < 0.1 * stats['scale'].max()
    img = _images(2, 96).requires_grad_(True)
    w, pose = pred.regress(img, grad=True)
    (w.sum() + pose.sum()).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is not None for p in pred.model.parameters())


def test_checkpoint_module_imports_without_eg3d():
    import subprocess
    import sys
    code = ('import sys; import eg3d_regressor_plugin.training.checkpoint, eg3d_regressor_plugin.training.networks; '
            'bad = [m for m in ("dnnlib", "torch_utils", "legacy", "camera_utils", "training") if m in sys.modules]; '
            'assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True)


@pytest.mark.eg3d
def test_mismatched_generator_is_refused(tmp_path, tiny_G):
    from eg3d_regressor_plugin import fingerprint
    identity = fingerprint.generator_fingerprint(tiny_G)
    stats = _stats(identity['num_ws'], identity['w_dim'])
    model = build_regressor('vit', num_ws=identity['num_ws'], w_dim=identity['w_dim'], input_resolution=64,
                            dim=32, depth=1, heads=2)
    good = tmp_path / 'good.pt'
    save_checkpoint(good, model, stats, identity)
    assert load_regressor(good, G=tiny_G).ckpt['generator'] == identity

    other = dict(identity, w_avg_sha='f' * 16)  # trained for another generator of the same shape
    bad = tmp_path / 'other.pt'
    save_checkpoint(bad, model, stats, other)
    message = _user_error(load_regressor, bad, G=tiny_G)
    assert 'w_avg_sha' in message and str(bad) in message
    save_checkpoint(bad, model, stats, dict(identity, img_resolution=512))
    assert 'img_resolution 512' in _user_error(load_regressor, bad, G=tiny_G)
