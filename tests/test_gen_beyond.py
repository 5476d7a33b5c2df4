"""gen beyond one photo: video clips (smoothing, bridged frames, bad clips), --all-faces, coloured
meshes reopened by trimesh, --camera-path, the pipelined folder (same files as one after another)
and a disk that fills up while writing (one line, nothing half-written)."""

import errno
import json

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from eg3d_regressor_plugin.video_gen import synthetic_clip

pytestmark = pytest.mark.eg3d

RES = 128  # the tiny preset's image resolution
N = 8      # frames of the synthetic clip


def gen_inprocess(*args):
    from eg3d_regressor_plugin.gen_from_image import gen
    return CliRunner().invoke(gen, [str(a) for a in args] + ['--device', 'cpu'])


def ok(r):
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def one_line(r):
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def no_leftovers(folder):
    return not folder.exists() or [p.name for p in folder.rglob('.*')] == []


def read(path):
    with PIL.Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


def read_mp4(path):
    import imageio.v2 as imageio
    reader = imageio.get_reader(str(path), format='FFMPEG')
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


def write_mp4(path, frames, fps=10):
    import imageio.v2 as imageio
    imageio.mimwrite(path, frames, fps=fps, codec='libx264', macro_block_size=1, ffmpeg_log_level='error')
    return path


@pytest.fixture(scope='module')
def clip(tmp_path_factory, tiny_G):
    frames, ws, poses = synthetic_clip(tiny_G, n=N)
    return write_mp4(tmp_path_factory.mktemp('clip') / 'walk.mp4', frames), ws, poses


@pytest.fixture(scope='module')
def renders(tmp_path_factory, tiny_G):
    from eg3d_regressor_plugin.files import save_image
    from eg3d_regressor_plugin.training.data import PairSampler
    folder = tmp_path_factory.mktemp('renders')
    s = PairSampler(tiny_G).sample_seeds([1000, 1001, 1002])
    for i, img in enumerate(s['img']):
        save_image(folder / f'face{i}.png', img)
    return folder

#----------------------------------------------------------------------------
# Video in.

@pytest.fixture(scope='module')
def video_run(tmp_path_factory, tiny_pkl, tiny_regressor, clip):
    pytest.importorskip('imageio_ffmpeg')
    out = tmp_path_factory.mktemp('video') / 'out'
    r = ok(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', clip[0], '--no-align',
                         '--smooth', 2, '--outdir', out))
    return out, r


def test_video_writes_codes_poses_and_side_by_side(video_run):
    out, r = video_run
    d = out / 'walk'
    assert sorted(p.name for p in out.iterdir()) == ['walk']
    ws, cs, raw = np.load(d / 'ws.npy'), np.load(d / 'cs.npy'), np.load(d / 'ws_regressor.npy')
    assert ws.shape == raw.shape == (N, 14, 512) and ws.dtype == np.float32
    assert cs.shape == (N, 25) and cs.dtype == np.float32
    info = json.loads((d / 'poses.json').read_text())
    assert info['frames'] == N and info['smooth'] == 2 and info['bridged_frames'] == []
    assert len(info['poses']) == N and info['fps'] == 10
    frames = read_mp4(d / 'side_by_side.mp4')
    assert len(frames) == N and frames[0].shape == (RES, 3 * RES, 3)
    assert f'{N} frames of walk.mp4' in r.stdout
    assert no_leftovers(out)


def test_smoothing_reduces_flicker(video_run, tiny_G):
    """On a clip of EG3D renders along a smooth path, --smooth 2 lowers the frame-to-frame change of
    w, of the pose and of the rendered reconstruction (against --smooth 0's, the regressor's)."""
    from eg3d_regressor_plugin import cameras, render
    from eg3d_regressor_plugin.video_gen import image_flicker
    from eg3d_regressor_plugin.video_input import flicker
    d = video_run[0] / 'walk'
    info = json.loads((d / 'poses.json').read_text())
    f = info['flicker']
    ws, raw = np.load(d / 'ws.npy'), np.load(d / 'ws_regressor.npy')
    assert flicker(ws) == pytest.approx(f['w'], rel=1e-5) and flicker(raw) == pytest.approx(f['w_regressor'], rel=1e-5)
    assert f['w'] < f['w_regressor'] and f['pose'] < f['pose_regressor']
    raw_poses = np.array([[p['yaw_regressor'], p['pitch_regressor']] for p in info['poses']])
    imgs_raw = [render.render_image(tiny_G, torch.from_numpy(w[None]), cameras.pose_to_label(*p))[0]
                for w, p in zip(raw, raw_poses)]
    assert f['image'] < image_flicker(imgs_raw)


