"""`eg3d-regress gen` end to end on the tiny generator: every output file, the exact re-render of
the saved w.npy/c.npy by EG3D's own G.synthesis, shapes, video, refinement, real photos, and the
refusal of bad input (one line, non-zero exit, nothing half-written)."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.eg3d

RES = 128       # the tiny preset's image resolution
NR_RES = 64     # its neural rendering resolution
FILES = ['input.png', 'reconstruction.png', 'comparison.png', 'views.png', 'depth.png', 'depth.npy', 'w.npy',
         'c.npy', 'pose.json']


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def size(path):
    with PIL.Image.open(path) as im:
        return im.size


def read(path):
    with PIL.Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


def no_leftovers(folder):
    """Atomic writes use dot-named temporaries; none may remain."""
    return [p.name for p in folder.rglob('.*')] == []


def gen_inprocess(*args):
    """Run the gen command in this process (faster than a subprocess; same click handling)."""
    from eg3d_regressor_plugin.gen_from_image import gen
    return CliRunner().invoke(gen, [str(a) for a in args] + ['--device', 'cpu'])


def assert_one_line_result(result):
    """In-process twin of conftest.assert_one_line_error for a CliRunner result."""
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope='module')
def renders(tmp_path_factory, tiny_G):
    """Two EG3D renders of held-out seeds saved as PNG files (EG3D-style crops: --no-align)."""
    from eg3d_regressor_plugin.files import save_image
    from eg3d_regressor_plugin.training.data import PairSampler
    folder = tmp_path_factory.mktemp('renders')
    s = PairSampler(tiny_G).sample_seeds([1000, 1001])
    for i, img in enumerate(s['img']):
        save_image(folder / f'face{i}.png', img)
    return folder


@pytest.fixture(scope='module')
def gen_run(tmp_path_factory, tiny_pkl, tiny_regressor, renders):
    out = tmp_path_factory.mktemp('gen') / 'out'
    proc = ok(run_cli('gen', '--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders, '--no-align',
                      '--outdir', out, '--views', 2, '--shapes', '--shape-res', 32, '--video', '--video-frames', 3,
                      '--device', 'cpu'))
    return out, proc


def test_gen_writes_every_file(gen_run):
    out, proc = gen_run
    assert '2 of 2 images reconstructed' in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ['face0', 'face1']
    for name in ['face0', 'face1']:
        d = out / name
        for f in FILES + ['shape.mrc', 'orbit.mp4']:
            assert (d / f).is_file(), f
        w, c, depth = np.load(d / 'w.npy'), np.load(d / 'c.npy'), np.load(d / 'depth.npy')
        assert w.shape == (1, 14, 512) and w.dtype == np.float32
        assert c.shape == (1, 25) and c.dtype == np.float32
        assert depth.shape == (NR_RES, NR_RES) and depth.dtype == np.float32 and np.isfinite(depth).all()
        assert size(d / 'input.png') == size(d / 'reconstruction.png') == (RES, RES)
        assert size(d / 'comparison.png') == (2 * RES, RES)
        assert size(d / 'views.png') == (2 * RES, RES)
        assert size(d / 'depth.png') == (NR_RES, NR_RES)
        # The comparison is input | reconstruction, pixel for pixel.
        cmp = read(d / 'comparison.png')
        assert np.array_equal(cmp[:, :RES], read(d / 'input.png'))
        assert np.array_equal(cmp[:, RES:], read(d / 'reconstruction.png'))
        pose = json.loads((d / 'pose.json').read_text())
        p = pose['predicted']
        assert p['yaw_deg'] == pytest.approx(np.degrees(p['yaw'])) and 'elevation_deg' in p
        assert pose['rendered']['yaw'] == pytest.approx(p['yaw'], abs=1e-4)  # --pose predicted
        assert no_leftovers(out)


def test_reconstruction_is_eg3d_synthesis_of_saved_w_and_c(gen_run, tiny_pkl):
    """EG3D's own loader and G.synthesis (seeded with 0) give reconstruction.png from w.npy, c.npy."""
    from eg3d_regressor_plugin import bridge
    bridge.import_eg3d()
    import dnnlib
    import legacy
    with dnnlib.util.open_url(str(tiny_pkl)) as f:
        G = legacy.load_network_pkl(f)['G_ema'].eval()
    out, _ = gen_run
    for name in ['face0', 'face1']:
        w = torch.from_numpy(np.load(out / name / 'w.npy'))
        c = torch.from_numpy(np.load(out / name / 'c.npy'))
        torch.manual_seed(0)
        with torch.no_grad():
            img = G.synthesis(w, c, noise_mode='const')['image']
        img = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
        assert np.array_equal(img, read(out / name / 'reconstruction.png'))


