"""A video clip -> per-frame EG3D reconstructions, smoothed over time: the library side of
`gen --image clip.mp4`.

For each tracked face (the face_index-th, or every face of the first frame with faces):

1. frames are read (video_input.read_video) and the face is cropped in each as EG3D's FFHQ
   preprocessing does, with its landmarks smoothed over time (video_input.align_video), or only
   resized (align=False, for clips of EG3D-style crops such as EG3D renders);
2. the regressor gives (w, yaw, pitch) per frame; frames without the face get theirs by linear
   interpolation between the nearest frames with it (video_input.bridge) and are reported;
3. w [N, 14, 512] and the pose [N, 2] are smoothed over time with video_input.smooth_sequence: a
   centred Gaussian, sigma = `smooth` frames (0: off), ends extended by point reflection;
4. optionally each frame's w is refined (optimize.optimize_w at the frame's smoothed camera),
   warm-started from the previous frame's refined w (the first from its smoothed w); bridged
   frames keep their smoothed w;
5. OUTDIR/<name>/ gets ws.npy float32 [N, num_ws, w_dim] (the final codes), ws_regressor.npy
   (the regressor's, before smoothing and refinement, bridged), cs.npy float32 [N, 25] (the
   smoothed cameras), poses.json (per frame: raw and smoothed yaw/pitch, bridged or not; the
   bridged frames; the flicker of w, pose and rendered image) and side_by_side.mp4: input crop |
   reconstruction at the frame's camera | a novel view (NOVEL_VIEW, fixed, or a camera path
   stretched over the clip), at the clip's frame rate.
"""

import math
import time
from pathlib import Path

import numpy as np
import torch

from . import cameras, render
from . import video_input as vi
from .arrays import format_runs
from .errors import UserError
from .files import atomic_dir, save_npy
from .images import to_uint8
from .invert import truncate

NOVEL_VIEW = (0.45, -0.1)  # yaw, pitch (radians, absolute) of the side-by-side video's third panel
DEFAULT_SMOOTH = 1.0       # frames (sigma of the Gaussian over w and pose)


def video_crops(frames, size, align=True, face_index=None, all_faces=False, name='the video'):
    """[(suffix, crops, info)] for the face(s) to reconstruct: one ('' suffix) or, with all_faces,
    '_face0', '_face1', ... for each face of the first frame with faces (align.detect_faces'
    order), each tracked through the clip. Without align, the frames themselves resized."""
    if not align:
        if all_faces:
            raise UserError('all_faces needs face detection: it cannot be combined with no_align')
        import PIL.Image
        crops = [f if f.shape[:2] == (size, size) else
                 np.asarray(PIL.Image.fromarray(f).resize((size, size), PIL.Image.LANCZOS)) for f in frames]
        return [('', crops, dict(missing=[]))]
    detections = vi.detect_video_faces(frames)
    first = next((t for t, boxes in enumerate(detections) if boxes), None)
    if first is None:
        raise UserError(f'no face found in any of the {len(frames)} frames of {name}')
    indices = range(len(detections[first])) if all_faces else [face_index]
    out = []
    for k in indices:
        crops, info = vi.align_video(frames, output_size=size, face_index=k, name=name, detections=detections)
        out.append((f'_face{k}' if all_faces else '', crops, info))
    return out


def regress_sequence(G, inverter, crops, missing=(), truncation_psi=1.0):
    """Per-frame regression -> (ws [N, num_ws, w_dim], poses [N, 2] yaw/pitch) float32 numpy; the
    `missing` frames are bridged from their neighbours (video_input.bridge)."""
    ws, poses = [], []
    for crop in crops:
        out = inverter(crop)
        ws.append(truncate(G, out['w'], truncation_psi).float()[0].cpu().numpy())
        poses.append([float(out['yaw'][0]), float(out['pitch'][0])])
    ws, poses = np.stack(ws).astype(np.float64), np.array(poses, dtype=np.float64)
    if missing:
        ws[list(missing)] = np.nan
        poses[list(missing)] = np.nan
        ws, _ = vi.bridge(ws)
        poses, _ = vi.bridge(poses)
    return ws.astype(np.float32), poses.astype(np.float32)


