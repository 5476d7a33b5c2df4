"""face_identity.py: dlib's face-recognition ResNet read from its .dat and run in PyTorch, checked
against dlib itself on real photos shipped with scikit-image; ArcFace IR-SE50 with random weights.
The dlib tests are skipped cleanly without the "align" extra or scikit-image."""

import importlib.util
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from eg3d_regressor_plugin import face_identity as fi
from eg3d_regressor_plugin.errors import UserError

HAVE_DLIB = all(importlib.util.find_spec(m) is not None for m in ('dlib', 'face_recognition_models'))
needs_dlib = pytest.mark.skipif(not HAVE_DLIB, reason='needs dlib-bin and face-recognition-models (the "align" extra)')
needs_skimage = pytest.mark.skipif(importlib.util.find_spec('skimage') is None,
                                   reason='needs scikit-image (its bundled photos)')


# ---------------------------------------------------------------------------------------------
# dlib's serialization primitives on hand-encoded bytes


def test_reader_primitives():
    # -300: control byte 0x82 (negative, 2 bytes), then 300 little-endian; 0.75 = 3 * 2**-2;
    # a string is its length then bytes; bools are '1' / '0'
    data = bytes([0x82, 0x2C, 0x01, 0x01, 0x03, 0x81, 0x02, 0x01, 0x03]) + b'abc' + b'10'
    r = fi._DlibReader(data)
    assert r.int() == -300 and r.float() == 0.75 and r.str() == 'abc'
    assert r.bool() is True and r.bool() is False and r.pos == len(data)
    with pytest.raises(ValueError, match='end of file'):
        r.int()
    with pytest.raises(ValueError, match='control byte'):
        fi._DlibReader(bytes([0x00])).int()


# ---------------------------------------------------------------------------------------------
# dlib's network


@pytest.fixture(scope='module')
def dat_path():
    if not HAVE_DLIB:
        pytest.skip('needs dlib-bin and face-recognition-models (the "align" extra)')
    from eg3d_regressor_plugin import align
    return align.model_path('recognition')


@pytest.fixture(scope='module')
def model():
    if not HAVE_DLIB:
        pytest.skip('needs dlib-bin and face-recognition-models (the "align" extra)')
    torch.manual_seed(0)
    return fi.load_face_identity('dlib')


@needs_dlib
def test_parser_reads_every_layer(dat_path):
    m = fi.read_dlib_resnet(dat_path)  # raises if any byte is left over or a header is unexpected
    assert len(m['convs']) == 29 and len(m['affines']) == 29  # 1 stem conv + 14 blocks x 2
    assert m['fc'].shape == (256, 128)
    assert m['convs'][0]['weight'].shape == (32, 3, 7, 7) and m['convs'][-1]['weight'].shape == (256, 256, 3, 3)
    assert [c['stride'][0] for c in m['convs']].count(2) == 5  # the stem and 4 downsampling blocks
    assert np.allclose(m['mean_rgb'], [122.782, 117.001, 104.298], atol=1e-3)  # dlib's input layer
    assert m['size'] == (150, 150)
    assert len(m['pools']) == 1 + 4 + 1  # max pool, the 4 shortcut pools, the global average
    n = sum(c['weight'].size + c['bias'].size for c in m['convs']) + sum(2 * a['gamma'].size for a in m['affines'])
    assert n + m['fc'].size == sum(p.numel() for p in fi.DlibFaceResNet().parameters()) == 5614592
    assert all(np.isfinite(c['weight']).all() and np.abs(c['weight']).max() > 0 for c in m['convs'])


@needs_dlib
def test_truncated_file_is_refused(dat_path, tmp_path):
    bad = tmp_path / 'cut.dat'
    bad.write_bytes(open(dat_path, 'rb').read()[:1_000_000])
    with pytest.raises(ValueError, match='end of file'):
        fi.read_dlib_resnet(bad)


def test_missing_extra_names_the_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, 'face_recognition_models', None)  # find_spec -> None, import fails
    with pytest.raises(UserError, match='pip install .*face-recognition-models'):
        fi.load_face_identity('dlib')


