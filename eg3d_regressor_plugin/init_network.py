"""Build a randomly initialised EG3D generator (and discriminator) and save it as an EG3D
network pickle that EG3D's own legacy.load_network_pkl and scripts load."""

import click

from .catalog import PRESETS
from .options import Command, eg3d_option


@click.command('init-network', cls=Command)
@click.option('--preset', type=click.Choice(list(PRESETS) + ['heads']), default='tiny', show_default=True,
              help='Generator configuration, or `heads`: the trained demo generator shipped with the plugin')
@click.option('--out', 'out', required=True, metavar='FILE', help='Where to write the network pickle')
@click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True, help='Random seed of the weights')
@eg3d_option
def init_network(preset, out, seed, eg3d):
    """Write a randomly initialised EG3D network pickle (no pretrained weights needed).

    \b
    Presets:
      ffhq512  the released FFHQ-512 model's configuration (same parameter shapes as ffhq512-128.pkl)
      ffhq256  the FFHQ configuration at 256 px
      small    256 px, laptop-sized
      tiny     128 px, about 1.8 M parameters, z_dim 32 (calibrated): tests and demos on a CPU
      heads    not random: the `tiny` generator trained by `train-heads` to draw procedural 3D
               heads, whose weights ship with the plugin (the demo generator; --seed is ignored)

    EG3D's own initialisation renders largely clamped frames that respond to w chaotically; `tiny`
    is rescaled (opaque surfaces, a smooth response to w) so that a regressor can be trained on
    it; see presets.calibrate_init.

    \b
    Example:
      eg3d-regress init-network --preset tiny --out tiny.pkl --seed 0
      eg3d-regress init-network --preset heads --out heads.pkl
    """
    from . import bridge, presets
    from .training.networks import count_params
    bridge.import_eg3d(eg3d)
    if preset == 'heads':
        from .heads_training import shipped_networks
        G, D, kwargs = shipped_networks()
    else:
        G, D = presets.build_networks(preset, seed=seed)
        kwargs = dict(resolution=G.img_resolution, use_labels=True)
    presets.save_network_pkl(out, G, D, training_set_kwargs=kwargs)
    click.echo(f'Wrote {out}: preset {preset}, {G.img_resolution} px, w {G.backbone.num_ws} x {G.w_dim}, '
               f'{count_params(G):,} generator parameters')


if __name__ == '__main__':
    init_network()  # pylint: disable=no-value-for-parameter
