"""Train a regressor (image -> w, pose) on pairs rendered by an EG3D generator."""

import json
import os
import re
import tempfile
import time
from pathlib import Path

import click
import torch

from . import __version__
from . import bridge, devices, fingerprint
from .errors import UserError
from .files import atomic_path
from .options import Command, device_option, eg3d_option, parse_range
from .training import data, networks, training_loop as loop

#----------------------------------------------------------------------------

def parse_arch_opts(opts):
    """('size=small', 'patch_size=8') -> {'size': 'small', 'patch_size': '8'} (the networks parse values)."""
    out = {}
    for o in opts:
        key, sep, value = o.partition('=')
        if not sep or not re.fullmatch(r'[a-z_]+', key):
            raise UserError(f'--arch-opt {o!r}: expected KEY=VALUE, e.g. size=small')
        out[key] = value
    return out


def _check(cond, message):
    if not cond:
        raise UserError(message)


def _torchrun_world():
    """(rank, local_rank, world) when started by torchrun with more than one process, else None."""
    world = int(os.environ.get('WORLD_SIZE', '1') or 1)
    if world <= 1:
        return None
    return int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0)), world


def _rank_device(device, local_rank):
    return torch.device('cuda', local_rank) if device.type == 'cuda' else torch.device('cpu')


def _init_distributed(device, rank, world, init_method):
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    else:  # share the cores, before the process group starts any thread: N processes with all of them each thrash
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.distributed.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=world)


def _subprocess_fn(rank, kwargs, base_device, world, temp_dir):
    """One process of a --gpus N run (torch.multiprocessing.spawn)."""
    device = _rank_device(base_device, rank)
    _init_distributed(device, rank, world, f'file://{os.path.abspath(os.path.join(temp_dir, ".torch_distributed_init"))}')
    try:
        loop.training_loop(**kwargs, device=device, rank=rank, world=world)
    except UserError as e:
        # The parent turns this into the one-line error (a child's traceback would be many lines).
        Path(temp_dir, f'error-{rank}.txt').write_text(e.message)
        raise SystemExit(2)
    finally:
        torch.distributed.destroy_process_group()

#----------------------------------------------------------------------------

@click.command('train', cls=Command)
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='EG3D network pickle')
@click.option('--outdir', required=True, metavar='DIR', help='Where to make the run folders')
@click.option('--arch', default=None, metavar='vit|unet|psp', help='Regressor architecture  [default: vit; on resume: the snapshot\'s]')
@click.option('--arch-opt', 'arch_opts', multiple=True, metavar='KEY=VALUE', help='Architecture option, e.g. size=small (repeatable)')
@click.option('--batch', type=int, default=16, show_default=True, help='Total batch size (over all processes)')
@click.option('--kimg', type=float, default=1000, show_default=True, help='Training length in thousands of pairs shown')
@click.option('--lr', type=float, default=1e-3, show_default=True, help='Adam learning rate')
@click.option('--lr-rampdown', type=float, default=0.0, show_default=True, metavar='FRACTION',
              help='Ramp the learning rate down to 0 (cosine) over this last fraction of --kimg')
