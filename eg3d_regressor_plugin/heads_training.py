"""Training EG3D's own TriPlaneGenerator to draw the procedural heads of heads.py.

Supervised distillation, no discriminator: for a batch of z ~ N(0, I) and random FFHQ-like
cameras (cameras.sample_poses), heads.py renders the true head of each z (heads.params_from_z)
at that camera, and the generator (built by presets.build_networks, the `tiny` preset by default)
is fitted by Adam to

    L1(image, target) + raw_weight * L1(image_raw, target at the neural rendering resolution)
    + depth_weight * L1(image_depth, true depth) on the pixels the head covers entirely,

where image, image_raw and image_depth are G.synthesis(G.mapping(z, frontal c), c) (the mapping
is conditioned on the frontal camera, so that w depends on z alone), plus surface_weight times
surface_losses: G's field supervised in 3D along the same rays (its density against the true
occupancy, its colour at the true surface points against the true colour, the eyes and lips
weighted up), which the truth of a procedural head makes possible and a GAN's data does not.
Snapshots are ordinary EG3D network pickles (G, D, G_ema; presets.save_network_pkl), with w_avg
set to the mean mapped w, and next to each a state file (`<out>.state.pt`, loadable with
torch.load(weights_only=True)) with the step, the optimiser and the random number generators, so
that a run resumes where it stopped.
"""

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import cameras
from . import bridge, presets
from . import heads
from .catalog import HEADS_TRAINING, PRESETS
from .errors import UserError
from .files import atomic_path

DEFAULTS = dict(HEADS_TRAINING, yaw_max=cameras.FFHQ_YAW_MAX, neural_rendering_resolution=None)
W_AVG_SAMPLES = 10000
# heads.render_heads settings of the training targets: as accurate as the 96-sample uniform
# render against the sphere-traced surface, three times faster.
TARGET_RENDER = dict(hierarchical=True, n_samples=40)
# surface_points: rays per head, the spread of the points around the true depth, the sharpness
# of the true occupancy (heads.render_heads' density), the colour weight of the eyes and lips.
SURFACE = dict(rays=1024, near=0.03, sharpness=0.004, detail=10.0)


HISTORY = ('step', 'total', 'image', 'raw', 'depth', 'occupancy', 'colour')  # a row of train_heads' history


def state_path(out):
    """The resume state file next to network pickle `out`: heads.pkl -> heads.pkl.state.pt."""
    out = Path(out)
    return out.with_name(out.name + '.state.pt')


def _check(cond, message):
    if not cond:
        raise UserError(message)


def code_pool(num, z_dim, seed=0):
    """The fixed set of `num` codes [num, z_dim] a run with num_heads=num draws from."""
    return torch.randn(num, z_dim, generator=torch.Generator().manual_seed(seed + 1))


def sample_batch(batch, generator, z_dim, yaw_max=cameras.FFHQ_YAW_MAX, device='cpu', pool=None):
    """z [B, z_dim] (from N(0, I), or from the rows of `pool`) and camera labels c [B, 25], drawn
    from `generator` (a CPU torch.Generator)."""
    if pool is None:
        z = torch.randn(batch, z_dim, generator=generator)
    else:
        z = pool[torch.randint(len(pool), (batch,), generator=generator)]
    yaw, pitch = cameras.sample_poses(batch, generator=generator, yaw_max=yaw_max)
    return z.to(device), cameras.pose_to_label(yaw, pitch, device=device)


def targets(z, c, img_resolution, nr_resolution, render=None):
    """The true renders of z's heads at cameras c: image [B,3,R,R], image_raw and depth at the
    neural rendering resolution, and mask (pixels entirely covered by the head) for the depth.
    render: heads.render_heads' output for them at img_resolution with TARGET_RENDER, if the
    caller has it already."""
    t = render if render is not None else heads.render_heads(heads.params_from_z(z), c, resolution=img_resolution,
                                                             **TARGET_RENDER)
    f = img_resolution // nr_resolution
    pool = (lambda x: F.avg_pool2d(x, f)) if f > 1 else (lambda x: x)
    return dict(image=t['image'], image_raw=pool(t['image']), depth=pool(t['depth']),
                mask=(pool(t['alpha']) > 0.98).float(), alpha=t['alpha'])


