"""Reading the user's images robustly: a file, a folder or a glob in; uint8 RGB arrays out, or one
clear UserError line that names the file (missing, empty, corrupt, not an image, too small, too
large). Every mode Pillow decodes (grayscale, palette, alpha, 16-bit, CMYK) becomes 8-bit RGB."""

import glob
import os
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F

from .errors import UserError, check_file

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif', '.ppm', '.pgm', '.pnm')
MIN_SIDE = 32               # px; smaller images carry no usable face
MAX_PIXELS = 80_000_000     # ~80 MP; below Pillow's own decompression-bomb threshold (~89 MP)


def _is_image_file(p: Path, extra_exts=()) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS + tuple(extra_exts)


def list_images(spec, extra_exts=()) -> list:
    """`spec` is an image file, a folder (its image files, sorted, not recursive) or a glob
    pattern ('photos/*.jpg'). A file named explicitly is returned whatever its extension, so that
    load_image() can say what is wrong with it. extra_exts: more suffixes a folder or a glob
    lists (gen: video files)."""
    s = os.path.expanduser(str(spec))
    p = Path(s)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if _is_image_file(q, extra_exts))
        if not files:
            raise UserError(f'no image files ({", ".join(IMAGE_EXTS)}) in folder {s}')
        return files
    if glob.has_magic(s):
        matches = sorted(Path(q) for q in glob.glob(s))
        files = [q for q in matches if _is_image_file(q, extra_exts)]
        if not files:
            what = 'no files' if not matches else 'no image files'
            raise UserError(f'{what} match {s}')
        return files
    raise UserError(f'no such file or folder: {s}')


def _to_rgb(img: PIL.Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 [H,W,3]; transparency is composited over white."""
    mode = img.mode
    if mode.startswith('I;16') or mode in ('I', 'F'):
        # Pillow's convert('RGB') clips these at 255 instead of rescaling; scale by hand.
        a = np.asarray(img).astype(np.float64)
        if mode == 'F':
            a = a * 255 if a.max() <= 1.0 else a
        else:  # 16-bit grey (also 'I' for 16-bit PNGs on older Pillow): 65535 -> 255
            a = np.clip(a, 0, 65535) / 257.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if (mode == 'P' and 'transparency' in img.info) or mode == 'PA':
        img, mode = img.convert('RGBA'), 'RGBA'
    if mode in ('RGBA', 'LA', 'La', 'RGBa'):
        rgba = img.convert('RGBA')
        white = PIL.Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return np.asarray(PIL.Image.alpha_composite(white, rgba).convert('RGB'))
    return np.asarray(img.convert('RGB'))


def load_image(path) -> np.ndarray:
    """Read an image file as uint8 RGB [H,W,3], upright (EXIF orientation applied)."""
    p = check_file(path, 'image')
    pil_limit = PIL.Image.MAX_IMAGE_PIXELS or float('inf')  # Pillow's own check warns/fails above it
    limit = f'the limit is {min(MAX_PIXELS, pil_limit) / 1e6:.3g} megapixels'
    try:
        with warnings.catch_warnings():
            # Pillow only warns between ~89 and ~179 MP; make that an error we report.
            warnings.simplefilter('error', PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(p) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise UserError(f'{p}: image too large ({w}x{h} = {w * h / 1e6:.3g} megapixels); {limit}')
                if min(w, h) < MIN_SIDE:
                    raise UserError(f'{p}: image too small ({w}x{h} px); the minimum is {MIN_SIDE} px on a side')
                img.load()
                try:
                    img = PIL.ImageOps.exif_transpose(img)
                except Exception:  # a broken EXIF block is no reason to reject the pixels
                    pass
                return np.ascontiguousarray(_to_rgb(img))
    except UserError:
        raise
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning):
        raise UserError(f'{p}: image too large (Pillow refuses it as a possible decompression bomb); {limit}') from None
    except PIL.UnidentifiedImageError:
        raise UserError(f'{p}: not an image (or a format Pillow cannot read)') from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = ' '.join(str(e).split()) or type(e).__name__
        raise UserError(f'{p}: corrupt or truncated image ({msg})') from None


def to_tensor(img_uint8, size=None, device='cpu') -> torch.Tensor:
    """uint8 [H,W,3] -> float [1,3,S,S] in [-1,1] (EG3D's img/127.5-1). With `size`, resize with an
    antialiased bicubic filter (a non-square image is stretched: crop it first)."""
    a = np.asarray(img_uint8)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f'expected a uint8 [H,W,3] array, got {a.dtype} {list(a.shape)}')
    x = torch.tensor(a, device=device).permute(2, 0, 1)[None].float() / 127.5 - 1  # copies: arrays may be read-only
    if size is not None and tuple(x.shape[2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode='bicubic', align_corners=False, antialias=True).clamp(-1, 1)
    return x


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """EG3D image tensor [N,C,H,W] or [C,H,W] in [-1,1] -> uint8 HWC (or NHWC) array, as EG3D does."""
    x = (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    x = x.permute(0, 2, 3, 1) if x.ndim == 4 else x.permute(1, 2, 0)
    return x.cpu().numpy()


def image_grid(images, cols):
    """Tile equally sized uint8 HWC arrays into one grid image, row-major."""
    images = [np.asarray(i) for i in images]
    h, w, c = images[0].shape
    rows = (len(images) + cols - 1) // cols
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = im
    return grid