def test_shape_mrc_and_video(gen_run):
    import imageio.v2 as imageio
    import mrcfile
    out, _ = gen_run
    with mrcfile.open(out / 'face0' / 'shape.mrc') as mrc:
        assert mrc.data.shape == (32, 32, 32) and np.isfinite(mrc.data).all()
    reader = imageio.get_reader(str(out / 'face0' / 'orbit.mp4'), format='FFMPEG')
    try:
        frames = [np.asarray(f) for f in reader]
    finally:
        reader.close()
    assert len(frames) == 3 and frames[0].shape == (RES, RES, 3)


def test_ply_frontal_pose_and_trunc(tmp_path, gen_run, tiny_pkl, tiny_regressor, renders, tiny_G):
    import plyfile
    from eg3d_regressor_plugin import cameras
    out = tmp_path / 'out'
    r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders / 'face0.png',
                      '--no-align', '--outdir', out, '--views', 0, '--pose', 'frontal', '--trunc', 0.5,
                      '--shapes', '--shape-format', '.ply', '--shape-res', 32)
    assert r.exit_code == 0, r.output + repr(r.exception)
    d = out / 'face0'
    ply = plyfile.PlyData.read(str(d / 'shape.ply'))
    assert ply['face'].count > 0 and ply['vertex'].count > 0
    assert not (d / 'views.png').exists() and not (d / 'shape.mrc').exists()
    assert np.allclose(np.load(d / 'c.npy'), cameras.frontal_label(1).numpy(), atol=1e-6)
    # --trunc 0.5 halves the offset of the regressed w from w_avg (same prediction as the first run).
    w_full = np.load(gen_run[0] / 'face0' / 'w.npy')
    w_avg = tiny_G.backbone.mapping.w_avg.numpy()
    assert np.allclose(np.load(d / 'w.npy'), w_avg + 0.5 * (w_full - w_avg), atol=1e-5)


@pytest.mark.parametrize('optimizer', ['lbfgs', 'adam'])
def test_refine_lowers_the_image_error(tmp_path, tiny_pkl, tiny_regressor, renders, optimizer):
    from eg3d_regressor_plugin.metrics import psnr
    out = tmp_path / 'out'
    r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders / 'face1.png',
                      '--no-align', '--outdir', out, '--views', 0, '--refine-steps', 6, '--refine-lr', 0.01,
                      '--refine-optimizer', optimizer)
    assert r.exit_code == 0, r.output + repr(r.exception)
    d = out / 'face1'
    target = read(d / 'input.png')
    before, after = psnr(target, read(d / 'reconstruction_regressor.png')), psnr(target, read(d / 'reconstruction.png'))
    assert after > before
    assert not np.array_equal(np.load(d / 'w.npy'), np.load(d / 'w_regressor.npy'))
    hist = json.loads((d / 'refine.json').read_text())['history']
    assert len(hist) == 7 and hist[0]['step'] == 0
    assert hist[0]['psnr'] == pytest.approx(before, abs=0.3)  # the history's PSNR is the saved render's
    assert max(h['psnr'] for h in hist) == pytest.approx(after, abs=0.3)
    assert size(d / 'comparison.png') == (3 * RES, RES)


def test_real_photo_is_aligned(tmp_path, tiny_pkl, tiny_regressor):
    pytest.importorskip('dlib')
    import skimage.data
    photo = tmp_path / 'astronaut.jpg'
    PIL.Image.fromarray(skimage.data.astronaut()).save(photo, quality=90)
    out = tmp_path / 'out'
    r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', photo, '--outdir', out,
                      '--views', 0)
    assert r.exit_code == 0, r.output + repr(r.exception)
    d = out / 'astronaut'
    for f in ['input.png', 'reconstruction.png', 'comparison.png', 'depth.npy', 'w.npy', 'c.npy', 'pose.json']:
        assert (d / f).is_file(), f
    assert size(d / 'input.png') == (RES, RES)
    face = json.loads((d / 'pose.json').read_text())['face']
    assert face['num_faces'] >= 1 and len(face['box']) == 4
    left, top, right, bottom = face['box']
    assert 150 < (left + right) / 2 < 300 and (top + bottom) / 2 < 200  # her face, not the badge on her suit


#----------------------------------------------------------------------------
# Bad input: one line, non-zero exit, no output folder.

def _bad_files(folder):
    """name -> (file maker, expected words in the error)."""
    import skimage.data

    def write(name, data):
        p = folder / name
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
        return p

    def image(name, arr):
        p = folder / name
        PIL.Image.fromarray(arr).save(p)
        return p

    def corrupt(name):
        p = image(name, np.full((64, 64, 3), 128, np.uint8))
        p.write_bytes(p.read_bytes()[:60])
        return p
    return {
        'missing': (lambda: folder / 'nope.jpg', 'no such file'),
        'zero-byte': (lambda: write('empty.png', b''), 'empty'),
        'corrupt': (lambda: corrupt('broken.png'), 'corrupt'),
        'text-as-jpg': (lambda: write('notes.jpg', 'not pixels\n' * 20), 'not an image'),
        'tiny-16px': (lambda: image('small.png', np.zeros((16, 16, 3), np.uint8)), 'too small'),
        'no-face': (lambda: image('cat.png', skimage.data.chelsea()), 'no face'),
    }