@torch.no_grad()
def truth_sample(seed, z_dim, img_resolution, nr_resolution):
    """A held-out head with its truth, for measuring: z of `seed` as sample-codes draws it
    (codes.seed_z), a camera drawn from FFHQ's pose distribution by a generator seeded with `seed`,
    and targets() of that head there. Returns dict(z [1,z_dim], yaw, pitch [1], c [1,25], image
    uint8 [R,R,3], depth and mask [1,1,nr,nr])."""
    import numpy as np
    from .codes import seed_z
    from .images import to_uint8
    z = torch.from_numpy(seed_z(seed, z_dim))
    yaw, pitch = cameras.sample_poses(1, generator=torch.Generator().manual_seed(int(seed)))
    c = cameras.pose_to_label(yaw, pitch)
    t = targets(z, c, img_resolution, nr_resolution)
    return dict(z=z, yaw=yaw, pitch=pitch, c=c, image=np.ascontiguousarray(to_uint8(t['image'])[0]),
                depth=t['depth'], mask=t['mask'])


def losses(out, tgt, depth_weight=DEFAULTS['depth_weight'], raw_weight=DEFAULTS['raw_weight']):
    """{'image', 'raw', 'depth', 'total'} of one batch (see the module's docstring)."""
    l_img = (out['image'] - tgt['image']).abs().mean()
    l_raw = (out['image_raw'] - tgt['image_raw']).abs().mean()
    m = tgt['mask']
    l_depth = ((out['image_depth'] - tgt['depth']).abs() * m).sum() / m.sum().clamp_min(1)
    return dict(image=l_img, raw=l_raw, depth=l_depth, total=l_img + raw_weight * l_raw + depth_weight * l_depth)


def synthesize(G, z, c, nr_resolution=None, cache_backbone=False):
    """G.synthesis of z's w (mapping conditioned on the frontal camera) at cameras c, with grad
    (cache_backbone: G._last_planes keeps the tri-planes, for surface_losses)."""
    ws = G.mapping(z, cameras.frontal_label(len(z), device=z.device) * G.rendering_kwargs['c_scale'])
    return G.synthesis(ws, c, neural_rendering_resolution=nr_resolution, noise_mode='const',
                       cache_backbone=cache_backbone)


def surface_points(z, c, tgt, nr_resolution, generator, rays=SURFACE['rays']):
    """3D supervision drawn around the true surface, along `rays` random training rays per head
    (pixels of the neural rendering resolution): points spread over the ray range and near the
    true depth with their true occupancy, and the true surface points of the rays that hit the
    head with their colour and a weight (SURFACE['detail'] on the eyes and lips, 1 elsewhere).
    Returns dict(occ_points [B, 4*rays, 3], occupancy [B, 4*rays], colour_points [B, rays, 3],
    colour [B, rays, 3], weight [B, rays]) on the device of z."""
    device = z.device
    n, res = len(z), nr_resolution
    P = heads.params_from_z(z.cpu())
    origins, dirs = heads.rays(c.cpu(), res)
    idx = torch.randint(res * res, (n, rays), generator=generator)
    o = torch.gather(origins, 1, idx[..., None].expand(-1, -1, 3))
    d = torch.gather(dirs, 1, idx[..., None].expand(-1, -1, 3))
    depth = torch.gather(tgt['depth'].cpu().reshape(n, -1), 1, idx)
    hit = torch.gather(tgt['mask'].cpu().reshape(n, -1), 1, idx) > 0
    span = heads.RAY_END - heads.RAY_START
    t_uniform = heads.RAY_START + span * torch.rand(n, rays, 2, generator=generator)
    t_near = depth[..., None] + SURFACE['near'] * torch.randn(n, rays, 2, generator=generator)
    t_near = torch.where(hit[..., None], t_near, heads.RAY_START + span * torch.rand(n, rays, 2, generator=generator))
    t = torch.cat([t_uniform, t_near], -1).clamp(heads.RAY_START, heads.RAY_END)
    occ_points = (o[:, :, None] + d[:, :, None] * t[..., None]).reshape(n, -1, 3)
    occ = torch.sigmoid(-heads.sdf(occ_points, P) / SURFACE['sharpness'])  # no colour needed here
    truth = heads.point_truth(o + d * depth[..., None], P)
    weight = hit.float() * (1 + (SURFACE['detail'] - 1) * heads.is_feature(truth['part']).float())
    return dict(occ_points=occ_points.to(device), occupancy=occ.to(device), colour_points=truth['surface'].to(device),
                colour=truth['colour'].to(device), weight=weight.to(device))


