"""Sample latent codes to label: w codes of random seeds, a frontal render of each, and a scores.csv
template. Labelled, they train semantic boundaries with `eg3d-regress boundary`."""

import csv
import io as _io
import json
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from . import cameras
from . import bridge, devices, fingerprint
from . import render
from .errors import UserError
from .files import atomic_dir, save_image, save_npy
from .images import to_uint8
from .options import Command, device_option, eg3d_option

GENERATOR_JSON = 'generator.json'   # the generator fingerprint beside sampled codes
SCORES_CSV = 'scores.csv'


def code_name(seed):
    return f'seed{seed:04d}'


def sample_w(G, seed, truncation_psi=1.0, device='cpu'):
    """w [1, num_ws, w_dim] of a seed as EG3D's gen_samples.py draws it: z from
    np.random.RandomState(seed), mapped with the frontal camera as conditioning."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float().to(device)
    c = cameras.frontal_label(1, device=device)
    with torch.no_grad():
        return G.mapping(z, c, truncation_psi=truncation_psi)


def filled_scores(csv_path):
    """How many rows of an existing scores CSV already hold a score (to refuse overwriting them)."""
    try:
        rows = list(csv.reader(Path(csv_path).read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0
    return sum(1 for r in rows[1:] if len(r) >= 2 and r[1].strip())


def read_fingerprint(codes_dir):
    """The generator fingerprint sample-codes wrote beside the codes, or None."""
    path = Path(codes_dir) / GENERATOR_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())['generator']
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UserError(f'{path}: not a generator fingerprint written by sample-codes') from None

#----------------------------------------------------------------------------

@click.command('sample-codes', cls=Command)
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='EG3D network pickle')
@click.option('--count', type=click.IntRange(min=1), required=True, help='How many codes')
@click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True, help='First seed (seeds SEED..SEED+COUNT-1)')
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi')
@click.option('--images/--no-images', default=True, show_default=True, help='Render each code at the frontal camera')
@click.option('--outdir', required=True, metavar='DIR', help='Output folder (replaced as a whole when complete)')
@eg3d_option
@device_option
def sample_codes(network_pkl, count, seed, truncation_psi, images, outdir, eg3d, device):
    """Write random w codes, a frontal render of each, and a scores.csv to fill in.

    Writes to OUTDIR: seed<NNNN>.npy (float32 [1, 14, 512], all levels equal: EG3D's mapping
    output), seed<NNNN>.png (frontal render), scores.csv (code_path,score with the scores empty:
    fill them in from any attribute classifier or by hand; rows left empty are skipped), and
    generator.json (the generator fingerprint, which `boundary` stores with the boundary).
    An OUTDIR whose scores.csv already holds scores is refused rather than overwritten.

    Examples:

    \b
    # 2000 codes to label for a smile boundary.
    eg3d-regress sample-codes --network=ffhq512-128.pkl --count=2000 --trunc=0.7 --outdir=codes

    \b
    # Codes only, no renders (e.g. to score with a classifier that renders itself).
    python -m eg3d_regressor_plugin.sample_codes --network=G.pkl --count=500 --seed=1000 --no-images --outdir=codes
    """
    existing = Path(outdir) / SCORES_CSV
    if existing.is_file() and filled_scores(existing):
        raise UserError(f'{existing} already holds {filled_scores(existing)} scores; '
                        f'choose another --outdir or move it away first')
    from .files import check_outdir
    check_outdir(outdir)
    device = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=device, eg3d=eg3d)
    seeds = list(range(seed, seed + count))
    c = cameras.frontal_label(1, device=device)

    with atomic_dir(outdir) as tmp:
        tmp = Path(tmp)
        for s in tqdm(seeds, desc='codes', unit='code', disable=None):
            w = sample_w(G, s, truncation_psi, device)
            save_npy(tmp / f'{code_name(s)}.npy', w.cpu().numpy().astype(np.float32))
            if images:
                save_image(tmp / f'{code_name(s)}.png', to_uint8(render.render(G, w, c)['image'])[0])
        buf = _io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerow(['code_path', 'score'])
        writer.writerows([f'{code_name(s)}.npy', ''] for s in seeds)
        (tmp / SCORES_CSV).write_text(buf.getvalue())
        (tmp / GENERATOR_JSON).write_text(json.dumps(dict(
            generator=fingerprint.generator_fingerprint(G), network=str(network_pkl), truncation_psi=truncation_psi,
            seeds=[seeds[0], seeds[-1]], conditioning='frontal'), indent=2) + '\n')
    click.echo(f'Wrote {count} codes{" and renders" if images else ""} to {outdir}; '
               f'fill in {Path(outdir) / SCORES_CSV}, then run `eg3d-regress boundary`')


if __name__ == '__main__':
    sample_codes()  # pylint: disable=no-value-for-parameter