@click.option('--snap', type=int, default=5, show_default=True, help='Snapshot every this many ticks')
@click.option('--tick', 'tick_kimg', type=float, default=None, help='Progress/validation interval in kimg  [default: kimg/20, at most 4]')
@click.option('--seed', type=int, default=0, show_default=True, help='Random seed (weights and data)')
@click.option('--data', 'data_zip', default=None, metavar='ZIP', help='Dataset made by `eg3d-regress dataset`  [default: render on the fly]')
@click.option('--resume', default=None, metavar='PATH|latest', help='Continue from a snapshot, or the newest one in --outdir')
@click.option('--gpus', type=int, default=1, show_default=True, help='Number of processes (GPUs, or CPU processes with --device cpu)')
@click.option('--input-res', type=int, default=None, help='Regressor input resolution  [default: half the generator\'s, at most 256]')
@click.option('--single-w', is_flag=True, help='Predict one w (W space) for every level')
@click.option('--trunc-range', default='0.5,1.0', show_default=True, help='Truncation psi range of the training data: LO,HI')
@click.option('--cond-pose', default='random', show_default=True, metavar='random|same|frontal', help='Pose the mapping network is conditioned on')
@click.option('--w-loss', type=float, default=1.0, show_default=True, help='Weight of the L1 loss on normalised w')
@click.option('--pose-loss', type=float, default=1.0, show_default=True, help='Weight of the pose loss')
@click.option('--pose-loss-type', default='smooth_l1', show_default=True, metavar='l1|smooth_l1', help='Pose loss')
@click.option('--img-loss', type=float, default=0.0, show_default=True, help='Weight of the image MSE through the generator')
@click.option('--lpips-loss', type=float, default=0.0, show_default=True, help='Weight of LPIPS through the generator (needs lpips with local weights)')
@click.option('--img-res', type=int, default=32, show_default=True, help='Neural rendering resolution of the image loss')
@click.option('--val-seeds', default='0-63', show_default=True, help='Held-out validation sample seeds')
@click.option('--reuse', type=int, default=4, show_default=True, help='On the fly: times each rendered pair is used')
@click.option('--workers', type=int, default=2, show_default=True, help='DataLoader processes for --data')
@click.option('--desc', default=None, help='String to add to the run folder name')
@device_option
@eg3d_option
def train(network_pkl, outdir, arch, arch_opts, batch, kimg, lr, lr_rampdown, snap, tick_kimg, seed, data_zip, resume, gpus, input_res,
          single_w, trunc_range, cond_pose, w_loss, pose_loss, pose_loss_type, img_loss, lpips_loss, img_res, val_seeds,
          reuse, workers, desc, device, eg3d):
    """Train an image -> (w, pose) regressor for an EG3D generator.

    \b
    Pairs are rendered by the generator on the fly (or read from --data); each tick prints the
    held-out latent L1 beside the mean-w baseline. Runs go to numbered folders in --outdir.

    \b
    Examples:
      # A few minutes on a laptop CPU with the tiny preset (on a CPU, a fixed set of renders
      # used many times learns far more per minute than rendering on the fly):
      eg3d-regress init-network --preset tiny --out tiny.pkl
      eg3d-regress dataset --network tiny.pkl --count 1000 --resolution 64 --dest pairs.zip
      eg3d-regress train --network tiny.pkl --data pairs.zip --outdir runs --kimg 60 \
          --arch psp --input-res 32 --single-w --lr-rampdown 0.5
      # Continue the newest run where it stopped:
      eg3d-regress train --network tiny.pkl --data pairs.zip --outdir runs --kimg 120 --resume latest
      # Two processes (DDP), another architecture:
      eg3d-regress train --network ffhq512-128.pkl --outdir runs --arch psp --gpus 2 --batch 32
    """
    # Options that need nothing loaded.
    if arch is not None and arch not in networks.ARCHS:
        raise UserError(f'--arch {arch!r}: unknown architecture; choose from {", ".join(networks.ARCHS)}')
    torchrun = _torchrun_world()
    world = torchrun[2] if torchrun else gpus
    _check(gpus >= 1, f'--gpus {gpus}: must be at least 1')
    _check(not torchrun or gpus in (1, world), f'--gpus {gpus} does not match torchrun\'s {world} processes')
    _check(batch >= 1, f'--batch {batch}: must be at least 1')
    _check(batch % world == 0, f'--batch {batch} is not divisible by the number of processes ({world})')
    _check(kimg > 0, f'--kimg {kimg:g}: must be positive')
    _check(lr > 0, f'--lr {lr:g}: must be positive')
    _check(0 <= lr_rampdown <= 1, f'--lr-rampdown {lr_rampdown:g}: must be between 0 and 1')
    _check(snap >= 1, f'--snap {snap}: must be at least 1')
    _check(tick_kimg is None or tick_kimg > 0, f'--tick {tick_kimg}: must be positive')
    _check(reuse >= 1, f'--reuse {reuse}: must be at least 1')
    _check(workers >= 0, f'--workers {workers}: cannot be negative')
    _check(img_res >= 8, f'--img-res {img_res}: must be at least 8')
    _check(cond_pose in data.COND_POSES, f'--cond-pose {cond_pose!r}: choose from {", ".join(data.COND_POSES)}')
    try:
        seeds = parse_range(val_seeds)
    except click.BadParameter as e:
        raise UserError(f'--val-seeds {e.message}') from None
    _check(len(seeds) >= 1, '--val-seeds: give at least one seed')
    trunc = data.parse_trunc_range(trunc_range)
    arch_kwargs = parse_arch_opts(arch_opts)
    base_device = devices.get_device(device)
    if base_device.type == 'cuda' and not torchrun and gpus > torch.cuda.device_count():
        raise UserError(f'--gpus {gpus}: only {torch.cuda.device_count()} CUDA device(s) here')

    # The generator, dataset and snapshot (each a one-line error when wrong).
    G = bridge.load_generator(network_pkl, device='cpu', eg3d=eg3d)
    if data_zip:
        data.PairDataset(data_zip, G=G)
    resume_path = ckpt = run_dir = None
    if resume:
        resume_path, ckpt, run_dir = loop.find_resume(resume, outdir, arch)
        fingerprint.check_fingerprint(ckpt['generator'], G, what=f'snapshot {resume_path}')
        if arch is not None and ckpt['arch'] != arch:
            raise UserError(f'--resume {resume_path} is a {ckpt["arch"]} snapshot, not --arch {arch}')
        arch = ckpt['arch']
        input_res = ckpt['config']['input_resolution']
    else:
        arch = arch or 'vit'
        input_res = input_res or min(256, G.img_resolution // 2)
        # Build once here so that a bad --arch-opt or --input-res fails before any process starts.
        networks.build_regressor(arch, num_ws=G.backbone.num_ws, w_dim=G.w_dim, input_resolution=input_res,
                                 single_w=single_w, **arch_kwargs)
    if lpips_loss:
        from .optimize import lpips_network
        lpips_network('cpu')
    if tick_kimg is None:
        tick_kimg = min(4.0, kimg / 20)
    del G

    # The run folder: the resumed run's, or a new numbered one (rank 0 decides under torchrun).
    options = dict(network_pkl=str(network_pkl), arch=arch, arch_kwargs=arch_kwargs, input_res=input_res,
                   single_w=single_w, batch=batch, kimg=kimg, lr=lr, lr_rampdown=lr_rampdown, tick_kimg=tick_kimg, snap=snap, seed=seed,
                   data_zip=data_zip, workers=workers, reuse=reuse, trunc_range=list(trunc), cond_pose=cond_pose,
                   w_loss=w_loss, pose_loss=pose_loss, pose_loss_type=pose_loss_type, img_loss=img_loss,
                   lpips_loss=lpips_loss, img_res=img_res, val_seeds=seeds, resume=str(resume_path) if resume_path else None)
    if run_dir is None:
        name = f'{arch}-{Path(data_zip).stem if data_zip else "synth"}-gpus{world}-batch{batch}' + (f'-{desc}' if desc else '')
        run_dir = loop.next_run_dir(outdir, name)
    kwargs = dict(options, run_dir=str(run_dir), eg3d=eg3d, options=options)
    resume_nimg = ckpt['state']['cur_nimg'] if ckpt is not None and Path(resume_path).parent.resolve() == Path(run_dir).resolve() else None

    if torchrun:
        rank, local_rank, world = torchrun
        dev = _rank_device(base_device, local_rank)
        _init_distributed(dev, rank, world, 'env://')
        holder = [str(run_dir)]
        torch.distributed.broadcast_object_list(holder, src=0)  # every rank uses rank 0's folder
        kwargs['run_dir'] = holder[0]
        if rank == 0:
            _prepare_run_dir(Path(holder[0]), options, eg3d, resume_nimg)
        torch.distributed.barrier()
        try:
            loop.training_loop(**kwargs, device=dev, rank=rank, world=world)
        finally:
            torch.distributed.destroy_process_group()
        return

    _prepare_run_dir(Path(run_dir), options, eg3d, resume_nimg)
    if world == 1:
        loop.training_loop(**kwargs, device=base_device)
        return
    with tempfile.TemporaryDirectory() as temp_dir:
        try:
            torch.multiprocessing.spawn(fn=_subprocess_fn, args=(kwargs, base_device, world, temp_dir), nprocs=world)
        except Exception:
            errors = sorted(Path(temp_dir).glob('error-*.txt'))
            if errors:
                raise UserError(errors[0].read_text()) from None
            raise


def _prepare_run_dir(run_dir, options, eg3d, resume_nimg):
    """Create the folder, record the options; when resuming, tidy what a killed run left behind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume_nimg is not None:
        loop.clean_resumed_run(run_dir, resume_nimg)
    root = bridge.import_eg3d(eg3d)
    record = dict(options, run_dir=str(run_dir), eg3d=str(root), eg3d_commit=bridge.eg3d_commit(root),
                  plugin_version=__version__, torch_version=torch.__version__, started=time.strftime('%Y-%m-%d %H:%M:%S'))
    with atomic_path(run_dir / 'training_options.json') as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2))


if __name__ == '__main__':
    train()  # pylint: disable=no-value-for-parameter