def surface_losses(G, planes, pts):
    """{'occupancy', 'colour'}: how far G's field is from the truth at surface_points' points.
    G's density sigma (EG3D's softplus(raw - 1)) is read as the opacity 1 - exp(-sigma * 0.02)
    of a 0.02-long segment, fitted to the true occupancy by binary cross-entropy (this removes the
    fog in front of the face and sharpens the surface, which volume rendering alone does slowly);
    the decoder's colour (its first three features, which EG3D composites into image_raw) at the
    true surface points is fitted by weighted L1 (the eyes and lips weighted up: they are small,
    and the image losses leave them blurred for thousands of steps)."""
    planes = planes.view(len(planes), 3, 32, planes.shape[-2], planes.shape[-1])
    def field(p):
        return G.renderer.run_model(planes, G.decoder, p, torch.zeros_like(p), G.rendering_kwargs)
    sigma = F.softplus(field(pts['occ_points'])['sigma'][..., 0] - 1)
    opacity = (1 - torch.exp(-sigma * 0.02)).clamp(1e-4, 1 - 1e-4)
    l_occ = F.binary_cross_entropy(opacity, pts['occupancy'])
    rgb = field(pts['colour_points'])['rgb'][..., :3]
    w = pts['weight']
    l_col = ((rgb - pts['colour']).abs().mean(-1) * w).sum() / w.sum().clamp_min(1)
    return dict(occupancy=l_occ, colour=l_col)


@torch.no_grad()
def set_w_avg(G, num=W_AVG_SAMPLES, seed=0):
    """w_avg := the mean of mapped z (frontal camera), as EG3D's tracking would converge to."""
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    ws = []
    for s in range(0, num, 1000):
        z = torch.randn(min(1000, num - s), G.z_dim, generator=gen).to(device)
        c = cameras.frontal_label(len(z), device=device) * G.rendering_kwargs['c_scale']
        ws.append(G.backbone.mapping(z, c, truncation_psi=1)[:, 0])
    G.backbone.mapping.w_avg.copy_(torch.cat(ws).mean(0))


def _training_set_kwargs(G, step):
    return dict(resolution=int(G.img_resolution), use_labels=True, heads_step=int(step),
                about='procedural heads (eg3d_regressor_plugin.heads)')


def heads_step(snapshot):
    """The training step a train-heads pickle records, or None for any other EG3D pickle.
    `snapshot`: the pickle's path, or its training_set_kwargs (a dict or None, as
    bridge.load_snapshot gives them) when the caller has loaded it already."""
    is_path = isinstance(snapshot, (str, Path))
    kwargs = bridge.load_network_pkl(snapshot).get('training_set_kwargs') if is_path else snapshot
    step = kwargs.get('heads_step') if isinstance(kwargs, dict) else None
    return int(step) if isinstance(step, int) else None


