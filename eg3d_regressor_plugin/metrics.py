"""Reconstruction metrics shared by `eval`, `gen --refine-steps` and the benchmarks: image PSNR
and SSIM (scikit-image, on uint8 images as saved), latent and pose errors, depth error."""

import math

import numpy as np
import torch


def psnr(a, b):
    """PSNR in dB of two uint8 HWC images (skimage.metrics.peak_signal_noise_ratio, range 255)."""
    from skimage.metrics import peak_signal_noise_ratio
    a, b = np.asarray(a), np.asarray(b)
    if np.array_equal(a, b):
        return float('inf')
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a, b):
    """SSIM of two uint8 HWC images (skimage.metrics.structural_similarity over colour channels)."""
    from skimage.metrics import structural_similarity
    return float(structural_similarity(np.asarray(a), np.asarray(b), data_range=255, channel_axis=2))


def psnr_tensor(x, y):
    """PSNR in dB per image of EG3D image tensors [N,3,H,W] in [-1,1] (range 2), without quantising:
    the optimiser's per-step figure."""
    mse = (x.detach().float() - y.detach().float()).square().flatten(1).mean(1)
    return 10 * torch.log10(4 / mse.clamp_min(1e-12))


def latent_errors(w, w_true, w_std=None):
    """Mean absolute (L1) and root mean square (L2) error of w codes [N,num_ws,w_dim] per sample;
    with w_std (per-dimension std of w, [num_ws,w_dim] or [w_dim]) also the errors in units of it
    (what the regressor is trained on). Returns a dict of float arrays [N]."""
    d = (w.detach().float().cpu() - w_true.detach().float().cpu()).flatten(1)
    out = dict(w_l1=d.abs().mean(1).numpy(), w_l2=d.square().mean(1).sqrt().numpy())
    if w_std is not None:
        std = torch.as_tensor(w_std, dtype=torch.float32).cpu()
        dn = (d.reshape(len(d), -1, std.shape[-1]) / std.clamp_min(1e-8)).flatten(1)
        out.update(w_l1_norm=dn.abs().mean(1).numpy(), w_l2_norm=dn.square().mean(1).sqrt().numpy())
    return out


def pose_errors(yaw, pitch, yaw_true, pitch_true):
    """Absolute yaw and pitch errors and the angle between the two camera directions, in degrees
    (arrays [N]); poses in radians in cameras.py's convention."""
    from . import cameras
    yaw, pitch, yaw_true, pitch_true = (np.asarray(torch.as_tensor(v).detach().cpu(), dtype=np.float64).reshape(-1)
                                        for v in (yaw, pitch, yaw_true, pitch_true))

    def direction(y, p):
        el = cameras.pitch_to_elevation(p)
        return np.stack([np.cos(el) * np.sin(y), np.sin(el), np.cos(el) * np.cos(y)], -1)
    cos = np.clip((direction(yaw, pitch) * direction(yaw_true, pitch_true)).sum(-1), -1, 1)
    return dict(yaw_err_deg=np.degrees(np.abs(yaw - yaw_true)), pitch_err_deg=np.degrees(np.abs(pitch - pitch_true)),
                pose_err_deg=np.degrees(np.arccos(cos)))


def depth_error(depth, depth_true, mask=None):
    """Mean absolute difference of two depth maps [N,1,h,w] in EG3D world units, per sample; over
    the pixels where `mask` [N,1,h,w] is 1 when given (e.g. where a true surface covers them)."""
    diff = (depth.detach().float().cpu() - depth_true.detach().float().cpu()).abs().flatten(1)
    if mask is None:
        return diff.mean(1).numpy()
    m = mask.detach().float().cpu().flatten(1)
    return ((diff * m).sum(1) / m.sum(1).clamp_min(1)).numpy()


def cosine_similarity(a, b):
    if a is None or b is None:
        return math.nan
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def embedding_distance(a, b):
    """Euclidean distance of dlib face embeddings (below 0.6: the same person, by dlib's rule)."""
    if a is None or b is None:
        return math.nan
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
