"""latent_interp: interpolation, level parsing, boundaries (training, conditioning, edits, files)
and scores CSVs. No EG3D needed."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eg3d_regressor_plugin import latent_interp as li
from eg3d_regressor_plugin.errors import UserError

NUM_WS, W_DIM = 14, 512


def dot(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def unit(v):
    return v / np.linalg.norm(v)


def fake_G(seed):
    """Just what eg3d.generator_identity reads."""
    w_avg = torch.randn(W_DIM, generator=torch.Generator().manual_seed(seed))
    return SimpleNamespace(backbone=SimpleNamespace(num_ws=NUM_WS, mapping=SimpleNamespace(w_avg=w_avg)),
                           w_dim=W_DIM, img_resolution=128)

#----------------------------------------------------------------------------
# Boundary training.

def planted(n, dim=W_DIM, noise=0.1, seed=0):
    rng = np.random.RandomState(seed)
    direction = unit(rng.randn(dim))
    codes = rng.randn(n, dim)
    scores = codes @ direction + noise * rng.randn(n)
    return codes, scores, direction


@pytest.mark.parametrize('svm', ['linear_svc', 'svc'])
def test_planted_direction_is_recovered(svm):
    # Isotropic 512-d codes are the hard case: the SVM normal reaches cosine ~0.92 with 2000 codes
    # (any ratio), 0.95-0.96 with 4000 and 0.96-0.97 with 5000 codes at ratio 0.3 (seeds 0-3).
    codes, scores, direction = planted(5000)
    b, info = li.train_boundary(codes, scores, chosen_num_or_ratio=0.3, svm=svm, seed=1)
    assert b.shape == (1, W_DIM) and b.dtype == np.float32
    assert np.linalg.norm(b) == pytest.approx(1, abs=1e-6)
    assert dot(b, direction) >= 0.95  # also checks it points toward higher scores
    assert info['val']['accuracy'] > 0.9 and info['train']['accuracy'] >= info['val']['accuracy'] - 0.05


def test_reversed_scores_reverse_the_boundary():
    codes, scores, direction = planted(1000, dim=16)
    b_up, _ = li.train_boundary(codes, scores, 0.3)
    b_down, _ = li.train_boundary(codes, -scores, 0.3)
    assert dot(b_up, direction) > 0.9 and dot(b_down, direction) < -0.9


def test_train_boundary_counts_follow_interfacegan():
    codes, scores, _ = planted(300, dim=8)
    _, info = li.train_boundary(codes, scores, chosen_num_or_ratio=0.1, split_ratio=0.7)
    assert info['chosen_num'] == 30
    assert info['train']['positive'] == info['train']['negative'] == 21
    assert info['val']['positive'] == info['val']['negative'] == 9
    assert info['remaining']['positive'] + info['remaining']['negative'] == 300 - 60
    # The remaining codes are labelled by the (max + min) / 2 threshold.
    thr = (scores.max() + scores.min()) / 2
    assert info['threshold'] == pytest.approx(thr)
    middle = np.sort(scores)[30:-30]
    assert info['remaining']['positive'] == int((middle >= thr).sum())
    # A count above 1 is a number of codes, capped at N // 2.
    assert li.train_boundary(codes, scores, chosen_num_or_ratio=40)[1]['chosen_num'] == 40
    assert li.train_boundary(codes, scores, chosen_num_or_ratio=1000)[1]['chosen_num'] == 150


def test_train_boundary_split_depends_on_seed_only():
    codes, scores, _ = planted(400, dim=8)
    a, _ = li.train_boundary(codes, scores, 0.2, seed=3)
    b, _ = li.train_boundary(codes, scores, 0.2, seed=3)
    c, _ = li.train_boundary(codes, scores, 0.2, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_train_boundary_invalid_value_and_refusals():
    codes, scores, _ = planted(200, dim=8)
    scores[:50] = -1
    _, info = li.train_boundary(codes, scores, 0.1, invalid_value=-1)
    assert info['num_codes'] == 150
    with pytest.raises(UserError, match='too few codes'):
        li.train_boundary(codes[:20], scores[:20], 0.02)
    with pytest.raises(UserError, match='do not separate'):
        li.train_boundary(codes, np.ones(200), 0.1)
    with pytest.raises(UserError, match='scores'):
        li.train_boundary(codes, scores[:10])
    bad = scores.copy()
    bad[3] = np.nan
    with pytest.raises(UserError, match='NaN'):
        li.train_boundary(codes, bad)

#----------------------------------------------------------------------------
# Conditional boundaries.

@pytest.mark.parametrize('n_conditions', [1, 2, 3, 5])
def test_conditional_boundary_is_unit_and_orthogonal(n_conditions):
    rng = np.random.RandomState(n_conditions)
    primal = unit(rng.randn(1, W_DIM))
    # Conditions correlated with the primal and with each other, as real attributes are.
    conds = [unit(primal + rng.randn(1, W_DIM) * 0.7) for _ in range(n_conditions)]
    new = li.project_boundary(primal, *conds)
    assert new.shape == (1, W_DIM)
    assert np.linalg.norm(new) == pytest.approx(1, abs=1e-6)
    for c in conds:
        assert abs(dot(new, c)) < 1e-6
    assert dot(new, primal) > 0  # still points the primal's way


def test_two_condition_closed_form_matches_the_general_projection():
    rng = np.random.RandomState(0)
    primal, c1, c2 = (unit(rng.randn(1, 64)) for _ in range(3))
    closed = li.project_boundary(primal, c1, c2)
    Q = li._orth_basis(np.concatenate([c1, c2]))
    general = unit(primal - (primal @ Q.T) @ Q)
    assert np.allclose(closed, general, atol=1e-6)


def test_conditional_boundary_edge_cases():
    rng = np.random.RandomState(1)
    primal, c = unit(rng.randn(1, 32)), unit(rng.randn(1, 32))
    # Non-unit and duplicated (parallel) conditions.
    new = li.project_boundary(primal, 5 * c, c)
    assert abs(dot(new, c)) < 1e-6 and np.linalg.norm(new) == pytest.approx(1, abs=1e-6)
    assert np.array_equal(li.project_boundary(primal), primal.astype(np.float32))
    with pytest.raises(UserError, match='span'):
        li.project_boundary(c, c)
    with pytest.raises(UserError, match='dimensions'):
        li.project_boundary(primal, rng.randn(1, 16))
    with pytest.raises(UserError, match='zero'):
        li.project_boundary(primal, np.zeros((1, 32)))
    t = li.project_boundary(torch.from_numpy(primal), c)
    assert isinstance(t, torch.Tensor)

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
    per_level = li.boundary_levels(boundary, NUM_WS, W_DIM)
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


def test_boundary_shapes():
    assert li.boundary_levels(np.ones((1, W_DIM)), NUM_WS, W_DIM).shape == (NUM_WS, W_DIM)
    for bad in [np.ones((1, 100)), np.ones((2, W_DIM)), np.ones((1, 13, W_DIM)), np.ones((1, NUM_WS * W_DIM + 1))]:
        with pytest.raises(UserError, match='fits neither'):
            li.boundary_levels(bad, NUM_WS, W_DIM)
    b = unit(np.random.RandomState(0).randn(1, W_DIM))
    assert li.boundary_space(b, W_DIM) == 'w'
    assert li.boundary_space(np.tile(b, (NUM_WS, 1))[None], W_DIM) == 'w'
    assert li.boundary_space(np.random.randn(1, NUM_WS * W_DIM), W_DIM) == 'wplus'
    # A w boundary as a W+ condition: repeated on every level, unit norm; and back.
    plus = li.as_space(b, 'wplus', NUM_WS, W_DIM)
    assert plus.shape == (1, NUM_WS * W_DIM) and np.linalg.norm(plus) == pytest.approx(1)
    assert np.allclose(li.as_space(plus, 'w', NUM_WS, W_DIM), b, atol=1e-6)
    with pytest.raises(UserError, match='different levels'):
        li.as_space(np.random.randn(1, NUM_WS * W_DIM), 'w', NUM_WS, W_DIM)

#----------------------------------------------------------------------------
# Boundary files.

def test_save_and_load_boundary(tmp_path):
    G = fake_G(0)
    from eg3d_regressor_plugin import fingerprint
    b = unit(np.random.RandomState(0).randn(1, W_DIM)).astype(np.float32)
    meta = dict(attribute='smile', layers='0-7', accuracy=dict(val=0.9), generator=fingerprint.generator_fingerprint(G),
                counts=dict(codes=np.int64(100)))
    path = li.save_boundary(tmp_path / 'smile', b, meta)
    assert path == tmp_path / 'smile.npy' and (tmp_path / 'smile.json').is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []
    loaded, loaded_meta = li.load_boundary(path, G=G)
    assert np.array_equal(loaded, b)
    assert loaded_meta['attribute'] == 'smile' and loaded_meta['counts']['codes'] == 100
    assert json.loads((tmp_path / 'smile.json').read_text())['layers'] == '0-7'
    # Another generator is refused by its fingerprint.
    with pytest.raises(UserError, match='another generator'):
        li.load_boundary(path, G=fake_G(1))
    # A boundary without .json (InterFaceGAN's) loads with empty meta.
    np.save(tmp_path / 'plain.npy', b)
    assert li.load_boundary(tmp_path / 'plain.npy', G=G)[1] == {}


def test_load_boundary_refusals(tmp_path):
    G = fake_G(0)
    cases = {'wrong_shape': np.ones((1, 100), np.float32), 'nan': np.full((1, W_DIM), np.nan, np.float32),
             'zero': np.zeros((1, W_DIM), np.float32), 'stack': np.ones((3, W_DIM), np.float32)}
    for name, arr in cases.items():
        np.save(tmp_path / f'{name}.npy', arr)
    with pytest.raises(UserError, match='fits neither'):
        li.load_boundary(tmp_path / 'wrong_shape.npy', G=G)
    with pytest.raises(UserError, match='NaN'):
        li.load_boundary(tmp_path / 'nan.npy')
    with pytest.raises(UserError, match='zero'):
        li.load_boundary(tmp_path / 'zero.npy')
    with pytest.raises(UserError, match='shape'):
        li.load_boundary(tmp_path / 'stack.npy')
    with pytest.raises(UserError, match='not found'):
        li.load_boundary(tmp_path / 'missing.npy')
    (tmp_path / 'text.npy').write_text('hello')
    with pytest.raises(UserError, match='not a .npy'):
        li.load_boundary(tmp_path / 'text.npy')
    np.save(tmp_path / 'ok.npy', np.ones((1, W_DIM), np.float32))
    (tmp_path / 'ok.json').write_text('{broken')
    with pytest.raises(UserError, match='JSON'):
        li.load_boundary(tmp_path / 'ok.npy')

#----------------------------------------------------------------------------
# Codes and scores.

def test_load_code_shapes(tmp_path):
    w = np.random.RandomState(0).randn(1, NUM_WS, W_DIM).astype(np.float32)
    for name, arr in {'a': w, 'b': w[0], 'c': w[:, 0], 'd': w[0, 0]}.items():
        np.save(tmp_path / f'{name}.npy', arr)
        out = li.load_code(tmp_path / f'{name}.npy', NUM_WS, W_DIM)
        assert out.shape == (1, NUM_WS, W_DIM) and out.dtype == np.float32
    assert np.array_equal(li.load_code(tmp_path / 'c.npy', NUM_WS, W_DIM)[0, 5], w[0, 0])
    np.save(tmp_path / 'bad.npy', np.ones((1, 12, W_DIM)))
    with pytest.raises(UserError, match='shape'):
        li.load_code(tmp_path / 'bad.npy', NUM_WS, W_DIM)


def write_codes(folder, n, seed=0, plain=()):
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w = np.repeat(rng.randn(1, 1, W_DIM), NUM_WS, axis=1).astype(np.float32)
        np.save(folder / f'seed{i:04d}.npy', w[:, 0] if i in plain else w)


def test_load_scores(tmp_path):
    write_codes(tmp_path / 'codes', 5, plain={2})
    csv = tmp_path / 'codes' / 'scores.csv'
    csv.write_text('code_path,score\nseed0000.npy,1.5\nseed0001.npy,-2\nseed0002.npy,0\nseed0003.npy,\n\nseed0004.npy, 3e-1\n')
    data = li.load_scores(csv)
    assert data.codes.shape == (4, NUM_WS, W_DIM) and data.codes.dtype == np.float32
    assert list(data.scores) == [1.5, -2, 0, 0.3]
    assert data.unlabelled == 1
    assert np.array_equal(data.codes[2, 7], np.load(tmp_path / 'codes' / 'seed0002.npy')[0])  # plain w repeated
    # No header; paths relative to the codes folder instead of the CSV's.
    other = tmp_path / 'labels.csv'
    other.write_text('seed0000.npy,1\nseed0001.npy,2\n')
    assert li.load_scores(other, tmp_path / 'codes').paths[1] == tmp_path / 'codes' / 'seed0001.npy'
    assert len(li.load_scores(other, tmp_path / 'codes').codes) == 2


@pytest.mark.parametrize('content, match', [
    ('code_path,score\nseed0000.npy,1\nseed0009.npy,2\n', 'row 3: code file seed0009.npy not found'),
    ('seed0000.npy,1\nseed0001.npy,smiling\n', 'row 2: score .smiling. is not a number'),
    ('seed0000.npy,1\nseed0001.npy,nan\n', 'row 2: .* not a finite number'),
    ('', 'is empty'),
    ('code_path,score\n', 'is empty'),
    ('code_path,score\nseed0000.npy,\n', 'no scores yet'),
    ('seed0000.npy,1\n./seed0000.npy,2\n', 'row 2: code ./seed0000.npy is listed twice'),
    ('seed0000.npy\n', 'row 1: expected code_path,score'),
    ('seed0000.npy,1\nbad.npy,2\n', 'row 2: latent code .* has shape'),
])
def test_load_scores_errors_name_the_row(tmp_path, content, match):
    write_codes(tmp_path, 2)
    np.save(tmp_path / 'bad.npy', np.ones((3, 7)))
    (tmp_path / 's.csv').write_text(content)
    with pytest.raises(UserError, match=match):
        li.load_scores(tmp_path / 's.csv', num_ws=NUM_WS, w_dim=W_DIM)


def test_codes_in_space():
    codes = np.random.RandomState(0).randn(3, NUM_WS, W_DIM)
    assert np.array_equal(li.codes_in_space(codes, 'w'), codes[:, 0])
    assert li.codes_in_space(codes, 'wplus').shape == (3, NUM_WS * W_DIM)
    with pytest.raises(UserError):
        li.codes_in_space(codes, 'z')
