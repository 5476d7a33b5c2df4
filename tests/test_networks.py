"""Regressor networks: shapes, gradients, the near-w_avg start, rebuilding from config, errors.
Pure PyTorch: no EG3D checkout needed."""

import json

import pytest
import torch

from eg3d_regressor_plugin.errors import UserError
from eg3d_regressor_plugin.training import networks
from eg3d_regressor_plugin.training.networks import ARCHS, build_regressor

# Narrow versions of each architecture, so that shape and gradient tests take milliseconds.
SMALL = {
    'vit': dict(dim=32, depth=2, heads=2),
    'unet': dict(base_channels=4, max_channels=16, head_channels=16),
    'psp': dict(base_channels=4, blocks=[1, 1, 1, 1], style_channels=8),
}


def _images(n, res, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, res, res, generator=g) * 2 - 1


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('res', [128, 224, 256])
@pytest.mark.parametrize('single_w', [False, True])
def test_output_shapes(arch, res, single_w):
    torch.manual_seed(0)
    model = build_regressor(arch, num_ws=14, w_dim=64, input_resolution=res, single_w=single_w, **SMALL[arch])
    out = model(_images(2, res))
    assert set(out) == {'w', 'pose'}
    assert out['w'].shape == (2, 14, 64) and out['pose'].shape == (2, 2)
    assert torch.isfinite(out['w']).all() and torch.isfinite(out['pose']).all()
    levels_equal = torch.equal(out['w'], out['w'][:, :1].expand_as(out['w']))
    assert levels_equal == single_w  # W space: one w broadcast; W+: levels differ
    assert (model.arch, model.input_resolution, model.num_ws, model.w_dim) == (arch, res, 14, 64)


@pytest.mark.parametrize('arch', ARCHS)
def test_default_size_at_128(arch):
    """The default (CPU) sizes: right shapes, a few M parameters, and an untrained net predicts
    (nearly) zero offset, i.e. w_avg, while still depending on its input."""
    torch.manual_seed(0)
    model = build_regressor(arch, input_resolution=128)
    assert model.config['size'] == 'tiny'
    assert 1e6 < networks.count_params(model) < 6e6
    with torch.no_grad():
        out = model(_images(2, 128))
    assert out['w'].shape == (2, 14, 512) and out['pose'].shape == (2, 2)
    assert out['w'].abs().max() < 0.1 and out['pose'].abs().max() < 0.1
    assert not torch.equal(out['w'][0], out['w'][1])


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('single_w', [False, True])
def test_gradients_reach_every_parameter(arch, single_w):
    torch.manual_seed(0)
    model = build_regressor(arch, num_ws=6, w_dim=32, input_resolution=64, single_w=single_w, **SMALL[arch])
    out = model(_images(2, 64))
    loss = (out['w'] - 1).abs().mean() + (out['pose'] - 0.3).abs().mean()
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f'no gradient reaches {missing}'


@pytest.mark.parametrize('block', list(networks.UNET_BLOCKS))
def test_unet_blocks(block):
    torch.manual_seed(0)
    model = build_regressor('unet', num_ws=6, w_dim=32, input_resolution=64, block=block, **SMALL['unet'])
    out = model(_images(2, 64))
    assert out['w'].shape == (2, 6, 32)
    (out['w'] - 1).abs().mean().backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if not name.startswith('pose_head'))
    # Residual blocks carry a shortcut; plain ones are the classic UNet's.
    assert any('skip' in name for name, _ in model.named_parameters()) == (block == 'residual')