def image_flicker(frames):
    """Mean absolute frame-to-frame change of uint8 frames, in 0..255 units per pixel value."""
    a = np.asarray(frames, dtype=np.float32)
    return float(np.abs(np.diff(a, axis=0)).mean()) if len(a) > 1 else 0.0


def reconstruct_clip(G, inverter, crops, info, smooth=DEFAULT_SMOOTH, truncation_psi=1.0, refine_steps=0,
                     refine_lr=0.01, refine_optimizer='lbfgs', perceptual=None, progress=False):
    """Steps 2-4 of the module docstring for one face's crops: dict(ws, ws_regressor, poses,
    poses_raw (numpy), cs (torch [N, 25]), missing, refine (per-frame final PSNR or None))."""
    device = inverter.device
    missing = list(info.get('missing', []))
    ws_raw, poses_raw = regress_sequence(G, inverter, crops, missing, truncation_psi)
    ws = vi.smooth_sequence(ws_raw, smooth).astype(np.float32)
    poses = vi.smooth_sequence(poses_raw, smooth).astype(np.float32)
    cs = cameras.pose_to_label(torch.from_numpy(poses[:, 0]), torch.from_numpy(poses[:, 1]), device=device)
    refine = None
    if refine_steps:
        from .optimize import optimize_w
        refine, prev = [], None
        for t, crop in enumerate(crops):
            if t in missing:
                refine.append(None)
                continue
            init = torch.from_numpy(ws[t][None]).to(device) if prev is None else prev
            w, hist = optimize_w(G, crop, cs[t:t + 1], init, refine_steps, lr=refine_lr, perceptual=perceptual,
                                 progress=progress, desc=f'refine frame {t}', optimizer=refine_optimizer)
            prev = w.detach()
            ws[t] = prev[0].cpu().numpy()
            refine.append(round(float(hist[-1].get('psnr', float('nan'))), 3) if hist else None)
    return dict(ws=ws, ws_regressor=ws_raw, poses=poses, poses_raw=poses_raw, cs=cs, missing=missing, refine=refine)


