"""Rendering a w code with EG3D: images and depth at given poses, the density volume (in chunks,
so memory stays bounded at any resolution), marching cubes, .mrc volumes and videos (meshes.py
writes coloured meshes). Every command that renders (gen, interp, edit, eval, sample-codes)
goes through here."""

import contextlib

import numpy as np
import torch
from tqdm import tqdm

from . import cameras
from .files import atomic_path
from .images import to_uint8


SEED = 0  # EG3D's ray-sampling seed of every render here (and of the optimiser)


@contextlib.contextmanager
def seeded(seed, device):
    """EG3D's rendering draws random numbers (depth jitter, importance sampling) even with
    noise_mode='const': fix them so the same (w, c) renders the same image."""
    devices = [device] if torch.device(device).type == 'cuda' else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def render(G, w, c, seed=SEED, neural_rendering_resolution=None, grad=False):
    """G.synthesis(w, c) with noise_mode='const' and a fixed seed -> dict(image, image_raw, image_depth).
    seed=None draws from the caller's random stream instead (a caller that renders a batch in chunks
    under one seed). Without grad, runs under no_grad. The generator's neural rendering resolution is
    left as it was."""
    device = w.device
    nr_before = G.neural_rendering_resolution
    ctx = contextlib.nullcontext() if grad else torch.no_grad()
    rng = contextlib.nullcontext() if seed is None else seeded(seed, device)
    try:
        with ctx, rng:
            return G.synthesis(w, c.to(device), neural_rendering_resolution=neural_rendering_resolution,
                               noise_mode='const')
    finally:
        G.neural_rendering_resolution = nr_before


def render_image(G, w, c, seed=SEED):
    """(uint8 HWC image as saved, the full output dict) of one code at one camera."""
    out = render(G, w, c, seed=seed)
    return to_uint8(out['image'])[0], out


def render_views(G, w, poses, seed=SEED, **pose_kwargs):
    """Images [len(poses),3,H,W] of one w (shape [1,num_ws,w_dim]) at a list of (yaw, pitch)."""
    out = []
    for yaw, pitch in poses:
        c = cameras.pose_to_label(yaw, pitch, device=w.device, **pose_kwargs)
        out.append(render(G, w, c, seed=seed)['image'])
    return torch.cat(out)


def depth_to_uint8(depth):
    """Depth [1,1,h,w] or [h,w] -> uint8 [h,w], near = bright, normalised to the image's range."""
    d = depth.detach().float().cpu().reshape(depth.shape[-2], depth.shape[-1]).numpy()
    lo, hi = np.percentile(d, 1), np.percentile(d, 99)
    d = 1 - np.clip((d - lo) / max(hi - lo, 1e-8), 0, 1)
    return (d * 255 + 0.5).astype(np.uint8)

BACKGROUND_QUANTILE, BACKGROUND_FRACTION = 0.15, 0.6


def background_mask(depth, size):
    """Where a render shows background: depth [N,1,h,w] -> float [N,1,size,size] in [0, 1] (1:
    background), soft at the edge. A ray is background when its depth lies beyond
    BACKGROUND_FRACTION of the way from the near end of the head (the image's 15 % depth
    quantile) to the farthest ray: EG3D renders its background as far surfaces, not as
    transparency, so depth is what tells the head from it."""
    d = depth.detach().float()
    flat = d.flatten(1)
    near = flat.quantile(BACKGROUND_QUANTILE, dim=1).reshape(-1, 1, 1, 1)
    far = flat.max(dim=1).values.reshape(-1, 1, 1, 1)
    mask = (d > near + BACKGROUND_FRACTION * (far - near)).float()
    mask = torch.nn.functional.interpolate(mask, size=(size, size), mode='bilinear', align_corners=False,
                                           antialias=size < d.shape[-1])
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=d.device) / 16  # a 5-tap binomial blur: a soft edge
    pad = torch.nn.functional.pad(mask, (2, 2, 2, 2), mode='replicate')
    mask = torch.nn.functional.conv2d(pad, (k[:, None] * k[None])[None, None])
    return mask.clamp(0, 1)

