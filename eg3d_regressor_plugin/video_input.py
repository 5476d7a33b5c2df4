"""Video input: reading a clip, aligning its face without jitter, and smoothing per-frame results.

Alignment of a video (align_video) works as align.align_face does for a photo, with time added:

1. every frame's faces are detected (align.detect_faces; detect_video_faces, once per clip);
2. one face is tracked: in the first frame with faces, the face_index-th largest (0 = largest);
   after that, in each frame the face whose box centre is nearest to the previous tracked box's
   centre, unless it is further than MAX_JUMP box widths away (then the frame counts as one
   without the face: another person, not a jump of the same one);
3. its 68 landmarks give the 5 points (align.landmarks68, align.five_points);
4. frames without the face are bridged: their 5 points are interpolated linearly between the
   nearest frames with it (held constant before the first and after the last), and reported;
5. the 5 points are smoothed over time with smooth_sequence (a centred Gaussian, sigma =
   `strength` frames), then each frame is cropped with align.crop_box / align.crop_resize as
   EG3D's preprocessing does: the crop box moves with the face but not with the landmark
   detector's frame-to-frame noise.

smooth_sequence is the same filter for per-frame results, e.g. the regressor's w [N, 14, 512] and
pose [N, 2]; flicker measures what it removes.

File types: VIDEO_EXTS. An animated .gif stays an image in this package (images.IMAGE_EXTS: its
first frame is the photo), as it was before videos were read.
"""

import math
from pathlib import Path

import numpy as np
import torch

from . import align
from .errors import UserError, require_extra

VIDEO_EXTS = ('.mp4', '.mov', '.avi', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')
DEFAULT_FPS = 30.0     # when a file does not say
DEFAULT_STRENGTH = 2.0  # frames (sigma of the Gaussian) for the landmarks of align_video
MAX_JUMP = 1.0          # box widths a tracked face's centre may move between frames with it


def is_video(path) -> bool:
    """Whether `path` names a video, by its suffix (VIDEO_EXTS; .gif is an image)."""
    return Path(path).suffix.lower() in VIDEO_EXTS


def read_video(path, max_frames=None):
    """The frames of a video as a list of uint8 [H, W, 3] RGB arrays (the first max_frames when
    given) and its frame rate (DEFAULT_FPS when the file has none). Needs the "video" extra."""
    path = Path(path)
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) != max_frames or max_frames < 1):
        raise UserError(f'max_frames must be a whole number >= 1, got {max_frames!r}')
    if not path.is_file():
        raise UserError(f'video {path} does not exist' if not path.exists() else f'video {path} is not a file')
    require_extra('video')
    import imageio.v2 as imageio
    frames, fps = [], DEFAULT_FPS
    try:
        reader = imageio.get_reader(str(path), format='FFMPEG')
        try:
            meta_fps = reader.get_meta_data().get('fps')
            if isinstance(meta_fps, (int, float)) and math.isfinite(meta_fps) and meta_fps > 0:
                fps = float(meta_fps)
            for frame in reader:
                frame = np.asarray(frame)
                if frame.ndim == 2:
                    frame = np.repeat(frame[:, :, None], 3, axis=2)
                frames.append(np.ascontiguousarray(frame[:, :, :3], dtype=np.uint8))
                if max_frames is not None and len(frames) >= max_frames:
                    break
        finally:
            reader.close()
    except Exception as e:  # imageio/ffmpeg raise OSError, RuntimeError, IndexError, ... for bad files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if frames:  # a truncated file: keep what was decoded
            import warnings
            warnings.warn(f'video {path}: decoding stopped after {len(frames)} frames ({reason})')
        else:
            raise UserError(f'video {path} cannot be read as a video ({reason[:200]})') from None
    if not frames:
        raise UserError(f'video {path} has no frames')
    return frames, fps

#----------------------------------------------------------------------------
# Temporal filtering.