def test_video_bridges_frames_without_a_face(tmp_path, tiny_pkl, tiny_regressor):
    """A real face panned across 6 frames with a grey frame in the middle: tracked and aligned, the
    grey frame bridged, listed in poses.json and printed."""
    pytest.importorskip('dlib')
    pytest.importorskip('imageio_ffmpeg')
    import skimage.data
    src = PIL.Image.fromarray(skimage.data.astronaut())
    frames = [np.asarray(src.resize((256, 256), PIL.Image.BILINEAR, box=(40 + 3 * i, 10 + 2 * i, 480, 450)))
              for i in range(6)]
    frames[3] = np.full_like(frames[3], 90)
    path = write_mp4(tmp_path / 'pan.mp4', frames)
    r = ok(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', path,
                         '--outdir', tmp_path / 'out'))
    info = json.loads((tmp_path / 'out' / 'pan' / 'poses.json').read_text())
    assert info['bridged_frames'] == [3] and info['poses'][3]['bridged'] is True
    assert 'no face in 1 of 6 frames (frame 3)' in r.stderr
    assert np.load(tmp_path / 'out' / 'pan' / 'ws.npy').shape == (6, 14, 512)


@pytest.mark.parametrize('case', ['zero-byte', 'text', 'no-face'])
def test_bad_video_is_one_line(tmp_path, tiny_pkl, tiny_regressor, case):
    pytest.importorskip('imageio_ffmpeg')
    if case == 'zero-byte':
        path, words = tmp_path / 'empty.mp4', 'empty.mp4'
        path.write_bytes(b'')
    elif case == 'text':
        path, words = tmp_path / 'notes.mp4', 'cannot be read as a video'
        path.write_text('not a video\n' * 50)
    else:
        pytest.importorskip('dlib')
        path, words = write_mp4(tmp_path / 'grey.mp4', [np.full((96, 96, 3), 90, np.uint8)] * 3), 'no face found'
    r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', path, '--outdir',
                      tmp_path / 'out')
    assert words in one_line(r)
    assert not (tmp_path / 'out').exists() or list((tmp_path / 'out').iterdir()) == []

def test_folder_of_clips_and_photos(tmp_path, tiny_pkl, tiny_regressor, clip, renders):
    """A folder (and a glob) holding a clip, a photo and a broken clip: the clip gets its video
    folder, the photo its photo folder, the broken clip is listed and the exit status is non-zero."""
    import shutil
    pytest.importorskip('imageio_ffmpeg')
    src = tmp_path / 'in'
    src.mkdir()
    shutil.copy(clip[0], src / 'walk.mp4')
    shutil.copy(renders / 'face0.png', src / 'face0.png')
    (src / 'broken.mp4').write_text('not a video\n' * 50)
    r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', src, '--no-align',
                      '--views', 0, '--outdir', tmp_path / 'out')
    assert r.exit_code != 0 and 'broken.mp4' in r.stderr and '1 of 3 inputs failed' in r.stderr
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['face0', 'walk']
    assert np.load(tmp_path / 'out' / 'walk' / 'ws.npy').shape == (N, 14, 512)
    assert (tmp_path / 'out' / 'face0' / 'reconstruction.png').is_file()
    assert f'{N} frames of walk.mp4' in r.stdout and '2 of 3 inputs reconstructed' in r.stdout
    ok(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', src / 'w*', '--no-align',
                     '--outdir', tmp_path / 'glob'))
    assert sorted(p.name for p in (tmp_path / 'glob').iterdir()) == ['walk']

#----------------------------------------------------------------------------
# Every face.

def two_faces(path):
    """The astronaut and a 0.9x copy side by side: two faces, the left one larger."""
    import skimage.data
    a = PIL.Image.fromarray(skimage.data.astronaut())
    small = a.resize((461, 461), PIL.Image.LANCZOS)
    canvas = PIL.Image.new('RGB', (512 + 461, 512), (40, 40, 40))
    canvas.paste(a, (0, 0))
    canvas.paste(small, (512, 30))
    canvas.save(path, quality=92)
    return path


