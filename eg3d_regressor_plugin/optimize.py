"""W+ optimisation against a target image at a fixed camera: `gen --refine-steps` starts it from
the regressor's prediction, and the benchmarks start the same function from w_avg as the
optimisation-inversion baseline (what EG3D projectors and PTI's first stage do).

The loss is the MSE of the rendered image (at the generator's output resolution, the neural
rendering at its own resolution, as EG3D renders by default) against the target, on the image
clamped to [-1, 1] as saved (gradients pass straight through the clamp); optionally the MSE of
the raw neural rendering against the target resized to it (raw_weight) and a perceptual (LPIPS)
term. Optimisers: L-BFGS with a strong-Wolfe line search (gen's default: on the tiny preset it
gets about as far in 50 renders as Adam in 500), or Adam with the learning rate ramped up and down
as in StyleGAN's projector (what EG3D's projectors and PTI use). Rendering uses the same fixed
seed as render.render, so the loss is deterministic (as L-BFGS needs) and the history's PSNR is
the PSNR of what `render` later gives for the returned w.

Perceptual distance: nothing that needs a download is used by default. `perceptual` takes
  - a path or URL to StyleGAN's LPIPS VGG16 (`vgg16.pt`, TorchScript, as in stylegan2-ada's
    projector; or `vgg16.pkl` from the StyleGAN3 metrics), or
  - 'lpips' for the `lpips` package (needs it and torchvision installed, with their VGG weights
    already on this machine).
"""

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import render as _render
from .catalog import OPTIMIZERS
from .errors import UserError
from .metrics import psnr_tensor


def target_tensor(target, resolution, device):
    """A target image (uint8 HWC array or tensor [N,3,H,W] in [-1,1]) as [N,3,res,res] in [-1,1]."""
    if isinstance(target, np.ndarray):
        from .images import to_tensor
        target = to_tensor(target)
    target = target.to(device=device, dtype=torch.float32)
    if target.ndim == 3:
        target = target[None]
    if target.shape[-1] != resolution or target.shape[-2] != resolution:
        target = F.interpolate(target, size=(resolution, resolution), mode='area')
    return target


def lpips_network(device):
    """The `lpips` package's VGG LPIPS, when it and torchvision's VGG16 weights are already on this
    machine (nothing is downloaded); otherwise a UserError that says what is missing."""
    import importlib.util
    from pathlib import Path
    if importlib.util.find_spec('lpips') is None or importlib.util.find_spec('torchvision') is None:
        raise UserError('perceptual loss "lpips" is not available: it needs the "lpips" and "torchvision" packages '
                        'with their VGG16 weights on this machine (nothing is downloaded); '
                        'or pass a path to StyleGAN\'s vgg16.pt')
    if not any((Path(torch.hub.get_dir()) / 'checkpoints').glob('vgg16-*.pth')):
        raise UserError(f'perceptual loss "lpips" is not available: torchvision\'s VGG16 weights are not in '
                        f'{torch.hub.get_dir()}/checkpoints (nothing is downloaded)')
    import lpips
    return lpips.LPIPS(net='vgg', verbose=False).eval().requires_grad_(False).to(device)


def load_perceptual(spec, device):
    """A function (img [N,3,H,W] in [-1,1], target) -> LPIPS distance [N], or None for spec None.
    A spec that cannot be loaded is a UserError naming what is missing."""
    if spec in (None, '', 'none'):
        return None
    if spec == 'lpips':
        net = lpips_network(device)

        def lpips_fn(x, y):
            return net(x, y, normalize=False).flatten()
        return lpips_fn
    from .bridge import import_eg3d
    import_eg3d()
    import dnnlib
    try:
        with dnnlib.util.open_url(str(spec), verbose=False) as f:
            if str(spec).endswith('.pkl'):
                import pickle
                vgg16 = pickle.load(f)
            else:
                vgg16 = torch.jit.load(f)
        vgg16 = vgg16.eval().requires_grad_(False).to(device)
    except Exception as e:
        raise UserError(f'perceptual network {spec} cannot be loaded ({type(e).__name__}: {str(e)[:120]}); '
                        'pass StyleGAN\'s vgg16.pt (TorchScript) or vgg16.pkl') from None

    def vgg_fn(x, y):
        # StyleGAN's VGG16 takes [0,255] images; the projector compares them at most 256 px.
        def prep(img):
            img = (img + 1) * 127.5
            return F.interpolate(img, size=(256, 256), mode='area') if img.shape[-1] > 256 else img
        fx = vgg16(prep(x), resize_images=False, return_lpips=True)
        fy = vgg16(prep(y), resize_images=False, return_lpips=True)
        return (fx - fy).square().sum(1)
    return vgg_fn


def saturate(img):
    """Clamp to [-1, 1] as saving does, passing gradients straight through: pixels already beyond
    the range on the target's side cost nothing, and none is stuck where the clamp is flat."""
    return img + (img.clamp(-1, 1) - img).detach()




class _Budget(Exception):
    """Raised inside L-BFGS's closure once its evaluations are spent (its line search would overrun)."""