def save_snapshot(out, G, D, opt, step, gen, history, config):
    """The network pickle (G, D, G_ema = G) and its state file, each written atomically. The
    global random state is left as it was (EG3D's camera sampler draws from it), so that a run
    with snapshots and a resumed run draw the same numbers as a straight one."""
    G.eval()
    with torch.random.fork_rng(devices=[]):
        set_w_avg(G)
    presets.save_network_pkl(out, G, D, training_set_kwargs=_training_set_kwargs(G, step))
    state = dict(step=int(step), optimizer=opt.state_dict(), torch_rng=torch.get_rng_state(),
                 data_rng=gen.get_state(), history=[list(map(float, h)) for h in history], config=dict(config))
    if torch.cuda.is_available():
        state['cuda_rng'] = torch.cuda.get_rng_state_all()
    with atomic_path(state_path(out)) as tmp:
        torch.save(state, tmp)
    G.train()


def _load_resume(out, device):
    sp = state_path(out)
    _check(Path(out).is_file(), f'--resume: {out} does not exist (start without --resume)')
    _check(sp.is_file(), f'--resume: the state file {sp} next to {out} is missing; cannot continue that run')
    try:
        state = torch.load(sp, map_location='cpu', weights_only=True)
    except Exception as e:
        raise UserError(f'--resume: cannot read {sp} ({type(e).__name__}: {str(e)[:100]})') from None
    G, D, pkl_step = _load_networks(out, '--resume')
    _check(pkl_step == state['step'], f'--resume: {out} is at step {pkl_step} but {sp} at step {state["step"]}; '
           'they belong to different snapshots')
    return G, D, state


def _load_networks(network_pkl, what):
    """(G rebuilt from the checkout's classes, D, its step) of a train-heads pickle (G_ema is G
    there); any other pickle is refused, naming `what` it was given as."""
    data = bridge.load_network_pkl(network_pkl)
    step = heads_step(data.get('training_set_kwargs'))
    _check(step is not None, f'{what}: {network_pkl} is not a train-heads pickle (no heads_step)')
    G = bridge.rebuild_generator(data['G'])
    bridge.prepare_generator(G)
    return G, data['D'], step


def _load_init(init):
    """(G, D, step) to start a run from: a train-heads pickle's, or the shipped weights' ('shipped')."""
    if str(init) == 'shipped':
        G, D, kwargs = shipped_networks()
        return G, D, kwargs['heads_step']
    return _load_networks(init, 'init')