def test_all_faces_writes_one_folder_per_face(tmp_path, tiny_pkl, tiny_regressor):
    pytest.importorskip('dlib')
    photo = two_faces(tmp_path / 'pair.jpg')
    out = tmp_path / 'out'
    ok(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', photo, '--all-faces',
                     '--views', 0, '--outdir', out))
    assert sorted(p.name for p in out.iterdir()) == ['pair_face0', 'pair_face1']
    boxes = []
    for i in range(2):
        face = json.loads((out / f'pair_face{i}' / 'pose.json').read_text())['face']
        assert face['face_index'] == i and face['num_faces'] == 2
        assert np.load(out / f'pair_face{i}' / 'w.npy').shape == (1, 14, 512)
        boxes.append(face['box'])
    assert (boxes[0][0] + boxes[0][2]) / 2 < 512 < (boxes[1][0] + boxes[1][2]) / 2  # larger (left) first
    assert no_leftovers(out)


def test_all_faces_without_a_face_is_one_line(tmp_path, tiny_pkl, tiny_regressor):
    pytest.importorskip('dlib')
    import skimage.data
    cat = tmp_path / 'cat.png'
    PIL.Image.fromarray(skimage.data.chelsea()).save(cat)
    r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', cat, '--all-faces',
                      '--outdir', tmp_path / 'out')
    assert 'no face found in cat.png' in one_line(r)
    assert not (tmp_path / 'out').exists() or list((tmp_path / 'out').iterdir()) == []


def test_all_faces_refuses_no_align_and_face_index(tmp_path, tiny_pkl, tiny_regressor, renders):
    for extra in (['--no-align'], ['--face-index', '1']):
        r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders, '--all-faces',
                          *extra, '--outdir', tmp_path / 'out')
        assert '--all-faces' in one_line(r) and extra[0] in r.stderr

#----------------------------------------------------------------------------
# Meshes.

@pytest.mark.parametrize('fmt', ['.obj', '.glb', '.ply'])
def test_gen_mesh_reopens_with_colours(tmp_path, tiny_pkl, tiny_regressor, renders, fmt):
    trimesh = pytest.importorskip('trimesh')
    out = tmp_path / 'out'
    ok(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders / 'face0.png',
                     '--no-align', '--views', 0, '--shapes', '--shape-res', 32, '--shape-format', fmt, '--outdir', out))
    path = out / 'face0' / f'shape{fmt}'
    assert path.is_file()
    mesh = trimesh.load(path, force='mesh', process=False)
    assert len(mesh.faces) > 0 and len(mesh.vertices) > 0
    if fmt == '.obj':
        # trimesh reads the 'v x y z r g b' colours back as vertex colours
        assert mesh.visual.kind == 'vertex'
    visual = mesh.visual.to_color() if mesh.visual.kind == 'texture' else mesh.visual
    colours = np.asarray(visual.vertex_colors)
    assert colours.shape == (len(mesh.vertices), 4)
    assert len(np.unique(colours[:, :3], axis=0)) > 1  # really coloured, not one default grey

#----------------------------------------------------------------------------
# Camera paths.

def test_camera_path_file_sets_video_and_views(tmp_path, tiny_pkl, tiny_regressor, renders):
    pytest.importorskip('imageio_ffmpeg')
    cams = tmp_path / 'path.json'
    cams.write_text(json.dumps([{'yaw': -0.4, 'pitch': 0.0}, {'yaw': 0.0, 'pitch': 0.1, 'fov': 20},
                                {'yaw': 0.4, 'pitch': 0.0, 'radius': 3.0}]))
    out = tmp_path / 'out'
    ok(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders / 'face0.png',
                     '--no-align', '--views', 3, '--video', '--video-frames', 10, '--camera-path', cams,
                     '--outdir', out))
    frames = read_mp4(out / 'face0' / 'orbit.mp4')
    assert len(frames) == 3  # the file's cameras, not --video-frames
    views = read(out / 'face0' / 'views.png')
    assert views.shape == (RES, 3 * RES, 3)
    for i in range(3):  # views.png shows the path's cameras (lossless) ~ the video's frames (x264)
        assert np.abs(views[:, i * RES:(i + 1) * RES].astype(int) - frames[i].astype(int)).mean() < 8


@pytest.mark.parametrize('content, words', [('{"frames": [', 'not valid JSON'),
                                            ('[{"yaw": 4.0, "pitch": 0}]', 'outside [-pi, pi]'),
                                            ('[{"yaw": 0, "pitch": 2}]', 'pitch 2 is outside')])
def test_bad_camera_path_is_one_line(tmp_path, tiny_pkl, tiny_regressor, renders, content, words):
    cams = tmp_path / 'bad.json'
    cams.write_text(content)
    r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders, '--no-align',
                      '--video', '--camera-path', cams, '--outdir', tmp_path / 'out')
    line = one_line(r)
    assert '--camera-path' in line and words in line
    assert not (tmp_path / 'out').exists()


