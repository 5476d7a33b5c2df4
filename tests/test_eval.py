"""`eg3d-regress eval` (calc_metrics.py) and the metrics it reports (metrics.py)."""

import csv
import json
import math

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from eg3d_regressor_plugin import metrics as M

RES = 128


def eval_inprocess(*args):
    from eg3d_regressor_plugin.calc_metrics import calc_metrics
    return CliRunner().invoke(calc_metrics, [str(a) for a in args] + ['--device', 'cpu'])


#----------------------------------------------------------------------------
# metrics.py

def test_psnr_ssim():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert M.psnr(a, a) == math.inf and M.ssim(a, a) == pytest.approx(1)
    # One pixel off by 1 in 32*32*3 values: MSE = 1/3072.
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 * 3072))
    noisy = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    assert M.ssim(a, noisy) < M.ssim(a, b) < 1
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1
    y = torch.from_numpy(noisy).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert float(M.psnr_tensor(x, y)) == pytest.approx(M.psnr(a, noisy), abs=1e-3)


def test_latent_pose_depth_errors():
    w = torch.zeros(2, 14, 512)
    w_true = torch.full((2, 14, 512), 0.5)
    w_true[1] = -2
    e = M.latent_errors(w, w_true, w_std=torch.full((14, 512), 0.25))
    assert np.allclose(e['w_l1'], [0.5, 2]) and np.allclose(e['w_l2'], [0.5, 2])
    assert np.allclose(e['w_l1_norm'], [2, 8])
    p = M.pose_errors([0.1, 0.0], [0.0, 0.0], [0.1, 0.3], [0.0, 0.0])
    assert np.allclose(p['yaw_err_deg'], [0, math.degrees(0.3)])
    assert np.allclose(p['pose_err_deg'], [0, math.degrees(0.3)], atol=1e-4)  # a pure yaw turn
    p = M.pose_errors([0.0], [0.2], [0.0], [0.0])
    assert p['pitch_err_deg'][0] == pytest.approx(math.degrees(0.2))
    assert 0 < p['pose_err_deg'][0] != pytest.approx(math.degrees(0.2))  # a pitch offset is no elevation
    d = M.depth_error(torch.ones(1, 1, 4, 4), torch.full((1, 1, 4, 4), 1.5))
    assert np.allclose(d, [0.5])
    assert M.cosine_similarity([1, 0], [0, 2]) == pytest.approx(0)
    assert math.isnan(M.cosine_similarity(None, [1.0])) and math.isnan(M.embedding_distance([1.0], None))
    assert M.embedding_distance([0, 3], [4, 0]) == pytest.approx(5)


#----------------------------------------------------------------------------
# The command.

@pytest.mark.eg3d
def test_eval_synthetic_writes_metrics_with_baseline(tmp_path, tiny_G, tiny_pkl, tiny_regressor):
    from eg3d_regressor_plugin.training.data import PairSampler
    out = tmp_path / 'eval'
    r = eval_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--seeds', '1000-1001', '--outdir', out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert 'synthetic (2 images)' in r.output and 'baseline' in r.output
    report = json.loads((out / 'metrics.json').read_text())
    m = report['synthetic']['metrics']
    for key in ['w_l1', 'w_l2', 'w_l1_norm', 'w_l2_norm', 'pose_err_deg', 'psnr', 'ssim', 'depth_err']:
        assert m[key]['count'] == 2 and m[key + '_baseline']['count'] == 2
    assert m['regress_s']['mean'] > 0
    with open(out / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['name'] for r in rows] == ['seed1000', 'seed1001']
    # The baseline's latent error really is w_avg's distance to the held-out sample's w.
    s = PairSampler(tiny_G).sample_seeds([1000])
    expected = (s['w'] - tiny_G.backbone.mapping.w_avg).abs().mean()
    assert float(rows[0]['w_l1_baseline']) == pytest.approx(float(expected), rel=1e-4)
    with PIL.Image.open(out / 'grid.png') as im:
        assert im.size == (3 * RES, 2 * RES)  # input | regressor | baseline, one row per image
    assert [p.name for p in out.iterdir() if p.name.startswith('.')] == []


@pytest.mark.eg3d
def test_eval_photos_and_refinement(tmp_path, tiny_pkl, tiny_regressor):
    """Real photos (aligned; a broken file is skipped and named) plus synthetic seeds, refined."""
    pytest.importorskip('dlib')
    import skimage.data
    photos = tmp_path / 'photos'
    photos.mkdir()
    PIL.Image.fromarray(skimage.data.astronaut()).save(photos / 'astronaut.jpg')
    (photos / 'notes.jpg').write_text('not pixels\n' * 10)
    out = tmp_path / 'eval'
    r = eval_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--seeds', '1000', '--images', photos,
                       '--refine-steps', 2, '--outdir', out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert 'notes.jpg' in r.stderr and 'not an image' in r.stderr
    report = json.loads((out / 'metrics.json').read_text())
    real = report['real']
    assert report['refine_steps'] == 2 and report['refine_optimizer'] == 'lbfgs'
    assert real['count'] == 1 and real['failures'][0]['name'] == 'notes.jpg'
    for key in ['psnr', 'ssim']:
        for suffix in ['', '_baseline', '_refined']:
            assert real['metrics'][key + suffix]['count'] == 1
    # Identity similarity is reported (NaN -> null where dlib finds no face in a random render).
    assert 'id_cos' in real['metrics'] and 'id_dist_baseline' in real['metrics']
    syn = report['synthetic']['metrics']
    # The identity port scores every render (no detection): a value per method, cosines in [-1, 1].
    for metrics in (syn, real['metrics']):
        for suffix in ['', '_baseline', '_refined']:
            assert metrics['id_sim' + suffix]['count'] == 1 and -1 <= metrics['id_sim' + suffix]['mean'] <= 1
    assert syn['psnr_refined']['mean'] >= syn['psnr']['mean'] - 1e-6  # refinement keeps its best step
    with open(out / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['set'], r['name']) for r in rows] == [('synthetic', 'seed1000'), ('real', 'astronaut.jpg')]
    with PIL.Image.open(out / 'grid.png') as im:
        assert im.size == (4 * RES, 2 * RES)  # input | regressor | baseline | refined


@pytest.mark.eg3d
def test_eval_refusals(tmp_path, tiny_pkl, tiny_regressor):
    blocker = tmp_path / 'a-file'
    blocker.write_text('x')
    r = eval_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--seeds', '1', '--outdir',
                       blocker / 'eval')
    assert r.exit_code != 0 and '--outdir' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    photos = tmp_path / 'photos'
    photos.mkdir()
    (photos / 'notes.jpg').write_text('not pixels\n' * 10)
    out = tmp_path / 'eval'
    r = eval_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--images', photos, '--no-align',
                       '--outdir', out)
    assert r.exit_code != 0 and 'nothing to evaluate' in r.stderr and not out.exists()
    r = eval_inprocess('--network', tiny_pkl, '--regressor', tmp_path / 'none.pt', '--outdir', out)
    assert r.exit_code != 0 and 'not found' in r.stderr and not out.exists()
    (tmp_path / 'arcface.pth').write_text('not a checkpoint')
    r = eval_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--seeds', '1',
                       '--identity', tmp_path / 'arcface.pth', '--outdir', out)
    assert r.exit_code != 0 and 'arcface.pth' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
