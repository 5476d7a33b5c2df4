"""The procedural heads (heads.py), training EG3D's generator to draw them (heads_training.py) and
the train-heads command."""

import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from eg3d_regressor_plugin import bridge, heads
from eg3d_regressor_plugin.errors import UserError

from conftest import assert_one_line_error, run_cli


def _one(params, i=0):
    return {k: v[i:i + 1] for k, v in params.items()}


def _labels(yaws, pitches=None):
    from eg3d_regressor_plugin import cameras
    yaws = torch.as_tensor(yaws, dtype=torch.float32)
    pitches = torch.zeros_like(yaws) if pitches is None else torch.as_tensor(pitches, dtype=torch.float32)
    return cameras.pose_to_label(yaws, pitches)

#----------------------------------------------------------------------------
# The head model.

def test_params_from_z_deterministic_and_in_range():
    z = torch.randn(256, 32, generator=torch.Generator().manual_seed(0)) * 3  # past 3 sigma too
    a, b = heads.params_from_z(z), heads.head_params(z.clone())
    assert list(a) == heads.PARAM_NAMES and heads.NUM_PARAMS == len(heads.PARAM_NAMES) <= 32
    for name, (lo, hi) in heads.PARAM_RANGES.items():
        assert torch.equal(a[name], b[name]), name
        assert a[name].shape == (256,)
        assert (a[name] >= lo).all() and (a[name] <= hi).all(), name
        assert a[name].std() > 0.1 * (hi - lo), name  # each parameter follows its own z component
    # Parameter i follows z[:, i] monotonically; components past NUM_PARAMS are ignored.
    z2 = z.clone()
    z2[:, 0] += 0.5
    z2[:, heads.NUM_PARAMS:] = 0
    c = heads.params_from_z(z2)
    first = heads.PARAM_NAMES[0]
    assert (c[first] >= a[first]).all() and (c[first] > a[first]).float().mean() > 0.5
    assert all(torch.equal(c[n], a[n]) for n in heads.PARAM_NAMES[1:])
    norm = heads.normalized_params(a)
    assert norm.shape == (256, heads.NUM_PARAMS) and norm.min() >= 0 and norm.max() <= 1
    with pytest.raises(UserError, match='z_dim'):
        heads.params_from_z(torch.zeros(2, heads.NUM_PARAMS - 1))


@pytest.mark.eg3d
def test_volume_depth_matches_sphere_traced_surface(eg3d_root):
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    params = heads.params_from_z(z)
    c = _labels([0.0, 0.5, -0.8], [0.0, 0.2, -0.1])
    traced = heads.surface_depth(params, c, resolution=48)
    hit = traced < heads.RAY_END - 1e-3
    assert 0.2 < hit.float().mean() < 0.8
    for kwargs in (dict(), dict(hierarchical=True, n_samples=40)):
        out = heads.render_heads(params, c, resolution=48, **kwargs)
        solid = hit & (out['alpha'] > 0.99)  # silhouette pixels mix head and background
        assert solid.float().mean() > 0.15
        err = (out['depth'] - traced)[solid].abs()
        assert err.mean() < 0.015, (kwargs, err.mean())
        assert err.median() < 0.01, kwargs
        # Missed rays: transparent, at the far end of the ray range.
        miss = ~hit & (out['alpha'] < 1e-4)
        assert miss.float().mean() > 0.15
        assert torch.allclose(out['depth'][miss], torch.tensor(heads.RAY_END))


@pytest.mark.eg3d
def test_renders_non_degenerate_over_yaw_range(eg3d_root):
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(2))
    yaws = [-0.8, -0.4, 0.0, 0.4, 0.8]
    for i in range(2):
        p = _one(heads.params_from_z(z), i)
        out = heads.render_heads(p, _labels(yaws), resolution=48, hierarchical=True, n_samples=40)
        img, alpha = out['image'], out['alpha']
        assert img.shape == (5, 3, 48, 48) and out['depth'].shape == (5, 1, 48, 48)
        assert img.min() >= -1 and img.max() <= 1
        frac = (alpha > 0.5).float().mean(dim=(1, 2, 3))
        assert ((frac > 0.25) & (frac < 0.7)).all(), frac
        # Background: the plain background colour. Like FFHQ crops, the hair may reach the top
        # edge, and at large yaws the back of the head an edge, but one bottom corner is clear.
        for k in range(5):
            corners = [alpha[k, :, -4:, :4], alpha[k, :, -4:, -4:]]
            clear = [cr for cr in corners if cr.max() < 0.01]
            assert clear, (k, [float(cr.max()) for cr in corners])
        bg = img[2:3, :, -4:, :4]
        assert ((img - bg[:, :, :1, :1]).abs().amax(1, keepdim=True)[alpha < 1e-4]).max() < 1e-3
        # The head has structure (eyes, mouth, hair differ from skin), not one flat colour.
        head = img.permute(1, 0, 2, 3)[:, (alpha[:, 0] > 0.99)]
        assert head.std(dim=1).mean() > 0.05
        # The head turns: mirrored yaws do not render the same image.
        assert (img[0] - img[4]).abs().mean() > 0.02