def render_clip(G, crops, ws, cs, novel_path=None, progress=False):
    """Side-by-side frames (crop | reconstruction at cs[t] | novel view) and the reconstructions.
    novel_path: camera_paths list stretched over the clip, or None for NOVEL_VIEW."""
    from tqdm import tqdm
    from .camera_paths import path_labels
    device = cs.device
    n = len(crops)
    if novel_path is None:
        novel = cameras.pose_to_label(*NOVEL_VIEW, device=device).expand(n, -1)
    else:
        labels = path_labels(novel_path, device=device)
        novel = labels[[t * len(labels) // n for t in range(n)]]
    side, recons = [], []
    res = G.img_resolution
    for t in tqdm(range(n), desc='render', unit='frame', leave=False, disable=not progress):
        w = torch.from_numpy(ws[t][None]).to(device)
        recon = to_uint8(render.render(G, w, cs[t:t + 1])['image'])[0]
        view = to_uint8(render.render(G, w, novel[t:t + 1])['image'])[0]
        crop = crops[t]
        if crop.shape[:2] != (res, res):
            import PIL.Image
            crop = np.asarray(PIL.Image.fromarray(crop).resize((res, res), PIL.Image.LANCZOS))
        side.append(np.concatenate([crop, recon, view], axis=1))
        recons.append(recon)
    return side, recons


def _pose_list(poses, poses_raw, missing):
    out = []
    for t, ((y, p), (yr, pr)) in enumerate(zip(poses, poses_raw)):
        out.append(dict(frame=t, yaw=float(y), pitch=float(p), yaw_deg=math.degrees(y), pitch_deg=math.degrees(p),
                        yaw_regressor=float(yr), pitch_regressor=float(pr), bridged=t in missing))
    return out


def reconstruct_video(G, inverter, path, outdir, name=None, align=True, face_index=None, all_faces=False,
                      smooth=DEFAULT_SMOOTH, camera_path=None, max_frames=None, meta=None, progress=False,
                      echo=print, **kwargs):
    """A clip -> OUTDIR/<name>/ (module docstring; name defaults to the file's stem; with
    all_faces, <name>_face0, ...). kwargs: reconstruct_clip's truncation_psi and refinement.
    camera_path: None or a camera_paths spec for the third panel (built-in paths around the
    frontal pose, stretched over the clip). Returns one summary dict per folder. Every check of
    the clip runs before anything is written; each folder appears only once complete."""
    from .camera_paths import parse_camera_path
    if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not smooth >= 0:
        raise UserError(f'smooth must be a number of frames >= 0, got {smooth!r}')
    path = Path(path)
    name = name or path.stem
    t0 = time.perf_counter()
    frames, fps = vi.read_video(path, max_frames=max_frames)
    faces = video_crops(frames, G.img_resolution, align=align, face_index=face_index, all_faces=all_faces,
                        name=path.name)
    read_s = time.perf_counter() - t0
    summaries = []
    for suffix, crops, info in faces:
        t0 = time.perf_counter()
        rec = reconstruct_clip(G, inverter, crops, info, smooth=smooth, progress=progress, **kwargs)
        novel_path = None if camera_path is None else parse_camera_path(camera_path, len(crops))
        side, recons = render_clip(G, crops, rec['ws'], rec['cs'], novel_path, progress=progress)
        missing = rec['missing']
        flick = dict(w_regressor=vi.flicker(rec['ws_regressor']), w=vi.flicker(rec['ws']),
                     pose_regressor=vi.flicker(rec['poses_raw']), pose=vi.flicker(rec['poses']),
                     image=image_flicker(recons))
        record = dict(source=str(path), frames=len(crops), fps=fps, smooth=smooth,
                      face_index=info.get('face_index'), bridged_frames=missing,
                      novel_view=dict(yaw=NOVEL_VIEW[0], pitch=NOVEL_VIEW[1]) if camera_path is None
                      else dict(camera_path=str(camera_path)),
                      flicker=flick, refine_psnr=rec['refine'], poses=_pose_list(rec['poses'], rec['poses_raw'], missing),
                      **(meta or {}), seconds=dict(read_align=round(read_s, 4),
                                                   reconstruct_render=round(time.perf_counter() - t0, 4)))
        folder = Path(outdir) / (name + suffix)
        with atomic_dir(folder) as tmp:
            save_npy(tmp / 'ws.npy', rec['ws'].astype(np.float32))
            save_npy(tmp / 'ws_regressor.npy', rec['ws_regressor'].astype(np.float32))
            save_npy(tmp / 'cs.npy', rec['cs'].detach().cpu().numpy().astype(np.float32))
            render.write_video(tmp / 'side_by_side.mp4', side, fps=fps)
            from .outputs import write_json
            write_json(tmp / 'poses.json', record)
        if missing:
            echo(f'{folder.name}: no face in {len(missing)} of {len(crops)} frames ({_ranges(missing)}); '
                 'bridged from the nearest frames with it')
        summaries.append(dict(source=str(path), folder=folder, frames=len(crops), missing=missing, flicker=flick))
    return summaries


def _ranges(ts):
    """[1, 2, 3, 7] -> 'frames 1-3, 7'."""
    return ('frame ' if len(ts) == 1 else 'frames ') + format_runs(ts, sep=', ')


def synthetic_clip(G, n=16, seed=7):
    """A clip with known truth, for measuring flicker: EG3D renders along a smooth latent path (w lerped between two codes) and a smooth pose path
    (yaw 0.3 sin, pitch 0.1 cos over the clip). Returns (frames, true ws [n,14,512], poses [n,2])."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, G.z_dim, generator=g)
    with torch.no_grad():
        wa, wb = G.mapping(z, cameras.frontal_label(2), truncation_psi=0.7)
    t = torch.linspace(0, 1, n)
    ws = torch.stack([wa + (wb - wa) * ti for ti in t])
    poses = torch.stack([0.3 * torch.sin(np.pi * t), 0.1 * torch.cos(np.pi * t)], 1)
    frames = [render.render_image(G, w[None], cameras.pose_to_label(p[0], p[1]))[0] for w, p in zip(ws, poses)]
    return frames, ws.numpy(), poses.numpy()
