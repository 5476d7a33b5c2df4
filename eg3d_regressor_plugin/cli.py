"""The `eg3d-regress` command group. Commands load lazily so `--help` stays fast."""

import importlib
import importlib.util

import click

from . import __version__

# command name -> (module, function) under eg3d_regressor_plugin; one module per command.
COMMANDS = {
    'doctor': ('doctor', 'doctor'),
    'init-network': ('init_network', 'init_network'),
    'train-heads': ('train_heads', 'train_heads'),
    'dataset': ('dataset_tool', 'make_dataset'),
    'label': ('label', 'label'),
    'train': ('train', 'train'),
    'gen': ('gen_from_image', 'gen'),
    'eval': ('calc_metrics', 'calc_metrics'),
    'sample-codes': ('sample_codes', 'sample_codes'),
    'boundary': ('boundary', 'boundary'),
    'edit': ('edit', 'edit'),
    'interp': ('gen_interp', 'interp'),
    'app': ('app', 'app'),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name):
        return importlib.util.find_spec(f'eg3d_regressor_plugin.{COMMANDS[name][0]}') is not None

    def get_command(self, ctx, name):
        if name not in COMMANDS or not self._available(name):
            return None
        module, func = COMMANDS[name]
        return getattr(importlib.import_module(f'eg3d_regressor_plugin.{module}'), func)


@click.group(cls=LazyGroup, context_settings=dict(help_option_names=['-h', '--help'], max_content_width=110))
@click.version_option(__version__, prog_name='eg3d-regress')
def main():
    """EG3D latent regressors: one face image -> w (14 x 512) and camera pose -> 3D face.

    \b
    Quick start (no pretrained weights needed):
      eg3d-regress init-network --preset tiny --out G.pkl
      eg3d-regress train --network G.pkl --outdir runs --kimg 2
      eg3d-regress gen --network G.pkl --regressor runs/00000-*/regressor-snapshot-*.pt --image face.png --outdir out
    """


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
