"""align.py on real photos shipped with scikit-image: EG3D's FFHQ crop, no-face errors, identity
embeddings. Skipped cleanly without the "align" extra."""

import sys
import types

import numpy as np
import PIL.Image
import pytest

pytest.importorskip('dlib')
if __import__('importlib.util').util.find_spec('face_recognition_models') is None:
    pytest.skip('needs face-recognition-models (the "align" extra)', allow_module_level=True)
skdata = pytest.importorskip('skimage.data')

from eg3d_regressor_plugin import align  # noqa: E402
from eg3d_regressor_plugin.errors import UserError  # noqa: E402


@pytest.fixture(scope='module')
def astronaut():
    return skdata.astronaut()  # Eileen Collins, near-frontal, 512x512


@pytest.fixture(scope='module')
def aligned(astronaut):
    return align.align_face(astronaut)


def _gradient(h=200, w=240):
    return np.tile(np.linspace(0, 255, w).astype(np.uint8)[None, :, None], (h, 1, 3))


def test_template_matches_eg3d_numbers():
    # EG3D: 300 px per template unit in a 1024 frame, central 700 kept; the eyes of the template are
    # ~0.62 units apart, so ~136 px apart in the 512 crop, symmetric about the centre.
    t = align.template_positions(512)
    eye_dist = t[1, 0] - t[0, 0]
    assert abs(eye_dist - 0.621 * 300 * 512 / 700) < 1
    assert abs((t[0, 0] + t[1, 0]) / 2 - 256) < 1 and t[0, 1] < t[2, 1] < t[3, 1]
    assert np.allclose(align.template_positions(1024), t * 2)


def test_fit_template_recovers_scale_and_origin():
    # points made from the template by a pure scale + shift (frontal, image y down) give them back
    pts = align.TEMPLATE_3D[:, :2] * [1, -1] * 150 + [300, 220]
    scale, origin = align.fit_template(pts)
    assert abs(scale - 150) < 1e-6 and np.allclose(origin, [300, 220])


def test_align_astronaut(astronaut, aligned):
    out, info = aligned
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert info['num_faces'] == 1 and info['face_index'] == 0
    assert len(info['landmarks']) == 68 and len(info['box']) == 4
    # crop_box is square and contains the face box
    b, f = info['crop_box'], info['box']
    assert abs((b[2] - b[0]) - (b[3] - b[1])) < 1e-6
    assert b[0] < f[0] and b[1] < f[1] and b[2] > f[2] and b[3] > f[3]
    # the eyes, nose and mouth land near the template's places in the crop (a frontal face fits
    # the template up to its own proportions: within 5% of the crop)
    lm5 = np.array(info['landmarks5_aligned'])
    assert np.abs(lm5 - align.template_positions(512)).max() < 0.05 * 512
    assert lm5[0, 0] < 256 < lm5[1, 0]


def test_aligned_pixels_follow_the_landmarks(aligned):
    # detect again on the output: the warp moved the face where info says it did
    out, info = aligned
    again = align.five_points(align.landmarks68(out, align.detect_faces(out)[0]))
    assert np.abs(again - np.array(info['landmarks5_aligned'])).max() < 4


def test_output_size_and_black_padding(astronaut):
    # the face near a corner: the crop leaves the photo and EG3D's crop pads with black there
    corner = np.ascontiguousarray(astronaut[60:260, 150:350])
    out, info = align.align_face(corner, output_size=256)
    assert out.shape == (256, 256, 3)
    assert info['crop_box'][1] < 0 and (out[:4] == 0).all()
    lm5 = np.array(info['landmarks5_aligned'])
    assert np.abs(lm5 - align.template_positions(256)).max() < 0.05 * 256


def test_scale_invariance(astronaut, aligned):
    # the same photo at twice the size gives (nearly) the same crop
    big = np.asarray(PIL.Image.fromarray(astronaut).resize((1024, 1024), PIL.Image.LANCZOS))
    out2, info2 = align.align_face(big)
    assert np.abs(np.array(info2['landmarks5_aligned']) - np.array(aligned[1]['landmarks5_aligned'])).max() < 6
    assert np.abs(out2.astype(float) - aligned[0]).mean() < 12


