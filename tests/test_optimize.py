"""optimize.py: the W+ optimiser behind `gen --refine-steps` and the optimisation baseline."""

import numpy as np
import pytest
import torch

from eg3d_regressor_plugin.errors import UserError

pytestmark = pytest.mark.eg3d


@pytest.fixture(scope='module')
def problem(tiny_G):
    """A render of a known w (a held-out sample) at a known, non-frontal camera."""
    from eg3d_regressor_plugin.training.data import PairSampler
    s = PairSampler(tiny_G).sample_seeds([1002])
    return dict(target=s['img'], c=s['c'], w=s['w'])


def params_checksum(G):
    return sum(float(p.double().sum()) for p in G.parameters())


def test_from_w_avg_raises_psnr_and_history_matches_render(tiny_G, problem):
    from eg3d_regressor_plugin import render
    from eg3d_regressor_plugin.metrics import psnr_tensor
    from eg3d_regressor_plugin.optimize import optimize_w, w_avg_init
    before = params_checksum(tiny_G)
    w0 = w_avg_init(tiny_G)
    assert w0.shape == (1, 14, 512) and torch.equal(w0[0, 5], tiny_G.backbone.mapping.w_avg)
    w, hist = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=5, lr=0.01)
    assert [h['step'] for h in hist] == list(range(6))
    assert all(np.isfinite(h['psnr']) and h['seconds'] >= 0 for h in hist)
    assert max(h['psnr'] for h in hist[1:]) > hist[0]['psnr']
    assert w.shape == w0.shape and not w.requires_grad
    # keep_best: the returned w renders (render.render, seed 0) at the best PSNR of the history.
    img = render.render(tiny_G, w, problem['c'])['image'].clamp(-1, 1)
    assert float(psnr_tensor(img, problem['target'])) == pytest.approx(max(h['psnr'] for h in hist), abs=1e-3)
    # The generator is left as it was.
    assert params_checksum(tiny_G) == before
    assert not any(p.requires_grad for p in tiny_G.parameters())


def test_w_space_keeps_one_code_at_every_level(tiny_G, problem):
    from eg3d_regressor_plugin.optimize import optimize_w, w_avg_init
    w0 = w_avg_init(tiny_G)
    w, hist = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=4, lr=0.03, space='w')
    assert w.shape == w0.shape and not torch.equal(w, w0)
    assert torch.equal(w, w[:, :1].expand_as(w))  # PTI's projector: one w in W, repeated
    assert max(h['psnr'] for h in hist[1:]) > hist[0]['psnr']
    w_plus, _ = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=4, lr=0.03, space='w+', keep_best=False)
    assert not torch.equal(w_plus, w_plus[:, :1].expand_as(w_plus))
    with pytest.raises(UserError, match='space'):
        optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=1, space='z')


def test_zero_steps_callback_and_last(tiny_G, problem):
    from eg3d_regressor_plugin.optimize import optimize_w, w_avg_init
    w0 = w_avg_init(tiny_G)
    w, hist = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=0)
    assert len(hist) == 1 and torch.equal(w, w0)
    seen = []

    def stop_at_two(step, w, record):
        seen.append(step)
        return step == 2
    w_last, hist = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=10, lr=0.03,
                              callback=stop_at_two, keep_best=False)
    assert seen == [0, 1, 2] and len(hist) == 3
    assert not torch.equal(w_last, w0)  # two Adam steps were taken and the last w is returned


def test_uint8_target_and_custom_perceptual_term(tiny_G, problem):
    from eg3d_regressor_plugin.images import to_uint8
    from eg3d_regressor_plugin.optimize import optimize_w, w_avg_init
    calls = []

    def l1(x, y):
        calls.append(x.shape)
        return (x - y).abs().flatten(1).mean(1)
    w0 = w_avg_init(tiny_G)
    target = to_uint8(problem['target'])[0]
    _, plain = optimize_w(tiny_G, target, problem['c'], w0, steps=0)
    _, with_l1 = optimize_w(tiny_G, target, problem['c'], w0, steps=0, perceptual=l1, perceptual_weight=2.0)
    assert calls == [(1, 3, 128, 128)]
    assert with_l1[0]['loss'] > plain[0]['loss'] and with_l1[0]['psnr'] == plain[0]['psnr']


def test_perceptual_specs(tmp_path):
    from eg3d_regressor_plugin.optimize import load_perceptual
    assert load_perceptual(None, 'cpu') is None
    with pytest.raises(UserError, match='cannot be loaded'):
        load_perceptual(str(tmp_path / 'vgg16.pt'), 'cpu')
    try:
        import lpips  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match='not available'):
            load_perceptual('lpips', 'cpu')


def test_lbfgs_keeps_to_its_budget_and_beats_adam(tiny_G, problem):
    from eg3d_regressor_plugin import render
    from eg3d_regressor_plugin.metrics import psnr_tensor
    from eg3d_regressor_plugin.optimize import optimize_w, w_avg_init
    w0 = w_avg_init(tiny_G)
    _, adam = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=8)
    w, hist = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=8, optimizer='lbfgs')
    # Every line-search trial counts: exactly steps + 1 renders, as Adam makes.
    assert [h['step'] for h in hist] == list(range(9)) and len(adam) == 9
    assert hist[0]['psnr'] == pytest.approx(adam[0]['psnr'])
    assert max(h['psnr'] for h in hist) > max(h['psnr'] for h in adam) + 1.0
    img = render.render(tiny_G, w, problem['c'])['image'].clamp(-1, 1)
    assert float(psnr_tensor(img, problem['target'])) == pytest.approx(max(h['psnr'] for h in hist), abs=1e-3)
    # A callback stops it too; zero steps only evaluates the start.
    _, early = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=8, optimizer='lbfgs',
                          callback=lambda step, w, record: step == 3)
    assert len(early) == 4
    w_zero, zero = optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=0, optimizer='lbfgs')
    assert len(zero) == 1 and torch.equal(w_zero, w0)
    with pytest.raises(UserError, match='unknown optimizer'):
        optimize_w(tiny_G, problem['target'], problem['c'], w0, steps=1, optimizer='sgd')
