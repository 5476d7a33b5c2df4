"""Video input: reading clips, tracked and smoothed face alignment, temporal smoothing."""

import numpy as np
import PIL.Image
import pytest
import torch

from eg3d_regressor_plugin import video_input as vi
from eg3d_regressor_plugin.errors import UserError

imageio = pytest.importorskip('imageio.v2')
pytest.importorskip('imageio_ffmpeg')

SIZE, N, BLANK, FPS = 320, 16, (7, 8), 25


def clip_frames():
    """The astronaut panned (1.7, 0.9 px per frame) and zoomed in steadily, two grey frames in the
    middle. Returns the frames and, per frame, (x0, y0, side): the photo's square shown in it."""
    skdata = pytest.importorskip('skimage.data')
    src = PIL.Image.fromarray(skdata.astronaut())
    frames, views = [], []
    for i in range(N):
        x0, y0, side = 40 + 1.7 * i, 10 + 0.9 * i, 440 - 1.5 * i
        frames.append(np.asarray(src.resize((SIZE, SIZE), PIL.Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))))
        views.append((x0, y0, side))
    for i in BLANK:
        frames[i] = np.full((SIZE, SIZE, 3), 90, np.uint8)
    return frames, np.array(views)


def write_mp4(path, frames):
    imageio.mimwrite(path, frames, fps=FPS, codec='libx264', macro_block_size=1, ffmpeg_log_level='error')
    return path


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    frames, views = clip_frames()
    return write_mp4(tmp_path_factory.mktemp('video') / 'clip.mp4', frames), views


@pytest.fixture(scope='module')
def tracked(clip):
    pytest.importorskip('dlib')
    frames, _ = vi.read_video(clip[0])
    return frames, vi.detect_video_faces(frames)


def test_is_video():
    assert vi.is_video('a/b.MP4') and vi.is_video('x.webm') and vi.is_video('x.mov')
    assert not vi.is_video('x.gif') and not vi.is_video('x.png') and not vi.is_video('mp4')


def test_read_video(clip):
    frames, fps = vi.read_video(clip[0])
    assert len(frames) == N and fps == FPS
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in frames)
    assert abs(frames[BLANK[0]].astype(int) - 90).max() <= 3
    frames, _ = vi.read_video(clip[0], max_frames=5)
    assert len(frames) == 5
    with pytest.raises(UserError, match='max_frames must be'):
        vi.read_video(clip[0], max_frames=0)


def test_unreadable_videos(tmp_path, monkeypatch):
    with pytest.raises(UserError, match='does not exist'):
        vi.read_video(tmp_path / 'missing.mp4')
    empty = tmp_path / 'empty.mp4'
    empty.write_bytes(b'')
    with pytest.raises(UserError, match='empty.mp4 cannot be read as a video'):
        vi.read_video(empty)
    junk = tmp_path / 'junk.mp4'
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match='junk.mp4 cannot be read as a video') as e:
        vi.read_video(junk)
    assert '\n' not in e.value.message
    text = tmp_path / 'notes.mp4'
    text.write_text('not a video\n')
    with pytest.raises(UserError, match='cannot be read as a video'):
        vi.read_video(text)

    class NoFrames:  # a container ffmpeg opens that decodes to no frame
        def get_meta_data(self):
            return {'fps': 30.0}

        def __iter__(self):
            return iter(())

        def close(self):
            pass
    monkeypatch.setattr(imageio, 'get_reader', lambda *a, **k: NoFrames())
    with pytest.raises(UserError, match='has no frames'):
        vi.read_video(empty)


def test_align_video_smooths_and_bridges(tracked, clip):
    frames, detections = tracked
    views = clip[1]
    raw_crops, raw = vi.align_video(frames, output_size=64, strength=0, detections=detections)
    crops, info = vi.align_video(frames, output_size=64, detections=detections)  # DEFAULT_STRENGTH
    assert raw['missing'] == info['missing'] == list(BLANK)
    assert info['num_faces'][BLANK[0]] == 0 and all(info['boxes'][i] is None for i in BLANK)
    assert len(crops) == N and all(c.shape == (64, 64, 3) for c in crops)
    # Bridged: the blank frames' landmarks lie between their neighbours'.
    before, after = raw['landmarks5'][BLANK[0] - 1], raw['landmarks5'][BLANK[-1] + 1]
    assert np.allclose(raw['landmarks5'][BLANK[0]], before + (after - before) / 3)
    # Jitter: the crop box's frame-to-frame acceleration, and its spread in the photo's own
    # coordinates (where the true box does not move), both drop with smoothing.
    j_raw, j_smooth = vi.crop_jitter(raw['crop_boxes']), vi.crop_jitter(info['crop_boxes'])
    assert j_smooth < 0.25 * j_raw, (j_raw, j_smooth)

    def spread(boxes):
        scale = views[:, 2:3] / SIZE
        in_photo = boxes * scale + np.c_[views[:, :2], views[:, :2]]
        return float(in_photo.std(0).mean())
    s_raw, s_smooth = spread(raw['crop_boxes']), spread(info['crop_boxes'])
    assert s_smooth < s_raw, (s_raw, s_smooth)
    # The smoothed box follows the zoom: the face's crop stays the same size in the photo.
    side = (info['crop_boxes'][:, 2] - info['crop_boxes'][:, 0]) * views[:, 2] / SIZE
    assert side.std() / side.mean() < 0.02
    with pytest.raises(UserError, match='face index 3 is out of range'):
        vi.align_video(frames, face_index=3, detections=detections)


def test_all_blank_video_raises(tmp_path):
    pytest.importorskip('dlib')
    path = write_mp4(tmp_path / 'blank.mp4', [np.full((96, 96, 3), 90, np.uint8)] * 3)
    frames, _ = vi.read_video(path)
    with pytest.raises(UserError, match='no face found in any of the 3 frames of blank.mp4'):
        vi.align_video(frames, name=path.name)


def test_smooth_sequence():
    g = torch.Generator().manual_seed(0)
    trend = torch.linspace(0, 1, 40)[:, None, None] * torch.randn(1, 14, 512, generator=g)
    w = trend + 0.1 * torch.randn(40, 14, 512, generator=g)
    s = vi.smooth_sequence(w, 2.0)
    assert s.shape == w.shape and s.dtype == w.dtype
    assert vi.flicker(s) < 0.5 * vi.flicker(w)
    assert vi.flicker(w, ord=1) > vi.flicker(s, ord=1)
    assert torch.equal(vi.smooth_sequence(w, 0), w)
    # Steady motion passes unchanged, up to the ends (point reflection).
    assert torch.allclose(vi.smooth_sequence(trend, 3.0), trend, atol=1e-5)
    pose = np.stack([np.linspace(-0.3, 0.3, 30), np.zeros(30)], 1) + np.random.default_rng(0).normal(0, 0.02, (30, 2))
    sp = vi.smooth_sequence(pose, 1.5)
    assert isinstance(sp, np.ndarray) and sp.shape == (30, 2) and vi.flicker(sp) < vi.flicker(pose)
    assert np.array_equal(vi.smooth_sequence(pose, 0), pose)
    assert vi.smooth_sequence(pose[:1], 2.0).shape == (1, 2)
    assert vi.smooth_sequence(pose[:3], 50.0).shape == (3, 2)  # kernel cut to the clip
    assert vi.flicker(pose[:1]) == 0.0
    with pytest.raises(UserError, match='strength must be a number of frames >= 0'):
        vi.smooth_sequence(pose, -1)
