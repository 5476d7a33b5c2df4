"""The regressors' loss: its terms, weights, gradients, and the image loss through EG3D."""

import pytest
import torch

from eg3d_regressor_plugin.errors import UserError
from eg3d_regressor_plugin.training import checkpoint, loss as loss_mod
from eg3d_regressor_plugin.training.loss import RegressorLoss, clamped_mse


def _stats(num_ws=3, w_dim=4):
    g = torch.Generator().manual_seed(0)
    return {'center': torch.randn(num_ws, w_dim, generator=g), 'scale': torch.rand(num_ws, w_dim, generator=g) + 0.5}


def _batch(stats, n=2):
    g = torch.Generator().manual_seed(1)
    w = stats['center'] + stats['scale'] * torch.randn(n, *stats['center'].shape, generator=g)
    return dict(w=w, pose=torch.randn(n, 2, generator=g) * 0.3)


def test_terms_weights_and_gradients():
    stats = _stats()
    b = _batch(stats)
    perfect = dict(w=checkpoint.normalize_w(b['w'], stats), pose=b['pose'].clone())
    total, terms = RegressorLoss(stats)(perfect, b)
    assert float(total) == pytest.approx(0, abs=1e-6) and set(terms) == {'w_l1', 'pose', 'total'}

    pred = dict(w=torch.zeros_like(perfect['w'], requires_grad=True), pose=torch.zeros(2, 2, requires_grad=True))
    loss = RegressorLoss(stats, w_weight=2.0, pose_weight=0.5, pose_loss='l1')
    total, terms = loss(pred, b)
    # L1 on the normalised w: predicting w_avg costs the mean |normalised w|.
    assert float(terms['w_l1']) == pytest.approx(float(perfect['w'].abs().mean()), rel=1e-5)
    assert float(terms['pose']) == pytest.approx(float(b['pose'].abs().mean()), rel=1e-5)
    assert float(total.detach()) == pytest.approx(2 * float(terms['w_l1']) + 0.5 * float(terms['pose']), rel=1e-5)
    total.backward()
    assert pred['w'].grad.abs().sum() > 0 and pred['pose'].grad.abs().sum() > 0

    # smooth-L1 is quadratic for small pose errors, L1 beyond POSE_BETA.
    tiny = dict(w=perfect['w'], pose=b['pose'] + 0.01)
    _, t = RegressorLoss(stats, pose_loss='smooth_l1')(tiny, b)
    assert float(t['pose']) == pytest.approx(0.5 * 0.01 ** 2 / loss_mod.POSE_BETA, rel=1e-3)


def test_bad_weights_are_user_errors():
    stats = _stats()
    with pytest.raises(UserError, match='negative'):
        RegressorLoss(stats, pose_weight=-1)
    with pytest.raises(UserError, match='pose loss'):
        RegressorLoss(stats, pose_loss='l2')
    b = _batch(stats)
    with pytest.raises(UserError, match='nothing to train'):
        RegressorLoss(stats, w_weight=0, pose_weight=0)(dict(w=torch.zeros_like(b['w']), pose=b['pose']), b)


def test_clamped_mse_ignores_renders_beyond_a_saturated_input():
    real = torch.tensor([-1.0, 1.0, 0.0, -1.0])
    assert float(clamped_mse(torch.tensor([-3.0, 2.0, 0.0, -1.0]), real)) == 0
    fake = torch.tensor([-0.5, 0.5, 0.5, -2.0], requires_grad=True)
    val = clamped_mse(fake, real)
    assert float(val.detach()) == pytest.approx((0.25 + 0.25 + 0.25 + 0) / 4)
    val.backward()
    assert (fake.grad[:3] != 0).all() and fake.grad[3] == 0


def test_lpips_is_refused_cleanly_when_not_available_locally():
    if loss_mod.perceptual_available():
        pytest.skip('LPIPS with local weights is installed here')
    with pytest.raises(UserError, match='lpips'):
        loss_mod.lpips_network('cpu')


@pytest.mark.eg3d
def test_image_loss_gradients_reach_the_regressor(tiny_G):
    from eg3d_regressor_plugin.training import data, networks
    sampler = data.PairSampler(tiny_G, resolution=32)
    b = sampler.sample(2, 0, 0, 0)
    stats = data.estimate_w_stats(tiny_G, num=200, batch=200)
    torch.manual_seed(0)
    net = networks.build_regressor('unet', input_resolution=32, size='tiny')
    loss = RegressorLoss(stats, tiny_G, w_weight=0, pose_weight=0, img_weight=1.0, img_res=16)
    keep = tiny_G.neural_rendering_resolution
    total, terms = loss(net(b['img']), b, render_seed=0)
    assert set(terms) == {'img_mse', 'total'} and float(terms['total']) > 0
    assert tiny_G.neural_rendering_resolution == keep  # synthesis() would have changed it
    total.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in tiny_G.parameters())
    # Seeded renders make the image term reproducible.
    _, again = loss(net(b['img']), b, render_seed=0)
    assert float(again['img_mse']) == pytest.approx(float(terms['img_mse']), rel=1e-5)