#----------------------------------------------------------------------------
# Shapes.

def sample_density(G, w, shape_res=256, chunk=2 ** 18, progress=True, seed=SEED):
    """EG3D's density sigma on a shape_res^3 grid spanning the tri-plane box, as float32 [x,y,z].
    The tri-planes are synthesised once; grid points are made and evaluated `chunk` at a time, so
    memory beyond the result grows with the chunk, not with the resolution."""
    device = w.device
    half = G.rendering_kwargs['box_warp'] / 2
    axis = torch.linspace(-half, half, shape_res, device=device)
    n = shape_res ** 3
    sigmas = np.empty(n, dtype=np.float32)
    with torch.no_grad(), seeded(seed, device):
        planes = G.backbone.synthesis(w, noise_mode='const')
        planes = planes.view(len(planes), 3, 32, planes.shape[-2], planes.shape[-1])
        directions = torch.zeros(1, chunk, 3, device=device)
        directions[..., -1] = -1
        for start in tqdm(range(0, n, chunk), desc=f'shape {shape_res}^3', unit='chunk', disable=not progress,
                          leave=False):
            idx = torch.arange(start, min(start + chunk, n), device=device)
            pts = torch.stack([axis[idx // shape_res ** 2], axis[(idx // shape_res) % shape_res], axis[idx % shape_res]], -1)
            out = G.renderer.run_model(planes, G.decoder, pts[None], directions[:, :len(idx)], G.rendering_kwargs)
            sigmas[start:start + len(idx)] = out['sigma'].reshape(-1).float().cpu().numpy()
    return sigmas.reshape(shape_res, shape_res, shape_res)


def trim_border(sigmas, value=-1000.0):
    """Blank the outer band of the cube as EG3D's gen_samples.py does (30 voxels at 256)."""
    pad = int(30 * sigmas.shape[0] / 256)
    if pad:
        for axis in range(3):
            sl = [slice(None)] * 3
            sl[axis] = slice(0, pad)
            sigmas[tuple(sl)] = value
            sl[axis] = slice(-pad, None)
            sigmas[tuple(sl)] = value
    return sigmas


def save_mrc(path, sigmas):
    """The volume as EG3D's gen_samples.py writes it (viewable in ChimeraX)."""
    import mrcfile
    data = np.ascontiguousarray(np.flip(trim_border(sigmas.copy()), 0), dtype=np.float32)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)


def extract_mesh(sigmas, box_warp=1.0, level=10.0):
    """Marching cubes (scikit-image) at density `level` (EG3D's 10 for trained models) -> (vertices
    in EG3D world units, faces). A volume that never reaches `level` (an untrained generator's) is
    cut at its 99th percentile instead, with a warning, rather than giving an empty mesh."""
    import warnings
    import skimage.measure
    vol = trim_border(sigmas.copy())
    if not (vol.min() < level < vol.max()):
        inside = vol[vol > -1000]
        new_level = float(np.percentile(inside, 99)) if inside.size else 0.0
        warnings.warn(f'density never crosses {level:g} (range {inside.min():.3g}..{inside.max():.3g}); '
                      f'extracting the mesh at {new_level:.3g} instead')
        level = new_level
        if not (vol.min() < level < vol.max()):
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    spacing = box_warp / (vol.shape[0] - 1)
    verts, faces, _, _ = skimage.measure.marching_cubes(vol, level=level, spacing=(spacing,) * 3)
    return (verts - box_warp / 2).astype(np.float32), faces.astype(np.int64)


#----------------------------------------------------------------------------
# Video.

def write_video(path, frames, fps=30):
    """Write uint8 HWC frames to an .mp4 (needs the "video" extra: imageio-ffmpeg), atomically."""
    from .errors import require_extra
    require_extra('video')
    import imageio
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(tmp, format='FFMPEG', mode='I', fps=fps, codec='libx264',
                                    macro_block_size=1, ffmpeg_log_level='error')
        try:
            for frame in frames:
                writer.append_data(np.asarray(frame))
        finally:
            writer.close()
