"""sample-codes, boundary, edit and interp end to end on the tiny generator, and their refusals of
bad input (one line on stderr, non-zero exit, nothing written)."""

import json
import shutil

import numpy as np
import PIL.Image
import pytest

from conftest import assert_one_line_error, run_cli
from eg3d_regressor_plugin import fingerprint

pytestmark = pytest.mark.eg3d

RES = 128  # the tiny preset's image resolution


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def image_size(path):
    with PIL.Image.open(path) as im:
        im.load()
        return im.size


def mp4_frames(path):
    import imageio.v2 as imageio
    reader = imageio.get_reader(str(path), format='FFMPEG')
    try:
        frames = [np.asarray(f) for f in reader]
    finally:
        reader.close()
    return frames


def no_leftovers(folder):
    """Nothing half-written: no temporary files or folders (atomic writes use dot-names)."""
    return [p.name for p in folder.iterdir() if p.name.startswith('.')] == []


@pytest.fixture(scope='module')
def work(tmp_path_factory, tiny_pkl):
    """A labelled codes folder and a boundary trained on it (planted direction in w)."""
    root = tmp_path_factory.mktemp('edit')
    ok(run_cli('sample-codes', '--network', tiny_pkl, '--count', 40, '--seed', 100, '--no-images',
               '--outdir', root / 'codes', '--device', 'cpu'))
    rng = np.random.RandomState(0)
    direction = rng.randn(512)
    direction /= np.linalg.norm(direction)
    rows = ['code_path,score']
    for path in sorted((root / 'codes').glob('seed*.npy')):
        rows.append(f'{path.name},{float(np.load(path)[0, 0] @ direction):.6f}')
    (root / 'codes' / 'scores.csv').write_text('\n'.join(rows) + '\n')
    proc = ok(run_cli('boundary', '--codes', root / 'codes', '--scores', root / 'codes' / 'scores.csv',
                      '--ratio', 0.3, '--attribute', 'planted', '--layers', '0-7', '--out', root / 'planted.npy'))
    return dict(root=root, pkl=tiny_pkl, direction=direction, boundary_stdout=proc.stdout)


def test_sample_codes_writes_codes_renders_and_template(tmp_path, tiny_pkl, tiny_G):
    out = tmp_path / 'codes'
    ok(run_cli('sample-codes', '--network', tiny_pkl, '--count', 2, '--seed', 7, '--trunc', 0.7, '--outdir', out))
    for name in ['seed0007', 'seed0008']:
        w = np.load(out / f'{name}.npy')
        assert w.shape == (1, 14, 512) and w.dtype == np.float32
        assert np.allclose(w[0], w[0, :1])  # mapping output: every level equal
        assert image_size(out / f'{name}.png') == (RES, RES)
    assert (out / 'scores.csv').read_text().splitlines() == ['code_path,score', 'seed0007.npy,', 'seed0008.npy,']
    assert json.loads((out / 'generator.json').read_text())['generator'] == fingerprint.generator_fingerprint(tiny_G)
    assert no_leftovers(tmp_path)
    # A folder whose scores were already filled in is not overwritten.
    (out / 'scores.csv').write_text('code_path,score\nseed0007.npy,1\n')
    line = assert_one_line_error(run_cli('sample-codes', '--network', tiny_pkl, '--count', 1, '--outdir', out))
    assert 'already holds 1 scores' in line
    assert (out / 'seed0008.npy').is_file()


def test_boundary_command(work, tiny_G):
    root = work['root']
    assert 'validation accuracy' in work['boundary_stdout']
    b = np.load(root / 'planted.npy')
    assert b.shape == (1, 512) and np.linalg.norm(b) == pytest.approx(1, abs=1e-5)
    meta = json.loads((root / 'planted.json').read_text())
    assert meta['attribute'] == 'planted' and meta['space'] == 'w' and meta['layers'] == '0-7'
    assert meta['generator'] == fingerprint.generator_fingerprint(tiny_G)  # taken from the codes' generator.json
    assert meta['counts']['codes'] == 40 and meta['counts']['chosen'] == 12
    assert 0 <= meta['accuracy']['val'] <= 1
    assert float(b[0] @ work['direction']) > 0  # points toward higher scores


