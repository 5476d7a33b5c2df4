"""Camera poses <-> EG3D's 25-float camera label c (16 cam2world + 9 normalised intrinsics).

A pose is (yaw, pitch) in radians as offsets from the frontal view in the parameterisation of
EG3D's LookAtPoseSampler: the sampler gets (pi/2 + yaw, pi/2 + pitch), exactly as EG3D's
gen_samples.py passes its `angle_y`, `angle_p`. +yaw moves the camera toward +x. The pitch offset
is *not* an elevation angle (the sampler maps it through arccos(1 - 2v/pi)); use
`pitch_to_elevation` / `elevation_to_pitch` to convert. The labels are built with EG3D's own
camera_utils; `label_to_pose` inverts them.
"""

import functools
import math
import warnings

import numpy as np
import torch

from . import bridge

# FFHQ's labels use this normalised focal length (EG3D's gen_videos.py); FOV_to_intrinsics(18.837)
# gives 4.2634 instead.
FFHQ_FOCAL = 4.2647
FFHQ_RADIUS = 2.7
FFHQ_PIVOT = (0.0, 0.0, 0.2)
# FFHQ-like pose distribution for synthetic data (radians, in the yaw/pitch convention above).
FFHQ_YAW_STD, FFHQ_PITCH_STD = 0.3, 0.15
FFHQ_YAW_MAX, FFHQ_PITCH_MAX = 0.8, 0.4


def _camera_utils():
    bridge.import_eg3d()
    import camera_utils
    return camera_utils


def intrinsics(focal=FFHQ_FOCAL, fov_deg=None, device='cpu') -> torch.Tensor:
    """3x3 normalised intrinsics: from a field of view through EG3D's FOV_to_intrinsics, or from
    a focal length (default: FFHQ's)."""
    if fov_deg is not None:
        return _camera_utils().FOV_to_intrinsics(fov_deg, device=device)
    return torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], dtype=torch.float32, device=device)


def pose_to_label(yaw, pitch, radius=FFHQ_RADIUS, pivot=FFHQ_PIVOT, focal=FFHQ_FOCAL, fov_deg=None,
                  device='cpu') -> torch.Tensor:
    """Camera labels [N, 25] for yaw/pitch (floats or tensors of N values)."""
    cu = _camera_utils()
    yaw = torch.as_tensor(yaw, dtype=torch.float32, device=device).reshape(-1, 1)
    pitch = torch.as_tensor(pitch, dtype=torch.float32, device=device).reshape(-1, 1)
    yaw, pitch = torch.broadcast_tensors(yaw, pitch)
    # LookAtPoseSampler broadcasts tensor means; its zero-std noise draw leaves the pose exact.
    cam2world = cu.LookAtPoseSampler.sample(math.pi / 2 + yaw, math.pi / 2 + pitch,
                                            torch.tensor(pivot, dtype=torch.float32, device=device),
                                            radius=radius, batch_size=len(yaw), device=device)
    K = intrinsics(focal, fov_deg, device=device).reshape(1, 9).expand(len(yaw), 9)
    return torch.cat([cam2world.reshape(-1, 16), K], dim=1)


_TRACED_LABELS = {}  # (n, device, pose_to_label options) -> traced function


def label_function(n, device='cpu', **kwargs):
    """pose_to_label for n poses given as tensors on `device`: a function (yaw [n], pitch [n]) ->
    c [n, 25]. On a GPU it replays EG3D's sampler traced once with its constants (the pivot, the
    intrinsics, the sampler's up vector) already on the device: a call copies nothing from the
    host, so it never waits for the GPU to finish earlier work (each such copy did: a camera
    label cost the regressor's whole GPU time) and it can be captured in a CUDA graph. On the
    CPU it is pose_to_label itself."""
    device = torch.device(device)
    if device.type == 'cpu':
        return functools.partial(pose_to_label, device=device, **kwargs)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', torch.cuda.current_device())
    key = (n, str(device), tuple(sorted(kwargs.items())))
    if key not in _TRACED_LABELS:
        try:
            _TRACED_LABELS[key] = _traced_label(n, device, **kwargs)
        except Exception as e:  # a torch whose tracer cannot take it: correct, only slower
            warnings.warn(f'could not trace the camera label ({type(e).__name__}: {e}); building it eagerly')
            _TRACED_LABELS[key] = functools.partial(pose_to_label, device=device, **kwargs)
    return _TRACED_LABELS[key]