@pytest.mark.parametrize('case', ['missing', 'zero-byte', 'corrupt', 'text-as-jpg', 'tiny-16px', 'no-face'])
def test_bad_image_is_one_line(tmp_path, tiny_pkl, tiny_regressor, case):
    make, words = _bad_files(tmp_path)[case]
    if case == 'no-face':
        pytest.importorskip('dlib')
    path = make()
    out = tmp_path / 'out'
    args = ['--network', tiny_pkl, '--regressor', tiny_regressor, '--image', path, '--outdir', out, '--views', 0]
    line = assert_one_line_result(gen_inprocess(*args, *([] if case == 'no-face' else ['--no-align'])))
    assert words in line and path.name in line
    assert not out.exists()


def test_huge_image_is_refused_without_allocating(tmp_path, tiny_pkl, tiny_regressor, monkeypatch):
    from eg3d_regressor_plugin import images
    monkeypatch.setattr(images, 'MAX_PIXELS', 60 * 60)
    path = tmp_path / 'big.png'
    PIL.Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    out = tmp_path / 'out'
    line = assert_one_line_result(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', path,
                                                '--no-align', '--outdir', out))
    assert 'too large' in line and 'big.png' in line
    assert not out.exists()


def test_regressor_for_another_generator_is_refused(tmp_path, tiny_pkl, tiny_regressor, renders):
    ckpt = torch.load(tiny_regressor, weights_only=True)
    ckpt['generator']['w_avg_sha'] = '0123456789abcdef'  # as if trained for another generator
    reg = tmp_path / 'other.pt'
    torch.save(ckpt, reg)
    out = tmp_path / 'out'
    line = assert_one_line_error(run_cli('gen', '--network', tiny_pkl, '--regressor', reg, '--image', renders,
                                         '--no-align', '--outdir', out, '--device', 'cpu'))
    assert 'another generator' in line
    assert not out.exists()


@pytest.mark.parametrize('what', ['network', 'regressor'])
def test_missing_network_or_regressor(tmp_path, tiny_pkl, tiny_regressor, renders, what):
    args = dict(network=tiny_pkl, regressor=tiny_regressor)
    args[what] = tmp_path / f'missing-{what}'
    out = tmp_path / 'out'
    line = assert_one_line_result(gen_inprocess('--network', args['network'], '--regressor', args['regressor'],
                                                '--image', renders, '--no-align', '--outdir', out))
    assert 'not found' in line and f'missing-{what}' in line
    assert not out.exists()


def test_unwritable_outdir(tmp_path, tiny_pkl, tiny_regressor, renders):
    blocker = tmp_path / 'a-file'
    blocker.write_text('x')
    line = assert_one_line_error(run_cli('gen', '--network', tiny_pkl, '--regressor', tiny_regressor, '--image',
                                         renders, '--no-align', '--outdir', blocker / 'out', '--device', 'cpu'))
    assert '--outdir' in line and 'a-file' in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a-file']


def test_batch_with_modes_and_one_bad_file(tmp_path, tiny_pkl, tiny_regressor, renders):
    """Grayscale, RGBA and 16-bit inputs work; a corrupt file in the batch is named, the others are
    written, and the exit status is non-zero."""
    folder = tmp_path / 'in'
    folder.mkdir()
    rgb = read(renders / 'face0.png')
    PIL.Image.fromarray(rgb).convert('L').save(folder / 'gray.png')
    PIL.Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(folder / 'rgba.png')
    gray16 = (np.asarray(PIL.Image.fromarray(rgb).convert('L'), np.uint16) * 257)
    PIL.Image.fromarray(gray16).save(folder / 'gray16.png')
    with PIL.Image.open(folder / 'gray16.png') as im:
        assert im.mode.startswith('I')  # really 16-bit on disk
    (folder / 'broken.png').write_bytes((renders / 'face1.png').read_bytes()[:80])
    out = tmp_path / 'out'
    proc = run_cli('gen', '--network', tiny_pkl, '--regressor', tiny_regressor, '--image', folder, '--no-align',
                   '--outdir', out, '--views', 0, '--device', 'cpu')
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert '3 of 4 images reconstructed' in proc.stdout
    assert 'broken.png' in proc.stderr and '1 of 4 images failed' in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ['gray', 'gray16', 'rgba']
    for name in ['gray', 'gray16', 'rgba']:
        assert all((out / name / f).is_file() for f in FILES if f != 'views.png')
        assert read(out / name / 'input.png').shape == (RES, RES, 3)
    assert no_leftovers(out)