def test_conditional_wplus_boundary_command(work):
    root = work['root']
    proc = ok(run_cli('boundary', '--codes', root / 'codes', '--scores', root / 'codes' / 'scores.csv',
                      '--ratio', 0.3, '--space', 'wplus', '--condition', root / 'planted.npy',
                      '--network', work['pkl'], '--out', root / 'cond.npy'))
    assert 'conditioned on 1 boundary' in proc.stdout
    b = np.load(root / 'cond.npy')
    assert b.shape == (1, 14 * 512)
    condition = np.tile(np.load(root / 'planted.npy'), (1, 14)) / np.sqrt(14)  # the w boundary in W+
    assert abs(float(b[0] @ condition[0])) < 1e-6 and np.linalg.norm(b) == pytest.approx(1, abs=1e-5)


def test_edit_with_w_shapes_and_video(work):
    root = work['root']
    out = root / 'edit_out'
    w_path = root / 'codes' / 'seed0100.npy'
    ok(run_cli('edit', '--network', work['pkl'], '--w', w_path, '--boundary', root / 'planted.npy',
               '--alphas=-2:2:3', '--shapes', '--shape-res', 32, '--shape-format', '.ply', '--video',
               '--video-frames', 4, '--orbit', '--outdir', out, '--device', 'cpu'))
    assert image_size(out / 'grid.png') == (3 * RES, RES)
    w = np.load(w_path)
    b = np.load(root / 'planted.npy')[0]
    tags = ['00_alpha-2.00', '01_alpha+0.00', '02_alpha+2.00']
    for alpha, tag in zip([-2, 0, 2], tags):
        e = np.load(out / f'w_{tag}.npy')
        assert e.shape == (1, 14, 512) and e.dtype == np.float32
        # Levels 0-7 (the boundary's own layers) move by alpha * b, the others stay.
        assert np.allclose(e[0, :8] - w[0, :8], alpha * b, atol=1e-5)
        assert np.array_equal(e[0, 8:], w[0, 8:])
        import plyfile
        ply = plyfile.PlyData.read(str(out / f'shape_{tag}.ply'))
        assert ply['face'].count > 0 and ply['vertex'].count > 0
    frames = mp4_frames(out / 'sweep.mp4')
    assert len(frames) == 4 and frames[0].shape == (RES, RES, 3)
    assert np.load(out / 'c.npy').shape == (1, 25)
    info = json.loads((out / 'edit.json').read_text())
    assert info['layers'] == '0-7' and info['alphas'] == [-2, 0, 2] and info['attribute'] == 'planted'
    assert no_leftovers(root)


def test_edit_layers_option_overrides_the_boundary(work, tmp_path):
    root = work['root']
    w_path = root / 'codes' / 'seed0101.npy'
    ok(run_cli('edit', '--network', work['pkl'], '--w', w_path, '--boundary', root / 'cond.npy',
               '--alphas', '1.5', '--layers', 'fine', '--pose', '0.2,-0.1', '--outdir', tmp_path / 'e'))
    w, e = np.load(w_path), np.load(tmp_path / 'e' / 'w_00_alpha+1.50.npy')
    b = np.load(root / 'cond.npy').reshape(14, 512)
    assert np.array_equal(e[0, :8], w[0, :8])
    assert np.allclose(e[0, 8:] - w[0, 8:], 1.5 * b[8:], atol=1e-5)
    assert image_size(tmp_path / 'e' / 'grid.png') == (RES, RES)