@pytest.mark.parametrize('resolution', [32, 64, 256])
def test_unet_heads(resolution):
    """'full' reads the whole head map with one convolution once it is at most 8 x 8 (after
    strided convs for larger maps); 'strided' halves it down to 1 x 1 (pSp's map-to-style)."""
    for head in networks.UNET_HEADS:
        torch.manual_seed(0)
        model = build_regressor('unet', num_ws=6, w_dim=32, input_resolution=resolution, head=head, **SMALL['unet'])
        out = model(_images(2, resolution))
        assert out['w'].shape == (2, 6, 32)
        (out['w'] - 1).abs().mean().backward()
        assert all(p.grad is not None for name, p in model.named_parameters() if not name.startswith('pose_head'))
        convs = [m for m in model.head if isinstance(m, torch.nn.Conv2d)]
        size = resolution // 2 ** (model.config['depth'] - model.config['up_steps'])
        if head == 'full':
            strided = max(0, (size // 8).bit_length() - 1)  # halvings down to 8 x 8
            assert len(convs) == strided + 1 and convs[-1].kernel_size == (min(size, 8),) * 2
        else:
            assert all(c.stride == (2, 2) and c.kernel_size == (3, 3) for c in convs) and len(convs) == size.bit_length() - 1
    assert build_regressor('unet', input_resolution=64).config['head'] == 'full'  # the default


@pytest.mark.parametrize('arch', ARCHS)
def test_rebuild_from_config(arch):
    torch.manual_seed(0)
    model = build_regressor(arch, num_ws=5, w_dim=16, input_resolution=64, single_w=False, **SMALL[arch])
    config = json.loads(json.dumps(model.config))  # plain, JSON-able values
    assert config == model.config and config['arch'] == arch
    rebuilt = build_regressor(**config)
    assert rebuilt.config == model.config
    a, b = model.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    rebuilt.load_state_dict(a)
    x = _images(2, 64)
    with torch.no_grad():
        assert torch.equal(model(x)['w'], rebuilt(x)['w'])


@pytest.mark.parametrize('arch', ARCHS)
def test_size_presets_grow(arch):
    # Built on the meta device: shapes only, no memory, so even the ~200 M pSp preset is instant.
    with torch.device('meta'):
        counts = [networks.count_params(build_regressor(arch, size=s)) for s in ('tiny', 'small', 'base')]
    assert counts == sorted(counts) and len(set(counts)) == 3


@pytest.mark.parametrize('res, depth, patch', [(32, 3, 8), (48, 3, 8), (64, 4, 16), (256, 4, 16)])
def test_small_inputs_get_fewer_downsamplings_and_smaller_patches(res, depth, patch):
    # The UNet keeps a bottleneck of at least 4 x 4; the ViT at least 4 x 4 tokens.
    assert build_regressor('unet', input_resolution=res, **SMALL['unet']).config['depth'] == depth
    assert build_regressor('vit', input_resolution=res, **SMALL['vit']).config['patch_size'] == patch
    assert build_regressor('unet', input_resolution=res, depth=2, **SMALL['unet']).config['depth'] == 2


def test_explicit_options_override_the_preset():
    model = build_regressor('vit', input_resolution=64, size='small', depth=1, patch_size=8)
    assert (model.config['dim'], model.config['depth'], model.config['patch_size']) == (384, 1, 8)
    assert len(model.encoder.layers) == 1


def test_psp_level_groups():
    assert networks.psp_level_groups(14) == (3, 4, 7)  # pSp's coarse / medium / fine split
    assert networks.psp_level_groups(1) == (1, 0, 0)
    for n in range(1, 30):
        groups = networks.psp_level_groups(n)
        assert sum(groups) == n and groups[0] >= 1 and min(groups) >= 0


@pytest.mark.parametrize('args, kwargs, expect', [
    (('resnet',), {}, 'vit, unet, psp'),
    (('vit',), dict(patch=16), 'unknown option patch'),
    (('unet',), dict(base_channels=8, colour=1), 'unknown option colour'),
    (('vit',), dict(size='huge'), 'unknown size'),
    (('vit',), dict(input_resolution=250), 'multiple of patch_size'),
    (('vit',), dict(dim=100, heads=3), 'divisible by heads'),
    (('unet',), dict(input_resolution=120), 'multiple of 16'),
    (('unet',), dict(up_steps=5), 'cannot exceed depth'),
    (('unet',), dict(block='dense'), 'unknown block'),
    (('psp',), dict(input_resolution=136), 'multiple of 16'),
    (('psp',), dict(blocks=[1, 2]), 'four block counts'),
    (('psp',), dict(base_channels='wide'), 'must be an integer'),
    (('unet',), dict(base_channels=0), 'at least 1'),
    (('unet',), dict(single_w='maybe'), 'true or false'),
])
def test_bad_arguments_are_one_line_user_errors(args, kwargs, expect):
    with pytest.raises(UserError) as e:
        build_regressor(*args, **kwargs)
    assert expect in e.value.message and '\n' not in e.value.message


def test_command_line_strings_are_accepted():
    model = build_regressor('psp', input_resolution='64', single_w='true', base_channels='4', blocks='1,1,1,1',
                            style_channels='8')
    assert model.config == build_regressor(**model.config).config
    assert (model.input_resolution, model.single_w, model.config['blocks']) == (64, True, [1, 1, 1, 1])


def test_wrong_input_size_is_refused():
    model = build_regressor('vit', input_resolution=64, **SMALL['vit'])
    with pytest.raises(ValueError, match=r'\[N, 3, 64, 64\]'):
        model(_images(1, 128))


def test_resize_input():
    x = _images(2, 100)
    y = networks.resize_input(x, 64)
    assert y.shape == (2, 3, 64, 64)
    assert networks.resize_input(y, 64) is y
    # Antialiased: a constant image stays constant, a checkerboard averages out.
    assert torch.allclose(networks.resize_input(torch.full((1, 3, 100, 100), 0.5), 64), torch.tensor(0.5))
    checker = (torch.arange(128)[:, None] + torch.arange(128)[None]) % 2 * 2.0 - 1
    assert networks.resize_input(checker.expand(1, 3, 128, 128), 32).abs().max() < 0.05


@pytest.mark.parametrize('arch', ARCHS)
def test_input_standardisation(arch):
    torch.manual_seed(0)
    model = build_regressor(arch, num_ws=4, w_dim=16, input_resolution=32, **SMALL[arch]).eval()
    x = _images(3, 32)
    with torch.no_grad():  # identity until set
        assert torch.equal(model(x)['w'], model._predict(x)[0])
    train = _images(64, 32, seed=1) * 0.2 + 0.3
    train[:, :, :4] = 0.5  # rows that never vary in training
    model.set_input_stats(train)
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True)
    assert torch.allclose(model.input_mean, mean)
    floor = 0.1 * float(std.mean())
    assert torch.allclose(model.input_std[:, :, 4:], std[:, :, 4:]) and torch.all(model.input_std[:, :, :4] == floor)
    with torch.no_grad():
        assert torch.allclose(model(x)['w'], model._predict((x - mean) / model.input_std)[0], atol=1e-6)
    # The statistics are part of the state dict, so checkpoints carry them.
    rebuilt = build_regressor(**model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.input_mean, model.input_mean) and torch.equal(rebuilt.input_std, model.input_std)
    with pytest.raises(ValueError, match='set_input_stats'):
        model.set_input_stats(_images(4, 16))