def train_heads(out, steps=1000, batch=DEFAULTS['batch'], lr=DEFAULTS['lr'], seed=0, resume=False, device='cpu',
                preset='tiny', depth_weight=DEFAULTS['depth_weight'], raw_weight=DEFAULTS['raw_weight'],
                surface_weight=DEFAULTS['surface_weight'], yaw_max=DEFAULTS['yaw_max'], neural_rendering_resolution=None,
                snapshot_every=DEFAULTS['snapshot_every'], num_heads=None, init=None,
                warmup=DEFAULTS['warmup'], progress=True, log=None):
    """Train (or, with resume, continue training) a generator to draw heads.py's heads, writing
    snapshots to `out` (an EG3D network pickle) and `state_path(out)`. A new run builds its
    generator from `preset` (presets.build_networks); a resumed or initialised one keeps the
    configuration of the generator it starts from. `steps` is the total step
    count: a resumed run continues from its saved step up to `steps`, with its saved seed and
    num_heads (the other settings may change). init (a train-heads pickle, or 'shipped' for the
    package's weights) starts a new run from that generator at its step, with a fresh optimiser
    whose rate ramps up linearly over the first `warmup` steps (a fresh Adam's first steps are
    lr-sized for every weight, which undoes much of a trained generator) and a data stream of
    its own (seed, step); this is how a run whose state file is gone, or the shipped generator,
    trains on (resuming such a run keeps its ramp). neural_rendering_resolution
    (default: the preset's) may be lowered for speed; the pickle keeps the preset's. num_heads
    restricts the codes to a fixed set of that many (code_pool(num_heads, z_dim, seed)): a quick
    check, or a demo generator that need only draw those heads; None draws fresh z every step.
    surface_weight weighs surface_losses (3D supervision of the density and colour; 0 leaves it
    out). `log(step, losses_dict)` is called after every step. Returns dict(step, history) where
    history holds a row per step (of the resumed run too) with HISTORY's columns (a surface loss
    is 0 where it was not used) and G the trained generator (eval mode, no gradients)."""
    _check(isinstance(steps, int) and steps >= 0, f'steps: expected an integer >= 0, got {steps!r}')
    _check(isinstance(batch, int) and batch >= 1, f'batch: expected an integer >= 1, got {batch!r}')
    _check(lr > 0, f'lr: expected a positive learning rate, got {lr!r}')
    _check(depth_weight >= 0 and raw_weight >= 0 and surface_weight >= 0,
           'depth_weight, raw_weight, surface_weight: expected values >= 0')
    _check(0 <= yaw_max <= math.pi / 2, f'yaw_max: expected 0..pi/2 radians, got {yaw_max!r}')
    _check(snapshot_every >= 1, f'snapshot_every: expected >= 1, got {snapshot_every!r}')
    _check(num_heads is None or num_heads >= 1, f'num_heads: expected >= 1 (or None), got {num_heads!r}')
    _check(isinstance(warmup, int) and warmup >= 0, f'warmup: expected an integer >= 0, got {warmup!r}')
    _check(not (resume and init), 'resume and init: choose one (resume continues --out\'s run with its optimiser; '
           'init starts a new run from another generator)')
    device = torch.device(device)
    out = Path(out)
    if not resume and (out.exists() or state_path(out).exists()):
        raise UserError(f'{out} already exists; pass --resume to continue that run, or choose another --out')
    bridge.import_eg3d()
    config = dict(preset=preset, batch=batch, lr=lr, seed=seed, depth_weight=depth_weight, raw_weight=raw_weight,
                  surface_weight=surface_weight,
                  yaw_max=yaw_max, neural_rendering_resolution=neural_rendering_resolution or 0, num_heads=num_heads or 0)
    gen = torch.Generator()
    if resume:
        G, D, state = _load_resume(out, device)
        # Rows of runs from before the surface losses have five columns: pad them (0: not used).
        step, history = state['step'], [list(h) + [0.0] * (len(HISTORY) - len(h)) for h in state['history']]
        # The set of codes is the run's: keep the saved seed and num_heads.
        seed, num_heads = state['config'].get('seed', seed), state['config'].get('num_heads', 0) or None
        config.update(seed=seed, num_heads=num_heads or 0)
        if state['config'].get('init'):  # a run started from another generator: its ramp goes on
            config.update(init=state['config']['init'], init_step=state['config']['init_step'])
    elif init:
        G, D, step = _load_init(init)
        state, history = None, []
        # Not the stream the run that made `init` drew: a stream of this seed and start step.
        gen.manual_seed(seed * 1_000_003 + step)
        torch.manual_seed(seed * 1_000_003 + step)
        config.update(init=str(init), init_step=step)
    else:
        G, D = presets.build_networks(preset, seed=seed, w_avg_samples=0)
        state, step, history = None, 0, []
        gen.manual_seed(seed)
        torch.manual_seed(seed)
    ramp_from = config.get('init_step') if config.get('init') else None  # the step the rate ramps up from
    if resume or init:  # the generator's own configuration, not the `preset` argument
        config['preset'] = presets.preset_of(G)
    _check(G.z_dim >= heads.NUM_PARAMS,
           f'preset {config["preset"]}: z_dim {G.z_dim} < the {heads.NUM_PARAMS} head parameters')
    nr_saved = G.neural_rendering_resolution  # G.synthesis(neural_rendering_resolution=...) overwrites it
    nr = neural_rendering_resolution or nr_saved
    _check(G.img_resolution % nr == 0 and nr >= 8,
           f'neural_rendering_resolution: {nr} must divide the image resolution {G.img_resolution} (and be >= 8)')
    G = G.to(device).train().requires_grad_(True)
    opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.9, 0.99))
    if state is not None:
        opt.load_state_dict(state['optimizer'])
        for g in opt.param_groups:
            g['lr'] = lr
        torch.set_rng_state(state['torch_rng'])
        gen.set_state(state['data_rng'])
        if 'cuda_rng' in state and device.type == 'cuda':
            torch.cuda.set_rng_state_all(state['cuda_rng'])
    pool = code_pool(num_heads, G.z_dim, seed) if num_heads else None
    if step >= steps:
        return dict(step=step, history=history, G=G.eval().requires_grad_(False))
    bar = tqdm(total=steps, initial=step, desc='train-heads', unit='step', disable=not progress, dynamic_ncols=True)
    t0, done = time.time(), 0
    try:
        while step < steps:
            if ramp_from is not None and warmup:
                for g in opt.param_groups:
                    g['lr'] = lr * min(1.0, (step - ramp_from + 1) / warmup)
            z, c = sample_batch(batch, gen, G.z_dim, yaw_max=yaw_max, device=device, pool=pool)
            tgt = targets(z, c, G.img_resolution, nr)
            out_g = synthesize(G, z, c, nr, cache_backbone=surface_weight > 0)
            ls = losses(out_g, tgt, depth_weight, raw_weight)
            if surface_weight > 0:
                ls.update(surface_losses(G, G._last_planes, surface_points(z, c, tgt, nr, gen)))
                ls['total'] = ls['total'] + surface_weight * (ls['occupancy'] + ls['colour'])
                G._last_planes = None  # not kept in the snapshots
            opt.zero_grad(set_to_none=True)
            ls['total'].backward()
            opt.step()
            step += 1
            done += 1
            vals = {k: float(v.detach()) for k, v in ls.items()}
            history.append([step] + [vals.get(k, 0.0) for k in HISTORY[1:]])
            bar.update(1)
            bar.set_postfix(loss=f'{vals["total"]:.3f}', depth=f'{vals["depth"]:.3f}',
                            s_step=f'{(time.time() - t0) / done:.1f}', refresh=False)
            if log is not None:
                log(step, vals)
            if step % snapshot_every == 0 or step == steps:
                G.neural_rendering_resolution = nr_saved
                save_snapshot(out, G, D, opt, step, gen, history, config)
    finally:
        bar.close()
        G.neural_rendering_resolution = nr_saved
    return dict(step=step, history=history, G=G.eval().requires_grad_(False))


