"""images.py: every bad input is one UserError naming the file; every Pillow mode becomes RGB."""

import struct
import zlib

import numpy as np
import PIL.Image
import pytest
import torch

from eg3d_regressor_plugin import images
from eg3d_regressor_plugin.errors import UserError


def _rgb(h=48, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png16(path, arr):
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit RGB): grey [H,W] or RGB [H,W,3]."""
    h, w = arr.shape[:2]
    ctype = 0 if arr.ndim == 2 else 2
    raw = b''.join(b'\x00' + arr[y].astype('>u2').tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, ctype, 0, 0, 0))
                     + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def _error(path):
    with pytest.raises(UserError) as e:
        images.load_image(path)
    msg = e.value.message
    assert str(path) in msg and '\n' not in msg
    return msg


# ---- failures ---------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    assert 'no such file' in _error(tmp_path / 'nope.jpg')


def test_folder_is_not_a_file(tmp_path):
    assert 'not a file' in _error(tmp_path)


def test_zero_bytes(tmp_path):
    p = tmp_path / 'empty.png'
    p.write_bytes(b'')
    assert 'empty' in _error(p)


def test_text_named_jpg(tmp_path):
    p = tmp_path / 'notes.jpg'
    p.write_text('these are not pixels\n' * 20)
    assert 'not an image' in _error(p)


@pytest.mark.parametrize('fmt', ['PNG', 'JPEG'])
def test_truncated(tmp_path, fmt):
    p = tmp_path / f'cut.{fmt.lower()}'
    PIL.Image.fromarray(_rgb(200, 200)).save(p, format=fmt)
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 2])
    assert 'corrupt or truncated' in _error(p)


def test_corrupt_body(tmp_path):
    p = tmp_path / 'garbled.png'
    PIL.Image.fromarray(_rgb(100, 100)).save(p)
    data = bytearray(p.read_bytes())
    data[60:200] = bytes(140)  # zero the compressed pixel data after the header
    p.write_bytes(bytes(data))
    assert 'corrupt or truncated' in _error(p)


def test_too_small(tmp_path):
    p = tmp_path / 'tiny.png'
    PIL.Image.fromarray(_rgb(16, 16)).save(p)
    msg = _error(p)
    assert 'too small' in msg and '16x16' in msg and f'{images.MIN_SIDE} px' in msg


def test_too_large_by_our_limit(tmp_path, monkeypatch):
    p = tmp_path / 'big.png'
    PIL.Image.fromarray(_rgb(100, 120)).save(p)
    monkeypatch.setattr(images, 'MAX_PIXELS', 10_000)
    msg = _error(p)
    assert 'too large' in msg and '120x100 = 0.012 megapixels' in msg and 'limit is 0.01 megapixels' in msg


@pytest.mark.parametrize('factor', [1.5, 3])  # Pillow warns above its limit and fails above twice it
def test_too_large_by_pillow_bomb_check(tmp_path, monkeypatch, factor):
    p = tmp_path / 'bomb.png'
    PIL.Image.fromarray(_rgb(100, 100)).save(p)
    monkeypatch.setattr(PIL.Image, 'MAX_IMAGE_PIXELS', int(100 * 100 / factor))
    msg = _error(p)
    assert 'too large' in msg and f'limit is {1e-6 * 100 * 100 / factor:.3g} megapixels' in msg


# ---- modes that must work -----------------------------------------------------------------------

def _load_saved(tmp_path, pil_img, name, **kw):
    p = tmp_path / name
    pil_img.save(p, **kw)
    out = images.load_image(p)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.flags['C_CONTIGUOUS']
    assert out.shape[:2] == (pil_img.size[1], pil_img.size[0])
    return out


def test_rgb_roundtrip(tmp_path):
    a = _rgb()
    assert np.array_equal(_load_saved(tmp_path, PIL.Image.fromarray(a), 'a.png'), a)


def test_grayscale(tmp_path):
    g = _rgb()[:, :, 0]
    out = _load_saved(tmp_path, PIL.Image.fromarray(g), 'g.png')
    assert all(np.array_equal(out[:, :, i], g) for i in range(3))


def test_rgba_over_white(tmp_path):
    a = np.zeros((40, 50, 4), np.uint8)
    a[..., 0] = 200
    a[:, :25, 3] = 255   # opaque red-ish half
    a[:, 25:, 3] = 0     # transparent half -> white
    out = _load_saved(tmp_path, PIL.Image.fromarray(a, 'RGBA'), 'a.png')
    assert (out[:, :25] == [200, 0, 0]).all() and (out[:, 25:] == 255).all()


def test_la_half_transparent(tmp_path):
    a = np.stack([np.zeros((40, 40), np.uint8), np.full((40, 40), 128, np.uint8)], axis=2)
    out = _load_saved(tmp_path, PIL.Image.fromarray(a, 'LA'), 'la.png')
    assert np.abs(out.astype(int) - 127).max() <= 1  # black at ~50% over white


def test_palette_with_transparency(tmp_path):
    im = PIL.Image.fromarray(_rgb()).convert('P', palette=PIL.Image.ADAPTIVE, colors=16)
    idx = np.asarray(im)
    out = _load_saved(tmp_path, im, 'p.png', transparency=int(idx[0, 0]))
    pal = np.array(im.getpalette()[:48]).reshape(16, 3)
    opaque = idx != idx[0, 0]
    assert np.array_equal(out[opaque], pal[idx[opaque]]) and (out[~opaque] == 255).all()


def test_16bit_grey_scaled_not_clipped(tmp_path):
    g = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (40, 1))
    p = tmp_path / 'g16.png'
    _png16(p, g)
    with PIL.Image.open(p) as im:
        assert im.mode.startswith('I')
    out = images.load_image(p)
    assert out.shape == (40, 64, 3)
    assert np.abs(out[..., 0].astype(int) - np.rint(g / 257)).max() <= 1
    assert out.min() == 0 and out.max() == 255


def test_16bit_rgb(tmp_path):
    a = np.zeros((40, 50, 3), np.uint16)
    a[..., 0], a[..., 1], a[..., 2] = 65535, 30000, 257 * 7
    p = tmp_path / 'c16.png'
    _png16(p, a)
    out = images.load_image(p)
    assert out.shape == (40, 50, 3) and (np.abs(out[0, 0].astype(int) - [255, 117, 7]) <= 1).all()


def test_float_tiff(tmp_path):
    f = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (40, 1))
    out = _load_saved(tmp_path, PIL.Image.fromarray(f, 'F'), 'f.tif')
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255


def test_cmyk(tmp_path):
    cmyk = PIL.Image.new('CMYK', (40, 40), (0, 255, 255, 0))  # pure red
    out = _load_saved(tmp_path, cmyk, 'c.jpg', quality=100)
    assert (np.abs(out.astype(int) - [255, 0, 0]) <= 8).all()


def test_exif_orientation(tmp_path):
    a = np.zeros((40, 60, 3), np.uint8)
    a[:10, :10] = 255  # marker top-left
    im = PIL.Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / 'rot.jpg'
    im.save(p, exif=exif, quality=100)
    out = images.load_image(p)
    assert out.shape == (60, 40, 3)
    assert out[:10, -10:].mean() > 200 and out[:10, :10].mean() < 50  # marker now top-right


# ---- list_images --------------------------------------------------------------------------------

def _make_folder(tmp_path):
    for n in ['b.png', 'a.jpg', 'c.PNG']:
        PIL.Image.fromarray(_rgb()).save(tmp_path / n, format='PNG' if n.lower().endswith('png') else 'JPEG')
    (tmp_path / 'notes.txt').write_text('x')
    (tmp_path / 'sub').mkdir()
    PIL.Image.fromarray(_rgb()).save(tmp_path / 'sub' / 'd.png')
    return tmp_path


def test_list_file(tmp_path):
    d = _make_folder(tmp_path)
    assert images.list_images(d / 'a.jpg') == [d / 'a.jpg']
    assert images.list_images(str(d / 'notes.txt')) == [d / 'notes.txt']  # named explicitly: load_image judges it


def test_list_folder_sorted_non_recursive(tmp_path):
    d = _make_folder(tmp_path)
    assert [p.name for p in images.list_images(d)] == ['a.jpg', 'b.png', 'c.PNG']


def test_list_glob(tmp_path):
    d = _make_folder(tmp_path)
    assert [p.name for p in images.list_images(str(d / '*.png'))] == ['b.png']
    assert [p.name for p in images.list_images(str(d / '*'))] == ['a.jpg', 'b.png', 'c.PNG']
    assert [p.name for p in images.list_images(str(d / '**' / '*.png'))] == ['d.png']


@pytest.mark.parametrize('spec', ['missing.jpg', 'missing_dir', '*.webp', 'notes*', 'empty'])
def test_list_nothing(tmp_path, spec):
    d = _make_folder(tmp_path)
    (d / 'empty').mkdir()
    with pytest.raises(UserError) as e:
        images.list_images(str(d / spec))
    assert spec in e.value.message and '\n' not in e.value.message


# ---- to_tensor ----------------------------------------------------------------------------------

def test_to_tensor_range_and_layout():
    a = _rgb(20, 20)
    x = images.to_tensor(a)
    assert x.shape == (1, 3, 20, 20) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, 3, 5], torch.tensor(a[3, 5], dtype=torch.float32) / 127.5 - 1)
    assert images.to_tensor(np.zeros((4, 4, 3), np.uint8)).min() == -1
    assert images.to_tensor(np.full((4, 4, 3), 255, np.uint8)).max() == 1


def test_to_tensor_resize_antialiased():
    stripes = np.zeros((256, 256, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: an antialiased 4x downscale averages them to grey
    x = images.to_tensor(stripes, size=64)
    assert x.shape == (1, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert x.abs().max() < 0.1
    with pytest.raises(ValueError):
        images.to_tensor(np.zeros((4, 4), np.uint8))
