"""Train a semantic boundary (InterFaceGAN) from scored latent codes, optionally conditioned to be
orthogonal to other boundaries, and save it with its description. The work is in boundaries.py
and codes.py, imported when the command runs so that `--help` loads neither torch nor EG3D."""

import click

from .options import Command, device_option, eg3d_option, layers_option, network_option


def _fmt(acc):
    return 'n/a' if acc is None else f'{acc:.4f}'


@click.command('boundary', cls=Command)
@click.option('--codes', 'codes_dir', required=True, metavar='DIR', help='Folder of the codes (sample-codes output)')
@click.option('--scores', 'scores_csv', required=True, metavar='CSV',
              help='code_path,score rows (paths relative to the CSV or to --codes)')
@click.option('--out', 'out', required=True, metavar='NPY', help='Boundary file to write (a .json is written beside it)')
@click.option('--attribute', default=None, metavar='NAME', help='Attribute name stored with it  [default: the file name]')
@click.option('--space', type=click.Choice(['w', 'wplus']), default='w', show_default=True,
              help='Train on w (each code\'s first level, [1,512]) or on W+ flattened ([1,14*512])')
@click.option('--ratio', 'ratio', type=click.FloatRange(min=0, min_open=True), default=0.02, show_default=True,
              help='Top and bottom fraction (<= 1) or count (> 1) of codes used as positives and negatives')
@click.option('--split', 'split_ratio', type=click.FloatRange(0, 1, min_open=True), default=0.7, show_default=True,
              help='Fraction of them used for training; the rest validates')
@click.option('--svm', type=click.Choice(['linear_svc', 'svc']), default='linear_svc', show_default=True,
              help='scikit-learn LinearSVC, or SVC(kernel=linear) as InterFaceGAN')
@click.option('--condition', 'conditions', multiple=True, metavar='NPY',
              help='Boundary to stay orthogonal to (repeatable): conditional editing')
@layers_option(default='all', help='W+ levels `edit` applies it to by default (0-7, coarse, middle, fine, all)')
@click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True, help='Seed of the train/validation split')
@network_option(required=False,
                help='Generator of the codes, for the fingerprint  [default: the codes folder\'s generator.json]')
@eg3d_option
@device_option
def boundary(codes_dir, scores_csv, out, attribute, space, ratio, split_ratio, svm, conditions, layers, seed,
             network_pkl, eg3d, device):
    """Find the direction in latent space along which a scored attribute grows (InterFaceGAN).

    The codes with the highest and lowest scores are separated by a linear SVM; the unit normal of
    its hyperplane, pointing toward higher scores, is the boundary. Prints train/validation
    accuracy; writes OUT (float32 [1, 512] for --space w, [1, 14*512] for wplus: InterFaceGAN's
    format) and OUT with .json (attribute, space, layers, accuracy, counts, generator fingerprint).

    Examples:

    \b
    # A smile boundary from labelled sample-codes output.
    eg3d-regress boundary --codes=codes --scores=codes/scores.csv --attribute=smile --out=smile.npy

    \b
    # Smile without changing age or glasses, in W+, for the coarse and middle levels.
    python -m eg3d_regressor_plugin.boundary --codes=codes --scores=smile.csv --space=wplus \\
        --condition=age.npy --condition=glasses.npy --layers=0-7 --out=smile_cond.npy
    """
    from pathlib import Path

    import numpy as np

    from . import __version__, boundaries, codes
    from . import latent_interp as li
    from .errors import UserError

    if not Path(codes_dir).is_dir():
        raise UserError(f'--codes {codes_dir}: no such folder')
    fingerprint = codes.read_fingerprint(codes_dir)
    if network_pkl is not None:
        from . import bridge, devices
        G = bridge.load_generator(network_pkl, device=devices.get_device(device), eg3d=eg3d)
        fingerprint = codes.match_fingerprint(fingerprint, G, codes_dir, network=network_pkl)
    num_ws = fingerprint['num_ws'] if fingerprint else None
    w_dim = fingerprint['w_dim'] if fingerprint else None

    data = codes.load_scores(scores_csv, codes_dir, num_ws=num_ws, w_dim=w_dim)
    num_ws, w_dim = data.codes.shape[1:]
    level_list = li.parse_layers(layers, num_ws)
    conds = boundaries.load_conditions(conditions, space, num_ws, w_dim, generator=fingerprint)
    if space == 'w' and not np.allclose(data.codes, data.codes[:, :1]):
        click.echo('note: the codes differ across W+ levels; --space w uses the first level only', err=True)

    b, info = boundaries.train_boundary(codes.codes_in_space(data.codes, space), data.scores,
                                        chosen_num_or_ratio=ratio, split_ratio=split_ratio, svm=svm, seed=seed)
    primal_b = b
    if conds:
        b = boundaries.project_boundary(b, *conds)
    attribute = attribute or Path(out).stem
    meta = dict(attribute=attribute, space=space, shape=list(b.shape), layers=li.format_layers(level_list, num_ws),
                num_ws=int(num_ws), w_dim=int(w_dim), generator=fingerprint,
                accuracy=dict(train=info['train']['accuracy'], val=info['val']['accuracy'],
                              remaining=info['remaining']['accuracy']),
                counts=dict(codes=info['num_codes'], unlabelled=data.unlabelled, chosen=info['chosen_num'],
                            train=info['train'], val=info['val'], remaining=info['remaining']),
                ratio=ratio, split_ratio=split_ratio, svm=svm, seed=seed, converged=info['converged'],
                threshold=info['threshold'], conditions=[str(c) for c in conditions],
                cos_to_unconditioned=float(np.dot(primal_b.ravel(), b.ravel())) if conds else None,
                codes=str(codes_dir), scores=str(scores_csv), created_by=f'eg3d-regressor-plugin {__version__}')
    path = boundaries.save_boundary(out, b, meta)
    val = info['val']
    click.echo(f'{attribute}: validation accuracy {_fmt(val["accuracy"])} '
               f'({val["positive"]} + {val["negative"]} codes), train {_fmt(info["train"]["accuracy"])} '
               f'({info["train"]["positive"]} + {info["train"]["negative"]}), remaining '
               f'{_fmt(info["remaining"]["accuracy"])} ({info["num_codes"] - 2 * info["chosen_num"]})')
    if conds:
        click.echo(f'conditioned on {len(conds)} boundar{"y" if len(conds) == 1 else "ies"}: '
                   f'cosine to the unconditioned boundary {meta["cos_to_unconditioned"]:.4f}')
    if not info['converged']:
        click.echo('note: the SVM did not fully converge; try --svm svc or more codes', err=True)
    if fingerprint is None:
        click.echo(f'note: no generator fingerprint ({Path(codes_dir) / "generator.json"} missing, no --network): '
                   f'edit cannot check that the boundary matches its generator', err=True)
    click.echo(f'Wrote {path} [{b.shape[0]}, {b.shape[1]}] and {path.with_suffix(".json").name}')


if __name__ == '__main__':
    boundary()  # pylint: disable=no-value-for-parameter
