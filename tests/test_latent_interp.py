"""latent_interp: interpolation, level parsing, style mixing and edits along a boundary. No EG3D
needed."""

import numpy as np
import pytest
import torch

from eg3d_regressor_plugin import boundaries
from eg3d_regressor_plugin import latent_interp as li
from eg3d_regressor_plugin.errors import UserError

NUM_WS, W_DIM = 14, 512


def unit(v):
    return v / np.linalg.norm(v)

#----------------------------------------------------------------------------
# Interpolation.

@pytest.mark.parametrize('fn', [li.lerp, li.slerp])
@pytest.mark.parametrize('as_tensor', [False, True])
def test_interpolation_ends_are_exact(fn, as_tensor):
    rng = np.random.RandomState(0)
    a, b = rng.randn(1, NUM_WS, W_DIM).astype(np.float32), rng.randn(1, NUM_WS, W_DIM).astype(np.float32) * 3
    if as_tensor:
        a, b = torch.from_numpy(a), torch.from_numpy(b)
    assert (fn(a, b, 0) == a).all() and (fn(a, b, 1) == b).all()
    path = fn(a, b, [0, 0.5, 1])
    assert tuple(path.shape) == (3, 1, NUM_WS, W_DIM)
    assert (path[0] == a).all() and (path[-1] == b).all()
    assert isinstance(path, torch.Tensor) == as_tensor


def _angle(u, v):
    return np.arccos(np.clip(np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1), -1, 1))


def test_slerp_norm_path_is_linear_and_angle_uniform():
    rng = np.random.RandomState(0)
    a = rng.randn(NUM_WS, W_DIM)
    b = rng.randn(NUM_WS, W_DIM) * rng.uniform(0.5, 3, size=(NUM_WS, 1))  # unequal norms per level
    theta = _angle(a, b)
    for t in np.linspace(0.1, 0.9, 5):
        s = li.slerp(a, b, t).astype(np.float64)
        expected = (1 - t) * np.linalg.norm(a, axis=-1) + t * np.linalg.norm(b, axis=-1)
        assert np.allclose(np.linalg.norm(s, axis=-1), expected, rtol=1e-5)
        assert np.allclose(_angle(a, s), t * theta, atol=1e-4)
        assert np.allclose(_angle(s, b), (1 - t) * theta, atol=1e-4)
    # Equal norms: the norm stays constant, unlike lerp's, which sags.
    b_eq = b / np.linalg.norm(b, axis=-1, keepdims=True) * np.linalg.norm(a, axis=-1, keepdims=True)
    mid = li.slerp(a, b_eq, 0.5)
    assert np.allclose(np.linalg.norm(mid, axis=-1), np.linalg.norm(a, axis=-1), rtol=1e-5)
    assert np.all(np.linalg.norm(li.lerp(a, b_eq, 0.5), axis=-1) < np.linalg.norm(a, axis=-1) * 0.9)


def test_slerp_about_a_center():
    rng = np.random.RandomState(2)
    center = rng.randn(W_DIM)
    a, b = center + rng.randn(NUM_WS, W_DIM), center + 2 * rng.randn(NUM_WS, W_DIM)
    s = li.slerp(a, b, 0.25, center=center).astype(np.float64)
    expected = 0.75 * np.linalg.norm(a - center, axis=-1) + 0.25 * np.linalg.norm(b - center, axis=-1)
    assert np.allclose(np.linalg.norm(s - center, axis=-1), expected, rtol=1e-5)
    assert not np.allclose(s, li.slerp(a, b, 0.25))


def test_slerp_parallel_antiparallel_and_zero_rows():
    rng = np.random.RandomState(3)
    u = rng.randn(4, 8)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    par = li.slerp(u, 3 * u, 0.5)
    assert np.allclose(par, 2 * u, atol=1e-6)
    anti = li.slerp(u, -u, [0.25, 0.5, 1]).astype(np.float64)
    assert np.all(np.isfinite(anti))
    assert np.allclose(np.sum(anti[1] * u, -1), 0, atol=1e-6)  # halfway round: orthogonal
    assert np.allclose(np.linalg.norm(anti, axis=-1), 1, atol=1e-6)
    assert np.allclose(_angle(u, anti[0]), np.pi / 4, atol=1e-5)
    zero = li.slerp(np.zeros((1, 8)), u[:1], 0.5)
    assert np.allclose(zero, 0.5 * u[:1], atol=1e-6)