@pytest.mark.eg3d
def test_changing_one_parameter_changes_the_image_where_expected(eg3d_root):
    p = heads.default_params(1)
    c = _labels([0.0])
    res = 64
    base = heads.render_heads(p, c, resolution=res)
    rows = torch.arange(res, dtype=torch.float32)[:, None].expand(res, res)

    def changed(name, value):
        q = dict(p, **{name: torch.tensor([value])})
        out = heads.render_heads(q, c, resolution=res)
        diff = (out['image'] - base['image']).abs().sum(1)[0]  # [H, W]
        return out, diff

    # Mouth width: changes below the image centre only (the mouth), nothing near the top.
    _, diff = changed('mouth_width', heads.PARAM_RANGES['mouth_width'][1])
    assert diff.sum() > 1
    row = (diff * rows).sum() / diff.sum()
    assert row > res * 0.6, row
    assert diff[:res // 2].sum() < 0.02 * diff.sum()
    # Nose length: the nose comes nearer the camera at the face's centre.
    out, diff = changed('nose_length', heads.PARAM_RANGES['nose_length'][1])
    assert diff.sum() > 1
    depth_change = out['depth'] - base['depth']
    assert depth_change.min() < -0.02
    ys, xs = torch.nonzero(depth_change[0, 0] < -0.01, as_tuple=True)
    assert abs(xs.float().mean() - (res - 1) / 2) < 3  # on the face's vertical axis
    # Hair colour: changes the hair (upper half) and the eyebrows, not the mouth region.
    _, diff = changed('hair_lightness', 1.0)
    assert diff[:res // 2].sum() > 0.9 * diff.sum()
    # Background: only where the head is not.
    _, diff = changed('bg_lightness', 0.0)
    assert (diff[base['alpha'][0, 0] > 0.999] < 0.01).all() and (diff[base['alpha'][0, 0] < 0.001] > 0.1).all()

@pytest.mark.eg3d
def test_point_truth_on_the_surface(eg3d_root):
    """At the sphere-traced hits, point_truth's surface is the point itself and its colour is the
    pixel render_heads draws; the parts are where the head model puts them."""
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(4))
    params = heads.params_from_z(z)
    c = _labels([0.0, 0.6], [0.1, -0.1])
    res = 48
    traced = heads.surface_depth(params, c, resolution=res)
    rendered = heads.render_heads(params, c, resolution=res)
    o, d = heads.rays(c, res)
    p = o + d * traced.reshape(2, -1, 1)
    t = heads.point_truth(p, params)
    solid = ((traced < heads.RAY_END - 1e-3) & (rendered['alpha'] > 0.999)).reshape(2, -1)
    assert t['sdf'][solid].abs().max() < 2e-3
    assert (t['surface'] - p).norm(dim=-1)[solid].max() < 2e-3
    assert t['colour'].min() >= 0 and t['colour'].max() <= 1
    pixels = (rendered['image'].reshape(2, 3, -1).permute(0, 2, 1) + 1) / 2
    err = (t['colour'] - pixels).abs().mean(-1)[solid]
    assert err.median() < 0.01 and err.mean() < 0.03, (err.median(), err.mean())
    # Off the surface: the signed distance, and the surface point one step back onto it.
    q = p + 0.01 * d
    tq = heads.point_truth(q, params)
    assert (tq['sdf'][solid] < 0).float().mean() > 0.95
    assert heads.sdf(tq['surface'], params)[solid].abs().median() < 1e-3
    # Parts: the front of an eye, the top of the head (hair), the neck (skin).
    one = _one(params)
    eye = torch.cat([one['eye_spacing'] / 2, one['eye_height'], torch.tensor([0.12])])  # about the eye's centre
    frontal = _labels([0.0])
    ray_o = frontal[0, :16].view(4, 4)[:3, 3]
    hits = []
    for target in (eye, torch.tensor([0.0, 0.45, 0.0]), torch.tensor([0.0, -0.4, 0.0])):
        direction = torch.nn.functional.normalize(target - ray_o, dim=0)
        tt = torch.linspace(heads.RAY_START, heads.RAY_END, 4000)
        pts = (ray_o + direction * tt[:, None])[None]
        inside = heads.sdf(pts, one)[0] < 0
        hits.append(pts[0, int(inside.float().argmax())])
    part = heads.point_truth(torch.stack(hits)[None], one)['part'][0].tolist()
    assert part[0] == heads.PARTS.index('eyes') and part[1] == heads.PARTS.index('hair'), part
    assert part[2] == heads.PARTS.index('skin'), part  # the neck


@pytest.mark.eg3d
def test_featureless_render_and_feature_mask(eg3d_root):
    """features=False keeps the shape and paints only the eyes, lips and brows; feature_mask
    marks the eyes and lips: both eyes and the mouth at the frontal view, where the two renders
    differ; outside it (and the brows above the eyes) the renders are the same."""
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(6))
    params = heads.params_from_z(z)
    c = _labels([0.0, 0.5])
    full = heads.render_heads(params, c, resolution=96, hierarchical=True, n_samples=40)
    plain = heads.render_heads(params, c, resolution=96, hierarchical=True, n_samples=40, features=False)
    assert torch.equal(full['depth'], plain['depth']) and torch.equal(full['alpha'], plain['alpha'])
    mask = heads.feature_mask(params, c, full)
    assert mask.shape == (2, 1, 96, 96) and mask.dtype == torch.bool
    diff = (full['image'] - plain['image']).abs().mean(1, keepdim=True)
    assert diff[mask].mean() > 0.3, diff[mask].mean()
    # Frontal: three blobs of pixels (two eyes left and right of the middle, the mouth below them).
    ys, xs = mask[0, 0].nonzero(as_tuple=True)
    left, right = xs < 47.5, xs > 47.5
    assert left.sum() > 10 and right.sum() > 10
    mouth = xs[(ys > ys.float().mean() + 8)]  # the lowest blob
    assert len(mouth) > 10 and (mouth.float().mean() - 47.5).abs() < 3
    # Beyond the features and a margin around them (the brows), nothing changes.
    near = torch.nn.functional.max_pool2d(mask.float(), 25, stride=1, padding=12) > 0
    assert diff[~near].max() < 1e-6
    # is_feature follows PARTS.
    parts = torch.arange(len(heads.PARTS))
    assert heads.is_feature(parts).tolist() == [p in heads.FEATURES for p in heads.PARTS]

