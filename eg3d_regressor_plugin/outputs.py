"""Writing one reconstructed face: the folder `gen` writes for each input (images, codes, camera,
depth, views, shape, video, pose.json), from a result of invert.reconstruct."""

import json
import math
import time
from pathlib import Path

import numpy as np

from . import cameras, render
from .files import save_image, save_npy
from .images import image_grid, to_uint8
from .meshes import save_shape_file


def output_names(paths):
    """One output folder name per input: the file's stem, or stem_ext when two inputs share a stem."""
    stems = [p.stem for p in paths]
    return [f'{p.stem}_{p.suffix.lstrip(".")}' if stems.count(p.stem) > 1 else p.stem for p in paths]


def pose_record(yaw, pitch):
    """yaw/pitch (radians, cameras.py's convention) in radians and degrees, with the elevation."""
    yaw, pitch = float(yaw), float(pitch)
    elevation = float(cameras.pitch_to_elevation(pitch))
    return dict(yaw=yaw, pitch=pitch, yaw_deg=math.degrees(yaw), pitch_deg=math.degrees(pitch),
                elevation=elevation, elevation_deg=math.degrees(elevation))


def write_json(path, data):
    with open(path, 'w') as f:
        json.dump(data, f, indent=2)


def write_outputs(folder, G, img, rec, views=3, shapes=False, shape_res=256, shape_format='.mrc', mesh_clean=True,
                  decimate=None, video=False, video_frames=60, fps=30, meta=None, progress=False):
    """Write every output of one reconstruction into `folder` (an existing, empty folder: the
    caller makes it appear atomically)."""
    folder = Path(folder)
    t0 = time.perf_counter()
    w, c = rec['w'], rec['c']
    recon, out = render.render_image(G, w, c)
    save_image(folder / 'input.png', img)
    save_image(folder / 'reconstruction.png', recon)
    panels = [img, recon]
    if rec['history'] is not None:
        recon_reg, _ = render.render_image(G, rec['w_regressor'], c)
        save_image(folder / 'reconstruction_regressor.png', recon_reg)
        save_npy(folder / 'w_regressor.npy', rec['w_regressor'].detach().cpu().numpy().astype(np.float32))
        panels = [img, recon_reg, recon]
        write_json(folder / 'refine.json', dict(steps=len(rec['history']) - 1, history=rec['history']))
    save_image(folder / 'comparison.png', np.concatenate(panels, axis=1))
    save_npy(folder / 'w.npy', w.detach().cpu().numpy().astype(np.float32))
    save_npy(folder / 'c.npy', c.detach().cpu().numpy().astype(np.float32))
    depth = out['image_depth']
    save_npy(folder / 'depth.npy', depth[0, 0].detach().cpu().numpy().astype(np.float32))
    save_image(folder / 'depth.png', render.depth_to_uint8(depth))
    if views:
        strip = render.render_views(G, w, cameras.yaw_strip(views))
        save_image(folder / 'views.png', image_grid(list(to_uint8(strip)), cols=views))
    if shapes:
        save_shape_file(folder / 'shape', G, w, shape_res=shape_res, shape_format=shape_format, clean=mesh_clean,
                        decimate=decimate, progress=progress)
    if video:
        frames = render.video_frames(G, w.expand(video_frames, -1, -1), cameras.frontal_label(1, device=w.device),
                                     orbit=True)
        render.write_video(folder / 'orbit.mp4', frames, fps=fps)
    rec['seconds']['write'] = time.perf_counter() - t0
    info = dict(predicted=pose_record(rec['yaw'][0], rec['pitch'][0]),
                rendered=pose_record(*(float(v[0]) for v in cameras.label_to_pose(c.cpu())[:2])),
                **(meta or {}), seconds={k: round(v, 4) for k, v in rec['seconds'].items()})
    write_json(folder / 'pose.json', info)
