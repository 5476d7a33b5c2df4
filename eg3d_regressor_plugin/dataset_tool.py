"""Render a synthetic training dataset (images, camera labels and w codes) into one zip in EG3D's
dataset_tool layout (see training/data.py for the layout).

The work is resumable: batches are written as small shard zips into a hidden folder beside the
destination (`.NAME.zip.partial/`), each shard atomically, and the final zip is assembled from
them (atomically too) once all are there. Rerunning the same command after an interruption
continues with the first missing sample; sample i is always drawn from the sample seed
derive_seed(--seed, i), whatever the batch size.
"""

import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import click
import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

from . import __version__
from . import eg3d as eg3d_bridge
from .errors import UserError
from .io import atomic_path, to_uint8
from .options import device_option, eg3d_option
from .training import data

SETTINGS = 'settings.json'


def _png(img_uint8_hwc):
    buf = io.BytesIO()
    PIL.Image.fromarray(img_uint8_hwc).save(buf, format='png', compress_level=6)
    return buf.getvalue()


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    return buf.getvalue()


def write_shard(path, start, batch):
    """One batch (a PairSampler dict) as a zip of PNGs, w files and labels, written atomically."""
    imgs = to_uint8(batch['img'])
    ws = batch['w'].detach().cpu().numpy()
    labels = batch['c'].detach().cpu().numpy()
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_STORED) as z:
            names = {}
            for j in range(len(imgs)):
                fname = data.image_name(start + j)
                z.writestr(fname, _png(imgs[j]))
                z.writestr(data.w_name(fname), _npy(ws[j][None]))  # (1, num_ws, w_dim) like EG3D's projectors
                names[fname] = [float(v) for v in labels[j]]
            z.writestr('labels.json', json.dumps(names))


def _shards(partial):
    """[(start, count, path)] of the complete shards, in order; a shard that does not read is removed."""
    out = []
    for p in sorted(partial.glob('shard-*.zip')):
        try:
            with zipfile.ZipFile(p) as z:
                n = len(json.loads(z.read('labels.json')))
            out.append((int(p.stem.split('-')[1]), n, p))
        except (zipfile.BadZipFile, KeyError, ValueError, OSError):
            p.unlink()
    return out


def _assemble(dest, shards, count, meta):
    """The final zip from the shards' first `count` samples, written atomically."""
    labels = []
    with atomic_path(dest) as tmp:
        with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_STORED) as out:
            for start, _, path in shards:
                with zipfile.ZipFile(path) as z:
                    shard_labels = json.loads(z.read('labels.json'))
                    for fname in sorted(shard_labels):
                        if int(fname[-12:-4]) >= count:
                            continue
                        out.writestr(fname, z.read(fname))
                        out.writestr(data.w_name(fname), z.read(data.w_name(fname)))
                        labels.append([fname, shard_labels[fname]])
            if len(labels) != count:
                raise RuntimeError(f'assembled {len(labels)} samples, expected {count}')
            out.writestr('dataset.json', json.dumps({'labels': labels}))
            out.writestr(data.DATASET_META, json.dumps(dict(meta, format=data.DATASET_FORMAT, count=count), indent=2))


