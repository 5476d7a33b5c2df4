"""The regressors' training loss: L1 on the normalised w, a pose loss
on (yaw, pitch), and an optional image loss through the generator (the predicted w rendered at
the true pose and compared with the input: MSE, plus LPIPS when it is available locally)."""

import torch
import torch.nn.functional as F

from .. import render
from ..errors import UserError
from ..optimize import lpips_network
from .checkpoint import denormalize_w, normalize_w
from .networks import resize_input

POSE_LOSSES = ('l1', 'smooth_l1')
POSE_BETA = 0.05  # radians (about 3 degrees): smooth-L1 is quadratic below, L1 above


def perceptual_available():
    try:
        lpips_network('cpu')
        return True
    except UserError:
        return False


def clamped_mse(fake, real, eps=1e-3):
    """MSE of a rendering against an input image that was clamped to [-1, 1] (as images read from
    disk are): where the input is saturated, a rendering beyond the bound costs nothing, and the
    gradient is kept everywhere else (clamping the rendering itself would block it)."""
    diff = fake - real
    diff = torch.where(real <= -1 + eps, diff.clamp(min=0), diff)
    diff = torch.where(real >= 1 - eps, diff.clamp(max=0), diff)
    return diff.square().mean()


class RegressorLoss:
    """total, terms = loss(pred, batch): pred is the network's output dict (w normalised, pose),
    batch the data dict (img at the network's input resolution, real w, pose, c). `terms` holds
    detached values of each term that is on, and of the total."""

    def __init__(self, w_stats, G=None, w_weight=1.0, pose_weight=1.0, img_weight=0.0, lpips_weight=0.0,
                 pose_loss='smooth_l1', img_res=32):
        if pose_loss not in POSE_LOSSES:
            raise UserError(f'pose loss {pose_loss!r}: choose from {", ".join(POSE_LOSSES)}')
        for name, v in [('w', w_weight), ('pose', pose_weight), ('img', img_weight), ('lpips', lpips_weight)]:
            if v < 0:
                raise UserError(f'{name}_weight {v}: a loss weight cannot be negative')
        if (img_weight or lpips_weight) and G is None:
            raise ValueError('the image loss needs the generator')
        self.w_stats = w_stats
        self.G = G
        self.w_weight, self.pose_weight = w_weight, pose_weight
        self.img_weight, self.lpips_weight = img_weight, lpips_weight
        self.pose_loss = pose_loss
        self.img_res = int(img_res)
        self.lpips = lpips_network(G.backbone.mapping.w_avg.device) if lpips_weight else None

    def render(self, w_norm, c, seed=None):
        """The predicted (normalised) codes rendered at cameras c with gradients, at the reduced
        neural rendering resolution (render.render puts the generator's own back). seed: EG3D's
        ray-sampling seed (None: render.SEED)."""
        w = denormalize_w(w_norm, self.w_stats)
        return render.render(self.G, w, c, seed=render.SEED if seed is None else seed,
                             neural_rendering_resolution=self.img_res, grad=True)['image']

    def __call__(self, pred, batch, render_seed=None):
        terms = {}
        total = 0
        if self.w_weight:
            terms['w_l1'] = (pred['w'] - normalize_w(batch['w'], self.w_stats)).abs().mean()
            total = total + self.w_weight * terms['w_l1']
        if self.pose_weight:
            pose = batch['pose'].to(pred['pose'])
            if self.pose_loss == 'l1':
                terms['pose'] = F.l1_loss(pred['pose'], pose)
            else:
                terms['pose'] = F.smooth_l1_loss(pred['pose'], pose, beta=POSE_BETA)
            total = total + self.pose_weight * terms['pose']
        if self.img_weight or self.lpips_weight:
            fake = self.render(pred['w'], batch['c'], render_seed)
            real = batch.get('clean', batch['img'])  # a real-styled pair's render, not its photo look
            res = min(fake.shape[-1], real.shape[-1])
            fake, real = resize_input(fake, res), resize_input(real, res)
            if self.img_weight:
                terms['img_mse'] = clamped_mse(fake, real)
                total = total + self.img_weight * terms['img_mse']
            if self.lpips_weight:
                terms['lpips'] = self.lpips(fake.clamp(-1, 1), real).mean()
                total = total + self.lpips_weight * terms['lpips']
        if not terms:
            raise UserError('every loss weight is 0: nothing to train')
        terms['total'] = total
        return total, {k: v.detach() for k, v in terms.items()}
