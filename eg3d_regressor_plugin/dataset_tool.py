"""`eg3d-regress dataset`: render a synthetic training dataset (images, camera labels and w codes)
into one zip in EG3D's dataset_tool layout. The command checks its options and calls
training/dataset_writer.py, which does the work (resumable; see there). Library modules are
imported inside the command so that `--help` imports neither torch nor EG3D."""

from pathlib import Path

import click

from .errors import UserError
from .options import Command, device_option, eg3d_option, network_option, parse_trunc_range, sampling_options


@click.command('dataset', cls=Command)
@network_option(help='EG3D network pickle')
@click.option('--count', type=int, required=True, help='Number of pairs to render')
@click.option('--dest', required=True, metavar='ZIP', help='Output dataset zip')
@click.option('--seed', type=int, default=0, show_default=True, help='Random seed')
@sampling_options
@click.option('--batch', type=int, default=16, show_default=True, help='Pairs rendered per batch (and per shard)')
@click.option('--resolution', type=int, default=None, help='Image resolution  [default: the generator\'s]')
@click.option('--workers', type=int, default=None, help='Rendering processes  [default: 1 on a GPU; on a CPU, by its cores]')
@device_option
@eg3d_option
def make_dataset(network_pkl, count, dest, seed, trunc_range, cond_pose, batch, resolution, workers, device, eg3d):
    """Render synthetic (image, w, pose) pairs into a dataset zip (EG3D's dataset_tool layout plus
    the w codes). An interrupted run continues where it stopped when rerun with the same options.

    \b
    Example:
      eg3d-regress dataset --network tiny.pkl --count 5000 --dest pairs.zip --resolution 64
      eg3d-regress train --network tiny.pkl --data pairs.zip --outdir runs
    """
    trunc = parse_trunc_range(trunc_range)
    if Path(dest).suffix.lower() != '.zip':
        raise UserError(f'--dest {dest}: must end in .zip')
    if Path(dest).exists():
        raise UserError(f'--dest {dest} already exists; delete it or choose another name')
    if workers is not None and workers < 1:
        raise UserError(f'--workers {workers}: must be at least 1')
    if count < 1 or batch < 1:
        raise UserError(f'--count and --batch must be at least 1 (got {count}, {batch})')
    if resolution is not None and not 8 <= resolution <= 4096:
        raise UserError(f'--resolution {resolution}: expected 8 to 4096')

    import torch
    from . import bridge, devices
    from .training import dataset_writer
    dev = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=dev, eg3d=eg3d)
    with torch.no_grad():
        out = dataset_writer.make_dataset_zip(G, dest, count, seed, trunc, batch, resolution, cond_pose,
                                              network=network_pkl, workers=workers or dataset_writer.default_workers(dev))
    click.echo(f'Wrote {out}: {count} pairs')


if __name__ == '__main__':
    make_dataset()  # pylint: disable=no-value-for-parameter
