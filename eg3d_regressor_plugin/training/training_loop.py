"""The regressors' training loop, in the style of EG3D's training/training_loop.py. Its run folder
(launch.py makes it) receives the log, stats.jsonl, TensorBoard events, validation grids and
snapshots.

Training data is rendered on the fly or read from a dataset zip (sources.py). Everything random
in a step derives from (seed, rank, step), so resuming from a snapshot (which also restores the
optimizer, counters and RNG states) continues exactly as the uninterrupted run would have.
"""

import json
import math
import time
from pathlib import Path

import torch

from .. import bridge, fingerprint
from ..errors import UserError, extra_available
from . import checkpoint, data, distributed, networks
from .console import Tee, format_time
from .loss import RegressorLoss
from .sources import DatasetSource, RenderSource
from .validation import save_val_grid, validate, validate_real

# The arguments of training_loop that a launched run records in its snapshots (record_options).
RECORDED = ('network_pkl', 'arch', 'arch_kwargs', 'input_res', 'single_w', 'batch', 'kimg', 'lr', 'lr_rampdown',
            'tick_kimg', 'snap', 'seed', 'data_zip', 'workers', 'reuse', 'trunc_range', 'cond_pose', 'w_loss',
            'pose_loss', 'pose_loss_type', 'img_loss', 'lpips_loss', 'img_res', 'val_seeds', 'resume',
            'real', 'real_ratio', 'real_style', 'real_img_loss', 'real_lpips_loss', 'id_loss', 'real_reg', 'real_w_loss', 'real_holdout', 'real_align')


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
    real=None,                      # Real images mixed in (real_data.py: an EG3D zip, a label zip, photos).
    real_ratio=0.5,                 # Their share of each batch.
    real_style=0.5,                 # Share of the synthetic pairs styled like them (real_style.py).
    real_img_loss=1.0, real_lpips_loss=0.5, id_loss=0.1, real_reg=0.1,  # Real-image loss weights (real_loss.py).
    real_w_loss=0.0,                # Weight of the L1 to pseudo-labels (a `label` zip's w; see real_loss.py).
    real_holdout=8,                 # Real images held out for validation.
    real_align=True,                # Align photos (a folder) on loading.
    grid=8,                         # Validation pairs in the snapshot image grid.
    w_stats_samples=10000,          # Samples for the w statistics.
    time_budget=None,               # Also stop after this many seconds of training (benchmarks).
    resume=None,                    # Snapshot path to resume from.
    device='cpu',                   # torch device of this rank.
    eg3d=None,                      # EG3D checkout.
    rank=0, world=1,                # Distributed rank and size (the process group is set up).
    record_options=False,           # Record these arguments (RECORDED) in the snapshots (a launched run).
):
    # One function, longer than the others here: it is the loop EG3D's training_loop is, and its
    # state (counters, clock, tick sums) reads best in one place; setup, the tick report and the
    # snapshot are helpers.
    options = {k: v for k, v in locals().items() if k in RECORDED} if record_options else {}
    run_dir = Path(run_dir)
    device = torch.device(device)
    is_main = rank == 0
    tee = Tee(run_dir / 'log.txt') if is_main else None
    log = print if is_main else (lambda *a, **k: None)
    writer = None
    try:
        log(f'Run folder: {run_dir}')
        G, identity, model, w_stats, state = _generator_and_network(
            network_pkl, eg3d, device, resume, seed, arch, arch_kwargs, input_res, single_w, w_stats_samples,
            trunc_range, cond_pose)
        input_res = model.input_resolution
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
        cur_nimg = cur_tick = step = 0
        train_time = 0.0
        if state is not None:
            cur_nimg, cur_tick, step, train_time = _restore(opt, state, lr, is_main)
            log(f'Resuming from {resume} at {cur_nimg / 1000:g} kimg (tick {cur_tick}, step {step})')
        if not is_main or state is None:
            torch.manual_seed(data.derive_seed(seed, rank, step, 4))
        loss_fn = RegressorLoss(w_stats, G, w_weight=w_loss, pose_weight=pose_loss, img_weight=img_loss,
                                lpips_weight=lpips_loss, pose_loss=pose_loss_type, img_res=img_res)
        sampler = data.PairSampler(G, input_res, trunc_range, cond_pose)
        batch_gpu = batch // world
        n_real = min(batch_gpu, max(1, round(batch_gpu * real_ratio))) if real else 0
        source = None
        styled = bool(real and real_style)  # real-style pairs need the synthetic pairs' background masks
        if batch_gpu > n_real and data_zip:
            dataset = data.PairDataset(data_zip, G=G)
            source = DatasetSource(dataset, batch_gpu - n_real, seed, rank, world, device, input_res, step, workers,
                                   masks=styled)
        elif batch_gpu > n_real:
            source = RenderSource(sampler, batch_gpu - n_real, reuse, seed, rank, masks=styled)
        real_val = real_identity = None
        if real:
            source, loss_fn, real_val, real_identity = _real_setup(
                real, real_align, real_holdout, n_real, source, loss_fn, G, w_stats, dict(
                    img_weight=real_img_loss, lpips_weight=real_lpips_loss, id_weight=id_loss, w_weight=real_w_loss,
                    pose_weight=pose_loss, reg_weight=real_reg, img_res=img_res),
                real_style, seed, rank, world, device, input_res, step, workers, log)
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
            f'batch {batch}; data: {data_zip or f"rendered on the fly, each pair used {source.reuse:g} times"}'
            + (f'; real images: {real}, {n_real * world} per batch' if real else ''))

        val = None
        if is_main:
            t0 = time.time()
            # Plain small seeds: training draws 32-bit seeds hashed from (seed, rank, step, index).
            val = sampler.sample_seeds(val_seeds)
            log(f'Validation: {len(val_seeds)} held-out pairs rendered in {format_time(time.time() - t0)}')
            writer = _tensorboard(run_dir, cur_nimg, log)

        total_nimg = int(round(kimg * 1000))
        tick_nimg = max(1, int(round(tick_kimg * 1000)))
        tick_start_nimg, tick_start_time = cur_nimg, time.time()
        tick_sums, tick_steps = {}, 0
        start_time = time.time() - train_time
        done = cur_nimg >= total_nimg
        if done:
            log(f'Already at {cur_nimg / 1000:g} kimg >= kimg {kimg:g}: nothing to train')
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
                train_time = distributed.all_max(train_time, device)
            done = cur_nimg >= total_nimg or (time_budget is not None and train_time >= time_budget)
            if not done and cur_nimg < tick_start_nimg + tick_nimg:
                continue

            # Tick: progress, losses and validation, then maybe a snapshot.
            cur_tick += 1
            losses = distributed.all_mean({k: v / tick_steps for k, v in tick_sums.items()}, device, world)
            rendered = distributed.all_mean({'r': float(source.rendered)}, device, world)['r'] * world
            tick_sums, tick_steps = {}, 0
            tick_time = time.time() - tick_start_time
            if is_main:
                metrics, pred_n, pred_pose = validate(model, val, w_stats)
                if real_val is not None:
                    metrics.update(validate_real(model, G, real_val, w_stats, real_identity))
                sec_per_kimg = tick_time / max(cur_nimg - tick_start_nimg, 1) * 1000
                stats = {'Progress/tick': cur_tick, 'Progress/kimg': cur_nimg / 1000, 'Progress/nimg': cur_nimg,
                         'Progress/step': step, 'Progress/rendered_this_session': rendered,
                         'Timing/train_sec': train_time, 'Timing/total_sec': time.time() - start_time,
                         'Timing/sec_per_tick': tick_time, 'Timing/sec_per_kimg': sec_per_kimg}
                stats.update({f'Loss/{k}': v for k, v in losses.items()})
                stats.update({f'Val/{k}': v for k, v in metrics.items()})
                _report_tick(log, writer, stats, losses, metrics, start_time)
                if done or cur_tick % snap == 0:
                    save_val_grid(run_dir / f'val-grid-{cur_nimg // 1000:06d}.png', sampler, val, pred_n, pred_pose, w_stats, grid)
                    run_state = dict(optimizer=opt.state_dict(), cur_nimg=cur_nimg, cur_tick=cur_tick, step=step,
                                     train_time=train_time, batch=batch, world=world, seed=seed,
                                     rng=checkpoint.capture_rng_state())
                    meta = dict(kimg=cur_nimg / 1000, run=run_dir.name, options=options, val=metrics)
                    path = run_dir / snapshot_name(cur_nimg)
                    checkpoint.save_checkpoint(path, model, w_stats, identity, state=run_state, meta=meta)
                    log(f'Saved {path}')
                # The stats line goes last: a line in stats.jsonl means its tick is complete.
                with open(run_dir / 'stats.jsonl', 'a') as f:
                    f.write(json.dumps(dict(stats, timestamp=time.time())) + '\n')
            tick_start_nimg, tick_start_time = cur_nimg, time.time()

        if world > 1:
            same, digest = distributed.ranks_identical(model, device, world)
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


