"""Pivotal tuning (PTI, Roich et al. 2021) started from the regressor: fine-tune a copy of the
generator's synthesis weights so that it renders one target image at its pivot w, and keep the
result as a small per-face file that holds only what the tuning changed.

  - tune_generator: PTI's second stage (optionally its first steps at half the neural rendering
    resolution: `coarse`, this plugin's speed-up). All synthesis parameters (the tri-plane backbone's
    synthesis network, the decoder, the super-resolution network) are tuned with Adam; the
    mapping network stays frozen. Losses as PTI: L2 of the image (clamped to [-1, 1] as saved,
    gradients straight through, as optimize.optimize_w), optionally of the raw neural rendering,
    a perceptual term (optimize.load_perceptual's function type; None by default: nothing is
    downloaded), an optional identity term (any callable (img, target) -> [N]), and PTI's
    locality regulariser: codes at distance `locality_alpha` from the pivot towards random mapped
    w's, where the tuned generator's renders must stay those of the original one.
  - pti_baseline: PTI as published: a W projection from w_avg (optimize.optimize_w, Adam), then
    tune_generator from its w.
  - save_tuned / load_tuned: the per-face file (see FORMAT): weight deltas of the changed
    parameters, as fp16 tensors ('fp16') or, for matrices and convolutions, as rank-r factors
    ('lowrank'), with the base generator's fingerprint, w, the camera label and metadata.

Every render goes through render.render with its fixed ray-sampling seed, so the loss is
deterministic and the history's PSNR is that of what render later gives. The library only
returns objects (an interrupted tuning leaves the given generator untouched and nothing on disk);
save_tuned writes atomically.
"""

import copy
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import render as _render
from .catalog import TUNE_COARSE
from .fingerprint import generator_fingerprint
from .errors import UserError
from .files import atomic_path
from .metrics import psnr_tensor
from .optimize import load_perceptual, optimize_w, saturate, target_tensor, w_avg_init

FORMAT = 'eg3d-regressor-tuned-face'
VERSION = 1
DELTA_FORMATS = ('fp16', 'lowrank')

# PTI's hyperparameters (configs/hyperparameters.py) where this module uses them.
PTI_LR = 3e-4                 # pti_learning_rate
PTI_TUNE_STEPS = 350          # max_pti_steps
PTI_W_STEPS = 450             # first_inv_steps (W projection)
PTI_W_LR = 0.01               # the projector's first_inv_lr
PTI_LOCALITY_ALPHA = 30.0     # regulizer_alpha
PTI_LOCALITY_L2 = 0.1         # regulizer_l2_lambda
PTI_LOCALITY_PERCEPTUAL = 0.1  # regulizer_lpips_lambda
PTI_LOCALITY_PSI = 0.5        # truncation of the random codes the regulariser moves towards
# The rate's ramp-up (steps) when tuning from a refined pivot (invert.reconstruct with refine_steps):
# such a pivot renders close to the target, and PTI's full-rate first Adam steps lose 10 dB of it
# that take tens of steps to win back; from the regressor's bare pivot those big steps help instead.
REFINED_PIVOT_WARMUP = 10
# Coarse-to-fine (this plugin's, not PTI's): the first share of the steps render at half the neural
# rendering resolution (a quarter of the rays: a step ~2.2x cheaper on the tiny preset). Measured from
# refined pivots, a coarse step gains about as much PSNR as a full one, and the super-resolution
# network adapts to the sharper input within tens of full steps: with half the steps coarse,
# benchmarks/tuning.py's refined pivot reaches PTI's final PSNR in 0.22x of PTI's time (0.31x with
# full steps only).
COARSE_FRACTION = TUNE_COARSE


def is_tuned_parameter(name):
    """Parameters PTI tunes: everything but the mapping network."""
    return not name.startswith('backbone.mapping.')


def tuned_parameter_names(G):
    return [n for n, _ in G.named_parameters() if is_tuned_parameter(n)]

#----------------------------------------------------------------------------
# Tuning.

def locality_codes(G, w_pivot, c, alpha=PTI_LOCALITY_ALPHA, num=1, generator=None, psi=PTI_LOCALITY_PSI):
    """PTI's regulariser codes: for each of `num` random z, mapped (truncation psi) to w_r, the
    code w_pivot + alpha * (w_r - w_pivot) / |w_r - w_pivot| (norm over all of W+). [num,num_ws,w_dim]."""
    device = w_pivot.device
    z = torch.randn([num, G.z_dim], generator=generator).to(device)
    with torch.no_grad():
        w_r = G.mapping(z, c[:1].expand(num, -1).to(device), truncation_psi=psi)
    d = w_r - w_pivot[:1]
    d = d / d.flatten(1).norm(dim=1).clamp_min(1e-8).reshape(-1, 1, 1)
    return w_pivot[:1] + alpha * d


