"""`eg3d-regress label`: real photos -> a training set. Each photo is aligned, its (w, pose)
regressed and refined, and all is written in the zip layout `dataset` writes (labelling.py does
the work). Library modules are imported inside the command so that `--help` imports no torch."""

from pathlib import Path

import click

from .errors import UserError
from .options import Command, device_option, eg3d_option, network_option, refine_options, regressor_option


@click.command('label', cls=Command)
@network_option(help='EG3D network pickle')
@regressor_option()
@click.option('--images', 'spec', required=True, metavar='PATH|DIR|GLOB|ZIP',
              help='Photos (file, folder or glob), or an EG3D dataset zip of crops with dataset.json camera labels')
@click.option('--dest', required=True, metavar='ZIP', help='Output training set zip')
@click.option('--no-align', is_flag=True, help='The photos are EG3D-style crops already: only resize them (a zip never is aligned)')
@click.option('--predict-pose', is_flag=True, help='For a zip without camera labels: use the regressor\'s pose')
@refine_options('Refine each photo\'s W+ for N steps (renders) from the regressor\'s prediction')
@click.option('--batch', type=click.IntRange(min=1), default=8, show_default=True, help='Photos per shard (the unit of resuming)')
@click.option('--workers', type=click.IntRange(min=1), default=2, show_default=True, help='Alignment processes')
@device_option
@eg3d_option
def label(network_pkl, regressor_path, spec, dest, no_align, predict_pose, refine_steps, refine_optimizer, refine_lr,
          batch, workers, device, eg3d):
    """Turn real photos into a training set for `train --real` (and `train --data`).

    \b
    Each photo is aligned (EG3D's FFHQ crop), its w and pose predicted by --regressor, its W+
    refined for --refine-steps, and written with its camera label, its w and its reconstruction
    PSNR (labels.csv inside the zip). Photos without a face, or that do not read, are skipped and
    listed. An interrupted run continues where it stopped when rerun with the same options.

    \b
    Examples:
      eg3d-regress label --network ffhq512-128.pkl --regressor regressor.pt --images photos/ \\
          --dest photos-labelled.zip --refine-steps 50
      eg3d-regress label --network ffhq512-128.pkl --regressor regressor.pt --images FFHQ_512.zip \\
          --dest ffhq-labelled.zip --refine-steps 20
    """
    if Path(dest).suffix.lower() != '.zip':
        raise UserError(f'--dest {dest}: must end in .zip')
    if Path(dest).exists():
        raise UserError(f'--dest {dest} already exists; delete it or choose another name')
    from . import bridge, devices, labelling
    dev = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=dev, eg3d=eg3d)
    try:
        out = labelling.label_photos(G, regressor_path, spec, dest, align=not no_align, refine_steps=refine_steps,
                                     refine_lr=refine_lr, refine_optimizer=refine_optimizer, predict_pose=predict_pose,
                                     batch=batch, workers=workers, device=dev, log=click.echo)
    except UserError as e:  # name the flags, not the library's parameters
        msg = str(e).replace('spec ', '--images ', 1).replace('pass predict_pose', 'pass --predict-pose')
        raise UserError(msg) from None
    for s in out['skipped']:
        click.echo(f'Skipped {s["name"]}: {s["reason"]}')
    mean = f'{out["psnr_mean"]:.2f} dB' if out['psnr_mean'] is not None else '-'
    click.echo(f'Wrote {out["dest"]}: {out["labelled"]} photos labelled, {len(out["skipped"])} skipped; '
               f'mean reconstruction PSNR {mean}')


if __name__ == '__main__':
    label()  # pylint: disable=no-value-for-parameter