def test_interp_between_two_codes_with_video_and_shapes(work):
    root = work['root']
    out = root / 'interp_out'
    a, b = root / 'codes' / 'seed0100.npy', root / 'codes' / 'seed0101.npy'
    ok(run_cli('interp', '--network', work['pkl'], '--from', a, '--to', b, '--steps', 3, '--mode', 'spherical',
               '--video', '--video-frames', 4, '--shapes', '--shape-res', 32, '--outdir', out))
    codes = [np.load(out / f'w_{i:03d}.npy') for i in range(3)]
    assert not (out / 'w_003.npy').exists()
    assert np.array_equal(codes[0], np.load(a)) and np.array_equal(codes[-1], np.load(b))
    assert all(c.shape == (1, 14, 512) for c in codes)
    assert not np.allclose(codes[1], codes[0]) and not np.allclose(codes[1], codes[2])
    assert image_size(out / 'strip.png') == (3 * RES, RES)
    frames = mp4_frames(out / 'interp.mp4')
    assert len(frames) == 4 and frames[0].shape == (RES, RES, 3)
    import mrcfile
    for i in range(3):
        with mrcfile.open(out / f'shape_{i:03d}.mrc') as mrc:
            assert mrc.data.shape == (32, 32, 32)
    assert json.loads((out / 'interp.json').read_text())['mode'] == 'spherical'
    assert no_leftovers(root)


def test_interp_via_and_layers(work, tmp_path):
    codes = work['root'] / 'codes'
    a, v, b = (codes / f'seed{s:04d}.npy' for s in (100, 101, 102))
    ok(run_cli('interp', '--network', work['pkl'], '--from', a, '--via', v, '--to', b, '--steps', 2,
               '--layers', 'coarse', '--outdir', tmp_path / 'i'))
    out = [np.load(tmp_path / 'i' / f'w_{i:03d}.npy') for i in range(3)]
    assert np.array_equal(out[1][0, :4], np.load(v)[0, :4]) and np.array_equal(out[1][0, 4:], np.load(a)[0, 4:])
    assert np.array_equal(out[2][0, :4], np.load(b)[0, :4])

#----------------------------------------------------------------------------
# Bad input: one line, non-zero exit, nothing written.

def _edit(work, out, *extra, boundary=None, w=None):
    root = work['root']
    return run_cli('edit', '--network', work['pkl'], '--w', w or root / 'codes' / 'seed0100.npy',
                   '--boundary', boundary or root / 'planted.npy', '--outdir', out, *extra)


@pytest.mark.parametrize('alphas', ['abc', '-3:3:0'])
def test_edit_refuses_alphas_that_do_not_parse(work, tmp_path, alphas):
    line = assert_one_line_error(_edit(work, tmp_path / 'out', f'--alphas={alphas}'))
    assert '--alphas' in line
    assert not (tmp_path / 'out').exists()


def test_edit_refuses_a_boundary_of_the_wrong_shape(work, tmp_path):
    np.save(tmp_path / 'wrong.npy', np.ones((1, 100), np.float32))
    line = assert_one_line_error(_edit(work, tmp_path / 'out', boundary=tmp_path / 'wrong.npy'))
    assert 'fits neither' in line and 'wrong.npy' in line
    assert not (tmp_path / 'out').exists() and no_leftovers(tmp_path)


def test_edit_refuses_a_boundary_for_another_generator(work, tmp_path):
    root = work['root']
    shutil.copy(root / 'planted.npy', tmp_path / 'other.npy')
    meta = json.loads((root / 'planted.json').read_text())
    meta['generator']['w_avg_sha'] = '0123456789abcdef'
    (tmp_path / 'other.json').write_text(json.dumps(meta))
    line = assert_one_line_error(_edit(work, tmp_path / 'out', boundary=tmp_path / 'other.npy'))
    assert 'another generator' in line and 'w_avg_sha' in line
    assert not (tmp_path / 'out').exists()


def _bad_w(work, tmp_path):
    np.save(tmp_path / 'w_bad.npy', np.ones((1, 12, 512), np.float32))
    return _edit(work, tmp_path / 'out', w=tmp_path / 'w_bad.npy')


def _no_source(work, tmp_path):
    return run_cli('edit', '--network', work['pkl'], '--boundary', work['root'] / 'planted.npy',
                   '--outdir', tmp_path / 'out')


