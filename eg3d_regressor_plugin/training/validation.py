"""Held-out validation of a regressor during training: metrics beside the mean-w baseline, and
the image grid of inputs next to their re-rendered predictions."""

import math

import torch

from .. import cameras, render
from ..files import save_image
from ..images import image_grid, to_uint8
from . import checkpoint, networks


@torch.no_grad()
def validate(model, val, w_stats, chunk=32):
    """Held-out metrics: latent L1 on normalised and on raw w, pose error in degrees, and the same
    for the mean-w baseline (predicting w_avg and the frontal pose)."""
    was_training = model.training
    model.eval()
    outs = [model(val['img'][i:i + chunk]) for i in range(0, len(val['img']), chunk)]
    model.train(was_training)
    pred_n = torch.cat([o['w'] for o in outs])
    pose = torch.cat([o['pose'] for o in outs])
    true_n = checkpoint.normalize_w(val['w'], w_stats)
    deg = 180 / math.pi
    pose_err = (pose - val['pose']).abs() * deg
    res = {
        'w_l1_norm': (pred_n - true_n).abs().mean(),
        'w_l1': (checkpoint.denormalize_w(pred_n, w_stats) - val['w']).abs().mean(),
        'pose_err_deg': pose_err.mean(), 'yaw_err_deg': pose_err[:, 0].mean(), 'pitch_err_deg': pose_err[:, 1].mean(),
        'baseline_w_l1_norm': true_n.abs().mean(),
        'baseline_w_l1': (w_stats['center'].to(val['w']) - val['w']).abs().mean(),
        'baseline_pose_err_deg': (val['pose'].abs() * deg).mean(),
    }
    res = {k: float(v) for k, v in res.items()}
    res['w_l1_ratio'] = res['w_l1_norm'] / max(res['baseline_w_l1_norm'], 1e-12)
    return res, pred_n, pose


@torch.no_grad()
def save_val_grid(path, sampler, val, pred_n, pred_pose, w_stats, num=8, cols=4):
    """Pairs of (input | prediction re-rendered at the predicted pose), `cols` pairs per row."""
    G = sampler.G
    n = min(num, len(val['img']))
    w = checkpoint.denormalize_w(pred_n[:n], w_stats)
    with render.seeded(0, w.device):
        c = cameras.pose_to_label(pred_pose[:n, 0], pred_pose[:n, 1], device=w.device)
    res = min(G.img_resolution, 256)
    fake = sampler.render(w, c, render_seed=0, resolution=res)
    real = networks.resize_input(val['img'][:n], res)
    tiles = [t for pair in zip(to_uint8(real), to_uint8(fake)) for t in pair]
    save_image(path, image_grid(tiles, 2 * min(cols, n)))


@torch.no_grad()
def validate_real(model, G, real_val, w_stats, identity=None, chunk=8):
    """Held-out real images (a real_data.load_real part): reconstruction PSNR (dB, of the predicted
    w rendered at the predicted pose at the generator's resolution, against the image as saved)
    and, with an identity network (face_identity), the identity similarity; keys real_*."""
    from ..face_identity import identity_similarity
    from ..metrics import psnr
    from ..images import to_uint8
    from . import data
    was_training = model.training
    model.eval()
    dev = w_stats['center'].device
    res = G.img_resolution
    psnrs, sims = [], []
    for i in range(0, len(real_val['img']), chunk):
        target = networks.resize_input(data.uint8_to_float(real_val['img'][i:i + chunk].to(dev)), res)
        out = model(networks.resize_input(target, model.input_resolution))
        w = checkpoint.denormalize_w(out['w'], w_stats)
        c = cameras.pose_to_label(out['pose'][:, 0], out['pose'][:, 1], device=dev)
        fake = render.render(G, w, c)['image'].clamp(-1, 1)
        psnrs += [psnr(a, b) for a, b in zip(to_uint8(target), to_uint8(fake))]
        if identity is not None:
            sims += identity_similarity(identity.embed(fake), identity.embed(target)).tolist()
    model.train(was_training)
    res = {'real_psnr': float(sum(psnrs) / len(psnrs))}
    if sims:
        res['real_id_sim'] = float(sum(sims) / len(sims))
    return res
