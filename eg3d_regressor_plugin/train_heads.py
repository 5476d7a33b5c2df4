"""Train a small EG3D generator (EG3D's own TriPlaneGenerator, the `tiny` preset by default) to draw the
procedural 3D heads of heads.py, so that demos and tests have a generator whose renders are
recognisable heads with known truth (each z's head parameters: heads.head_params)."""

import click

from .catalog import HEADS_TRAINING as DEFAULTS, PRESETS
from .errors import UserError
from .options import Command, device_option, eg3d_option


@click.command('train-heads', cls=Command)
@click.option('--out', 'out', required=True, metavar='PKL', help='Network pickle to write (and its PKL.state.pt)')
@click.option('--steps', type=int, default=1000, show_default=True,
              help='Total training steps (a resumed run continues up to this count)')
@click.option('--batch', type=int, default=DEFAULTS['batch'], show_default=True, help='Heads per step')
@click.option('--lr', type=float, default=DEFAULTS['lr'], show_default=True, help='Adam learning rate')
@click.option('--depth-weight', type=float, default=DEFAULTS['depth_weight'], show_default=True,
              help='Weight of the L1 depth loss')
@click.option('--raw-weight', type=float, default=DEFAULTS['raw_weight'], show_default=True,
              help='Weight of the L1 loss on image_raw')
@click.option('--surface-weight', type=float, default=DEFAULTS['surface_weight'], show_default=True,
              help='Weight of the 3D losses on the density and colour at points around the true surface (0: off)')
@click.option('--preset', type=click.Choice(list(PRESETS)), default=None,
              help='Generator configuration of a new run (see init-network)  [default: tiny; --resume and --init '
                   'keep their generator\'s]')
@click.option('--nr-res', type=int, default=None, metavar='INT',
              help='Neural rendering resolution while training (lower is faster)  [default: the preset\'s: 64 for tiny]')
@click.option('--snap', type=int, default=DEFAULTS['snapshot_every'], show_default=True,
              help='Write a snapshot every this many steps')
@click.option('--heads', 'num_heads', type=int, default=None, metavar='INT',
              help='Train on a fixed set of this many heads  [default: a fresh z every step]')
@click.option('--resume', is_flag=True, help='Continue the run saved in --out')
@click.option('--init', metavar='PKL|shipped', default=None,
              help='Start from this train-heads pickle\'s generator, or the shipped one, at its step (a fresh '
                   f'optimiser, its rate ramped up over the first {DEFAULTS["warmup"]} steps)')
@click.option('--seed', type=int, default=0, show_default=True, help='Random seed (weights, heads and cameras)')
@device_option
@eg3d_option
def train_heads(out, steps, batch, lr, depth_weight, raw_weight, surface_weight, preset, nr_res, snap, num_heads,
                resume, init, seed, device, eg3d):
    """Train EG3D's generator to draw procedural 3D heads with known truth.

    Each z is mapped by a fixed rule to a head (shape, colours; see heads.PARAM_RANGES); the
    generator learns to render that head at FFHQ-like cameras by L1 on image, image_raw and
    depth against heads.py's volume renders, and (--surface-weight) by fitting its 3D density
    and colour to the true head's along the same rays. Snapshots are ordinary EG3D network pickles (EG3D's
    legacy.load_network_pkl loads them), written atomically with a state file beside them, so an
    interrupted run continues with --resume.

    \b
    Example:
      eg3d-regress train-heads --out heads.pkl --steps 300 --nr-res 32
      eg3d-regress train-heads --out heads.pkl --steps 600 --nr-res 32 --resume
      # A larger generator (256 px), e.g. on a GPU:
      eg3d-regress train-heads --out heads-small.pkl --preset small --steps 20000 --device cuda
      # Train the shipped generator on from its step, e.g. on a GPU:
      eg3d-regress train-heads --out heads.pkl --init shipped --steps 20000 --lr 1e-3
    """
    if steps < 1:
        raise UserError(f'--steps {steps}: expected at least 1')
    if batch < 1:
        raise UserError(f'--batch {batch}: expected at least 1')
    if not lr > 0:
        raise UserError(f'--lr {lr}: expected a positive learning rate')
    for name, value in (('--depth-weight', depth_weight), ('--raw-weight', raw_weight),
                        ('--surface-weight', surface_weight)):
        if not value >= 0:
            raise UserError(f'{name} {value}: expected a value >= 0')
    if init and resume:
        raise UserError('--init with --resume: choose one (--resume continues the run in --out with its optimiser; '
                        '--init starts a new run from another generator)')
    if preset and (resume or init):
        raise UserError(f'--preset {preset} with --{"resume" if resume else "init"}: that run keeps its generator\'s '
                        'configuration; --preset is for a new run')
    if nr_res is not None:  # a resumed or initialised generator's own resolution is checked when it is loaded
        res = None if (resume or init) else PRESETS[preset or 'tiny']['res']
        if nr_res < 8 or (res and res % nr_res):
            where = f'the {res} px image resolution' if res else "the generator's image resolution"
            raise UserError(f'--nr-res {nr_res}: expected a divisor of {where}, at least 8 (e.g. 32, 64)')
    if snap < 1:
        raise UserError(f'--snap {snap}: expected at least 1')
    if num_heads is not None and num_heads < 1:
        raise UserError(f'--heads {num_heads}: expected at least 1')
    if seed < 0:
        raise UserError(f'--seed {seed}: expected an integer >= 0')
    from . import bridge, devices, heads_training
    dev = devices.get_device(device)
    bridge.import_eg3d(eg3d)
    result = heads_training.train_heads(out, steps=steps, batch=batch, lr=lr, seed=seed, resume=resume, device=dev,
                                        preset=preset or 'tiny',
                                        depth_weight=depth_weight, raw_weight=raw_weight, surface_weight=surface_weight,
                                        neural_rendering_resolution=nr_res, snapshot_every=snap,
                                        num_heads=num_heads, init=init)
    last = result['history'][-1] if result['history'] else None
    loss = f', loss {last[1]:.4f} (image {last[2]:.4f}, depth {last[4]:.4f})' if last else ''
    click.echo(f'Wrote {out}: step {result["step"]}{loss}')


if __name__ == '__main__':
    train_heads()  # pylint: disable=no-value-for-parameter
