"""Train a regressor (image -> w, pose) on pairs rendered by an EG3D generator.

The command checks its options (click's types, then what depends on several of them or on the
files) and hands over to training/launch.py. Library modules are imported inside the command so
that `--help` imports neither torch nor EG3D."""

import re
from pathlib import Path

import click

from .catalog import ARCHS
from .errors import UserError
from .options import Command, device_option, eg3d_option, network_option, parse_range, parse_trunc_range, sampling_options

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


class _OneLine:
    """A click type whose rejection of a value is the one-line error of the command (a UserError
    naming the flag, `why` saying what is wanted), not click's usage text. A value that is not
    even of the type (e.g. not a number) keeps click's own error."""

    def __init__(self, *args, why, **kwargs):
        super().__init__(*args, **kwargs)
        self.why = why

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            if not self._typed(value):
                raise
            raise UserError(f'{param.opts[0]} {value}: {self.why}') from None

    number = None  # the ranges: int or float; a value that is not one keeps click's error

    def _typed(self, value):
        try:
            return self.number is None or self.number(value) is not None
        except (TypeError, ValueError):
            return False


class _Choice(_OneLine, click.Choice):
    pass


class _IntRange(_OneLine, click.IntRange):
    number = int


class _FloatRange(_OneLine, click.FloatRange):
    number = float

def _check_real(spec, G, no_align):
    """Refuse a --real that cannot be used before any process starts (one line naming the flag)."""
    from .errors import require_extra
    from .training import data, real_data
    kind, _, info = real_data.read_entries(spec, what='--real')
    if kind == 'zip' and info['meta'] is not None:
        try:
            data.PairDataset(spec, G=G)
        except UserError as e:
            raise UserError(f'--real {e}' if not str(e).startswith('--real') else str(e)) from None
    elif kind == 'photos' and not no_align:
        require_extra('align', 'dlib')

#----------------------------------------------------------------------------

@click.command('train', cls=Command)
@network_option(help='EG3D network pickle')
@click.option('--outdir', required=True, metavar='DIR', help='Where to make the run folders')
@click.option('--arch', type=_Choice(ARCHS, why=f'unknown architecture; choose from {", ".join(ARCHS)}'), default=None,
              help='Regressor architecture  [default: vit; on resume: the snapshot\'s]')
@click.option('--arch-opt', 'arch_opts', multiple=True, metavar='KEY=VALUE', help='Architecture option, e.g. size=small (repeatable)')
@click.option('--batch', type=_IntRange(min=1, why='must be at least 1'), default=16, show_default=True,
              help='Total batch size (over all processes)')
@click.option('--kimg', type=_FloatRange(min=0, min_open=True, why='must be positive'), default=1000, show_default=True,
              help='Training length in thousands of pairs shown')
@click.option('--lr', type=_FloatRange(min=0, min_open=True, why='must be positive'), default=1e-3, show_default=True,
              help='Adam learning rate')
@click.option('--lr-rampdown', type=_FloatRange(0, 1, why='must be between 0 and 1'), default=0.0, show_default=True,
              metavar='FRACTION', help='Ramp the learning rate down to 0 (cosine) over this last fraction of --kimg')
@click.option('--snap', type=_IntRange(min=1, why='must be at least 1'), default=5, show_default=True,
              help='Snapshot every this many ticks')
@click.option('--tick', 'tick_kimg', type=_FloatRange(min=0, min_open=True, why='must be positive'), default=None,
              help='Progress/validation interval in kimg  [default: kimg/20, at most 4]')
@click.option('--seed', type=int, default=0, show_default=True, help='Random seed (weights and data)')
@click.option('--data', 'data_zip', default=None, metavar='ZIP', help='Dataset made by `eg3d-regress dataset`  [default: render on the fly]')
@click.option('--resume', default=None, metavar='PATH|latest', help='Continue from a snapshot, or the newest one in --outdir')
@click.option('--gpus', type=_IntRange(min=1, why='must be at least 1'), default=1, show_default=True,
              help='Number of processes (GPUs, or CPU processes with --device cpu)')
@click.option('--input-res', type=int, default=None, help='Regressor input resolution  [default: half the generator\'s, at most 256]')
@click.option('--single-w', is_flag=True, help='Predict one w (W space) for every level')
@sampling_options
@click.option('--w-loss', type=float, default=1.0, show_default=True, help='Weight of the L1 loss on normalised w')
@click.option('--pose-loss', type=float, default=1.0, show_default=True, help='Weight of the pose loss')
@click.option('--pose-loss-type', default='smooth_l1', show_default=True, metavar='l1|smooth_l1', help='Pose loss')
@click.option('--img-loss', type=float, default=0.0, show_default=True, help='Weight of the image MSE through the generator')
@click.option('--lpips-loss', type=float, default=0.0, show_default=True, help='Weight of LPIPS through the generator (needs lpips with local weights)')
@click.option('--img-res', type=_IntRange(min=8, why='must be at least 8'), default=32, show_default=True,
              help='Neural rendering resolution of the image loss')
@click.option('--val-seeds', default='0-63', show_default=True, help='Held-out validation sample seeds')
@click.option('--reuse', type=_IntRange(min=1, why='must be at least 1'), default=4, show_default=True,
              help='On the fly: times each rendered pair is used')
@click.option('--workers', type=_IntRange(min=0, why='cannot be negative'), default=2, show_default=True,
              help='DataLoader processes for --data')
