"""The regressors' training loop, in the style of EG3D's training/training_loop.py.

A run lives in a numbered folder `outdir/00000-<arch>-<desc>/` holding

    training_options.json            the options of the (latest) invocation
    log.txt                          everything the run printed (appended to on resume)
    stats.jsonl                      one JSON line per tick: progress, timing, losses, validation
    events.out.tfevents.*            the same scalars for TensorBoard (when it is installed)
    val-grid-KKKKKK.png              held-out inputs | the predicted w rendered at the predicted pose
    regressor-snapshot-KKKKKK.pt     checkpoints with their resume state (KKKKKK = kimg, as EG3D)

Training data is rendered on the fly (data.PairSampler), or read from a dataset zip. Rendering
costs far more than a training step, so each rendered pair can be used `reuse` times: every step
renders batch/reuse fresh pairs into a pool of 2 x batch recent pairs and trains on a random batch
of the pool. Everything random in a step derives from (seed, rank, step), so resuming from a
snapshot (which also restores the optimizer, counters and RNG states) continues exactly as the
uninterrupted run would have; the pool is rebuilt by rendering its pairs again.
"""

import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path

import torch

from .. import bridge, fingerprint
from ..errors import UserError, extra_available
from ..files import atomic_path, save_image
from ..images import image_grid, to_uint8
from . import checkpoint, data, networks
from .loss import RegressorLoss

INPUT_STATS_KEY = 0x57a7  # sample-seed key of the rendered input-statistics images (training's keys differ)
SNAPSHOT_RE = re.compile(r'^regressor-snapshot-(\d+)\.pt$')
RUN_RE = re.compile(r'^(\d+)-([a-z]+)-')

#----------------------------------------------------------------------------
# Run folders and snapshots.

def snapshot_name(cur_nimg):
    return f'regressor-snapshot-{cur_nimg // 1000:06d}.pt'