def snapshot_name(cur_nimg):
    return f'regressor-snapshot-{cur_nimg // 1000:06d}.pt'


def _generator_and_network(network_pkl, eg3d, device, resume, seed, arch, arch_kwargs, input_res, single_w,
                           w_stats_samples, trunc_range, cond_pose):
    """(G, its fingerprint, the regressor in training mode on device, w statistics on device, the
    snapshot's resume state or None): built fresh from `seed`, or the snapshot's."""
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
    w_stats = {k: v.to(device) for k, v in w_stats.items()}
    return G, identity, model, w_stats, state


def _restore(opt, state, lr, is_main):
    """Put a snapshot's optimizer state (with this run's lr) and, on rank 0, its RNG states back
    -> (cur_nimg, cur_tick, step, train_time)."""
    opt.load_state_dict(state['optimizer'])
    for group in opt.param_groups:
        group['lr'] = lr  # the command line's learning rate wins
    if is_main:
        checkpoint.restore_rng_state(state['rng'])
    return state['cur_nimg'], state['cur_tick'], state['step'], state['train_time']


def _real_setup(spec, align, holdout, n_real, synthetic, loss_fn, G, w_stats, weights, style, seed, rank, world,
                device, input_res, start_step, workers, log):
    """The mixed source and loss of `--real` training (a `style` share of the synthetic pairs
    styled like the real images), the held-out real images and the identity network that
    validates them -> (MixedSource, MixedLoss, held-out part or None, identity or None)."""
    from . import real_data
    from .real_loss import MixedLoss, RealImageLoss
    from .sources import MixedSource, RealSource
    t0 = time.time()
    resolution = max(input_res, min(G.img_resolution, 128))  # kept in memory (or read) at this size
    real = real_data.load_real(spec, G, resolution, align=align, log=log)
    train_part, val_part = real_data.split_holdout(real, holdout)
    log(f'Real images: {len(real["names"])} from {spec} ({real["kind"]}; {int(real["has_w"].sum())} with w, '
        f'{int(real["has_c"].sum())} with camera labels), {0 if val_part is None else len(val_part["img"])} held out, '
        f'loaded in {format_time(time.time() - t0)}')
    real_loss = RealImageLoss(w_stats, G, log=log, **weights)
    styler = None
    if style and synthetic is not None:
        from .real_style import RealStyle
        styler = RealStyle(style, seed, rank, input_res)
        if isinstance(synthetic, DatasetSource) and not synthetic.dataset.has_masks:
            log(f'Real-style pairs: {synthetic.dataset.path} has no background masks (written by an older version): '
                'they keep their rendered backgrounds; rewrite it with `eg3d-regress dataset` for real ones')
    source = MixedSource(synthetic, RealSource(train_part, n_real, seed, rank, world, device, input_res, start_step,
                                               workers), styler)
    identity = real_loss.identity
    if identity is None and val_part is not None:
        from ..face_identity import load_face_identity
        try:
            identity = load_face_identity('dlib', device)
        except UserError:
            log('Validation of real images without identity similarity (needs the "align" extra)')
    return source, MixedLoss(loss_fn, real_loss), val_part, identity