#----------------------------------------------------------------------------
# Training EG3D's generator.

FAST = dict(batch=1, neural_rendering_resolution=16, progress=False)


@pytest.mark.eg3d
def test_training_reduces_the_loss(eg3d_root, tmp_path):
    """A few steps on one head (at random cameras): the loss at a fixed camera drops."""
    from eg3d_regressor_plugin import heads_training as ht, presets
    z = ht.code_pool(1, 32, seed=0)
    c = _labels([0.1], [0.05])
    tgt = ht.targets(z, c, 128, 16)

    def loss(G):
        with torch.no_grad():
            return float(ht.losses(ht.synthesize(G, z, c, 16), tgt)['total'])
    G0, _ = presets.build_networks('tiny', seed=0, w_avg_samples=0)
    before = loss(G0)
    result = ht.train_heads(tmp_path / 'h.pkl', steps=8, lr=3e-3, num_heads=1, **FAST)
    assert result['G'].neural_rendering_resolution == 64  # the preset's, not the training one
    assert result['step'] == 8 and len(result['history']) == 8
    after = loss(result['G'])
    assert after < 0.8 * before, (before, after)


@pytest.mark.eg3d
def test_targets_from_a_render_the_caller_has(eg3d_root):
    from eg3d_regressor_plugin import heads_training as ht
    z = ht.code_pool(2, 32, seed=5)
    c = _labels([0.0, 0.4])
    render = heads.render_heads(heads.params_from_z(z), c, resolution=64, **ht.TARGET_RENDER)
    own, given = ht.targets(z, c, 64, 16), ht.targets(z, c, 64, 16, render=render)
    assert set(own) == set(given) and all(torch.equal(own[k], given[k]) for k in own)
    assert given['depth'].shape == (2, 1, 16, 16)