def _image_without_regressor(work, tmp_path):
    (tmp_path / 'face.png').write_bytes(b'')
    return run_cli('edit', '--network', work['pkl'], '--image', tmp_path / 'face.png', '--boundary',
                   work['root'] / 'planted.npy', '--outdir', tmp_path / 'out')


def _missing_interp_end(work, tmp_path):
    return run_cli('interp', '--network', work['pkl'], '--from', tmp_path / 'nope.npy', '--to',
                   work['root'] / 'codes' / 'seed0100.npy', '--outdir', tmp_path / 'out')


@pytest.mark.parametrize('make, match', [
    (_bad_w, 'has shape'),
    (_no_source, 'exactly one of --image'),
    (_image_without_regressor, '--regressor'),
    (lambda work, tmp_path: _edit(work, tmp_path / 'out', '--layers', '3-20'), '--layers'),
    (lambda work, tmp_path: _edit(work, tmp_path / 'out', '--pose', 'sideways'), '--pose'),
    (_missing_interp_end, 'no such file'),
], ids=['w_shape', 'no_source', 'image_without_regressor', 'layers', 'pose', 'interp_missing'])
def test_edit_and_interp_refuse_bad_inputs(work, tmp_path, make, match):
    assert match in assert_one_line_error(make(work, tmp_path))
    assert not (tmp_path / 'out').exists() and no_leftovers(tmp_path)


@pytest.mark.parametrize('rows, match', [
    (['seed0100.npy,1', 'seed0199.npy,2'], 'row 3: code file seed0199.npy not found'),
    (['seed0100.npy,1', 'seed0101.npy,high'], "row 3: score 'high' is not a number"),
    ([], 'is empty'),
])
def test_boundary_refuses_bad_scores(work, tmp_path, rows, match):
    csv = tmp_path / 'scores.csv'
    csv.write_text('\n'.join(['code_path,score'] + rows) + '\n')
    line = assert_one_line_error(run_cli('boundary', '--codes', work['root'] / 'codes', '--scores', csv,
                                         '--out', tmp_path / 'b.npy'))
    assert match in line
    assert not (tmp_path / 'b.npy').exists() and not (tmp_path / 'b.json').exists()


def test_boundary_refuses_codes_of_another_generator(work, tmp_path):
    codes = tmp_path / 'codes'
    shutil.copytree(work['root'] / 'codes', codes)
    info = json.loads((codes / 'generator.json').read_text())
    info['generator']['w_avg_sha'] = 'ffffffffffffffff'
    (codes / 'generator.json').write_text(json.dumps(info))
    line = assert_one_line_error(run_cli('boundary', '--codes', codes, '--scores', codes / 'scores.csv',
                                         '--network', work['pkl'], '--out', tmp_path / 'b.npy'))
    assert 'another generator' in line

#----------------------------------------------------------------------------
# Images as inputs, through a (small, untrained) regressor checkpoint.

@pytest.fixture(scope='module')
def regressor(work, tiny_G):
    import torch

    from eg3d_regressor_plugin.training.checkpoint import save_checkpoint
    from eg3d_regressor_plugin.training.networks import build_regressor
    torch.manual_seed(0)
    model = build_regressor('psp', input_resolution=64, size='tiny')
    center = tiny_G.backbone.mapping.w_avg.reshape(1, -1).repeat(14, 1)
    stats = dict(center=center, scale=torch.full_like(center, 0.5))
    return save_checkpoint(work['root'] / 'R.pt', model, stats, fingerprint.generator_fingerprint(tiny_G))


@pytest.fixture(scope='module')
def face_png(work, tiny_G):
    """An EG3D-style crop: a render of the tiny generator."""
    from eg3d_regressor_plugin import cameras, render
    from eg3d_regressor_plugin.files import save_image
    from eg3d_regressor_plugin.codes import load_code
    import torch
    w = torch.from_numpy(load_code(work['root'] / 'codes' / 'seed0102.npy', 14, 512))
    path = work['root'] / 'face.png'
    save_image(path, render.render(tiny_G, w, cameras.frontal_label(1))['image'])
    return path