def _rgb(a):
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def _variants(img):
    """Distinct versions of one photo: mirrored, rotated, rescaled, colour-jittered."""
    pil = PIL.Image.fromarray(img)
    w, h = pil.size
    out = {'plain': img, 'mirrored': img[:, ::-1].copy()}
    for deg in (-8, 6):
        out[f'rot{deg}'] = np.asarray(pil.rotate(deg, resample=PIL.Image.BICUBIC))
    for s in (0.6, 1.3):
        out[f'scale{s}'] = np.asarray(pil.resize((round(w * s), round(h * s)), PIL.Image.LANCZOS))
    f = img.astype(np.float32) / 255
    out['jitter'] = np.clip(255 * (f ** 0.8) * [1.1, 0.95, 0.85], 0, 255).astype(np.uint8)
    out['crop'] = img[h // 10:, w // 8: w - w // 16].copy()
    return out


@pytest.fixture(scope='module')
def faces():
    """(name, image, dlib landmarks) for every variant of skimage's photos where dlib finds a face."""
    if not HAVE_DLIB:
        pytest.skip('needs dlib-bin and face-recognition-models (the "align" extra)')
    skdata = pytest.importorskip('skimage.data')
    from eg3d_regressor_plugin import align
    out = []
    for name, img in [('astronaut', skdata.astronaut()), ('camera', _rgb(skdata.camera()))]:
        for vname, v in _variants(img).items():
            boxes = align.detect_faces(v)
            if boxes:
                out.append((f'{name}/{vname}', np.ascontiguousarray(v), align.landmarks68(v, boxes[0])))
    return out


def _dlib_descriptor(img, lm):
    import dlib
    from eg3d_regressor_plugin import align
    shape = align._model('landmarks68')(img, dlib.rectangle(*(int(round(v)) for v in _box(lm))))
    d = np.array(align._model('recognition').compute_face_descriptor(img, shape))
    return d, np.array([[p.x, p.y] for p in shape.parts()])


def _box(lm):
    return (*lm.min(0), *lm.max(0))


@needs_dlib
@needs_skimage
def test_agrees_with_dlib_on_real_photos(model, faces, capsys):
    assert len(faces) >= 8  # the astronaut's variants at least
    import dlib
    from eg3d_regressor_plugin import align
    cos = {}
    for name, img, lm in faces:
        shape = dlib.full_object_detection(dlib.rectangle(*(int(v) for v in _box(lm))),
                                           [dlib.point(int(x), int(y)) for x, y in lm])
        ref = np.array(align._model('recognition').compute_face_descriptor(img, shape))
        chip = fi.chip_from_landmarks(img, lm)
        assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
        with torch.no_grad():
            raw = model.net(torch.from_numpy(chip.copy()).permute(2, 0, 1)[None].float())[0].numpy()
            emb = model.embed_chips(chip)[0].numpy()
        cos[name] = float(emb @ ref / np.linalg.norm(ref))
        assert np.abs(raw - ref).max() < 1e-4, name  # dlib's raw descriptor, not only its direction
    with capsys.disabled():
        print(f'\n  dlib agreement on {len(cos)} chips: min cosine {min(cos.values()):.7f}')
    assert min(cos.values()) >= 0.99, cos
    # the chips are distinct faces to the network (not one chip repeated)
    embs = [model.embed_chips(fi.chip_from_landmarks(img, lm))[0] for _, img, lm in faces]
    assert min(float(a @ b) for a in embs for b in embs) < 0.999


@needs_dlib
def test_gradients_and_batches(model):
    torch.manual_seed(0)
    x = (torch.rand(3, 3, 256, 256) * 2 - 1).requires_grad_(True)
    e = model.embed(x)
    assert e.shape == (3, 128) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    e[:, :5].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum(dim=(1, 2, 3)).min() > 0
    assert all(p.grad is None for p in model.parameters())  # frozen: the loss trains the input only
    with torch.no_grad():  # a sample's embedding does not depend on the rest of the batch
        assert torch.allclose(model.embed(x[1:2]), e[1:2], atol=1e-5)
    # identity_loss: zero for the same images, positive for different ones, gradients to x only
    y = x.detach().flip(0)
    loss = fi.identity_loss(x, y, model)
    assert loss.requires_grad and 0 < loss.item() <= 2
    assert float(fi.identity_loss(x.detach(), x.detach(), model)) < 1e-5
    assert torch.allclose(fi.identity_loss(x.detach(), y), loss.detach(), atol=1e-6)  # dlib by default
    s = fi.identity_similarity(e, e.flip(0))
    assert s.shape == (3,) and abs(s[1].item() - 1) < 1e-5


@needs_dlib
@needs_skimage
def test_eg3d_crop_path_matches_dlib(model, capsys):
    skdata = pytest.importorskip('skimage.data')
    from eg3d_regressor_plugin import align
    crop, _ = align.align_face(skdata.astronaut())
    lm = align.landmarks68(crop, align.detect_faces(crop)[0])
    ref, _ = _dlib_descriptor(crop, lm)
    x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        e = model.embed(x)[0].numpy()
        e_small = model.embed(torch.nn.functional.interpolate(x, size=256, mode='area'))[0].numpy()
        shifted = model.embed(torch.roll(x, 64, dims=3))[0].numpy()  # the face off its place
    cos = float(e @ ref / np.linalg.norm(ref))
    with capsys.disabled():
        print(f'\n  EG3D-crop path vs dlib on the aligned astronaut: cosine {cos:.4f} (512 px), '
              f'{float(e_small @ ref / np.linalg.norm(ref)):.4f} (256 px); face shifted 64 px: '
              f'{float(shifted @ ref / np.linalg.norm(ref)):.4f}')
    # 0.9968 measured; the fixed region was measured on this face's crops, see _dlib_region
    assert cos >= 0.99
    assert float(e_small @ ref) / np.linalg.norm(ref) >= 0.99  # any crop resolution
    assert float(shifted @ ref) / np.linalg.norm(ref) < cos  # the region matters


def test_regions_lie_in_the_crop():
    for left, top, side in (fi._dlib_region(), fi._arcface_region()):
        assert 0 <= left and 0 <= top and left + side <= 1 and top + side <= 1 and side > 0.5
    # pSp's 188 of 256 px of an FFHQ crop, which is ~1.07 EG3D crops wide
    assert abs(fi._arcface_region()[2] - 0.782) < 0.01


# ---------------------------------------------------------------------------------------------
# ArcFace IR-SE50 (random weights; the published checkpoint is not downloaded)


@pytest.fixture(scope='module')
def arcface_pth(tmp_path_factory):
    torch.manual_seed(0)
    net = fi.ArcFaceIRSE50()
    path = tmp_path_factory.mktemp('arc') / 'model_ir_se50.pth'
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_arcface_keys_are_psps():
    sd = fi.ArcFaceIRSE50().state_dict()
    # names of the published model_ir_se50.pth (InsightFace's PyTorch port, as pSp loads it)
    for k in ['input_layer.0.weight', 'input_layer.1.running_var', 'input_layer.2.weight',
              'body.0.res_layer.0.weight', 'body.0.res_layer.1.weight', 'body.0.res_layer.2.weight',
              'body.0.res_layer.3.weight', 'body.0.res_layer.4.bias', 'body.0.res_layer.5.fc1.weight',
              'body.0.res_layer.5.fc2.weight', 'body.3.shortcut_layer.0.weight', 'body.3.shortcut_layer.1.bias',
              'body.23.res_layer.5.fc2.weight', 'output_layer.0.weight', 'output_layer.3.weight',
              'output_layer.3.bias', 'output_layer.4.running_mean']:
        assert k in sd, k
    assert 'body.24.res_layer.0.weight' not in sd and 'body.0.shortcut_layer.0.weight' not in sd
    assert sd['output_layer.3.weight'].shape == (512, 512 * 7 * 7)
    assert sd['body.7.shortcut_layer.0.weight'].shape == (256, 128, 1, 1)


def test_arcface_loads_and_embeds(arcface_pth):
    path, sd = arcface_pth
    m = fi.load_face_identity(path)
    assert m.kind == 'arcface' and not m.training
    assert torch.equal(m.net.state_dict()['body.5.res_layer.1.weight'], sd['body.5.res_layer.1.weight'])
    x = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_(True)
    e = m.embed(x)
    assert e.shape == (2, 512) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    assert m.crop(x).shape == (2, 3, 112, 112)
    e.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum(dim=(1, 2, 3)).min() > 0


def test_arcface_bad_checkpoints(arcface_pth, tmp_path):
    path, sd = arcface_pth
    cases = {
        'missing': ({k: v for k, v in sd.items() if not k.startswith('output_layer.3')}, 'missing'),
        'wrong shape': ({**sd, 'input_layer.0.weight': torch.zeros(64, 3, 5, 5)}, 'wrong shape'),
        'not a state dict': ([1, 2, 3], 'not a state dict'),
    }
    for name, (obj, msg) in cases.items():
        p = tmp_path / f'{name}.pth'
        torch.save(obj, p)
        with pytest.raises(UserError, match=msg) as e:
            fi.load_face_identity(p)
        assert '\n' not in e.value.message and 'spec' in e.value.message
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(b'not a checkpoint at all')
    with pytest.raises(UserError, match='not a readable PyTorch state dict'):
        fi.load_face_identity(corrupt)
    with pytest.raises(UserError, match='no file'):
        fi.load_face_identity(tmp_path / 'absent.pth')