@pytest.mark.eg3d
def test_surface_losses_supervise_the_field_around_the_true_surface(eg3d_root):
    """surface_points labels points along training rays with the true occupancy and the true
    surface colour (the eyes and lips weighted up); a few Adam steps on surface_losses alone
    fit G's density and colour there."""
    from eg3d_regressor_plugin import heads_training as ht, presets
    z = ht.code_pool(1, 32, seed=3)
    c = _labels([0.0], [0.0])
    nr = 32
    tgt = ht.targets(z, c, 128, nr)
    gen = torch.Generator().manual_seed(0)
    pts = ht.surface_points(z, c, tgt, nr, gen, rays=512)
    assert pts['occ_points'].shape == (1, 2048, 3) and pts['occupancy'].shape == (1, 2048)
    assert pts['colour_points'].shape == pts['colour'].shape == (1, 512, 3)
    truth = heads.point_truth(pts['occ_points'], heads.params_from_z(z))['sdf']
    assert (pts['occupancy'][truth < -0.02] > 0.99).all() and (pts['occupancy'][truth > 0.02] < 0.01).all()
    assert 0.05 < (truth < 0).float().mean() < 0.6  # points inside and outside the head
    w = pts['weight'][0]
    parts = heads.point_truth(pts['colour_points'], heads.params_from_z(z))['part'][0]
    assert set(w.unique().tolist()) <= {0.0, 1.0, ht.SURFACE['detail']}
    eyes_lips = (parts == heads.PARTS.index('eyes')) | (parts == heads.PARTS.index('lips'))
    assert ((w == ht.SURFACE['detail']) == (eyes_lips & (w > 0))).all()
    assert (w == ht.SURFACE['detail']).any()  # a frontal view sees the eyes and lips
    G, _ = presets.build_networks('tiny', seed=0, w_avg_samples=0)
    G = G.train().requires_grad_(True)
    opt = torch.optim.Adam(G.parameters(), lr=3e-3)

    def step():
        ht.synthesize(G, z, c, nr, cache_backbone=True)
        ls = ht.surface_losses(G, G._last_planes, pts)
        opt.zero_grad()
        (ls['occupancy'] + ls['colour']).backward()
        opt.step()
        return {k: float(v.detach()) for k, v in ls.items()}
    first = step()
    for _ in range(20):
        last = step()
    assert last['occupancy'] < 0.75 * first['occupancy'] and last['colour'] < 0.6 * first['colour'], (first, last)


@pytest.mark.eg3d
def test_resume_continues_and_pickles_load(eg3d_root, tmp_path):
    import legacy
    from eg3d_regressor_plugin import heads_training as ht
    a, b = tmp_path / 'a.pkl', tmp_path / 'b.pkl'
    ht.train_heads(a, steps=2, snapshot_every=1, **FAST)
    G2 = bridge.load_generator(a)
    with pytest.raises(UserError, match='--resume'):
        ht.train_heads(a, steps=4, **FAST)
    ht.train_heads(a, steps=4, resume=True, snapshot_every=10, **FAST)
    ht.train_heads(b, steps=4, snapshot_every=10, **FAST)
    sa = torch.load(ht.state_path(a), weights_only=True)
    sb = torch.load(ht.state_path(b), weights_only=True)
    assert sa['step'] == sb['step'] == 4
    assert [h[0] for h in sa['history']] == [1, 2, 3, 4]
    assert all(len(h) == len(ht.HISTORY) for h in sa['history']) and all(h[5] > 0 for h in sa['history'])
    with open(a, 'rb') as f:
        data = legacy.load_network_pkl(f)  # EG3D's own loader
    assert {'G', 'D', 'G_ema'} <= set(data) and data['training_set_kwargs']['heads_step'] == 4
    G4a, G4b = bridge.load_generator(a), bridge.load_generator(b)
    assert bridge.is_triplane_generator(G4a) and G4a.neural_rendering_resolution == 64
    assert G4a.backbone.mapping.w_avg.abs().sum() > 0
    pa, pb, p2 = (dict(G.named_parameters()) for G in (G4a, G4b, G2))
    assert any(not torch.equal(pa[k], p2[k]) for k in pa)  # it went on training
    for k in pa:  # the same steps as a straight run
        assert torch.allclose(pa[k], pb[k], atol=1e-5, rtol=1e-4), k
    # Nothing to do when the run is already there.
    assert ht.train_heads(a, steps=3, resume=True, **FAST)['step'] == 4
    # The generator renders through EG3D as any other.
    from eg3d_regressor_plugin import cameras, render
    out = render.render(G4a, G4a.mapping(torch.zeros(1, 32), cameras.frontal_label(1)), cameras.frontal_label(1))
    assert out['image'].shape == (1, 3, 128, 128) and torch.isfinite(out['image']).all()


