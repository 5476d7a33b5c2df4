"""A sequence of codes rendered and written out, as edit (one code per alpha) and interp (one code
per step) write it: a grid image, one code file per step, the camera, optional shapes, and a
video that runs the sequence there and back."""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import render
from .files import save_image, save_npy
from .images import image_grid, to_uint8
from .meshes import save_shape_file


def render_codes(G, ws, c, desc='render'):
    """uint8 HWC images of each code in ws [N, num_ws, w_dim] at camera c [1, 25]."""
    return [to_uint8(render.render(G, w[None], c)['image'])[0]
            for w in tqdm(ws, desc=desc, unit='img', leave=False, disable=None)]


def pingpong(seq):
    """seq forward then back without repeating the ends: loops seamlessly."""
    seq = list(seq)
    return seq + seq[-2:0:-1]


def forward_frames(video_frames):
    """Codes on the way out of a there-and-back video of about `video_frames` frames (at least 2)."""
    return max(2, video_frames // 2 + 1)


def alpha_tag(i, alpha):
    """Sortable, sign-explicit file tag: 00_alpha-3.00."""
    return f'{i:02d}_alpha{alpha:+.2f}'


def write_sequence(folder, G, ws, c, tags, cols, grid_name, shapes=False, shape_res=256, shape_format='.mrc',
                   mesh_clean=True, decimate=None):
    """Write grid_name (the codes rendered at c, `cols` per row), w_<tag>.npy per code (float32
    [1, num_ws, w_dim]), c.npy and, with shapes, shape_<tag> per code in shape_format (meshes.py).
    Returns the shape files' names."""
    folder = Path(folder)
    images = render_codes(G, ws, c)
    save_image(folder / grid_name, image_grid(images, cols=min(cols, len(images))))
    for w, tag in zip(ws, tags):
        save_npy(folder / f'w_{tag}.npy', w[None].detach().cpu().numpy().astype(np.float32))
    save_npy(folder / 'c.npy', c.detach().cpu().numpy().astype(np.float32))
    written = []
    if shapes:
        for w, tag in zip(tqdm(ws, desc='shapes', unit='shape', leave=False, disable=None), tags):
            path, _ = save_shape_file(folder / f'shape_{tag}{shape_format}', G, w[None], shape_res=shape_res,
                                      shape_format=shape_format, clean=mesh_clean, decimate=decimate,
                                      progress=sys.stderr.isatty())
            written.append(path.name)
    return written


def write_pingpong_video(path, G, ws, c, orbit=False, fps=30, camera_path=None):
    """An .mp4 of the codes ws [F, num_ws, w_dim] there and back (pingpong), rendered at c or along
    a camera path around c's pose (camera_paths: camera_path 'orbit', 'yaw', 'pitch' or a JSON
    file; orbit=True is camera_path 'orbit')."""
    from .camera_paths import path_around, path_frames
    frame_ws = torch.stack(pingpong(ws))
    spec = camera_path or ('orbit' if orbit else None)
    if spec is None:
        frames = (to_uint8(render.render(G, w[None], c)['image'])[0] for w in frame_ws)
    else:
        frames = path_frames(G, frame_ws, path_around(spec, len(frame_ws), c))
    render.write_video(path, frames, fps=fps)


def write_json(path, data):
    Path(path).write_text(json.dumps(data, indent=2, default=str) + '\n')