def run_dirs(outdir, arch=None):
    """Numbered run folders of `outdir` (for `arch`, when given), newest (highest number) first."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        return []
    runs = []
    for d in outdir.iterdir():
        m = RUN_RE.match(d.name)
        if d.is_dir() and m and (arch is None or m.group(2) == arch):
            runs.append((int(m.group(1)), d))
    return [d for _, d in sorted(runs, reverse=True)]


def next_run_dir(outdir, desc):
    ids = [int(m.group(1)) for d in Path(outdir).glob('*') if (m := re.match(r'^(\d+)', d.name))] if Path(outdir).is_dir() else []
    return Path(outdir) / f'{max(ids, default=-1) + 1:05d}-{desc}'


def latest_snapshot(run_dir):
    """(path, checkpoint dict) of the newest snapshot in run_dir that loads and holds a resume
    state, or (None, None). A damaged file is passed over."""
    snaps = []
    for p in Path(run_dir).glob('regressor-snapshot-*.pt'):
        m = SNAPSHOT_RE.match(p.name)
        if m:
            snaps.append((int(m.group(1)), p.stat().st_mtime, p))
    for _, _, p in sorted(snaps, reverse=True):
        try:
            ckpt = checkpoint.load_checkpoint(p)
        except UserError:
            continue
        if ckpt.get('state'):
            return p, ckpt
    return None, None


def find_resume(resume, outdir, arch=None):
    """--resume PATH|latest -> (snapshot path, checkpoint, run folder to continue in or None)."""
    if resume == 'latest':
        for d in run_dirs(outdir, arch):
            path, ckpt = latest_snapshot(d)
            if path is not None:
                return path, ckpt, d
        what = f' for arch {arch}' if arch else ''
        raise UserError(f'--resume latest: no run folder in {outdir} holds a snapshot to resume{what}')
    path = Path(resume)
    ckpt = checkpoint.load_checkpoint(path)
    if not ckpt.get('state'):
        raise UserError(f'--resume {resume}: this checkpoint holds no resume state (it is no training snapshot)')
    run_dir = path.parent if (path.parent / 'training_options.json').is_file() else None
    return path, ckpt, run_dir


def clean_resumed_run(run_dir, cur_nimg):
    """Before continuing a run at cur_nimg: drop the temporary files a killed run left and the stats
    lines after the snapshot (they will be written again)."""
    for p in Path(run_dir).glob('.*.tmp*'):
        p.unlink(missing_ok=True)
    stats = Path(run_dir) / 'stats.jsonl'
    if stats.is_file():
        keep = []
        for line in stats.read_text().splitlines():
            try:
                if json.loads(line)['Progress/nimg'] <= cur_nimg:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                pass  # the partial last line of a killed run
        with atomic_path(stats) as tmp:
            Path(tmp).write_text(''.join(l + '\n' for l in keep))

#----------------------------------------------------------------------------
# Logging.

class Tee:
    """Copy stdout to a file (EG3D's dnnlib.util.Logger, without redirecting stderr)."""

    def __init__(self, path):
        self.file = open(path, 'a')
        self.stdout = sys.stdout
        sys.stdout = self

    def write(self, text):
        self.file.write(text)
        self.stdout.write(text)
        self.flush()

    def flush(self):
        self.file.flush()
        self.stdout.flush()

    def close(self):
        if sys.stdout is self:
            sys.stdout = self.stdout
        self.file.close()


def format_time(seconds):
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    return f'{s // 3600}h {(s // 60) % 60:02d}m'

#----------------------------------------------------------------------------
# Data sources: a batch for a given step.

class RenderSource:
    """On-the-fly pairs with reuse (see the module docstring). Stateless in the step."""

    def __init__(self, sampler, batch_gpu, reuse, seed, rank):
        self.sampler, self.batch_gpu, self.seed, self.rank = sampler, batch_gpu, seed, rank
        self.fresh = max(1, math.ceil(batch_gpu / max(1, int(reuse))))  # pairs rendered per step
        self.reuse = batch_gpu / self.fresh  # how often a pair is used, on average
        self.groups = 1 if self.fresh >= batch_gpu else 2 * math.ceil(self.reuse)  # pool size in steps
        self.pool = {}  # group index (the step that rendered it) -> batch dict
        self.rendered = 0

    STAT_IMAGES = 64  # rendered once at the start for the input statistics

    def stat_images(self):
        """Images for the network's input statistics: the same on every rank."""
        return self.sampler.sample(self.STAT_IMAGES, self.seed, INPUT_STATS_KEY)['img']

    def _group(self, g):
        # Groups before step 0 fill the initial pool; the flag keeps their seeds apart.
        return self.sampler.sample(self.fresh, self.seed, self.rank, int(g < 0), abs(g))

    def batch(self, step):
        wanted = range(step - self.groups + 1, step + 1)
        for g in list(self.pool):
            if g not in wanted:
                del self.pool[g]
        for g in wanted:
            if g not in self.pool:
                self.pool[g] = self._group(g)
                self.rendered += self.fresh
        pool = {k: torch.cat([self.pool[g][k] for g in wanted]) for k in self.pool[step]}
        n = len(pool['w'])
        if n == self.batch_gpu:
            return pool
        gen = torch.Generator().manual_seed(data.derive_seed(self.seed, self.rank, step, 2))
        idx = torch.randperm(n, generator=gen)[:self.batch_gpu].to(pool['w'].device)
        return {k: v[idx] for k, v in pool.items()}


class DatasetSource:
    """Batches from a dataset zip, in a seeded order per epoch, split between the ranks. A dataset
    that fits in PRELOAD_BYTES is decoded once and kept on the device (decoding a batch of PNGs
    costs as much as a training step of a small regressor on a CPU); a larger one streams through
    DataLoader workers. Both give the same batches."""

    PRELOAD_BYTES = 1 << 30
    STAT_IMAGES = 1024  # the first ones of the dataset, for the input statistics

    def __init__(self, dataset, batch_gpu, seed, rank, world, device, resolution, start_step, workers=2):
        self.dataset, self.device, self.resolution = dataset, device, resolution
        self.args = (batch_gpu, rank, world, len(dataset), seed)
        self.items = self.loader = None
        if dataset.nbytes() <= self.PRELOAD_BYTES:
            self.items = dataset.load_all(device)
        else:
            steps = _Steps(self.args, start_step)
            self.loader = iter(torch.utils.data.DataLoader(dataset, batch_sampler=steps, num_workers=workers,
                                                           pin_memory=device.type == 'cuda',
                                                           persistent_workers=workers > 0))
        self.rendered = 0

    def batch(self, step):
        if self.items is not None:
            idx = torch.tensor(data.epoch_batch(step, *self.args), device=self.device)
            b = {k: v[idx] for k, v in self.items.items()}
            b['img'] = data.uint8_to_float(b['img'])
        else:
            b = {k: v.to(self.device, non_blocking=True) for k, v in next(self.loader).items()}
        b['img'] = networks.resize_input(b['img'], self.resolution)
        return b

    def stat_images(self):
        """Images for the network's input statistics: the same on every rank."""
        n = min(len(self.dataset), self.STAT_IMAGES)
        if self.items is not None:
            img = data.uint8_to_float(self.items['img'][:n])
        else:
            img = torch.stack([self.dataset[i]['img'] for i in range(n)]).to(self.device)
        return networks.resize_input(img, self.resolution)


class _Steps:
    def __init__(self, args, start_step):
        self.args = args  # data.epoch_batch's arguments after the step
        self.start_step = start_step

    def __iter__(self):
        step = self.start_step
        while True:
            yield data.epoch_batch(step, *self.args)
            step += 1

#----------------------------------------------------------------------------
# Validation.

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
    with data.seeded(0, w.device):
        c = data.cameras.pose_to_label(pred_pose[:n, 0], pred_pose[:n, 1], device=w.device)
    res = min(G.img_resolution, 256)
    fake = sampler.render(w, c, render_seed=0, resolution=res)
    real = networks.resize_input(val['img'][:n], res)
    tiles = [t for pair in zip(to_uint8(real), to_uint8(fake)) for t in pair]
    save_image(path, image_grid(tiles, 2 * min(cols, n)))

#----------------------------------------------------------------------------
# Distributed helpers.

def _all_mean(values: dict, device, world):
    """Mean over ranks of a dict of floats (identity on one process)."""
    if world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist())}


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for p in model.state_dict().values():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _ranks_identical(model, device, world):
    digest = weights_digest(model)
    t = torch.tensor([int(digest[:15], 16)], dtype=torch.int64, device=device)
    gathered = [torch.zeros_like(t) for _ in range(world)]
    torch.distributed.all_gather(gathered, t)
    return all(int(g) == int(t) for g in gathered), digest