@pytest.mark.eg3d
def test_init_starts_a_new_run_from_a_trained_generator(eg3d_root, tmp_path):
    """init: a new run from another run's generator (or the shipped one) at its step, with a fresh
    optimiser whose rate ramps up; the result resumes as any run; wrong combinations are refused."""
    from eg3d_regressor_plugin import heads_training as ht, presets
    a, b = tmp_path / 'a.pkl', tmp_path / 'b.pkl'
    ht.train_heads(a, steps=2, **FAST)
    Ga = bridge.load_generator(a)
    result = ht.train_heads(b, steps=4, init=a, warmup=4, **FAST)
    assert result['step'] == 4 and [h[0] for h in result['history']] == [3, 4]
    state = torch.load(ht.state_path(b), weights_only=True)
    assert state['config']['init'] == str(a) and state['config']['init_step'] == 2
    assert state['optimizer']['param_groups'][0]['lr'] == pytest.approx(ht.DEFAULTS['lr'] * 2 / 4)  # ramping up
    pa, pb = dict(Ga.named_parameters()), dict(bridge.load_generator(b).named_parameters())
    assert any(not torch.equal(pa[k], pb[k]) for k in pa)
    moved = max(float((pa[k] - pb[k]).abs().max()) for k in pa)
    assert moved < 2 * ht.DEFAULTS['lr'], moved  # two steps at a quarter and a half of the rate
    assert ht.train_heads(b, steps=5, resume=True, warmup=4, **FAST)['step'] == 5
    state = torch.load(ht.state_path(b), weights_only=True)  # resumed, the ramp goes on from the init's step
    assert state['optimizer']['param_groups'][0]['lr'] == pytest.approx(ht.DEFAULTS['lr'] * 3 / 4)
    assert state['config']['init_step'] == 2
    with pytest.raises(UserError, match='resume and init'):
        ht.train_heads(b, steps=6, resume=True, init=a, **FAST)
    plain = tmp_path / 'plain.pkl'
    presets.save_network_pkl(plain, *presets.build_networks('tiny', seed=0, w_avg_samples=0))
    with pytest.raises(UserError, match='not a train-heads pickle'):
        ht.train_heads(tmp_path / 'c.pkl', steps=3, init=plain, **FAST)
    assert not (tmp_path / 'c.pkl').exists()
    if ht.SHIPPED.is_file():
        shipped_step = ht.shipped_networks()[2]['heads_step']
        r = ht.train_heads(tmp_path / 'd.pkl', steps=shipped_step + 1, init='shipped', **FAST)
        assert r['step'] == shipped_step + 1 and len(r['history']) == 1


@pytest.mark.eg3d
def test_shipped_generator_mesh_is_one_closed_head(eg3d_root, tmp_path):
    """surface_error is ~0 on the true surface (marching cubes of heads.sdf itself); the shipped
    generator's mesh of a held-out head is one closed part near the true surface, the random
    generator's far from it."""
    pytest.importorskip('trimesh')
    import skimage.measure
    from eg3d_regressor_plugin import heads_training as ht
    from eg3d_regressor_plugin.codes import seed_z
    if not ht.SHIPPED.is_file():
        pytest.skip(f'no shipped heads weights at {ht.SHIPPED}')
    z = torch.from_numpy(seed_z(3003, 32))
    params = heads.params_from_z(z)
    n = 64
    axis = torch.linspace(-0.5, 0.5, n)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing='ij'), -1).reshape(1, -1, 3)
    vol = heads.sdf(grid, params)[0].reshape(n, n, n).numpy()
    verts, _, _, _ = skimage.measure.marching_cubes(vol, level=0.0, spacing=(1 / (n - 1),) * 3)
    assert heads.surface_error(verts - 0.5, params) < 0.005
    assert heads.surface_error(verts - 0.5 + [0.05, 0, 0], params) > 0.02
    G = ht.shipped_networks()[0]
    m = ht.mesh_against_truth(G, z)
    assert m['components'] == 1 and m['watertight'] and m['surface_error'] < 0.06, m
    m_random = ht.mesh_against_truth(bridge.load_generator(_random_pkl(tmp_path)), z)
    assert m_random['surface_error'] > 2 * m['surface_error'], (m, m_random)