def test_path_frames_for_edit_and_interp(tiny_G):
    """The library call edit/interp use: one code along a path, or F codes paired with F cameras."""
    from eg3d_regressor_plugin import camera_paths, cameras, render
    w = tiny_G.mapping(torch.zeros(2, tiny_G.z_dim), cameras.frontal_label(2))
    path = camera_paths.parse_camera_path('yaw', 2)
    one = list(camera_paths.path_frames(tiny_G, w[:1], path))
    two = list(camera_paths.path_frames(tiny_G, w, path))
    assert len(one) == len(two) == 2 and one[0].shape == (RES, RES, 3)
    assert np.array_equal(one[0], two[0])
    expect = render.render_image(tiny_G, w[1:], camera_paths.path_labels(path)[1:])[0]
    assert np.array_equal(two[1], expect)

#----------------------------------------------------------------------------
# Folders at full speed; a full disk.

def test_pipelined_folder_writes_the_same_files(tmp_path, tiny_pkl, tiny_regressor, renders):
    outs = {}
    for workers in (0, 2):
        outs[workers] = out = tmp_path / f'out{workers}'
        ok(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders, '--no-align',
                         '--views', 1, '--workers', workers, '--outdir', out))
    names = sorted(p.relative_to(outs[0]) for p in outs[0].rglob('*'))
    assert names == sorted(p.relative_to(outs[2]) for p in outs[2].rglob('*'))
    assert len([n for n in names if n.name == 'w.npy']) == 3
    for n in names:
        a, b = outs[0] / n, outs[2] / n
        if a.is_dir():
            continue
        if n.name == 'pose.json':
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            ja.pop('seconds'), jb.pop('seconds')
            assert ja == jb
        else:
            assert a.read_bytes() == b.read_bytes(), n
    assert no_leftovers(outs[2])


@pytest.mark.parametrize('workers', [0, 2])
def test_full_disk_is_one_line_and_nothing_half_written(tmp_path, tiny_pkl, tiny_regressor, renders, monkeypatch,
                                                        workers):
    """np.save fails with ENOSPC on the second image's w.npy (after writing part of it)."""
    calls = {'n': 0}
    real_save = np.save

    def save(f, arr, *args, **kwargs):
        if getattr(arr, 'shape', None) == (1, 14, 512):
            calls['n'] += 1
            if calls['n'] == 2:
                f.write(b'\x93NUMPY partial')
                raise OSError(errno.ENOSPC, 'No space left on device')
        return real_save(f, arr, *args, **kwargs)
    monkeypatch.setattr(np, 'save', save)
    out = tmp_path / 'out'
    r = gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', renders, '--no-align',
                      '--views', 0, '--workers', workers, '--outdir', out)
    line = one_line(r)
    assert f'could not write {out / "face1" / "w.npy"}: no space left on the device' in line
    assert sorted(p.name for p in out.iterdir()) == ['face0']  # complete, written before the disk filled up
    assert no_leftovers(out)


def test_video_refinement_is_warm_started(tmp_path, tiny_pkl, tiny_regressor, clip, monkeypatch):
    """--refine-steps on a clip: frame t's optimisation starts from frame t-1's refined w."""
    pytest.importorskip('imageio_ffmpeg')
    from eg3d_regressor_plugin import optimize
    starts, ends = [], []
    real = optimize.optimize_w

    def spy(G, target, c, w_init, steps, **kwargs):
        starts.append(w_init.detach().clone())
        w, hist = real(G, target, c, w_init, steps, **kwargs)
        ends.append(w.detach().clone())
        return w, hist
    monkeypatch.setattr(optimize, 'optimize_w', spy)
    out = tmp_path / 'out'
    ok(gen_inprocess('--network', tiny_pkl, '--regressor', tiny_regressor, '--image', clip[0], '--no-align',
                     '--max-frames', 3, '--refine-steps', 1, '--refine-optimizer', 'adam', '--outdir', out))
    assert len(starts) == 3
    assert torch.equal(starts[1], ends[0]) and torch.equal(starts[2], ends[1])
    ws = np.load(out / 'walk' / 'ws.npy')
    assert ws.shape == (3, 14, 512) and np.array_equal(ws[2], ends[2][0].numpy())
    info = json.loads((out / 'walk' / 'poses.json').read_text())
    assert info['frames'] == 3 and len(info['refine_psnr']) == 3
