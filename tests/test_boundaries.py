"""boundaries: training (InterFaceGAN's procedure), conditioning, shapes and files. No EG3D needed."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eg3d_regressor_plugin import boundaries as bd
from eg3d_regressor_plugin.errors import UserError

NUM_WS, W_DIM = 14, 512


def dot(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def unit(v):
    return v / np.linalg.norm(v)


def fake_G(seed):
    """Just what fingerprint.generator_fingerprint reads."""
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
    # Isotropic 512-d codes are the hard case: the SVM normal needs thousands of codes to come
    # this close to the planted direction, hence 5000.
    codes, scores, direction = planted(5000)
    b, info = bd.train_boundary(codes, scores, chosen_num_or_ratio=0.3, svm=svm, seed=1)
    assert b.shape == (1, W_DIM) and b.dtype == np.float32
    assert np.linalg.norm(b) == pytest.approx(1, abs=1e-6)
    assert dot(b, direction) >= 0.95  # also checks it points toward higher scores
    assert info['val']['accuracy'] > 0.9 and info['train']['accuracy'] >= info['val']['accuracy'] - 0.05


def test_reversed_scores_reverse_the_boundary():
    codes, scores, direction = planted(1000, dim=16)
    b_up, _ = bd.train_boundary(codes, scores, 0.3)
    b_down, _ = bd.train_boundary(codes, -scores, 0.3)
    assert dot(b_up, direction) > 0.9 and dot(b_down, direction) < -0.9


def test_train_boundary_counts_follow_interfacegan():
    codes, scores, _ = planted(300, dim=8)
    _, info = bd.train_boundary(codes, scores, chosen_num_or_ratio=0.1, split_ratio=0.7)
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
    assert bd.train_boundary(codes, scores, chosen_num_or_ratio=40)[1]['chosen_num'] == 40
    assert bd.train_boundary(codes, scores, chosen_num_or_ratio=1000)[1]['chosen_num'] == 150


def test_train_boundary_split_depends_on_seed_only():
    codes, scores, _ = planted(400, dim=8)
    a, _ = bd.train_boundary(codes, scores, 0.2, seed=3)
    b, _ = bd.train_boundary(codes, scores, 0.2, seed=3)
    c, _ = bd.train_boundary(codes, scores, 0.2, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_train_boundary_invalid_value_and_refusals():
    codes, scores, _ = planted(200, dim=8)
    scores[:50] = -1
    _, info = bd.train_boundary(codes, scores, 0.1, invalid_value=-1)
    assert info['num_codes'] == 150
    with pytest.raises(UserError, match='too few codes'):
        bd.train_boundary(codes[:20], scores[:20], 0.02)
    with pytest.raises(UserError, match='do not separate'):
        bd.train_boundary(codes, np.ones(200), 0.1)
    with pytest.raises(UserError, match='scores'):
        bd.train_boundary(codes, scores[:10])
    bad = scores.copy()
    bad[3] = np.nan
    with pytest.raises(UserError, match='NaN'):
        bd.train_boundary(codes, bad)

#----------------------------------------------------------------------------
# Conditional boundaries.

@pytest.mark.parametrize('n_conditions', [1, 2, 3, 5])
def test_conditional_boundary_is_unit_and_orthogonal(n_conditions):
    rng = np.random.RandomState(n_conditions)
    primal = unit(rng.randn(1, W_DIM))
    # Conditions correlated with the primal and with each other, as real attributes are.
    conds = [unit(primal + rng.randn(1, W_DIM) * 0.7) for _ in range(n_conditions)]
    new = bd.project_boundary(primal, *conds)
    assert new.shape == (1, W_DIM)
    assert np.linalg.norm(new) == pytest.approx(1, abs=1e-6)
    for c in conds:
        assert abs(dot(new, c)) < 1e-6
    assert dot(new, primal) > 0  # still points the primal's way


def test_two_condition_closed_form_matches_the_general_projection():
    rng = np.random.RandomState(0)
    primal, c1, c2 = (unit(rng.randn(1, 64)) for _ in range(3))
    closed = bd.project_boundary(primal, c1, c2)
    Q = bd._orth_basis(np.concatenate([c1, c2]))
    general = unit(primal - (primal @ Q.T) @ Q)
    assert np.allclose(closed, general, atol=1e-6)


def test_conditional_boundary_edge_cases():
    rng = np.random.RandomState(1)
    primal, c = unit(rng.randn(1, 32)), unit(rng.randn(1, 32))
    # Non-unit and duplicated (parallel) conditions.
    new = bd.project_boundary(primal, 5 * c, c)
    assert abs(dot(new, c)) < 1e-6 and np.linalg.norm(new) == pytest.approx(1, abs=1e-6)
    assert np.array_equal(bd.project_boundary(primal), primal.astype(np.float32))
    with pytest.raises(UserError, match='span'):
        bd.project_boundary(c, c)
    with pytest.raises(UserError, match='dimensions'):
        bd.project_boundary(primal, rng.randn(1, 16))
    with pytest.raises(UserError, match='zero'):
        bd.project_boundary(primal, np.zeros((1, 32)))
    t = bd.project_boundary(torch.from_numpy(primal), c)
    assert isinstance(t, torch.Tensor)

#----------------------------------------------------------------------------
# Shapes.

def test_boundary_shapes():
    assert bd.boundary_levels(np.ones((1, W_DIM)), NUM_WS, W_DIM).shape == (NUM_WS, W_DIM)
    for bad in [np.ones((1, 100)), np.ones((2, W_DIM)), np.ones((1, 13, W_DIM)), np.ones((1, NUM_WS * W_DIM + 1))]:
        with pytest.raises(UserError, match='fits neither'):
            bd.boundary_levels(bad, NUM_WS, W_DIM)
    b = unit(np.random.RandomState(0).randn(1, W_DIM))
    assert bd.boundary_space(b, W_DIM) == 'w'
    assert bd.boundary_space(np.tile(b, (NUM_WS, 1))[None], W_DIM) == 'w'
    assert bd.boundary_space(np.random.randn(1, NUM_WS * W_DIM), W_DIM) == 'wplus'
    # A w boundary as a W+ condition: repeated on every level, unit norm; and back.
    plus = bd.as_space(b, 'wplus', NUM_WS, W_DIM)
    assert plus.shape == (1, NUM_WS * W_DIM) and np.linalg.norm(plus) == pytest.approx(1)
    assert np.allclose(bd.as_space(plus, 'w', NUM_WS, W_DIM), b, atol=1e-6)
    with pytest.raises(UserError, match='different levels'):
        bd.as_space(np.random.randn(1, NUM_WS * W_DIM), 'w', NUM_WS, W_DIM)

#----------------------------------------------------------------------------
# Boundary files.

def test_save_and_load_boundary(tmp_path):
    G = fake_G(0)
    from eg3d_regressor_plugin import fingerprint
    b = unit(np.random.RandomState(0).randn(1, W_DIM)).astype(np.float32)
    meta = dict(attribute='smile', layers='0-7', accuracy=dict(val=0.9), generator=fingerprint.generator_fingerprint(G),
                counts=dict(codes=np.int64(100)))
    path = bd.save_boundary(tmp_path / 'smile', b, meta)
    assert path == tmp_path / 'smile.npy' and (tmp_path / 'smile.json').is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []
    loaded, loaded_meta = bd.load_boundary(path, G=G)
    assert np.array_equal(loaded, b)
    assert loaded_meta['attribute'] == 'smile' and loaded_meta['counts']['codes'] == 100
    assert json.loads((tmp_path / 'smile.json').read_text())['layers'] == '0-7'
    # Another generator is refused by its fingerprint.
    with pytest.raises(UserError, match='another generator'):
        bd.load_boundary(path, G=fake_G(1))
    # A boundary without .json (InterFaceGAN's) loads with empty meta.
    np.save(tmp_path / 'plain.npy', b)
    assert bd.load_boundary(tmp_path / 'plain.npy', G=G)[1] == {}


def test_load_boundary_refusals(tmp_path):
    G = fake_G(0)
    cases = {'wrong_shape': np.ones((1, 100), np.float32), 'nan': np.full((1, W_DIM), np.nan, np.float32),
             'zero': np.zeros((1, W_DIM), np.float32), 'stack': np.ones((3, W_DIM), np.float32)}
    for name, arr in cases.items():
        np.save(tmp_path / f'{name}.npy', arr)
    with pytest.raises(UserError, match='fits neither'):
        bd.load_boundary(tmp_path / 'wrong_shape.npy', G=G)
    with pytest.raises(UserError, match='NaN'):
        bd.load_boundary(tmp_path / 'nan.npy')
    with pytest.raises(UserError, match='zero'):
        bd.load_boundary(tmp_path / 'zero.npy')
    with pytest.raises(UserError, match='shape'):
        bd.load_boundary(tmp_path / 'stack.npy')
    with pytest.raises(UserError, match='not found'):
        bd.load_boundary(tmp_path / 'missing.npy')
    (tmp_path / 'text.npy').write_text('hello')
    with pytest.raises(UserError, match='not a .npy'):
        bd.load_boundary(tmp_path / 'text.npy')
    np.save(tmp_path / 'ok.npy', np.ones((1, W_DIM), np.float32))
    (tmp_path / 'ok.json').write_text('{broken')
    with pytest.raises(UserError, match='JSON'):
        bd.load_boundary(tmp_path / 'ok.npy')
