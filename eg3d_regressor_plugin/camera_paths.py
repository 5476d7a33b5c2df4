"""Camera paths for videos: a built-in sweep around a base pose, or a JSON file of cameras.

A path is a list of one dict per frame: yaw, pitch (radians, cameras.py's convention: offsets from
the frontal view as EG3D's LookAtPoseSampler takes them; the pitch is not an elevation, see
cameras.pitch_to_elevation), radius (EG3D world units, the camera's distance to the pivot) and
either fov_deg (degrees, through EG3D's FOV_to_intrinsics) or focal (normalised, default FFHQ's).

Built-in paths (`frames` frames, each one full period, so a looped video has no jump and no
repeated end frame) are offsets added to a base pose, `offset=(yaw0, pitch0)` (the predicted pose):

- orbit: cameras.orbit, the ellipse of EG3D's gen_videos.py (yaw 0.35 sin, pitch 0.25 cos);
- yaw:   yaw = YAW_RANGE sin(2 pi t), pitch unchanged (left-right and back, smoothly);
- pitch: pitch = PITCH_RANGE sin(2 pi t), yaw unchanged (up-down and back).

A JSON file holds absolute cameras, one per frame: a list of objects
{"yaw": radians, "pitch": radians, "radius": world units (optional, default 2.7),
"fov": degrees (optional; default FFHQ's focal length)}, or {"frames": [that list]}. Its length
sets the number of frames (the `frames` argument is then not used). Limits: |yaw| <= pi,
|pitch| <= pi/2 - 0.01 (the sampler's range), radius > 0, 1 <= fov < 180.
"""

import json
import math
from pathlib import Path

import numpy as np
import torch

from . import cameras
from .errors import UserError

BUILTIN = ('orbit', 'yaw', 'pitch')
YAW_RANGE = 0.35    # as cameras.orbit's yaw amplitude
PITCH_RANGE = 0.25  # as cameras.orbit's pitch amplitude
PITCH_LIMIT = math.pi / 2 - 0.01
KEYS = ('yaw', 'pitch', 'radius', 'fov')


def _camera(yaw, pitch, radius=cameras.FFHQ_RADIUS, fov=None):
    cam = dict(yaw=float(yaw), pitch=float(pitch), radius=float(radius))
    if fov is None:
        cam['focal'] = cameras.FFHQ_FOCAL
    else:
        cam['fov_deg'] = float(fov)
    return cam


def builtin_path(name, frames, offset=(0.0, 0.0)):
    """One of BUILTIN as a path of `frames` cameras around the pose offset=(yaw0, pitch0)."""
    yaw0, pitch0 = (float(v) for v in offset)
    t = np.arange(frames) / frames
    if name == 'orbit':
        poses = cameras.orbit(frames)
    elif name == 'yaw':
        poses = [(YAW_RANGE * math.sin(2 * math.pi * ti), 0.0) for ti in t]
    elif name == 'pitch':
        poses = [(0.0, PITCH_RANGE * math.sin(2 * math.pi * ti)) for ti in t]
    else:
        raise UserError(f'camera_path {name!r}: expected one of {", ".join(BUILTIN)} or a .json file')
    return [_camera(yaw0 + dy, pitch0 + dp) for dy, dp in poses]


def _number(value, what, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f'{where}: {what} must be a finite number, got {json.dumps(value)}')
    return float(value)