@pytest.mark.parametrize('mode', ['linear', 'spherical'])
def test_interpolate_through_several_codes(mode):
    rng = np.random.RandomState(4)
    codes = [rng.randn(1, NUM_WS, W_DIM).astype(np.float32) for _ in range(3)]
    path = li.interpolate(codes, steps=4, mode=mode)
    assert path.shape == (7, NUM_WS, W_DIM)
    for i, k in enumerate([0, 3, 6]):
        assert np.array_equal(path[k], codes[i][0])
    # Only the chosen levels move; the rest keep the first code's.
    part = li.interpolate(codes[:2], steps=3, mode=mode, layers='fine')
    assert np.array_equal(part[:, :8], np.broadcast_to(codes[0][0, :8], (3, 8, W_DIM)))
    assert np.array_equal(part[-1, 8:], codes[1][0, 8:])
    with pytest.raises(UserError):
        li.interpolate(codes[:1], 3)
    with pytest.raises(UserError):
        li.interpolate(codes, 1)
    with pytest.raises(UserError, match='mode'):
        li.interpolate(codes, 3, mode='cubic')
    with pytest.raises(UserError, match='shape'):
        li.interpolate([codes[0], codes[1][:, :4]], 3)

#----------------------------------------------------------------------------
# Levels.

def test_parse_layers():
    assert li.parse_layers('0-7') == list(range(8))
    assert li.parse_layers('coarse') == [0, 1, 2, 3]
    assert li.parse_layers('middle') == [4, 5, 6, 7]
    assert li.parse_layers('fine') == list(range(8, 14))
    assert li.parse_layers('3,5,8-10') == [3, 5, 8, 9, 10]
    assert li.parse_layers('coarse, 10') == [0, 1, 2, 3, 10]
    assert li.parse_layers('all') == li.parse_layers(None) == list(range(14))
    assert li.parse_layers([1, '2-3']) == [1, 2, 3]
    for bad in ['14', '3-1', 'x', '1;2', '-1', '0-99']:
        with pytest.raises(UserError, match='--layers'):
            li.parse_layers(bad)


def test_level_ranges_scale_with_num_ws():
    r = li.level_ranges(14)
    assert r['coarse'] + r['middle'] + r['fine'] == list(range(14))
    assert li.level_ranges(12)['fine'] == list(range(8, 12))   # a 128-px tri-plane backbone
    r6 = li.level_ranges(6)
    assert [len(v) for v in r6.values()] == [2, 2, 2] and sum(r6.values(), []) == list(range(6))
    assert li.parse_layers('fine', 6) == [4, 5]


def test_format_layers_round_trip():
    for levels in [[0, 1, 2, 3], [3, 5, 8, 9, 10], list(range(14)), [13]]:
        assert li.parse_layers(li.format_layers(levels, 14)) == levels
    assert li.format_layers(range(14), 14) == 'all'


def test_mix_layers():
    rng = np.random.RandomState(5)
    a, b = rng.randn(1, NUM_WS, W_DIM), rng.randn(1, NUM_WS, W_DIM)
    m = li.mix_layers(a, b, 'coarse')
    assert np.allclose(m[0, :4], b[0, :4]) and np.allclose(m[0, 4:], a[0, 4:])
    assert isinstance(li.mix_layers(torch.from_numpy(a), b, [0]), torch.Tensor)

#----------------------------------------------------------------------------
# Edits.

@pytest.mark.parametrize('form', ['w', 'wplus_flat', 'eg3d'])
def test_edit_moves_only_the_chosen_levels(form):
    rng = np.random.RandomState(6)
    w = rng.randn(1, NUM_WS, W_DIM).astype(np.float32)
    levels = unit(rng.randn(NUM_WS, W_DIM))
    boundary = {'w': levels[:1], 'wplus_flat': levels.reshape(1, -1),
                'eg3d': np.tile(levels[:1], (NUM_WS, 1))[None]}[form]
    per_level = boundaries.boundary_levels(boundary, NUM_WS, W_DIM)
    alphas = [-2.0, 0.0, 1.5]
    out = li.edit(w, boundary, alphas, layers='0-3,10')
    assert out.shape == (3, NUM_WS, W_DIM)
    chosen = [0, 1, 2, 3, 10]
    others = [l for l in range(NUM_WS) if l not in chosen]
    for alpha, e in zip(alphas, out):
        assert np.allclose(e[chosen] - w[0, chosen], alpha * per_level[chosen], atol=1e-5)
        assert np.array_equal(e[others], w[0, others])
    assert np.allclose(out[1], w[0])
    assert isinstance(li.edit(torch.from_numpy(w), boundary, alphas), torch.Tensor)