def optimize_w(G, target, c, w_init, steps, lr=0.01, perceptual=None, perceptual_weight=1.0, raw_weight=0.0,
               callback=None, seed=_render.SEED, keep_best=True, progress=False, desc='optimise w', optimizer='adam',
               space='w+'):
    """Optimise W+ codes so that G renders `target` at camera `c`; the camera stays fixed.

    G: EG3D generator (its parameters are not changed). target: uint8 HWC array or [N,3,H,W] in
    [-1,1]. c: [N,25] camera labels. w_init: [N,num_ws,w_dim]. steps: renders with gradients
    (0 only evaluates w_init). perceptual: None, a loaded perceptual function (see load_perceptual)
    or a spec for it. callback(step, w, record) is called after every evaluation; returning True
    stops early. keep_best: return, per sample, the evaluated w with the lowest loss (never worse
    than w_init); else the last one.

    optimizer: 'adam' (lr, with the ramps of StyleGAN's projector), or 'lbfgs': L-BFGS with a
    strong-Wolfe line search (lr is not used; each line-search trial is one evaluation, so a step
    costs what an Adam step costs; the loss is scaled by its starting value, so the first step's
    length does not depend on how far off the start is). The rendering seed is fixed, so the loss
    is deterministic, which L-BFGS needs. With 'lbfgs' the best evaluated w is always returned
    (the last one may be a rejected line-search trial).

    space: 'w+' optimises every level of w apart; 'w' one code per sample, repeated at every level
    (StyleGAN's and PTI's projector; it starts from the mean of w_init's levels).

    Returns (w [N,num_ws,w_dim] detached, history): history[k] describes the w of the k-th
    evaluation: dict(step, loss, psnr (dB, mean over samples; of the rendered image clamped to
    [-1, 1], as saved), seconds (since start)).
    """
    if optimizer not in OPTIMIZERS:
        raise UserError(f'unknown optimizer {optimizer!r}; choose from {", ".join(OPTIMIZERS)}')
    if space not in ('w', 'w+'):
        raise UserError(f'space must be "w" or "w+", got {space!r}')
    device = w_init.device
    target = target_tensor(target, G.img_resolution, device)
    c = c.to(device)
    if perceptual is not None and not callable(perceptual):
        perceptual = load_perceptual(perceptual, device)
    nr = G.neural_rendering_resolution
    target_raw = F.interpolate(target, size=(nr, nr), mode='area')

    num_ws = w_init.shape[1]
    start = w_init.detach().float()
    w = (start.mean(1, keepdim=True) if space == 'w' else start.clone()).requires_grad_(True)
    best_w = w.detach().clone()
    best_loss = torch.full((len(w),), math.inf, device=device)
    history = []
    t0 = time.perf_counter()
    bar = tqdm(total=steps + 1, desc=desc, unit='step', disable=not progress, leave=False)

    def evaluate(grad):
        """Loss per sample of the current w; records it and keeps the best. True: stop here."""
        out = _render.render(G, (w if grad else w.detach()).expand(-1, num_ws, -1), c, seed=seed, grad=grad)
        img, raw = saturate(out['image']), saturate(out['image_raw'])
        loss = (img - target).square().flatten(1).mean(1)
        if raw_weight:
            loss = loss + raw_weight * (raw - target_raw).square().flatten(1).mean(1)
        if perceptual is not None:
            loss = loss + perceptual_weight * perceptual(img, target)
        with torch.no_grad():
            better = loss.detach() < best_loss
            best_loss.copy_(torch.where(better, loss.detach(), best_loss))
            best_w[better] = w.detach()[better]
        record = dict(step=len(history), loss=float(loss.detach().mean()),
                      psnr=float(psnr_tensor(img.detach(), target).mean()), seconds=time.perf_counter() - t0)
        history.append(record)
        bar.update(1)
        bar.set_postfix(psnr=f'{record["psnr"]:.2f}')
        stop = callback is not None and callback(record['step'], w.detach().expand(-1, num_ws, -1), record)
        return loss, bool(stop)

    if optimizer == 'adam' or steps == 0:  # 0 steps: only the evaluation of w_init
        opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
        for step in range(steps + 1):
            last = step == steps
            loss, stop = evaluate(grad=not last)
            if last or stop:
                break
            # StyleGAN projector's schedule: short linear warm-up, cosine ramp-down over the last quarter.
            t = step / max(steps, 1)
            ramp = min(1.0, (1 - t) / 0.25)
            ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, (step + 1) / (0.05 * steps))
            for group in opt.param_groups:
                group['lr'] = lr * ramp
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
    else:
        opt = torch.optim.LBFGS([w], lr=1, max_iter=steps, max_eval=steps + 1, history_size=100,
                                tolerance_grad=0, tolerance_change=0, line_search_fn='strong_wolfe')
        loss_scale = []  # the starting loss

        def closure():
            if len(history) > steps:
                raise _Budget
            loss, stop = evaluate(grad=True)
            if stop:
                raise _Budget
            total = loss.sum()
            if not loss_scale:
                loss_scale.append(max(float(total.detach()), 1e-12))
            opt.zero_grad(set_to_none=True)
            (total / loss_scale[0]).backward()
            return total.detach() / loss_scale[0]
        try:
            opt.step(closure)  # returns early only when the loss stops decreasing
        except _Budget:
            pass
        keep_best = True
    bar.close()
    return (best_w if keep_best else w.detach()).expand(-1, num_ws, -1).contiguous(), history


def w_avg_init(G, n=1, device=None):
    """w_avg broadcast to W+ [n,num_ws,w_dim]: the optimisation baseline's starting point."""
    w_avg = G.backbone.mapping.w_avg
    return w_avg.detach().to(device or w_avg.device).reshape(1, 1, -1).repeat(n, G.backbone.num_ws, 1).clone()
