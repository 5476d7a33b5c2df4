"""Synthetic pairs made to look like the real photos trained beside them (`train --real`,
--real-style): a share of each batch's synthetic pairs is composited onto that step's real
images, where the render shows background (its mask, render.background_mask), and then put
through what a camera and a face detector do to a photo: a small crop shift and scale change,
blur, sensor noise and JPEG compression, each of random strength. The pair keeps its exact w and
pose labels.

Why: a regressor trained on renders alone fails on photos mostly for reasons that have nothing to
do with the face: a background the generator never drew, blur, noise, compression and a detector's
crop. The losses on real images themselves (real_loss.py) can only teach through the generator's
render of a prediction, which cannot reproduce those nuisances, and pseudo-labels carry the bias of
the regressor that made them; a styled synthetic pair instead gives the exact label of an image
with the real set's backgrounds and a photo's defects, at the cost of a synthetic step.

The images are styled at the real images' resolution (the synthetic ones, and their masks,
resized to it) and then resized to the network's input, so blur and JPEG blocks have the scale
they have in the photos. photo_defects is also the fixed shift of benchmarks/real_gap.py. Every random choice derives from (seed, rank, step): a resumed run
styles the batches the uninterrupted one would have.
"""

import io

import numpy as np
import PIL.Image
import PIL.ImageFilter
import torch
import torch.nn.functional as F

from ..images import to_uint8
from . import data
from .networks import resize_input

STYLE_KEY = 0x57e1  # sample-seed key of the styling's random choices
# Ranges of the random nuisances (uniform), in units of the photo's size where it matters.
MAX_ZOOM = 0.15        # crop: up to 15 % closer
MAX_SHIFT = 0.05       # and shifted by up to 5 % of the size each way
MAX_BLUR = 1.2 / 128   # Gaussian blur sigma, up to 1.2 px at 128 px
MAX_NOISE = 8.0        # sensor noise std, up to 8 grey levels
JPEG_QUALITY = (30, 95)


def photo_defects(img, scale, shift, blur, noise, quality, rng):
    """What a camera and a face detector do to a photo, to one uint8 image [R,R,3]: a crop `scale`
    times closer whose centre moves by shift = (dx, dy) pixels (kept inside the image), resized
    back to R; Gaussian blur of `blur` px; sensor noise of std `noise` grey levels drawn from the
    numpy Generator `rng`; JPEG at `quality`. Returns uint8 [R,R,3]."""
    r = img.shape[0]
    side = r / scale
    left, top = (float(np.clip((r - side) / 2 + v, 0, r - side)) for v in shift)
    pil = PIL.Image.fromarray(img).resize((r, r), PIL.Image.BICUBIC, box=(left, top, left + side, top + side))
    if blur > 0:
        pil = pil.filter(PIL.ImageFilter.GaussianBlur(blur))
    arr = np.asarray(pil).astype(np.float32) + rng.normal(0, noise, size=(r, r, 3))
    buf = io.BytesIO()
    PIL.Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format='jpeg', quality=int(quality))
    return np.asarray(PIL.Image.open(buf).convert('RGB'))


def style_images(img, mask, background, gen):
    """Synthetic images [N,3,r,r] in [-1,1] (mask [N,1,r',r'], 1: background, or None) styled as
    photos like `background` [N,3,R,R]: composited onto it (where the mask says), then
    photo_defects with random strengths drawn from `gen` (a CPU torch.Generator). Returns
    [N,3,R,R] at the background's resolution."""
    n, size = len(img), background.shape[-1]
    x = F.interpolate(img, size=(size, size), mode='bilinear', align_corners=False, antialias=img.shape[-1] > size)
    if mask is not None:
        m = F.interpolate(mask.to(x), size=(size, size), mode='bilinear', align_corners=False)
        x = x * (1 - m) + background.to(x) * m
    u = torch.rand(n, 6, generator=gen).tolist()
    seeds = torch.randint(2 ** 31, (n,), generator=gen).tolist()
    lo, hi = JPEG_QUALITY
    out = []
    for xi, (a, dx, dy, b, c, q), seed in zip(to_uint8(x), u, seeds):
        out.append(photo_defects(xi, 1 + MAX_ZOOM * a, (MAX_SHIFT * size * (2 * dx - 1), MAX_SHIFT * size * (2 * dy - 1)),
                                 MAX_BLUR * size * b, MAX_NOISE * c, round(lo + (hi - lo) * q),
                                 np.random.default_rng(seed)))
    return data.uint8_to_float(torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(img.device))


class RealStyle:
    """Styles a share `p` of a synthetic batch (a source's dict: img at the network's input
    resolution, optional mask) as photos like a real batch's images: styled = style(syn, real_img,
    step). The styled images replace syn['img']; syn['clean'] keeps the rendered ones (for a
    synthetic image loss, which compares renders)."""

    def __init__(self, p, seed, rank, resolution):
        if not 0 <= p <= 1:
            raise ValueError(f'real-style share must be in [0, 1], got {p}')
        self.p, self.seed, self.rank, self.resolution = float(p), seed, rank, resolution

    def __call__(self, syn, real_img, step):
        gen = torch.Generator().manual_seed(data.derive_seed(self.seed, self.rank, step, STYLE_KEY))
        n = len(syn['img'])
        chosen = torch.nonzero(torch.rand(n, generator=gen) < self.p).flatten()
        # Each chosen pair gets a background drawn at random from this step's real images.
        pick = torch.randint(len(real_img), (n,), generator=gen)[chosen]
        out = dict(syn, clean=syn['img'])
        if len(chosen) == 0:
            return out
        idx = chosen.to(syn['img'].device)
        mask = syn['mask'][idx] if 'mask' in syn else None
        styled = style_images(syn['img'][idx], mask, real_img[pick.to(real_img.device)], gen)
        img = syn['img'].clone()
        img[idx] = resize_input(styled, self.resolution).to(img)
        out['img'] = img
        return out
