"""The loss on real images (`train --real`), and the mixed batch's loss: synthetic pairs keep
RegressorLoss (latent, pose, optional image terms); real images get

    img     pixel MSE of the predicted w rendered at the predicted pose (at the low neural
            rendering resolution, as loss.RegressorLoss's image term) against the image; the
            gradient reaches both the w and the pose heads
    lpips   LPIPS of the same pair, where the `lpips` package and its VGG weights are on this
            machine (optimize.lpips_network); otherwise skipped with one log line
    id      1 - cosine of dlib's face-recognition embeddings (face_identity, the offline port) of
            the rendering and the image
    w_l1    L1 on the normalised w, where a pseudo-label (a `label` zip) gives one (off by
            default in training_loop: pseudo-labels made with the regressor being trained pin
            its predictions on real images where they were, which undid the styled pairs' gain
            in benchmarks/real_gap.py even at weight 0.1)
    pose    the pose loss, where a camera label (an EG3D zip, a `label` zip) gives the pose
    reg     e4e's delta regularisation: the squared differences between each W+ level and the
            first, in units of the w statistics' scale.

Why delta regularisation and not a distance to w_avg: a pull towards w_avg shrinks every code
towards the mean face, i.e. it fights the identity term on exactly the images whose identity is
far from average; what breaks EG3D on real images is W+ codes whose levels disagree (the
tri-plane's coarse geometry and the fine texture from different faces), which the generator
never produced in training. Penalising the spread between the levels keeps predictions near W
(where the generator behaves and its 3-D shape stays plausible) without biasing the face itself,
as e4e argues. A single-w regressor has no spread: the term is 0 there.
"""

import torch
import torch.nn.functional as F

from .. import cameras, render
from ..errors import UserError
from .checkpoint import denormalize_w, normalize_w
from .loss import POSE_BETA, clamped_mse
from .networks import resize_input


class RealImageLoss:
    """total, terms = loss(pred, real): pred the network's outputs for the real images (w
    normalised, pose), real the RealSource batch (target images in [-1,1], w, has_w, pose, has_c)."""

    def __init__(self, w_stats, G, img_weight=1.0, lpips_weight=0.5, id_weight=0.1, w_weight=1.0, pose_weight=1.0,
                 reg_weight=0.1, img_res=32, log=print):
        for name, v in [('real_img', img_weight), ('real_lpips', lpips_weight), ('id', id_weight),
                        ('real_w', w_weight), ('real_pose', pose_weight), ('real_reg', reg_weight)]:
            if v < 0:
                raise UserError(f'{name}_weight {v}: a loss weight cannot be negative')
        self.w_stats, self.G, self.img_res = w_stats, G, int(img_res)
        self.img_weight, self.lpips_weight, self.id_weight = img_weight, lpips_weight, id_weight
        self.w_weight, self.pose_weight, self.reg_weight = w_weight, pose_weight, reg_weight
        device = G.backbone.mapping.w_avg.device
        self.lpips = None
        if lpips_weight:
            from ..optimize import lpips_network
            try:
                self.lpips = lpips_network(device)
            except UserError as e:
                log(f'Real images: skipping the LPIPS term ({e})')
        self.identity = None
        if id_weight:
            from ..face_identity import load_face_identity
            self.identity = load_face_identity('dlib', device)

    def render(self, pred, seed):
        """The predicted codes rendered at the predicted poses, with gradients to both."""
        w = denormalize_w(pred['w'], self.w_stats)
        pose = pred['pose']
        c = cameras.pose_to_label(pose[:, 0], pose[:, 1], device=w.device)
        return render.render(self.G, w, c, seed=render.SEED if seed is None else seed,
                             neural_rendering_resolution=self.img_res, grad=True)['image']

    def __call__(self, pred, real, render_seed=None):
        terms, total = {}, 0
        target = real['target']
        if self.img_weight or self.lpips is not None or self.identity is not None:
            fake = self.render(pred, render_seed)
            res = min(fake.shape[-1], target.shape[-1])
            fake_r, target_r = resize_input(fake, res), resize_input(target, res)
            if self.img_weight:
                terms['img_mse'] = clamped_mse(fake_r, target_r)
                total = total + self.img_weight * terms['img_mse']
            if self.lpips is not None:
                terms['lpips'] = self.lpips(fake_r.clamp(-1, 1), target_r).mean()
                total = total + self.lpips_weight * terms['lpips']
            if self.identity is not None:
                from ..face_identity import identity_loss
                terms['id'] = identity_loss(fake.clamp(-1, 1), target, model=self.identity)
                total = total + self.id_weight * terms['id']
        has_w, has_c = real['has_w'], real['has_c']
        if self.w_weight and bool(has_w.any()):
            diff = (pred['w'][has_w] - normalize_w(real['w'][has_w], self.w_stats)).abs()
            terms['w_l1'] = diff.mean()
            total = total + self.w_weight * terms['w_l1']
        if self.pose_weight and bool(has_c.any()):
            terms['pose'] = F.smooth_l1_loss(pred['pose'][has_c], real['pose'][has_c].to(pred['pose']), beta=POSE_BETA)
            total = total + self.pose_weight * terms['pose']
        if self.reg_weight:
            w = denormalize_w(pred['w'], self.w_stats)
            scale = self.w_stats['scale'].mean()
            terms['delta_reg'] = ((w[:, 1:] - w[:, :1]) / scale).square().mean()
            total = total + self.reg_weight * terms['delta_reg']
        terms['total'] = total
        return total, terms


class MixedLoss:
    """The loss of a mixed batch (sources.MixedSource): RegressorLoss on its synthetic part, and
    RealImageLoss on its real part; terms of the real part are prefixed 'real_'."""

    def __init__(self, synthetic, real):
        self.synthetic, self.real = synthetic, real

    def __call__(self, pred, batch, render_seed=None):
        n = batch['n_syn']
        terms, total = {}, 0
        if n:
            total, t = self.synthetic({k: v[:n] for k, v in pred.items()}, batch['syn'], render_seed=render_seed)
            terms.update({k: v for k, v in t.items() if k != 'total'})
        real_total, t = self.real({k: v[n:] for k, v in pred.items()}, batch['real'], render_seed=render_seed)
        terms.update({f'real_{k}': v.detach() if torch.is_tensor(v) else v for k, v in t.items() if k != 'total'})
        total = total + real_total
        terms['total'] = total.detach()
        return total, terms