def _check_inputs(G, w, c, what='w_pivot'):
    num_ws, w_dim = int(G.backbone.num_ws), int(G.w_dim)
    if not isinstance(w, torch.Tensor) or w.ndim != 3 or tuple(w.shape[1:]) != (num_ws, w_dim):
        raise UserError(f'{what} must be a tensor [N,{num_ws},{w_dim}], got '
                        f'{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}')
    if not isinstance(c, torch.Tensor) or c.ndim != 2 or c.shape[1] != 25 or len(c) != len(w):
        raise UserError(f'c must be a tensor [{len(w)},25] of camera labels, got '
                        f'{tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__}')


def tune_generator(G, target, c, w_pivot, steps, lr=PTI_LR, perceptual=None, perceptual_weight=1.0,
                   raw_weight=0.0, identity=None, identity_weight=0.1, locality_every=4,
                   locality_alpha=PTI_LOCALITY_ALPHA, locality_samples=1, locality_l2=PTI_LOCALITY_L2,
                   locality_perceptual=PTI_LOCALITY_PERCEPTUAL, seed=0, callback=None, progress=False,
                   desc='tune G', step_offset=0, time_offset=0.0, warmup=0, coarse=0.0):
    """A copy of G whose synthesis weights are fine-tuned for `steps` Adam steps (lr) so that it
    renders `target` at w_pivot and camera c. G itself is not changed.

    target: uint8 HWC array or tensor [N,3,H,W] in [-1,1]. c: [N,25]. w_pivot: [N,num_ws,w_dim]
    (kept fixed). Loss per step: L2 of the clamped image against the target; + raw_weight * L2 of
    the raw neural rendering against the target resized to it; + perceptual_weight * perceptual
    (None, a function of optimize.load_perceptual's type, or a spec for it); + identity_weight *
    identity(img, target) (a callable -> [N], or None); and every `locality_every` steps (0: never)
    PTI's locality regulariser: locality_l2 * L2 (+ locality_perceptual * perceptual, when given)
    between the original and the tuned generator's renders at `locality_samples` codes
    locality_alpha away from the pivot towards random mapped w's (see locality_codes), drawn from
    `seed`. Deterministic for given inputs and seed. warmup: the rate ramps up linearly over
    this many first steps (PTI: 0, the full rate from the start, when Adam's first steps move
    every weight by about lr whatever its gradient, and the render leaves the pivot's before it
    comes back). coarse: the share of the steps (in [0, 1); PTI: 0) that render at half the
    generator's neural rendering resolution (COARSE_FRACTION); the last evaluation and the steps
    after the share render at the full one.

    callback(step, record) is called after every evaluation (steps + 1 of them: the last one
    without an update), with record = dict(step, loss, psnr (dB of the clamped image, mean over
    samples), seconds (since the start, + time_offset), coarse (True when the render was at the
    coarse resolution: its PSNR is not the full render's)); returning True stops after that step.
    step_offset is added to the records' step (for a run that continues another's history).
    Returns the tuned generator (eval mode, no gradients). Raises KeyboardInterrupt as it comes:
    nothing is returned then and G is as it was.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise UserError(f'steps must be a whole number >= 0, got {steps!r}')
    if not lr > 0:
        raise UserError(f'lr must be > 0, got {lr!r}')
    if locality_every < 0:
        raise UserError(f'locality_every must be >= 0 (0: no locality regulariser), got {locality_every!r}')
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise UserError(f'warmup must be a whole number >= 0, got {warmup!r}')
    if identity is not None and not callable(identity):
        raise UserError('identity must be a callable (img, target) -> loss [N], or None')
    if not 0 <= coarse < 1:
        raise UserError(f'coarse must be in [0, 1) (the share of the steps at half the neural rendering resolution), got {coarse!r}')
    _check_inputs(G, w_pivot, c)
    t0 = time.perf_counter()
    device = w_pivot.device
    target = target_tensor(target, G.img_resolution, device)
    c = c.to(device)
    w = w_pivot.detach().to(device=device, dtype=torch.float32)
    if perceptual is not None and not callable(perceptual):
        perceptual = load_perceptual(perceptual, device)
    nr = G.neural_rendering_resolution
    n_coarse, nr_coarse = int(steps * coarse), max(nr // 2, 8)
    target_raw = {r: F.interpolate(target, size=(r, r), mode='area') for r in {nr, nr_coarse}}

    G_tuned = copy.deepcopy(G).eval().requires_grad_(False)
    params = [p for n, p in G_tuned.named_parameters() if is_tuned_parameter(n)]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps + 1, desc=desc, unit='step', disable=not progress, leave=False)
    try:
        for step in range(steps + 1):
            last = step == steps
            nr_step = nr_coarse if step < n_coarse else nr
            out = _render.render(G_tuned, w, c, grad=not last, neural_rendering_resolution=nr_step)
            img = saturate(out['image'])
            loss = (img - target).square().flatten(1).mean(1)
            if raw_weight:
                loss = loss + raw_weight * (saturate(out['image_raw']) - target_raw[nr_step]).square().flatten(1).mean(1)
            if perceptual is not None:
                loss = loss + perceptual_weight * perceptual(img, target)
            if identity is not None:
                loss = loss + identity_weight * identity(img, target)
            total = loss.sum()
            if not last and locality_every and step % locality_every == 0:
                w_loc = locality_codes(G, w, c, locality_alpha, locality_samples, gen)
                c_loc = c[:1].expand(len(w_loc), -1)
                ref = _render.render(G, w_loc, c_loc, neural_rendering_resolution=nr_step)['image']
                new = _render.render(G_tuned, w_loc, c_loc, grad=True, neural_rendering_resolution=nr_step)['image']
                reg = locality_l2 * (new - ref).square().flatten(1).mean(1)
                if perceptual is not None and locality_perceptual:
                    reg = reg + locality_perceptual * perceptual(new, ref)
                total = total + reg.mean()
            record = dict(step=step + step_offset, loss=float(loss.detach().mean()),
                          psnr=float(psnr_tensor(img.detach(), target).mean()),
                          seconds=time.perf_counter() - t0 + time_offset, coarse=nr_step != nr)
            bar.update(1)
            bar.set_postfix(psnr=f'{record["psnr"]:.2f}')
            stop = callback is not None and callback(record['step'], record)
            if last or stop:
                break
            if warmup:
                for group in opt.param_groups:
                    group['lr'] = lr * min(1.0, (step + 1) / warmup)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
    finally:
        bar.close()
    return G_tuned.eval().requires_grad_(False)


def pti_baseline(G, target, c, w_steps=PTI_W_STEPS, tune_steps=PTI_TUNE_STEPS, w_lr=PTI_W_LR, callback=None,
                 progress=False, space='w', **tune_kwargs):
    """PTI as published: W projection from w_avg for w_steps (optimize.optimize_w, Adam with
    StyleGAN's projector schedule, lr w_lr, one w repeated at every level: space 'w'; 'w+' is
    the stronger variant that fits each level apart; the best w is kept), then tune_generator from it for
    tune_steps (tune_kwargs go to it). callback(step, record) sees both stages, numbered on
    (w_steps + 1 evaluations of the projection first), with record['stage'] 'w' or 'tune' and the
    seconds counted from the start of the projection. Returns (G_tuned, w)."""
    if not isinstance(w_steps, int) or isinstance(w_steps, bool) or w_steps < 0:
        raise UserError(f'w_steps must be a whole number >= 0, got {w_steps!r}')
    t0 = time.perf_counter()
    device = c.device
    w0 = w_avg_init(G, n=len(c), device=device)

    def w_cb(step, _w, record):
        if callback is not None:
            callback(step, dict(record, stage='w'))
    w, _ = optimize_w(G, target, c, w0, w_steps, lr=w_lr, perceptual=tune_kwargs.get('perceptual'),
                      callback=w_cb, optimizer='adam', progress=progress, desc='PTI: project w', space=space)

    def t_cb(step, record):
        return callback(step, dict(record, stage='tune')) if callback is not None else False
    G_tuned = tune_generator(G, target, c, w, tune_steps, callback=t_cb, progress=progress, desc='PTI: tune G',
                             step_offset=w_steps + 1, time_offset=time.perf_counter() - t0, **tune_kwargs)
    return G_tuned, w

#----------------------------------------------------------------------------
# The per-face file.

def _params_sha(G, names):
    """SHA-256 (16 hex digits) of G's parameters `names` (float32, CPU, in the given order)."""
    params = dict(G.named_parameters())
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode() + b'\0')
        h.update(params[n].detach().to('cpu', torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(G, names):
    """What a tuned-face file records of its base generator: generator_fingerprint(G) (shape and
    w_avg) plus a hash of the parameters the file changes."""
    return dict(generator_fingerprint(G), params_sha=_params_sha(G, names))


def _lowrank(delta, rank):
    """Rank-`rank` factors (u [out,r], v [r,rest], fp16; the singular values folded into u) of
    delta reshaped to [out, rest], or None when the factors are not smaller than the delta."""
    m = delta.reshape(delta.shape[0], -1).to(torch.float32)
    r = min(rank, *m.shape)
    if r * (m.shape[0] + m.shape[1]) >= m.numel():
        return None
    U, S, Vh = torch.linalg.svd(m, full_matrices=False)
    return (U[:, :r] * S[:r]).to(torch.float16).contiguous(), Vh[:r].to(torch.float16).contiguous()


def encode_deltas(G_base, G_tuned, delta_format='lowrank', rank=16):
    """{name: entry} for every parameter G_tuned changed: entry = dict(kind='fp16', delta) or
    dict(kind='lowrank', u, v, shape). Buffers must be unchanged."""
    if delta_format not in DELTA_FORMATS:
        raise UserError(f'delta_format must be one of {", ".join(DELTA_FORMATS)}, got {delta_format!r}')
    if not isinstance(rank, int) or rank < 1:
        raise UserError(f'rank must be a whole number >= 1, got {rank!r}')
    base, tuned = dict(G_base.named_parameters()), dict(G_tuned.named_parameters())
    if list(base) != list(tuned) or any(base[n].shape != tuned[n].shape for n in base):
        raise UserError('G_tuned does not have the parameters of G_base (another architecture)')
    base_b, tuned_b = dict(G_base.named_buffers()), dict(G_tuned.named_buffers())
    if list(base_b) != list(tuned_b) or any(not torch.equal(base_b[n].cpu(), tuned_b[n].cpu()) for n in base_b):
        raise UserError('G_tuned differs from G_base in its buffers (w_avg, noise); a tuned-face file holds '
                        'parameter changes only')
    out = {}
    for n, p in tuned.items():
        d = (p.detach() - base[n].detach()).to('cpu', torch.float32)
        if not torch.any(d != 0):
            continue
        factors = _lowrank(d, rank) if delta_format == 'lowrank' and d.ndim >= 2 else None
        if factors is None:
            out[n] = dict(kind='fp16', delta=d.to(torch.float16).contiguous())
        else:
            out[n] = dict(kind='lowrank', u=factors[0], v=factors[1], shape=list(d.shape))
    return out


def _plain(meta):
    """meta as plain JSON data (str keys; str, numbers, bools, None, lists, dicts), which
    torch.load(weights_only=True) reads back."""
    try:
        return json.loads(json.dumps(meta if meta is not None else {}, allow_nan=True))
    except (TypeError, ValueError) as e:
        raise UserError(f'meta must be JSON-like data (str, numbers, lists, dicts): {e}') from None


def save_tuned(path, G_base, G_tuned, w, c, meta=None, delta_format='lowrank', rank=16):
    """Write the per-face file of a tuned generator: only what tuning changed (see encode_deltas;
    delta_format 'fp16' or 'lowrank' with `rank`), the base generator's fingerprint, w [1,num_ws,w_dim],
    c [1,25] and meta (JSON-like), atomically (a failure leaves no file). Returns path."""
    _check_inputs(G_base, w, c, what='w')
    if len(w) != 1:
        raise UserError(f'w must hold one face ([1,...]), got {len(w)}')
    deltas = encode_deltas(G_base, G_tuned, delta_format, rank)
    names = sorted(deltas)
    data = dict(format=FORMAT, version=VERSION, delta_format=delta_format, rank=rank if delta_format == 'lowrank' else None,
                base=fingerprint(G_base, names), deltas=deltas,
                w=w.detach().to('cpu', torch.float32).contiguous(), c=c.detach().to('cpu', torch.float32).contiguous(),
                meta=_plain(meta))
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return path


def _decode(entry, shape, name, path):
    if not isinstance(entry, dict) or entry.get('kind') not in ('fp16', 'lowrank'):
        raise UserError(f'{path}: corrupt tuned-face file (bad entry for {name})')
    if entry['kind'] == 'fp16':
        d = entry.get('delta')
    else:
        u, v = entry.get('u'), entry.get('v')
        if not (isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor) and u.ndim == 2 and v.ndim == 2
                and u.shape[1] == v.shape[0]):
            raise UserError(f'{path}: corrupt tuned-face file (bad factors for {name})')
        d = (u.float() @ v.float()).reshape(entry.get('shape') or [-1])
    if not isinstance(d, torch.Tensor) or tuple(d.shape) != tuple(shape):
        raise UserError(f'{path}: corrupt tuned-face file ({name} has shape '
                        f'{tuple(d.shape) if isinstance(d, torch.Tensor) else None}, the generator {tuple(shape)})')
    return d.float()


def load_tuned(path, G_base):
    """(G_tuned, w [1,num_ws,w_dim], c [1,25], meta) from a file of save_tuned, applied to G_base
    (which is not changed; the result is a copy on its device). Refuses with a UserError a missing
    or corrupt file, a file that is no tuned-face file, and one made for another base generator."""
    path = str(path)
    if not os.path.isfile(path):
        raise UserError(f'tuned-face file not found: {path}')
    try:
        with warnings.catch_warnings():  # a pickle of another kind warns of its protocol before failing
            warnings.simplefilter('ignore')
            data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise UserError(f'{path}: not a readable tuned-face file, corrupt or of another kind '
                        f'({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ""})') from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise UserError(f'{path}: not a tuned-face file (no "{FORMAT}" format marker)')
    if not isinstance(data.get('version'), int) or data['version'] > VERSION:
        raise UserError(f'{path}: tuned-face file version {data.get("version")!r} is newer than this plugin '
                        f'reads ({VERSION}); upgrade the plugin')
    deltas, base = data.get('deltas'), data.get('base')
    if not isinstance(deltas, dict) or not isinstance(base, dict):
        raise UserError(f'{path}: corrupt tuned-face file (no deltas or base fingerprint)')
    params = dict(G_base.named_parameters())
    unknown = [n for n in deltas if n not in params]
    ident = generator_fingerprint(G_base)
    diffs = [f'{k} {base.get(k)} != {ident[k]}' for k in ident if base.get(k) != ident[k]]
    if unknown:
        diffs.append(f'{len(unknown)} parameters it changes are not in the generator (e.g. {unknown[0]})')
    elif not diffs and base.get('params_sha') != _params_sha(G_base, sorted(deltas)):
        diffs.append('the weights it changes differ')
    if diffs:
        raise UserError(f'{path} was tuned from another generator ({"; ".join(diffs)})')
    w, c = data.get('w'), data.get('c')
    if not isinstance(w, torch.Tensor) or not isinstance(c, torch.Tensor):
        raise UserError(f'{path}: corrupt tuned-face file (no w or camera)')
    _check_inputs(G_base, w, c, what='the file\'s w')
    decoded = {n: _decode(e, params[n].shape, n, path) for n, e in deltas.items()}
    if any(not torch.isfinite(d).all() for d in decoded.values()):
        raise UserError(f'{path}: corrupt tuned-face file (non-finite deltas)')
    G_tuned = copy.deepcopy(G_base).eval().requires_grad_(False)
    tuned_params = dict(G_tuned.named_parameters())
    with torch.no_grad():
        for n, d in decoded.items():
            tuned_params[n].add_(d.to(tuned_params[n].device, tuned_params[n].dtype))
    device = next(G_base.parameters()).device
    return G_tuned, w.float().to(device), c.float().to(device), data.get('meta') or {}


def file_sizes(G_base, G_tuned, w, c, folder, **formats):
    """Measurement helper (benchmarks, tests): {name: bytes} of save_tuned files written in
    `folder` for each formats[name] = dict(delta_format=..., rank=...)."""
    sizes = {}
    for name, kw in formats.items():
        p = Path(folder) / f'{name}.pt'
        save_tuned(p, G_base, G_tuned, w, c, **kw)
        sizes[name] = p.stat().st_size
    return sizes


def psnr_of(G, w, c, target):
    """PSNR (dB) of G's render of w at c (clamped, as saved) against target."""
    target = target_tensor(target, G.img_resolution, w.device)
    img = _render.render(G, w, c)['image'].clamp(-1, 1)
    return float(psnr_tensor(img, target).mean())


__all__ = ['tune_generator', 'pti_baseline', 'save_tuned', 'load_tuned', 'locality_codes', 'encode_deltas',
           'fingerprint', 'psnr_of', 'FORMAT', 'VERSION', 'DELTA_FORMATS']
