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
they have in the photos. Every random choice derives from (seed, rank, step): a resumed run
styles the batches the uninterrupted one would have.
"""

import io
import math

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from . import data
from .networks import resize_input

STYLE_KEY = 0x57e1  # sample-seed key of the styling's random choices
# Ranges of the random nuisances (uniform), in units of the photo's size where it matters.
MAX_ZOOM = 0.15        # crop: up to 15 % closer
MAX_SHIFT = 0.05       # and shifted by up to 5 % of the size each way
MAX_BLUR = 1.2 / 128   # Gaussian blur sigma, up to 1.2 px at 128 px
MAX_NOISE = 8 / 127.5  # sensor noise std, up to 8 grey levels
JPEG_QUALITY = (30, 95)


def gaussian_blur(img, sigma):
    """Blur each image [N,C,H,W] by its own sigma (pixels, [N]); sigma below 0.2 leaves it as it is."""
    out = img.clone()
    for i, s in enumerate(sigma.tolist()):
        if s < 0.2:
            continue
        r = max(1, math.ceil(3 * s))
        t = torch.arange(-r, r + 1, device=img.device, dtype=img.dtype)
        k = torch.exp(-t ** 2 / (2 * s * s))
        k = k / k.sum()
        c = img.shape[1]
        x = F.pad(img[i:i + 1], (r, r, r, r), mode='reflect')
        x = F.conv2d(x, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        out[i] = F.conv2d(x, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]
    return out


def jpeg(img, quality):
    """JPEG-compress each image [N,3,H,W] in [-1,1] at its own quality ([N] ints), through PIL."""
    out = []
    for x, q in zip(img, quality.tolist()):
        a = ((x.detach().clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        buf = io.BytesIO()
        PIL.Image.fromarray(a).save(buf, format='jpeg', quality=int(q))
        out.append(torch.from_numpy(np.array(PIL.Image.open(buf).convert('RGB'))).permute(2, 0, 1))
    return data.uint8_to_float(torch.stack(out).to(img.device))


def crop_jitter(img, zoom, shift):
    """Zoom each image in by 1 + zoom[i] around a centre moved by shift[i] ([N,2], in grid units:
    the image spans [-1, 1])."""
    n = len(img)
    theta = torch.zeros(n, 2, 3, device=img.device, dtype=img.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / (1 + zoom)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    return F.grid_sample(img, grid, mode='bilinear', padding_mode='reflection', align_corners=False)


def style_images(img, mask, background, gen):
    """Synthetic images [N,3,r,r] in [-1,1] (mask [N,1,r',r'], 1: background, or None) styled as
    photos like `background` [N,3,R,R]: composited onto it (where the mask says), then cropped,
    blurred, noised and JPEG-compressed with random strengths drawn from `gen` (a CPU
    torch.Generator). Returns [N,3,R,R] at the background's resolution."""
    n, size = len(img), background.shape[-1]
    u = torch.rand(n, 6, generator=gen).to(img.device)
    x = F.interpolate(img, size=(size, size), mode='bilinear', align_corners=False, antialias=img.shape[-1] > size)
    if mask is not None:
        m = F.interpolate(mask.to(x), size=(size, size), mode='bilinear', align_corners=False)
        x = x * (1 - m) + background.to(x) * m
    x = crop_jitter(x, MAX_ZOOM * u[:, 0], 2 * MAX_SHIFT * (2 * u[:, 1:3] - 1))
    x = gaussian_blur(x, MAX_BLUR * size * u[:, 3])
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    x = x + noise * (MAX_NOISE * u[:, 4]).reshape(-1, 1, 1, 1)
    lo, hi = JPEG_QUALITY
    return jpeg(x, (lo + (hi - lo) * u[:, 5]).round().long())


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
        # Each chosen pair gets a real image of this step as its background (cycled when fewer).
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
