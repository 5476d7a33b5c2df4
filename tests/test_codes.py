"""codes: reading code files and scored CSVs, and the vectors a boundary is trained on. No EG3D
needed."""

import numpy as np
import pytest

from eg3d_regressor_plugin import codes as cd
from eg3d_regressor_plugin.errors import UserError

NUM_WS, W_DIM = 14, 512

#----------------------------------------------------------------------------
# Codes and scores.

def test_load_code_shapes(tmp_path):
    w = np.random.RandomState(0).randn(1, NUM_WS, W_DIM).astype(np.float32)
    for name, arr in {'a': w, 'b': w[0], 'c': w[:, 0], 'd': w[0, 0]}.items():
        np.save(tmp_path / f'{name}.npy', arr)
        out = cd.load_code(tmp_path / f'{name}.npy', NUM_WS, W_DIM)
        assert out.shape == (1, NUM_WS, W_DIM) and out.dtype == np.float32
    assert np.array_equal(cd.load_code(tmp_path / 'c.npy', NUM_WS, W_DIM)[0, 5], w[0, 0])
    np.save(tmp_path / 'bad.npy', np.ones((1, 12, W_DIM)))
    with pytest.raises(UserError, match='shape'):
        cd.load_code(tmp_path / 'bad.npy', NUM_WS, W_DIM)


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
    data = cd.load_scores(csv)
    assert data.codes.shape == (4, NUM_WS, W_DIM) and data.codes.dtype == np.float32
    assert list(data.scores) == [1.5, -2, 0, 0.3]
    assert data.unlabelled == 1
    assert np.array_equal(data.codes[2, 7], np.load(tmp_path / 'codes' / 'seed0002.npy')[0])  # plain w repeated
    # No header; paths relative to the codes folder instead of the CSV's.
    other = tmp_path / 'labels.csv'
    other.write_text('seed0000.npy,1\nseed0001.npy,2\n')
    assert cd.load_scores(other, tmp_path / 'codes').paths[1] == tmp_path / 'codes' / 'seed0001.npy'
    assert len(cd.load_scores(other, tmp_path / 'codes').codes) == 2


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
        cd.load_scores(tmp_path / 's.csv', num_ws=NUM_WS, w_dim=W_DIM)


def test_codes_in_space():
    codes = np.random.RandomState(0).randn(3, NUM_WS, W_DIM)
    assert np.array_equal(cd.codes_in_space(codes, 'w'), codes[:, 0])
    assert cd.codes_in_space(codes, 'wplus').shape == (3, NUM_WS * W_DIM)
    with pytest.raises(UserError):
        cd.codes_in_space(codes, 'z')