@click.option('--real', default=None, metavar='ZIP|DIR|GLOB',
              help='Real images to mix in: an EG3D dataset zip, a `label` zip, or photos (aligned on loading)')
@click.option('--real-ratio', type=_FloatRange(0, 1, min_open=True, why='must be in (0, 1]'), default=0.5, show_default=True,
              help='Share of real images in each batch (with --real)')
@click.option('--real-style', type=_FloatRange(0, 1, why='must be in [0, 1]'), default=0.5, show_default=True,
              help='Share of the synthetic pairs styled like the --real images (their backgrounds, crop jitter, '
                   'blur, noise, JPEG), labels kept; 0: none')
@click.option('--real-no-align', is_flag=True, help='--real photos are EG3D-style crops already: only resize them')
@click.option('--id-loss', type=_FloatRange(min=0, why='cannot be negative'), default=0.1, show_default=True,
              help='Weight of the identity loss on real images (dlib\'s face-recognition network)')
@click.option('--real-img-loss', type=_FloatRange(min=0, why='cannot be negative'), default=1.0, show_default=True,
              help='Weight of the pixel MSE on real images (through the generator, at the predicted pose)')
@click.option('--real-w-loss', type=_FloatRange(min=0, why='cannot be negative'), default=0.0, show_default=True,
              help='Weight of the L1 to the pseudo-label w of a `label` zip\'s images (0: off; labels made with '
                   'this regressor hold its predictions where they were)')
@click.option('--real-reg', type=_FloatRange(min=0, why='cannot be negative'), default=0.1, show_default=True,
              help='Weight of the W+ delta regularisation on real images (e4e)')
@click.option('--real-holdout', type=_IntRange(min=0, why='cannot be negative'), default=8, show_default=True,
              help='Real images held out for validation')
@click.option('--desc', default=None, help='String to add to the run folder name')
@device_option
@eg3d_option
def train(network_pkl, outdir, arch, arch_opts, batch, kimg, lr, lr_rampdown, snap, tick_kimg, seed, data_zip, resume, gpus, input_res,
          single_w, trunc_range, cond_pose, w_loss, pose_loss, pose_loss_type, img_loss, lpips_loss, img_res, val_seeds,
          reuse, workers, real, real_ratio, real_style, real_no_align, id_loss, real_img_loss, real_w_loss, real_reg, real_holdout, desc, device, eg3d):
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
      # Mix in real photos (labelled by `eg3d-regress label`, or a folder aligned on loading):
      eg3d-regress train --network tiny.pkl --data pairs.zip --outdir runs --kimg 2 --real photos/ --real-ratio 0.25
      # Two processes (DDP), another architecture:
      eg3d-regress train --network ffhq512-128.pkl --outdir runs --arch psp --gpus 2 --batch 32
    """
    # What click's types cannot check: options that depend on each other, lists.
    import torch
    from . import bridge, devices, fingerprint
    from .training import data, distributed, launch, networks
    torchrun = distributed.torchrun_world()
    world = torchrun[2] if torchrun else gpus
    if torchrun and gpus not in (1, world):
        raise UserError(f'--gpus {gpus} does not match torchrun\'s {world} processes')
    if batch % world:
        raise UserError(f'--batch {batch} is not divisible by the number of processes ({world})')
    try:
        seeds = parse_range(val_seeds)
    except click.BadParameter as e:
        raise UserError(f'--val-seeds {e.message}') from None
    if not seeds:
        raise UserError('--val-seeds: give at least one seed')
    trunc = parse_trunc_range(trunc_range)
    arch_kwargs = parse_arch_opts(arch_opts)
    base_device = devices.get_device(device)
    if base_device.type == 'cuda' and not torchrun and gpus > torch.cuda.device_count():
        raise UserError(f'--gpus {gpus}: only {torch.cuda.device_count()} CUDA device(s) here')

    # The generator, dataset and snapshot (each a one-line error when wrong).
    G = bridge.load_generator(network_pkl, device='cpu', eg3d=eg3d)
    if data_zip:
        data.PairDataset(data_zip, G=G)
    if real:
        _check_real(real, G, real_no_align)
    resume_path = ckpt = run_dir = None
    if resume:
        resume_path, ckpt, run_dir = launch.find_resume(resume, outdir, arch)
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
                   lpips_loss=lpips_loss, img_res=img_res, val_seeds=seeds, resume=str(resume_path) if resume_path else None,
                   real=real, real_ratio=real_ratio, real_style=real_style, real_align=not real_no_align, id_loss=id_loss,
                   real_img_loss=real_img_loss, real_w_loss=real_w_loss, real_reg=real_reg, real_holdout=real_holdout)
    if run_dir is None:
        name = f'{arch}-{Path(data_zip).stem if data_zip else "synth"}-gpus{world}-batch{batch}' + ('-real' if real else '') + (f'-{desc}' if desc else '')
        run_dir = launch.next_run_dir(outdir, name)
    resume_nimg = ckpt['state']['cur_nimg'] if ckpt is not None and Path(resume_path).parent.resolve() == Path(run_dir).resolve() else None
    launch.launch_training(options, run_dir, base_device, world, eg3d=eg3d, resume_nimg=resume_nimg, torchrun=torchrun)


if __name__ == '__main__':
    train()  # pylint: disable=no-value-for-parameter