def load_path_file(path):
    """The cameras of a JSON camera-path file (see the module docstring), validated."""
    path = Path(path)
    name = f'camera path {path}'
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as e:
        raise UserError(f'{name} cannot be read ({e.strerror or e})') from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UserError(f'{name} is not valid JSON ({e})') from None
    if isinstance(data, dict) and 'frames' in data:
        data = data['frames']
    if not isinstance(data, list):
        raise UserError(f'{name}: expected a list of cameras or {{"frames": [...]}}, got a JSON {type(data).__name__}')
    if not data:
        raise UserError(f'{name} has no frames')
    path_out = []
    for i, item in enumerate(data):
        where = f'{name}, frame {i}'
        if not isinstance(item, dict):
            raise UserError(f'{where}: expected an object with "yaw" and "pitch", got {json.dumps(item)}')
        missing = [k for k in ('yaw', 'pitch') if k not in item]
        if missing:
            raise UserError(f'{where}: missing {" and ".join(repr(k) for k in missing)}')
        unknown = sorted(set(item) - set(KEYS))
        if unknown:
            raise UserError(f'{where}: unknown key(s) {", ".join(map(repr, unknown))} (allowed: {", ".join(KEYS)})')
        vals = {k: _number(item[k], k, where) for k in KEYS if k in item}
        if abs(vals['yaw']) > math.pi:
            raise UserError(f'{where}: yaw {vals["yaw"]:g} is outside [-pi, pi] (radians)')
        if abs(vals['pitch']) > PITCH_LIMIT:
            raise UserError(f'{where}: pitch {vals["pitch"]:g} is outside '
                            f'[-{PITCH_LIMIT:.2f}, {PITCH_LIMIT:.2f}] (radians)')
        if 'radius' in vals and not vals['radius'] > 0:
            raise UserError(f'{where}: radius {vals["radius"]:g} must be > 0')
        if 'fov' in vals and not 1 <= vals['fov'] < 180:
            raise UserError(f'{where}: fov {vals["fov"]:g} must be in [1, 180) degrees')
        path_out.append(_camera(**vals))
    return path_out


def parse_camera_path(spec, frames, offset=(0.0, 0.0)):
    """'orbit' | 'yaw' | 'pitch' (`frames` cameras around offset=(yaw0, pitch0)) | FILE.json
    (absolute cameras; its own number of frames) -> list of camera dicts (module docstring)."""
    if isinstance(frames, bool) or int(frames) != frames or frames < 1:
        raise UserError(f'frames must be a whole number >= 1, got {frames!r}')
    spec = str(spec)
    if spec.lower() in BUILTIN:
        return builtin_path(spec.lower(), int(frames), offset)
    if Path(spec).suffix.lower() == '.json' or Path(spec).is_file():
        if not Path(spec).is_file():
            raise UserError(f'camera path {spec} does not exist')
        return load_path_file(spec)
    raise UserError(f'camera_path {spec!r}: expected one of {", ".join(BUILTIN)} or a .json file')


def path_labels(path, device='cpu'):
    """EG3D camera labels [F, 25] of a path (cameras.pose_to_label per frame)."""
    labels = []
    for cam in path:
        lens = {'fov_deg': cam['fov_deg']} if 'fov_deg' in cam else {'focal': cam.get('focal', cameras.FFHQ_FOCAL)}
        labels.append(cameras.pose_to_label(cam['yaw'], cam['pitch'], radius=cam.get('radius', cameras.FFHQ_RADIUS),
                                            device=device, **lens))
    return torch.cat(labels) if labels else torch.zeros(0, 25, device=device)


def path_around(spec, frames, c):
    """parse_camera_path with the built-in paths centred on the pose of camera label c [1, 25]
    (e.g. a reconstruction's predicted camera); a file's cameras are absolute, as always."""
    yaw, pitch, _ = cameras.label_to_pose(torch.as_tensor(c).detach().cpu())
    return parse_camera_path(spec, frames, offset=(float(yaw[0]), float(pitch[0])))


def path_frames(G, ws, path, desc='video', progress=None):
    """Render codes along a camera path (a list of cameras from parse_camera_path / path_around):
    yields uint8 [H, W, 3] frames, EG3D's G.synthesis with noise_mode='const' and render.SEED.

    ws [1 or F, num_ws, w_dim]: one code is shown at every camera of the path (len(path) frames);
    F codes (an interpolation, an edit sweep) give F frames, frame i at camera
    path[i * len(path) // F] (a path of F cameras pairs one to one; a shorter or longer path file
    is stretched over the frames). This is the function gen, and later edit and interp, call for
    --camera-path."""
    from tqdm import tqdm
    from . import render
    from .images import to_uint8
    if not len(path):
        raise UserError('path has no cameras')
    labels = path_labels(path, device=ws.device)
    n = len(path) if len(ws) == 1 else len(ws)
    for i in tqdm(range(n), desc=desc, unit='frame', leave=False, disable=None if progress is None else not progress):
        w = ws[0 if len(ws) == 1 else i][None]
        c = labels[i if len(ws) == 1 else i * len(path) // n][None]
        yield to_uint8(render.render(G, w, c)['image'])[0]


def path_views(path, n):
    """n cameras spread evenly along a path (for a still strip of views): indices i * len(path) // n."""
    return [path[i * len(path) // n] for i in range(n)]