@torch.no_grad()
def mesh_against_truth(G, z, shape_res=128):
    """The marching-cubes mesh of G's density for code z [1, z_dim] (w as synthesize maps it;
    meshes.mesh_from_density at EG3D's level) against the true head of z: dict(components (connected
    parts), faces, largest_share (of the faces, in the largest part), watertight (the largest
    part), surface_error (heads.surface_error of the largest part's vertices)). Needs trimesh."""
    from . import meshes, render
    device = next(G.parameters()).device
    z = torch.as_tensor(z, dtype=torch.float32, device=device).reshape(1, -1)
    w = G.mapping(z, cameras.frontal_label(1, device=device) * G.rendering_kwargs['c_scale'])
    mesh = meshes.mesh_from_density(render.sample_density(G, w, shape_res, progress=False),
                                    G.rendering_kwargs['box_warp'], meshes.DENSITY_LEVEL)
    if not len(mesh.faces):
        return dict(components=0, faces=0, largest_share=0.0, watertight=False, surface_error=float('nan'))
    big = meshes.largest_component(mesh)
    return dict(components=meshes.component_count(mesh), faces=len(mesh.faces),
                largest_share=len(big.faces) / len(mesh.faces),
                watertight=bool(big.is_watertight),
                surface_error=heads.surface_error(big.vertices, heads.params_from_z(z.cpu())))


