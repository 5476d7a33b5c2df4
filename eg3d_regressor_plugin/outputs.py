"""Writing one reconstructed face: the folder `gen` writes for each input (images, codes, camera,
depth, views, shape, video, pose.json), from a result of invert.reconstruct.

Two stages, so that a folder of inputs can render one face while the previous one is written
(pipeline.py): compute_outputs renders everything (device work) into a list of FileItem, and
write_files writes them (disk work, any thread). write_outputs does both."""

import json
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import cameras, render
from .files import atomic_path, save_image, save_npy
from .images import image_grid, to_uint8


class FileItem(NamedTuple):
    """One file of an output folder: name (its file name), kind (image, npy, json, mesh, mrc,
    video) and data (what write_files writes: uint8 image, array, dict, trimesh, density volume,
    (frames, fps))."""
    name: str
    kind: str
    data: Any


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
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=2)


def _npy(t):
    return t.detach().cpu().numpy().astype(np.float32)


def compute_outputs(G, img, rec, views=3, shapes=False, shape_res=256, shape_format='.mrc', mesh_clean=True,
                    decimate=None, video=False, video_frames=60, fps=30, camera_path=None, meta=None, progress=False):
    """Render every output of one reconstruction: a list of FileItem, pose.json last.

    camera_path: None (views.png: cameras.yaw_strip; orbit.mp4: the 'orbit' path around the
    predicted pose) or a camera_paths spec ('orbit', 'yaw', 'pitch', FILE.json) for both: the video
    follows it, views.png shows `views` cameras spread along it."""
    t0 = time.perf_counter()
    items = []
    w, c = rec['w'], rec['c']
    G_base = G
    if rec.get('G') is not None:  # pivotal tuning: every output comes from the tuned generator
        G = rec['G']
        steps = len(rec['tune_history']) - 1
        items += [FileItem('tuned.pt', 'tuned', (G_base, G, w, rec['c_pred'], dict(meta or {}, tune_steps=steps))),
                  FileItem('tune.json', 'json', dict(steps=steps, history=rec['tune_history']))]
    recon, out = render.render_image(G, w, c)
    if img is not None:
        items.append(FileItem('input.png', 'image', img))
    items.append(FileItem('reconstruction.png', 'image', recon))
    panels = [img, recon]
    if rec.get('G') is not None:
        panels.insert(1, render.render_image(G_base, w, c)[0])  # before tuning
    if rec['history'] is not None:
        recon_reg, _ = render.render_image(G_base, rec['w_regressor'], c)
        items += [FileItem('reconstruction_regressor.png', 'image', recon_reg),
                  FileItem('w_regressor.npy', 'npy', _npy(rec['w_regressor'])),
                  FileItem('refine.json', 'json', dict(steps=len(rec['history']) - 1, history=rec['history']))]
        panels = [img, recon_reg] + panels[1:]
    if img is not None:  # no input image: a face loaded back from its tuned-face file
        items.append(FileItem('comparison.png', 'image', np.concatenate(panels, axis=1)))
    items += [FileItem('w.npy', 'npy', _npy(w)), FileItem('c.npy', 'npy', _npy(c))]
    depth = out['image_depth']
    items += [FileItem('depth.npy', 'npy', _npy(depth[0, 0])),
              FileItem('depth.png', 'image', render.depth_to_uint8(depth))]
    path = None
    if camera_path is not None and (views or video):
        from .camera_paths import path_around
        path = path_around(camera_path, video_frames, c)
    if views:
        if path is None:
            strip = render.render_views(G, w, cameras.yaw_strip(views))
            tiles = list(to_uint8(strip))
        else:
            from .camera_paths import path_frames, path_views
            tiles = list(path_frames(G, w, path_views(path, views), progress=False))
        items.append(FileItem('views.png', 'image', image_grid(tiles, cols=views)))
    if shapes:
        fmt = shape_format.lower()
        if fmt == '.mrc':
            items.append(FileItem('shape.mrc', 'mrc', render.sample_density(G, w, shape_res, progress=progress)))
        else:
            from .meshes import coloured_mesh
            mesh = coloured_mesh(G, w, shape_res, progress=progress, clean=mesh_clean, decimate=decimate)
            items.append(FileItem('shape' + fmt, 'mesh', mesh))
    if video:
        from .camera_paths import path_around, path_frames
        frames = list(path_frames(G, w, path if path is not None else path_around('orbit', video_frames, c)))
        items.append(FileItem('orbit.mp4', 'video', (frames, fps)))
    rec['seconds']['render'] = time.perf_counter() - t0
    info = dict(predicted=pose_record(rec['yaw'][0], rec['pitch'][0]),
                rendered=pose_record(*(float(v[0]) for v in cameras.label_to_pose(c.cpu())[:2])),
                **(meta or {}), seconds=rec['seconds'])
    items.append(FileItem('pose.json', 'json', info))
    return items


def write_item(folder, item):
    """Write one FileItem into folder (atomically, as every file here)."""
    p = Path(folder) / item.name
    if item.kind == 'image':
        save_image(p, item.data)
    elif item.kind == 'npy':
        save_npy(p, item.data)
    elif item.kind == 'json':
        write_json(p, item.data)
    elif item.kind == 'mesh':
        from .meshes import save_mesh
        save_mesh(p, item.data)
    elif item.kind == 'mrc':
        render.save_mrc(p, item.data)
    elif item.kind == 'tuned':
        from .tuning import save_tuned
        G_base, G_tuned, w, c, meta = item.data
        save_tuned(p, G_base, G_tuned, w, c, meta=meta)
    elif item.kind == 'video':
        frames, fps = item.data
        render.write_video(p, frames, fps=fps)
    else:
        raise ValueError(f'unknown output kind {item.kind!r}')


def write_files(folder, items):
    """Write compute_outputs' items into `folder` (an existing, empty folder: the caller makes it
    appear atomically); pose.json, written last, gets the writing time in its seconds."""
    t0 = time.perf_counter()
    for item in items:
        if item.name == 'pose.json':
            secs = dict(item.data['seconds'], write=time.perf_counter() - t0)
            item = item._replace(data=dict(item.data, seconds={k: round(v, 4) for k, v in secs.items()}))
        write_item(folder, item)


def write_outputs(folder, G, img, rec, meta=None, **kwargs):
    """Write every output of one reconstruction into `folder` (an existing, empty folder: the
    caller makes it appear atomically); kwargs as compute_outputs'."""
    write_files(folder, compute_outputs(G, img, rec, meta=meta, **kwargs))