def make_dataset_zip(G, dest, count, seed=0, trunc_range=data.DEFAULT_TRUNC, batch=16, resolution=None,
                     cond_pose='random', network=None, progress=True):
    """Render `count` pairs of generator G into `dest` (a .zip), resuming an interrupted run."""
    dest = Path(dest)
    if dest.suffix.lower() != '.zip':
        raise UserError(f'--dest {dest}: must end in .zip')
    if dest.exists():
        raise UserError(f'--dest {dest} already exists; delete it or choose another name')
    if count < 1 or batch < 1:
        raise UserError(f'--count and --batch must be at least 1 (got {count}, {batch})')
    resolution = int(resolution or G.img_resolution)
    if not 8 <= resolution <= 4096:
        raise UserError(f'--resolution {resolution}: expected 8 to 4096')
    sampler = data.PairSampler(G, resolution, trunc_range, cond_pose)
    settings = dict(generator=eg3d_bridge.generator_identity(G), seed=seed, trunc_range=list(sampler.trunc_range),
                    cond_pose=cond_pose, resolution=resolution, z_sampling='np.random.RandomState(derive_seed(seed, i))')
    partial = dest.parent / f'.{dest.name}.partial'
    if partial.is_dir() and (partial / SETTINGS).is_file():
        old = json.loads((partial / SETTINGS).read_text())
        diff = [k for k in settings if old.get(k) != settings[k]]
        if diff:
            raise UserError(f'{partial} holds an unfinished dataset made with other settings ({", ".join(diff)}); '
                            f'rerun with the same options or delete that folder')
    else:
        partial.mkdir(parents=True, exist_ok=True)
        with atomic_path(partial / SETTINGS) as tmp:
            Path(tmp).write_text(json.dumps(settings, indent=2))

    shards = _shards(partial)
    done = 0
    for start, n, _ in shards:  # shards are written in order: the complete prefix
        if start != done:
            break
        done = start + n
    if done:
        print(f'Resuming {dest}: {min(done, count)} of {count} samples already rendered')
    with tqdm(total=count, initial=min(done, count), unit='img', disable=not progress, desc='Rendering') as bar:
        while done < count:
            n = min(batch, count - done)
            seeds = [data.derive_seed(seed, i) for i in range(done, done + n)]
            write_shard(partial / f'shard-{done:08d}.zip', done, sampler.sample_seeds(seeds))
            done += n
            bar.update(n)
    meta = dict(settings, network=str(network) if network else None, plugin_version=__version__,
                created=time.strftime('%Y-%m-%d %H:%M:%S'),
                layout='images NNNNN/imgNNNNNNNN.png, labels in dataset.json (EG3D), w in ws/NNNNN/imgNNNNNNNN.npy (1, num_ws, w_dim)')
    _assemble(dest, [s for s in _shards(partial) if s[0] < count], count, meta)
    shutil.rmtree(partial, ignore_errors=True)
    return dest


@click.command('dataset')
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='EG3D network pickle')
@click.option('--count', type=int, required=True, help='Number of pairs to render')
@click.option('--dest', required=True, metavar='ZIP', help='Output dataset zip')
@click.option('--seed', type=int, default=0, show_default=True, help='Random seed')
@click.option('--trunc-range', default='0.5,1.0', show_default=True, help='Truncation psi range: LO,HI')
@click.option('--cond-pose', default='random', show_default=True, metavar='random|same|frontal',
              help='Pose the mapping network is conditioned on')
@click.option('--batch', type=int, default=16, show_default=True, help='Pairs rendered per batch (and per shard)')
@click.option('--resolution', type=int, default=None, help='Image resolution  [default: the generator\'s]')
@device_option
@eg3d_option
def make_dataset(network_pkl, count, dest, seed, trunc_range, cond_pose, batch, resolution, device, eg3d):
    """Render synthetic (image, w, pose) pairs into a dataset zip (EG3D's dataset_tool layout plus
    the w codes). An interrupted run continues where it stopped when rerun with the same options.

    \b
    Example:
      eg3d-regress dataset --network tiny.pkl --count 5000 --dest pairs.zip --resolution 64
      eg3d-regress train --network tiny.pkl --data pairs.zip --outdir runs
    """
    if cond_pose not in data.COND_POSES:
        raise UserError(f'--cond-pose {cond_pose!r}: choose from {", ".join(data.COND_POSES)}')
    trunc = data.parse_trunc_range(trunc_range)
    if Path(dest).exists():
        raise UserError(f'--dest {dest} already exists; delete it or choose another name')
    G = eg3d_bridge.load_generator(network_pkl, device=eg3d_bridge.get_device(device), eg3d=eg3d)
    with torch.no_grad():
        out = make_dataset_zip(G, dest, count, seed, trunc, batch, resolution, cond_pose, network=network_pkl)
    click.echo(f'Wrote {out}: {count} pairs')


if __name__ == '__main__':
    make_dataset()  # pylint: disable=no-value-for-parameter