@torch.no_grad()
def preview_grid(G, z, yaws=(-0.6, 0.0, 0.6), pitch=0.0):
    """A uint8 HWC grid comparing truth and generator: per z, a row of heads.py renders then a
    row of G's images, at the given yaws; the last column is the depth at the first yaw (near =
    bright)."""
    from .images import image_grid, to_uint8
    device = next(G.parameters()).device
    z = torch.as_tensor(z, dtype=torch.float32, device=device)
    res = G.img_resolution
    rows = []
    for zi in z:
        c = cameras.pose_to_label(torch.tensor(yaws), torch.full((len(yaws),), pitch), device=device)
        zz = zi[None].expand(len(yaws), -1)
        truth = heads.render_heads(heads.params_from_z(zz.cpu()), c.cpu(), resolution=res, **TARGET_RENDER)
        out = synthesize(G, zz, c)
        def depth_img(d):  # near = bright, over the ray range
            d = 1 - ((d[:1] - heads.RAY_START) / (heads.RAY_END - heads.RAY_START)).clamp(0, 1)
            return to_uint8(F.interpolate(d.cpu(), size=res, mode='nearest').expand(-1, 3, -1, -1) * 2 - 1)[0]
        rows.append(list(to_uint8(truth['image'])) + [depth_img(truth['depth'])])
        rows.append(list(to_uint8(out['image'].cpu())) + [depth_img(out['image_depth'])])
    return image_grid([im for row in rows for im in row], len(yaws) + 1)

#----------------------------------------------------------------------------
# The shipped demo generator: its weights in a compact file inside the package, rebuilt into an
# ordinary network pickle by `init-network --preset heads` (a trained pickle is ~17 MB; the
# generator's weights in float16 are a fifth of that).

SHIPPED = Path(__file__).resolve().parent / 'data' / 'heads-tiny.pt'
WEIGHTS_FORMAT = 'eg3d-regressor-heads-weights'


def export_weights(network_pkl, out):
    """Write the compact weights file of a train-heads pickle: its G_ema's parameters and buffers
    (float16, w_avg float32), the preset and seed it was built with and its step."""
    data = bridge.load_network_pkl(network_pkl)
    kwargs = data.get('training_set_kwargs') or {}
    _check(isinstance(kwargs.get('heads_step'), int), f'{network_pkl} is not a train-heads pickle (no heads_step)')
    G = data['G_ema']
    preset = presets.preset_of(G)
    _check(preset is not None, f'{network_pkl}: its generator matches none of the presets ({", ".join(PRESETS)})')
    state = {k: (v.detach().cpu().float() if k.endswith('w_avg') else v.detach().cpu().half())
             for k, v in G.state_dict().items()}
    blob = dict(format=WEIGHTS_FORMAT, version=1, preset=preset, heads_step=kwargs['heads_step'],
                neural_rendering_resolution=int(G.neural_rendering_resolution), state=state)
    with atomic_path(out) as tmp:
        torch.save(blob, tmp)
    return Path(out)


def shipped_networks(path=SHIPPED):
    """(G, D, training_set_kwargs) of the demo heads generator from its weights file (the `tiny`
    preset's classes with the file's weights; D is the preset's untrained discriminator, which
    a pickle needs and nothing here uses)."""
    path = Path(path)
    _check(path.is_file(), f'the heads weights file {path} is missing: rebuild it with `eg3d-regress train-heads` '
           'and heads_training.export_weights')
    try:
        blob = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise UserError(f'{path}: not a readable heads weights file ({type(e).__name__})') from None
    _check(isinstance(blob, dict) and blob.get('format') == WEIGHTS_FORMAT, f'{path}: not a heads weights file')
    G, D = presets.build_networks(blob['preset'], seed=0, w_avg_samples=0)
    state = G.state_dict()
    missing = set(state) ^ set(blob['state'])
    _check(not missing, f'{path}: its weights do not fit the {blob["preset"]} preset ({len(missing)} names differ)')
    G.load_state_dict({k: v.to(state[k].dtype) for k, v in blob['state'].items()})
    G.neural_rendering_resolution = int(blob['neural_rendering_resolution'])
    return G.eval().requires_grad_(False), D, _training_set_kwargs(G, blob['heads_step'])