#----------------------------------------------------------------------------

def lr_factor(progress_kimg, progress_time, rampdown):
    """Learning-rate factor: 1, then a cosine ramp to 0 over the last `rampdown` fraction of
    training, whose progress is the further of the kimg and the time budget (whichever ends it)."""
    t = min(1.0, max(progress_kimg, progress_time))
    if rampdown <= 0 or t <= 1 - rampdown:
        return 1.0
    return 0.5 + 0.5 * math.cos(math.pi * (t - (1 - rampdown)) / rampdown)


def training_loop(
    run_dir,                        # Output folder (exists; rank 0 writes into it).
    network_pkl,                    # EG3D network pickle.
    arch='vit',                     # Regressor architecture (ignored on resume: the snapshot's).
    arch_kwargs=None,               # Architecture options (size=..., ...).
    input_res=64,                   # Regressor input resolution.
    single_w=False,                 # Predict one w for all levels.
    batch=16,                       # Total batch over all ranks.
    kimg=1000,                      # Train until this many thousand pairs were shown.
    lr=1e-3,                        # Adam learning rate.
    lr_rampdown=0.0,                # Cosine ramp-down of the lr to 0 over this last fraction of training.
    tick_kimg=1.0,                  # Progress line, stats and validation every this many kimg.
    snap=5,                         # Snapshot every this many ticks (and at the end).
    seed=0,                         # Seeds the network's weights and all the training data.
    data_zip=None,                  # Dataset zip instead of on-the-fly rendering.
    workers=2,                      # DataLoader processes for data_zip.
    reuse=4,                        # On the fly: each rendered pair is used this many times.
    trunc_range=data.DEFAULT_TRUNC,  # Truncation psi range of the training data.
    cond_pose='random',             # Pose the mapping is conditioned on (data.COND_POSES).
    w_loss=1.0, pose_loss=1.0, img_loss=0.0, lpips_loss=0.0,  # Loss weights.
    pose_loss_type='smooth_l1',     # 'l1' or 'smooth_l1'.
    img_res=32,                     # Neural rendering resolution of the image loss.
    val_seeds=tuple(range(64)),     # Held-out validation sample seeds.
    grid=8,                         # Validation pairs in the snapshot image grid.
    w_stats_samples=10000,          # Samples for the w statistics.
    time_budget=None,               # Also stop after this many seconds of training (benchmarks).
    resume=None,                    # Snapshot path to resume from.
    device='cpu',                   # torch device of this rank.
    eg3d=None,                      # EG3D checkout.
    rank=0, world=1,                # Distributed rank and size (the process group is set up).
    options=None,                   # JSON-able options recorded in snapshots.
):
    run_dir = Path(run_dir)
    device = torch.device(device)
    is_main = rank == 0
    tee = Tee(run_dir / 'log.txt') if is_main else None
    log = print if is_main else (lambda *a, **k: None)
    writer = None
    try:
        log(f'Run folder: {run_dir}')
        # Generator, network, statistics, optimizer (restored when resuming).
        G = bridge.load_generator(network_pkl, device=device, eg3d=eg3d)
        identity = fingerprint.generator_fingerprint(G)
        ckpt = checkpoint.load_checkpoint(resume) if resume else None
        if ckpt is not None:
            fingerprint.check_fingerprint(ckpt['generator'], G, what=f'snapshot {resume}')
            model = checkpoint.build_from_checkpoint(ckpt, resume)
            w_stats = ckpt['w_stats']
            state = ckpt['state']
        else:
            torch.manual_seed(seed)
            model = networks.build_regressor(arch, num_ws=G.backbone.num_ws, w_dim=G.w_dim, input_resolution=input_res,
                                             single_w=single_w, **(arch_kwargs or {}))
            w_stats = data.estimate_w_stats(G, w_stats_samples, trunc_range, cond_pose)
            state = None
        model = model.to(device).train().requires_grad_(True)
        input_res = model.input_resolution
        w_stats = {k: v.to(device) for k, v in w_stats.items()}
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
        cur_nimg = cur_tick = step = 0
        train_time = 0.0
        if state is not None:
            opt.load_state_dict(state['optimizer'])
            for group in opt.param_groups:
                group['lr'] = lr  # the command line's learning rate wins
            cur_nimg, cur_tick, step, train_time = state['cur_nimg'], state['cur_tick'], state['step'], state['train_time']
            if is_main:
                checkpoint.restore_rng_state(state['rng'])
            log(f'Resuming from {resume} at {cur_nimg / 1000:g} kimg (tick {cur_tick}, step {step})')
        if not is_main or state is None:
            torch.manual_seed(data.derive_seed(seed, rank, step, 4))
        loss_fn = RegressorLoss(w_stats, G, w_weight=w_loss, pose_weight=pose_loss, img_weight=img_loss,
                                lpips_weight=lpips_loss, pose_loss=pose_loss_type, img_res=img_res)
        sampler = data.PairSampler(G, input_res, trunc_range, cond_pose)
        batch_gpu = batch // world
        if data_zip:
            dataset = data.PairDataset(data_zip, G=G)
            source = DatasetSource(dataset, batch_gpu, seed, rank, world, device, input_res, step, workers)
        else:
            source = RenderSource(sampler, batch_gpu, reuse, seed, rank)
        if state is None:  # the same images on every rank; a resumed network has its statistics
            t0 = time.time()
            imgs = source.stat_images()
            model.set_input_stats(imgs)
            log(f'Input statistics from {len(imgs)} training images in {format_time(time.time() - t0)}')
        ddp = model
        if world > 1:
            ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == 'cuda' else None)
        log(f'Regressor {model.arch}: {networks.count_params(model):,} parameters, input {input_res} px, '
            f'w {model.num_ws} x {model.w_dim}{" (single w)" if model.single_w else ""}; '
            f'generator {identity["img_resolution"]} px on {device}; {world} process{"es" if world > 1 else ""}, '
            f'batch {batch}; data: {data_zip or f"rendered on the fly, each pair used {source.reuse:g} times"}')

        val = None
        if is_main:
            t0 = time.time()
            # Plain small seeds: training draws 32-bit seeds hashed from (seed, rank, step, index).
            val = sampler.sample_seeds(val_seeds)
            log(f'Validation: {len(val_seeds)} held-out pairs rendered in {format_time(time.time() - t0)}')
            if extra_available('tensorboard'):
                from torch.utils.tensorboard import SummaryWriter
                writer = SummaryWriter(str(run_dir), purge_step=cur_nimg)
            else:
                log('Skipping TensorBoard events (install the "tensorboard" extra to get them)')

        total_nimg = int(round(kimg * 1000))
        tick_nimg = max(1, int(round(tick_kimg * 1000)))
        tick_start_nimg, tick_start_time = cur_nimg, time.time()
        tick_sums, tick_steps = {}, 0
        start_time = time.time() - train_time
        done = cur_nimg >= total_nimg
        if done:
            log(f'Already at {cur_nimg / 1000:g} kimg >= --kimg {kimg:g}: nothing to train')
        log(f'Training for {kimg:g} kimg...')

        while not done:
            t_step = time.time()
            if lr_rampdown > 0:
                for group in opt.param_groups:
                    group['lr'] = lr * lr_factor(cur_nimg / total_nimg, train_time / time_budget if time_budget else 0.0,
                                                 lr_rampdown)
            b = source.batch(step)
            pred = ddp(b['img'])
            loss, terms = loss_fn(pred, b, render_seed=data.derive_seed(seed, rank, step, 3))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in terms.items():
                tick_sums[k] = tick_sums.get(k, 0.0) + float(v)
            tick_steps += 1
            step += 1
            cur_nimg += batch
            train_time += time.time() - t_step
            if world > 1 and time_budget is not None:  # one clock (the slowest rank's): the same lr, the same last step
                synced = torch.tensor([train_time], dtype=torch.float64, device=device)
                torch.distributed.all_reduce(synced, op=torch.distributed.ReduceOp.MAX)
                train_time = float(synced.item())
            done = cur_nimg >= total_nimg or (time_budget is not None and train_time >= time_budget)
            if not done and cur_nimg < tick_start_nimg + tick_nimg:
                continue

            # Tick: progress, losses and validation, then maybe a snapshot.
            cur_tick += 1
            losses = _all_mean({k: v / tick_steps for k, v in tick_sums.items()}, device, world)
            rendered = _all_mean({'r': float(source.rendered)}, device, world)['r'] * world
            tick_sums, tick_steps = {}, 0
            tick_time = time.time() - tick_start_time
            snapshot = done or cur_tick % snap == 0
            if is_main:
                metrics, pred_n, pred_pose = validate(model, val, w_stats)
                sec_per_kimg = tick_time / max(cur_nimg - tick_start_nimg, 1) * 1000
                stats = {'Progress/tick': cur_tick, 'Progress/kimg': cur_nimg / 1000, 'Progress/nimg': cur_nimg,
                         'Progress/step': step, 'Progress/rendered_this_session': rendered,
                         'Timing/train_sec': train_time, 'Timing/total_sec': time.time() - start_time,
                         'Timing/sec_per_tick': tick_time, 'Timing/sec_per_kimg': sec_per_kimg}
                stats.update({f'Loss/{k}': v for k, v in losses.items()})
                stats.update({f'Val/{k}': v for k, v in metrics.items()})
                log(f'tick {cur_tick:<4d} kimg {cur_nimg / 1000:<8.3f} time {format_time(time.time() - start_time):<8s} '
                    f'sec/kimg {sec_per_kimg:<7.1f} loss {losses["total"]:<6.3f} '
                    f'val w-L1 {metrics["w_l1_norm"]:.3f} (mean-w {metrics["baseline_w_l1_norm"]:.3f}, '
                    f'x{metrics["w_l1_ratio"]:.2f}) pose {metrics["pose_err_deg"]:.2f} deg '
                    f'(frontal {metrics["baseline_pose_err_deg"]:.2f})')
                if writer is not None:
                    for k, v in stats.items():
                        if not k.startswith('Progress/'):
                            writer.add_scalar(k, v, global_step=cur_nimg)
                    writer.flush()
                if snapshot:
                    name = snapshot_name(cur_nimg)
                    save_val_grid(run_dir / f'val-grid-{cur_nimg // 1000:06d}.png', sampler, val, pred_n, pred_pose, w_stats, grid)
                    run_state = dict(optimizer=opt.state_dict(), cur_nimg=cur_nimg, cur_tick=cur_tick, step=step,
                                     train_time=train_time, batch=batch, world=world, seed=seed,
                                     rng=checkpoint.capture_rng_state())
                    meta = dict(kimg=cur_nimg / 1000, run=run_dir.name, options=options or {}, val=metrics)
                    checkpoint.save_checkpoint(run_dir / name, model, w_stats, identity, state=run_state, meta=meta)
                    log(f'Saved {run_dir / name}')
                # The stats line goes last: a line in stats.jsonl means its tick is complete.
                with open(run_dir / 'stats.jsonl', 'a') as f:
                    f.write(json.dumps(dict(stats, timestamp=time.time())) + '\n')
            tick_start_nimg, tick_start_time = cur_nimg, time.time()

        if world > 1:
            same, digest = _ranks_identical(model, device, world)
            log(f'DDP: the {world} ranks hold {"identical" if same else "DIFFERENT"} weights (sha256 {digest[:16]})')
            if not same:
                raise RuntimeError('DDP ranks ended with different weights')
        log('Exiting...')
        return model
    finally:
        if writer is not None:
            writer.close()
        if tee is not None:
            tee.close()