def test_edit_and_interp_from_an_image(work, regressor, face_png, tiny_G, tmp_path):
    from eg3d_regressor_plugin.inputs import load_input
    from eg3d_regressor_plugin.invert import Inverter
    img, _ = load_input(face_png, align=False, size=RES)
    expected = Inverter(tiny_G, regressor)(img)['w'].numpy()
    ok(run_cli('edit', '--network', work['pkl'], '--image', face_png, '--no-align', '--regressor', regressor,
               '--boundary', work['root'] / 'planted.npy', '--alphas', '0,1', '--outdir', tmp_path / 'e'))
    assert np.allclose(np.load(tmp_path / 'e' / 'w_00_alpha+0.00.npy'), expected, atol=1e-5)
    assert image_size(tmp_path / 'e' / 'grid.png') == (2 * RES, RES)
    other = work['root'] / 'codes' / 'seed0100.npy'
    ok(run_cli('interp', '--network', work['pkl'], '--from', face_png, '--to', other, '--no-align',
               '--regressor', regressor, '--steps', 2, '--outdir', tmp_path / 'i'))
    assert np.allclose(np.load(tmp_path / 'i' / 'w_000.npy'), expected, atol=1e-5)
    assert np.array_equal(np.load(tmp_path / 'i' / 'w_001.npy'), np.load(other))


def test_sources_take_the_camera_beside_a_code(tmp_path, tiny_G):
    from eg3d_regressor_plugin import cameras
    from eg3d_regressor_plugin.sources import Sources
    w = np.random.RandomState(0).randn(1, 14, 512).astype(np.float32)
    np.save(tmp_path / 'w.npy', w)
    assert Sources(tiny_G)(tmp_path / 'w.npy')['yaw'] == 0.0  # no camera file: frontal
    c = cameras.pose_to_label(0.3, -0.1).numpy()
    np.save(tmp_path / 'c.npy', c)
    src = Sources(tiny_G)(tmp_path / 'w.npy')
    assert np.array_equal(src['w'].numpy(), w) and np.allclose(src['c'].numpy(), c)
    assert src['yaw'] == pytest.approx(0.3, abs=1e-4) and src['pitch'] == pytest.approx(-0.1, abs=1e-4)
    assert np.allclose(Sources(tiny_G, pose='frontal')(tmp_path / 'w.npy')['c'].numpy(), cameras.frontal_label(1))
    np.save(tmp_path / 'c.npy', np.ones(7))
    with pytest.raises(Exception, match='camera file'):
        Sources(tiny_G)(tmp_path / 'w.npy')


def test_edit_and_interp_follow_a_camera_path(work, tmp_path):
    """--camera-path (shared with gen): the sweep's cameras come from the path; a bad file is one line."""
    codes = work['root'] / 'codes'
    path = tmp_path / 'cams.json'
    path.write_text(json.dumps([{'yaw': -0.5, 'pitch': 0.0}, {'yaw': 0.5, 'pitch': 0.1}]))
    ok(run_cli('interp', '--network', work['pkl'], '--from', codes / 'seed0100.npy', '--to', codes / 'seed0100.npy',
               '--steps', 2, '--video', '--video-frames', 4, '--camera-path', path, '--outdir', tmp_path / 'i'))
    frames = mp4_frames(tmp_path / 'i' / 'interp.mp4')
    # One code all along: the frames differ only by the camera, which turns from yaw -0.5 to +0.5.
    assert len(frames) == 4 and np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 2
    assert json.loads((tmp_path / 'i' / 'interp.json').read_text())['camera_path'] == str(path)
    ok(_edit(work, tmp_path / 'e', '--video', '--video-frames', 4, '--camera-path', 'yaw'))
    assert len(mp4_frames(tmp_path / 'e' / 'sweep.mp4')) == 4
    path.write_text('[{"yaw": 9, "pitch": 0}]')
    line = assert_one_line_error(_edit(work, tmp_path / 'out', '--video', '--camera-path', path))
    assert '--camera-path' in line and not (tmp_path / 'out').exists()