def smooth_sequence(x, strength):
    """A centred Gaussian filter along the first axis (time) of x [N, ...] (numpy or torch; the
    result has x's type, dtype and device): sigma = `strength` frames, the kernel cut at 3 sigma
    (and at N-1 frames, renormalised). The ends are extended by point reflection (2 x[0] - x[k]),
    so a face moving steadily is not pulled back at the start and end of the clip, as plain
    reflection or edge-padding would do. strength 0 returns an unchanged copy."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or strength < 0:
        raise UserError(f'strength must be a number of frames >= 0, got {strength!r}')
    is_torch = isinstance(x, torch.Tensor)
    if is_torch:
        a = x.detach().cpu().double().numpy()
    else:
        a = np.asarray(x, dtype=np.float64)
    n = len(a)
    if strength == 0 or n < 2:
        out = a.copy()
    else:
        r = min(int(math.ceil(3 * strength)), n - 1)
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / strength) ** 2)
        k /= k.sum()
        head = 2 * a[0] - a[1:r + 1][::-1]
        tail = 2 * a[-1] - a[n - r - 1:n - 1][::-1]
        p = np.concatenate([head, a, tail])
        out = np.zeros_like(a)
        for j, kj in enumerate(k):
            out += kj * p[j:j + n]
    if is_torch:
        return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)
    return out.astype(np.asarray(x).dtype if np.issubdtype(np.asarray(x).dtype, np.floating) else np.float64)


def flicker(seq, ord=2):
    """Mean frame-to-frame change of a sequence [N, ...]: the L2 (ord=2) or L1 (ord=1) norm of
    x[t+1] - x[t] over all other axes, averaged over t; 0 for fewer than 2 frames."""
    a = seq.detach().cpu().double().numpy() if isinstance(seq, torch.Tensor) else np.asarray(seq, dtype=np.float64)
    if len(a) < 2:
        return 0.0
    d = np.diff(a, axis=0).reshape(len(a) - 1, -1)
    return float(np.linalg.norm(d, ord=ord, axis=1).mean())

#----------------------------------------------------------------------------
# Face tracking and alignment.

def detect_video_faces(frames, cnn_fallback=False):
    """align.detect_faces of every frame: a list (one per frame) of box lists, largest first."""
    return [align.detect_faces(f, cnn_fallback=cnn_fallback) for f in frames]


def _centre(box):
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def track_face(detections, face_index=None, name='the video', max_jump=MAX_JUMP):
    """The tracked face's box in each frame (None where it is missing), from detect_video_faces'
    output: see the module docstring (step 2)."""
    first = next((t for t, boxes in enumerate(detections) if boxes), None)
    if first is None:
        raise UserError(f'no face found in any of the {len(detections)} frames of {name}')
    i = 0 if face_index is None else int(face_index)
    if not 0 <= i < len(detections[first]):
        raise UserError(f'face index {i} is out of range: {len(detections[first])} face(s) found in frame '
                        f'{first} of {name} (0 = largest)')
    track = [None] * len(detections)
    prev = track[first] = tuple(detections[first][i])
    for t in range(first + 1, len(detections)):
        if not detections[t]:
            continue
        dist = [np.linalg.norm(_centre(b) - _centre(prev)) for b in detections[t]]
        j = int(np.argmin(dist))
        if dist[j] <= max_jump * (prev[2] - prev[0]):
            prev = track[t] = tuple(detections[t][j])
    return track


def bridge(points):
    """Fill the NaN frames of points [N, ...] by linear interpolation in time between the nearest
    valid frames (constant before the first and after the last). Returns (filled, missing indices)."""
    p = np.array(points, dtype=np.float64)
    valid = ~np.isnan(p.reshape(len(p), -1)).any(1)
    missing = np.flatnonzero(~valid).tolist()
    if not valid.any():
        raise ValueError('no valid frame to bridge from')
    if missing:
        t = np.arange(len(p))
        flat = p.reshape(len(p), -1)
        for k in range(flat.shape[1]):
            flat[~valid, k] = np.interp(t[~valid], t[valid], flat[valid, k])
        p = flat.reshape(p.shape)
    return p, missing


def align_video(frames, output_size=align.OUTPUT_SIZE, strength=DEFAULT_STRENGTH, face_index=None,
                name='the video', detections=None, cnn_fallback=False):
    """Crop one tracked face in every frame as EG3D's FFHQ preprocessing does, with the 5 landmarks
    smoothed over time (module docstring). detections: detect_video_faces' result, to reuse it
    (e.g. once per face for several faces). Returns the uint8 [S, S, 3] crops and info:
    missing (indices of frames without the face, bridged), num_faces (per frame), face_index,
    boxes (the tracked face's box per frame, None where missing), landmarks5 (as detected,
    bridged), landmarks5_smoothed, crop_boxes [N, 4] (left, top, right, bottom)."""
    if not len(frames):
        raise UserError(f'{name} has no frames')
    if detections is None:
        detections = detect_video_faces(frames, cnn_fallback=cnn_fallback)
    track = track_face(detections, face_index, name)
    lm5 = np.full((len(frames), 5, 2), np.nan)
    for t, box in enumerate(track):
        if box is not None:
            lm5[t] = align.five_points(align.landmarks68(frames[t], box))
    lm5, missing = bridge(lm5)
    smooth = smooth_sequence(lm5, strength)
    boxes = np.stack([align.crop_box(l) for l in smooth])
    crops = [align.crop_resize(f, b, output_size) for f, b in zip(frames, boxes)]
    info = dict(missing=missing, num_faces=[len(d) for d in detections],
                face_index=0 if face_index is None else int(face_index),
                boxes=[None if b is None else [float(v) for v in b] for b in track],
                landmarks5=lm5, landmarks5_smoothed=smooth, crop_boxes=boxes)
    return crops, info


def crop_jitter(crop_boxes):
    """Mean absolute second difference (px per frame^2) of crop boxes [N, 4] over time: ~0 for a
    box that moves and zooms steadily, the landmark noise otherwise."""
    b = np.asarray(crop_boxes, dtype=np.float64)
    if len(b) < 3:
        return 0.0
    return float(np.abs(np.diff(b, n=2, axis=0)).mean())