def _traced_label(n, device, **kwargs):
    """pose_to_label(yaw, pitch) for n poses on `device` as a graph of aten ops (torch.fx's
    make_fx): the tensors EG3D's code creates from Python values become constants on the device."""
    from torch.fx.experimental.proxy_tensor import make_fx
    # Two tensors: given the same one twice, the tracer would take pitch for yaw.
    yaw, pitch = torch.zeros(n, device=device), torch.zeros(n, device=device)
    return make_fx(functools.partial(pose_to_label, device=device, **kwargs))(yaw, pitch)


def label_to_pose(c):
    """(yaw, pitch, radius) tensors of shape [N] from camera labels [N, 25] (or [25])."""
    c = torch.as_tensor(c, dtype=torch.float32).reshape(-1, 25)
    origin = c[:, :16].reshape(-1, 4, 4)[:, :3, 3]
    radius = origin.norm(dim=1)
    phi = torch.arccos((origin[:, 1] / radius).clamp(-1, 1))
    theta = math.pi - torch.atan2(origin[:, 2], origin[:, 0])
    v = math.pi * (1 - torch.cos(phi)) / 2
    yaw = torch.remainder(theta - math.pi / 2 + math.pi, 2 * math.pi) - math.pi
    return yaw, v - math.pi / 2, radius


def pitch_to_elevation(pitch):
    """Sampler pitch offset -> camera elevation above the pivot's horizontal plane (radians)."""
    v = np.pi / 2 + np.asarray(pitch, dtype=np.float64)
    return np.pi / 2 - np.arccos(1 - 2 * v / np.pi)


def elevation_to_pitch(elevation):
    phi = np.pi / 2 - np.asarray(elevation, dtype=np.float64)
    return np.pi * (1 - np.cos(phi)) / 2 - np.pi / 2


def frontal_label(n=1, device='cpu', **kwargs) -> torch.Tensor:
    """The frontal camera label EG3D conditions its mapping network on."""
    return pose_to_label(torch.zeros(n), torch.zeros(n), device=device, **kwargs)


def sample_poses(n, generator=None, yaw_std=FFHQ_YAW_STD, pitch_std=FFHQ_PITCH_STD,
                 yaw_max=FFHQ_YAW_MAX, pitch_max=FFHQ_PITCH_MAX, device='cpu'):
    """FFHQ-like (yaw, pitch) [N] each: Gaussian around frontal, clipped to the given range."""
    yaw = (torch.randn(n, generator=generator) * yaw_std).clamp(-yaw_max, yaw_max)
    pitch = (torch.randn(n, generator=generator) * pitch_std).clamp(-pitch_max, pitch_max)
    return yaw.to(device), pitch.to(device)


def yaw_strip(n=3, span=0.4, pitch=-0.2):
    """Poses of a novel-view strip like EG3D's gen_samples.py: yaw from +span to -span."""
    yaws = np.linspace(span, -span, n) if n > 1 else np.zeros(1)
    return [(float(y), float(pitch)) for y in yaws]


def orbit(n_frames, yaw_range=0.35, pitch_range=0.25, pitch=0.0):
    """An elliptic orbit of poses for videos, as EG3D's gen_videos.py sweeps them."""
    t = np.arange(n_frames) / max(n_frames, 1)
    return [(float(yaw_range * np.sin(2 * np.pi * ti)), float(pitch + pitch_range * np.cos(2 * np.pi * ti)))
            for ti in t]

