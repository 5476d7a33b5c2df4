"""Sample latent codes to label: w codes of random seeds, a frontal render of each, and a scores.csv
template. Labelled, they train semantic boundaries with `eg3d-regress boundary`. The work is in
codes.py, imported when the command runs so that `--help` loads neither torch nor EG3D."""

import click

from .options import Command, device_option, eg3d_option, network_option

#----------------------------------------------------------------------------

@click.command('sample-codes', cls=Command)
@network_option(help='EG3D network pickle')
@click.option('--count', type=click.IntRange(min=1), required=True, help='How many codes')
@click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True, help='First seed (seeds SEED..SEED+COUNT-1)')
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi')
@click.option('--images/--no-images', default=True, show_default=True, help='Render each code at the frontal camera')
@click.option('--head-scores', 'head_param', default=None, metavar='PARAM',
              help='A generator from train-heads: fill scores.csv with each code\'s true head parameter PARAM '
                   '(smile, nose_length, skin_tone, ...; heads.PARAM_RANGES)')
@click.option('--outdir', required=True, metavar='DIR', help='Output folder (replaced as a whole when complete)')
@eg3d_option
@device_option
def sample_codes(network_pkl, count, seed, truncation_psi, images, head_param, outdir, eg3d, device):
    """Write random w codes, a frontal render of each, and a scores.csv to fill in.

    Writes to OUTDIR: seed<NNNN>.npy (float32 [1, 14, 512], all levels equal: EG3D's mapping
    output), seed<NNNN>.png (frontal render), scores.csv (code_path,score with the scores empty:
    fill them in from any attribute classifier or by hand; rows left empty are skipped), and
    generator.json (the generator fingerprint, which `boundary` stores with the boundary).
    An OUTDIR whose scores.csv already holds scores is refused rather than overwritten.

    For the demo generator of `train-heads`, whose every code has a known head, --head-scores
    PARAM writes the true value of that head parameter as each code's score (heads.seed_scores),
    so that `boundary` learns a direction for a real, measurable attribute.

    Examples:

    \b
    # 2000 codes to label for a smile boundary.
    eg3d-regress sample-codes --network=ffhq512-128.pkl --count=2000 --trunc=0.7 --outdir=codes

    \b
    # Codes only, no renders (e.g. to score with a classifier that renders itself).
    python -m eg3d_regressor_plugin.sample_codes --network=G.pkl --count=500 --seed=1000 --no-images --outdir=codes

    \b
    # The heads demo generator: codes scored by their true smile, then the smile boundary.
    eg3d-regress sample-codes --network=heads.pkl --count=1000 --head-scores=smile --outdir=smile_codes
    eg3d-regress boundary --codes=smile_codes --scores=smile_codes/scores.csv --out=smile.npy
    """
    from pathlib import Path

    from . import bridge, codes, devices
    from .errors import UserError
    from .files import atomic_dir, check_outdir

    existing = Path(outdir) / codes.SCORES_CSV
    if existing.is_file() and codes.filled_scores(existing):
        raise UserError(f'{existing} already holds {codes.filled_scores(existing)} scores; '
                        f'choose another --outdir or move it away first')
    check_outdir(outdir)
    if head_param is not None:
        from . import heads
        if head_param not in heads.PARAM_RANGES:
            raise UserError(f'--head-scores {head_param}: not a head parameter; choose from '
                            f'{", ".join(heads.PARAM_NAMES)}')
        if truncation_psi != 1:
            raise UserError(f'--head-scores with --trunc {truncation_psi}: a truncated code has no known head '
                            '(its z\'s head is the truth only at --trunc 1)')
    device = devices.get_device(device)
    G, snapshot_kwargs = bridge.load_snapshot(network_pkl, device=device, eg3d=eg3d)
    seeds = list(range(seed, seed + count))
    scores = None
    if head_param is not None:
        from .heads_training import heads_step
        if heads_step(snapshot_kwargs) is None:
            raise UserError(f'--head-scores needs a generator trained by `eg3d-regress train-heads`; {network_pkl} '
                            'is another network, whose codes have no known heads')
        scores = heads.seed_scores(seeds, G.z_dim, head_param)
    with atomic_dir(outdir) as tmp:
        codes.write_codes(tmp, G, seeds, truncation_psi=truncation_psi, images=images, device=device,
                          network=network_pkl, scores=scores, attribute=head_param)
    if scores is not None:
        click.echo(f'Wrote {count} codes{" and renders" if images else ""} to {outdir}, scored by their true '
                   f'{head_param}; next: `eg3d-regress boundary`')
    else:
        click.echo(f'Wrote {count} codes{" and renders" if images else ""} to {outdir}; '
                   f'fill in {Path(outdir) / codes.SCORES_CSV}, then run `eg3d-regress boundary`')


if __name__ == '__main__':
    sample_codes()  # pylint: disable=no-value-for-parameter