def _cmd(*args):
    return subprocess.run([sys.executable, '-m', 'eg3d_regressor_plugin.train_heads', *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('args, message', [
    (['--steps', '0'], '--steps 0'),
    (['--batch', '0'], '--batch 0'),
    (['--lr', '-1'], '--lr -1'),
    (['--nr-res', '48'], '--nr-res 48'),
    (['--device', 'tpu'], "device 'tpu'"),
    (['--heads', '0'], '--heads 0'),
    (['--surface-weight', '-1'], '--surface-weight -1'),
])
def test_command_bad_values_are_one_line_errors(tmp_path, args, message):
    """In process (a subprocess per value costs seconds of imports); the one-line form on stderr
    is checked with a real process below."""
    from click.testing import CliRunner
    from eg3d_regressor_plugin.train_heads import train_heads
    result = CliRunner().invoke(train_heads, ['--out', str(tmp_path / 'h.pkl'), *args])
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / 'h.pkl').exists()


@pytest.mark.eg3d
def test_command_refuses_existing_out_and_missing_resume(tmp_path):
    existing = tmp_path / 'h.pkl'
    existing.write_bytes(b'x')
    assert '--resume' in assert_one_line_error(_cmd('--out', existing, '--steps', 1, '--device', 'cpu'))
    line = assert_one_line_error(_cmd('--out', tmp_path / 'none.pkl', '--steps', 1, '--resume', '--device', 'cpu'))
    assert 'does not exist' in line
    line = assert_one_line_error(_cmd('--out', tmp_path / 'n.pkl', '--steps', 1, '--resume', '--init', 'shipped'))
    assert '--init with --resume' in line
    line = assert_one_line_error(_cmd('--out', tmp_path / 'n.pkl', '--steps', 1, '--init', tmp_path / 'missing.pkl'))
    assert 'missing.pkl' in line and not (tmp_path / 'n.pkl').exists()


@pytest.mark.eg3d
def test_sample_codes_writes_true_head_scores(eg3d_root, tmp_path, tiny_pkl):
    """sample-codes --head-scores: scores.csv holds each seed's true head parameter (the z EG3D's
    gen_samples.py draws for it); refused for another network, an unknown name and --trunc."""
    import csv
    from click.testing import CliRunner
    from eg3d_regressor_plugin import codes, heads_training as ht
    from eg3d_regressor_plugin.sample_codes import sample_codes
    pkl = tmp_path / 'h.pkl'
    ht.train_heads(pkl, steps=1, **FAST)
    r = CliRunner().invoke(sample_codes, ['--network', str(pkl), '--count', '3', '--seed', '5', '--no-images',
                                          '--head-scores', 'smile', '--outdir', str(tmp_path / 'c'), '--device', 'cpu'])
    assert r.exit_code == 0, r.output
    rows = list(csv.reader((tmp_path / 'c' / 'scores.csv').read_text().splitlines()))[1:]
    truth = heads.params_from_z(torch.from_numpy(np.concatenate([codes.seed_z(s, 32) for s in (5, 6, 7)])))['smile']
    assert [r[0] for r in rows] == ['seed0005.npy', 'seed0006.npy', 'seed0007.npy']
    np.testing.assert_allclose([float(r[1]) for r in rows], truth.numpy(), rtol=1e-5)
    lo, hi = heads.PARAM_RANGES['smile']
    assert all(lo <= float(r[1]) <= hi for r in rows)
    data = codes.load_scores(tmp_path / 'c' / 'scores.csv')  # what `boundary` reads
    assert len(data.scores) == 3
    for args, message in [(['--network', tiny_pkl, '--head-scores', 'smile'], 'train-heads'),
                          (['--network', pkl, '--head-scores', 'grin'], 'not a head parameter'),
                          (['--network', pkl, '--head-scores', 'smile', '--trunc', '0.7'], 'no known head')]:
        line = assert_one_line_error(run_cli('sample-codes', *args, '--count', 2, '--outdir', tmp_path / 'bad',
                                             '--device', 'cpu'))
        assert message in line, line
    assert not (tmp_path / 'bad').exists()


@pytest.mark.eg3d
def test_eval_on_a_heads_generator_measures_against_the_truth(eg3d_root, tmp_path):
    """eval on a train-heads pickle adds the `heads` set: pose and depth errors against heads.py's
    truth, which evaluate_heads computes from the true camera and the analytic head."""
    import json
    from click.testing import CliRunner
    from conftest import make_tiny_regressor
    from eg3d_regressor_plugin import heads_training as ht, metrics
    from eg3d_regressor_plugin.calc_metrics import calc_metrics
    pkl = tmp_path / 'h.pkl'
    ht.train_heads(pkl, steps=1, **FAST)
    G = bridge.load_generator(pkl)
    reg = make_tiny_regressor(G, tmp_path / 'r.pt', steps=2)
    r = CliRunner().invoke(calc_metrics, ['--network', str(pkl), '--regressor', str(reg), '--seeds', '3-4',
                                          '--identity', 'none', '--outdir', str(tmp_path / 'e'), '--device', 'cpu'])
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert 'heads (2 images)' in r.output
    report = json.loads((tmp_path / 'e' / 'metrics.json').read_text())
    m = report['heads']['metrics']
    for k in ('yaw_err_deg', 'pose_err_deg', 'psnr', 'depth_err', 'depth_err_baseline', 'psnr_G', 'depth_err_G'):
        assert m[k]['count'] == 2 and np.isfinite(m[k]['mean']), k
    # The truth: seed 3's camera and head; the pose error is the predicted camera's against it.
    t = ht.truth_sample(3, G.z_dim, 128, 64)
    row = next(x for x in map(dict, __import__('csv').DictReader(open(tmp_path / 'e' / 'metrics.csv')))
               if x['set'] == 'heads' and x['name'] == 'seed0003')
    base = metrics.pose_errors(torch.zeros(1), torch.zeros(1), t['yaw'], t['pitch'])['yaw_err_deg'][0]
    assert float(row['yaw_err_deg_baseline']) == pytest.approx(base, rel=1e-4)
    assert 0 < float(t['mask'].mean()) < 1 and 2.25 < float(t['depth'][t['mask'] > 0].mean()) < 3.3


@pytest.mark.eg3d
@pytest.mark.parametrize('name, value', [('skin_tone', 0.7), ('smile', 2.0)])
def test_fit_param_reads_a_parameter_off_a_render(eg3d_root, name, value):
    """fit_param recovers a head's parameter from its render (between the grid values), the
    measurement of the heads benchmark's edits."""
    p = heads.default_params()
    p[name] = torch.tensor([value])
    c = _labels([0.0], [0.0])
    kw = dict(hierarchical=True, n_samples=40)
    img = heads.render_heads(p, c, resolution=64, **kw)['image']
    lo, hi = heads.PARAM_RANGES[name]
    est = heads.fit_param(img, p, name, c, grid=9, **kw)
    assert abs(est - value) < 0.1 * (hi - lo), (est, value)
    with pytest.raises(UserError, match='unknown head parameter'):
        heads.fit_param(img, p, 'grin', c)


@pytest.mark.eg3d
def test_exported_weights_rebuild_the_generator(eg3d_root, tmp_path):
    """export_weights -> shipped_networks: the same renders (to float16 rounding), a pickle that
    EG3D's loader reads and that says it is a heads generator; bad files are one line."""
    from eg3d_regressor_plugin import cameras, heads_training as ht, presets, render
    pkl = tmp_path / 'h.pkl'
    ht.train_heads(pkl, steps=2, **FAST)
    ht.export_weights(pkl, tmp_path / 'w.pt')
    assert (tmp_path / 'w.pt').stat().st_size < 0.3 * pkl.stat().st_size
    G, D, kwargs = ht.shipped_networks(tmp_path / 'w.pt')
    presets.save_network_pkl(tmp_path / 'again.pkl', G, D, training_set_kwargs=kwargs)
    assert ht.heads_step(tmp_path / 'again.pkl') == 2
    G0, (G1, snapshot_kwargs) = bridge.load_generator(pkl), bridge.load_snapshot(tmp_path / 'again.pkl')
    assert ht.heads_step(snapshot_kwargs) == 2 and ht.heads_step({}) is None and ht.heads_step(None) is None
    c = cameras.frontal_label(1)
    w = G0.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(0)), c)
    a, b = render.render(G0, w, c)['image'], render.render(G1, w, c)['image']
    assert (a - b).abs().mean() < 0.01
    with pytest.raises(UserError, match='not a train-heads pickle'):
        ht.export_weights(_random_pkl(tmp_path), tmp_path / 'x.pt')
    (tmp_path / 'bad.pt').write_bytes(b'garbage')
    with pytest.raises(UserError, match='not a readable heads weights file'):
        ht.shipped_networks(tmp_path / 'bad.pt')
    with pytest.raises(UserError, match='missing'):
        ht.shipped_networks(tmp_path / 'none.pt')