@pytest.mark.parametrize('which', ['cat', 'gradient'])
def test_no_face(which):
    img = skdata.chelsea() if which == 'cat' else _gradient()
    with pytest.raises(UserError) as e:
        align.align_face(img, name=f'{which}.png')
    assert e.value.message.startswith(f'no face found in {which}.png')


@pytest.mark.parametrize('index', [1, -1])
def test_face_index_out_of_range(astronaut, index):
    with pytest.raises(UserError) as e:
        align.align_face(astronaut, face_index=index, name='astro.png')
    assert 'astro.png' in e.value.message and '1 face' in e.value.message


def test_two_faces_largest_first(astronaut):
    # the photo beside a 1.5x enlargement of its face: index 0 is the enlarged face on the right,
    # index 1 the original one (not a weak false positive of the same size on the suit)
    face = PIL.Image.fromarray(np.ascontiguousarray(astronaut[30:230, 120:320])).resize((300, 300), PIL.Image.LANCZOS)
    canvas = np.full((512, 812, 3), 255, np.uint8)
    canvas[:, :512] = astronaut
    canvas[100:400, 512:] = np.asarray(face)
    _, i0 = align.align_face(canvas)
    _, i1 = align.align_face(canvas, face_index=1)
    assert i0['num_faces'] == i1['num_faces'] >= 2
    assert i0['box'][0] >= 512 and np.abs(np.array(i1['box']) - [179, 83, 266, 170]).max() < 10
    assert (i0['crop_box'][2] - i0['crop_box'][0]) > 1.3 * (i1['crop_box'][2] - i1['crop_box'][0])


def test_cnn_fallback(astronaut, monkeypatch):
    # with HOG finding nothing, the CNN detector is used only when asked
    crop = np.ascontiguousarray(astronaut[40:300, 110:340])
    hog_box = align.detect_faces(crop)[0]
    real_model = align._model
    blind = types.SimpleNamespace(run=lambda img, up: ([], [], []))
    monkeypatch.setattr(align, '_model', lambda k: blind if k == 'hog_detector' else real_model(k))
    assert align.detect_faces(crop) == []
    boxes = align.detect_faces(crop, cnn_fallback=True)
    assert len(boxes) == 1
    centre = lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])  # noqa: E731
    assert np.linalg.norm(centre(boxes[0]) - centre(hog_box)) < 20


def test_face_embedding(astronaut, aligned):
    e1 = align.face_embedding(astronaut)
    assert e1.shape == (128,) and np.isfinite(e1).all()
    assert np.array_equal(e1, align.face_embedding(astronaut.copy()))
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    shifted = np.ascontiguousarray(astronaut[30:, 20:])
    for other in (flipped, shifted, aligned[0]):
        assert np.linalg.norm(align.face_embedding(other) - e1) < 0.6
    assert align.face_embedding(skdata.chelsea()) is None
    assert align.face_embedding(_gradient()) is None


def test_missing_extra_gives_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, 'dlib', None)  # makes `import dlib` fail
    align._model.cache_clear()
    try:
        with pytest.raises(UserError) as e:
            align.detect_faces(_gradient())
        assert 'pip install dlib-bin face-recognition-models' in e.value.message
    finally:
        monkeypatch.undo()
        align._model.cache_clear()


def test_models_found_without_importing_package(monkeypatch):
    monkeypatch.delitem(sys.modules, 'face_recognition_models', raising=False)
    for key in align.MODEL_FILES:
        assert align.model_path(key).endswith('.dat')
    assert 'face_recognition_models' not in sys.modules


@pytest.mark.parametrize('quality', [60, 75, 90])
def test_astronaut_jpeg_picks_her_face_not_the_badge(quality):
    """At JPEG quality 75 dlib's HOG also fires (score ~0.07) on the badge of her suit, with a larger
    box than the face: weak detections must not win over a confident one."""
    import io as _io
    import PIL.Image
    buf = _io.BytesIO()
    PIL.Image.fromarray(skdata.astronaut()).save(buf, format='JPEG', quality=quality)
    buf.seek(0)
    img = np.asarray(PIL.Image.open(buf).convert('RGB'))
    _, info = align.align_face(img)
    left, top, right, bottom = info['box']
    assert 150 < (left + right) / 2 < 300 and 50 < (top + bottom) / 2 < 200, info['box']