def _tensorboard(run_dir, cur_nimg, log):
    """A TensorBoard writer into run_dir (events after cur_nimg dropped), or None without the extra."""
    if extra_available('tensorboard'):
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(run_dir), purge_step=cur_nimg)
    log('Skipping TensorBoard events (install the "tensorboard" extra to get them)')
    return None


def _report_tick(log, writer, stats, losses, metrics, start_time):
    """The progress line of a tick, and its scalars to TensorBoard."""
    log(f'tick {stats["Progress/tick"]:<4d} kimg {stats["Progress/kimg"]:<8.3f} '
        f'time {format_time(time.time() - start_time):<8s} '
        f'sec/kimg {stats["Timing/sec_per_kimg"]:<7.1f} loss {losses["total"]:<6.3f} '
        f'val w-L1 {metrics["w_l1_norm"]:.3f} (mean-w {metrics["baseline_w_l1_norm"]:.3f}, '
        f'x{metrics["w_l1_ratio"]:.2f}) pose {metrics["pose_err_deg"]:.2f} deg '
        f'(frontal {metrics["baseline_pose_err_deg"]:.2f})'
        + (f' real PSNR {metrics["real_psnr"]:.2f} dB' if 'real_psnr' in metrics else '')
        + (f' id {metrics["real_id_sim"]:.3f}' if 'real_id_sim' in metrics else ''))
    if writer is not None:
        for k, v in stats.items():
            if not k.startswith('Progress/'):
                writer.add_scalar(k, v, global_step=stats['Progress/nimg'])
        writer.flush()