@pytest.mark.eg3d
def test_a_larger_preset_trains_exports_and_resumes_as_itself(eg3d_root, tmp_path):
    """train-heads --preset small: a 256 px run whose pickle, resumed run and exported weights all
    keep its configuration (presets.preset_of), not the default tiny one."""
    from eg3d_regressor_plugin import heads_training as ht, presets
    assert presets.preset_of(presets.build_networks('tiny', w_avg_samples=0)[0]) == 'tiny'
    pkl = tmp_path / 's.pkl'
    proc = subprocess.run([sys.executable, '-m', 'eg3d_regressor_plugin.train_heads', '--out', str(pkl), '--steps', '1',
                           '--preset', 'small', '--nr-res', '16', '--batch', '1', '--device', 'cpu'],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    G = bridge.load_generator(pkl)
    assert G.img_resolution == 256 and presets.preset_of(G) == 'small'
    ht.train_heads(pkl, steps=2, resume=True, **FAST)
    assert torch.load(ht.state_path(pkl), weights_only=True)['config']['preset'] == 'small'
    ht.export_weights(pkl, tmp_path / 'w.pt')
    G2, _, kwargs = ht.shipped_networks(tmp_path / 'w.pt')
    assert G2.img_resolution == 256 and presets.preset_of(G2) == 'small' and kwargs['heads_step'] == 2
    other = types.SimpleNamespace(init_kwargs=dict(G.init_kwargs, channel_base=123), rendering_kwargs=G.rendering_kwargs)
    assert presets.preset_of(other) is None  # a configuration no preset has
    line = assert_one_line_error(_cmd('--out', pkl, '--steps', 3, '--resume', '--preset', 'tiny'))
    assert '--preset tiny with --resume' in line
    line = assert_one_line_error(_cmd('--out', tmp_path / 'n.pkl', '--preset', 'small', '--nr-res', '48'))
    assert '--nr-res 48' in line and '256 px' in line and not (tmp_path / 'n.pkl').exists()


def _random_pkl(tmp_path):
    from eg3d_regressor_plugin import presets
    path = tmp_path / 'random.pkl'
    presets.save_network_pkl(path, *presets.build_networks('tiny', seed=0, w_avg_samples=0))
    return path


@pytest.mark.eg3d
def test_init_network_heads_preset(eg3d_root, tmp_path):
    """The shipped demo generator: init-network --preset heads writes a pickle EG3D loads, whose
    renders are heads (close to heads.py's truth: far closer than the random generator's)."""
    import legacy
    from eg3d_regressor_plugin import heads_training as ht
    if not ht.SHIPPED.is_file():
        pytest.skip(f'no shipped heads weights at {ht.SHIPPED}')
    r = run_cli('init-network', '--preset', 'heads', '--out', tmp_path / 'heads.pkl')
    assert r.returncode == 0, r.stderr
    with open(tmp_path / 'heads.pkl', 'rb') as f:
        assert {'G', 'D', 'G_ema'} <= set(legacy.load_network_pkl(f))
    assert ht.heads_step(tmp_path / 'heads.pkl') > 0
    from eg3d_regressor_plugin import metrics
    from eg3d_regressor_plugin.images import to_uint8
    G, G_random = bridge.load_generator(tmp_path / 'heads.pkl'), bridge.load_generator(_random_pkl(tmp_path))
    errs = {}
    for name, g in (('heads', G), ('random', G_random)):
        t = ht.truth_sample(3000, 32, 128, 64)
        with torch.no_grad():
            out = ht.synthesize(g, t['z'], t['c'])
        errs[name] = metrics.psnr(t['image'], to_uint8(out['image'].clamp(-1, 1))[0])
    assert errs['heads'] > errs['random'] + 3, errs
