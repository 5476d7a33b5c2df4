"""Rendering a synthetic training dataset (images, camera labels and w codes) into one zip in
EG3D's dataset_tool layout (see data.py for the layout); `eg3d-regress dataset` (dataset_tool.py)
is its command.

The work is resumable (ShardStore, which `label` writes through too): batches are written as
small shard zips into a hidden folder beside the destination (`.NAME.zip.partial/`), each shard
atomically, and the final zip is assembled from them (atomically too) once all are there. Rerunning the same call after an interruption renders
only the samples no complete shard holds. Sample i always has the z, pose and truncation of
sample seed derive_seed(seed, i), whatever the batch size or the number of worker processes
(EG3D's stochastic ray sampling is seeded per batch, so a render can differ by a grey level with
another batch size).

On a CPU, several worker processes with a few threads each can render faster than one process
with all of them (EG3D's small convolutions and ray marching use threads poorly), so workers
defaults to one per core there.
"""

import csv
import io
import json
import multiprocessing
import os
import pickle
import queue as queue_lib
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

from .. import __version__, bridge, fingerprint
from ..errors import UserError
from ..files import atomic_path
from ..images import to_uint8
from . import data

SETTINGS = 'settings.json'
MAX_RESOLUTION = 4096


def _png(img_uint8_hwc):
    buf = io.BytesIO()
    PIL.Image.fromarray(img_uint8_hwc).save(buf, format='png', compress_level=6)
    return buf.getvalue()


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    return buf.getvalue()


def write_shard(path, start, batch):
    """One batch (a PairSampler dict) as a shard zip of PNGs, w files and labels, written atomically."""
    imgs = to_uint8(batch['img'])
    ws = batch['w'].detach().cpu().numpy()
    labels = batch['c'].detach().cpu().numpy()
    masks = to_uint8(batch['mask'] * 2 - 1)[..., 0] if 'mask' in batch else [None] * len(imgs)
    items = [dict(fname=data.image_name(start + j), img=imgs[j], w=ws[j], label=labels[j], mask=masks[j])
             for j in range(len(imgs))]
    write_items(path, start, len(items), items)


def write_items(path, start, count, items, skipped=()):
    """A shard zip covering input indices [start, start + count), written atomically: items (dicts
    of fname, img uint8 HWC, w [num_ws,w_dim], label [25], optional mask uint8 HW (background
    255) and row: a dict of figures for the labels CSV) and skipped inputs (dicts of index, name, reason) that are done with too."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_STORED) as z:
            names, rows = {}, {}
            for item in items:
                fname = item['fname']
                z.writestr(fname, _png(item['img']))
                z.writestr(data.w_name(fname), _npy(np.asarray(item['w'])[None]))  # (1, num_ws, w_dim) like EG3D's projectors
                if item.get('mask') is not None:
                    z.writestr(data.mask_name(fname), _png(item['mask']))
                names[fname] = [float(v) for v in item['label']]
                if item.get('row') is not None:
                    rows[fname] = item['row']
            z.writestr('labels.json', json.dumps(names))
            z.writestr(EXTRA, json.dumps(dict(start=start, count=count, rows=rows, skipped=list(skipped))))


EXTRA = 'extra.json'  # a shard's range, CSV rows and skipped inputs


def check_dest(dest):
    """The destination zip of a dataset, as a Path: a new .zip file (UserError otherwise)."""
    dest = Path(dest)
    if dest.suffix.lower() != '.zip':
        raise UserError(f'dest {dest}: must end in .zip')
    if dest.exists():
        raise UserError(f'dest {dest} already exists; delete it or choose another name')
    return dest


class ShardStore:
    """The resumable part of writing a dataset zip (`dataset` and `label` both write through it): a
    hidden folder beside the destination (`.NAME.zip.partial/`) with the settings of the run and
    shard zips, each covering a range of input indices, written atomically. A rerun with the same
    settings does only the ranges no complete shard covers; assemble() writes the final zip."""

    def __init__(self, dest, settings):
        self.dest = Path(dest)
        self.partial = self.dest.parent / f'.{self.dest.name}.partial'
        if self.partial.is_dir() and (self.partial / SETTINGS).is_file():
            old = json.loads((self.partial / SETTINGS).read_text())
            diff = [k for k in settings if old.get(k) != settings[k]]
            if diff:
                raise UserError(f'{self.partial} holds an unfinished dataset made with other settings ({", ".join(diff)}); '
                                f'rerun with the same options or delete that folder')
        else:
            self.partial.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.partial / SETTINGS) as tmp:
                Path(tmp).write_text(json.dumps(settings, indent=2))

    def shard_path(self, start):
        return self.partial / f'shard-{start:08d}.zip'

    def shards(self):
        """[(start, count, path)] of the complete shards, in order; a shard that does not read is removed."""
        out = []
        for p in sorted(self.partial.glob('shard-*.zip')):
            try:
                with zipfile.ZipFile(p) as z:
                    names = z.namelist()
                    n = (json.loads(z.read(EXTRA))['count'] if EXTRA in names else len(json.loads(z.read('labels.json'))))
                out.append((int(p.stem.split('-')[1]), n, p))
            except (zipfile.BadZipFile, KeyError, ValueError, OSError):
                p.unlink()
        return out

    def todo(self, count, batch):
        """[(start, n)]: the indices below `count` that no complete shard covers, in runs of <= batch."""
        return _todo(self.shards(), count, batch)

    def assemble(self, count, meta, csv_columns=None):
        """The final zip from the shards' items of inputs below `count` (each once), written
        atomically, then the partial folder removed. With csv_columns, the items' rows go into
        labels.csv inside the zip. Returns (labelled count, skipped inputs)."""
        labels, rows, skipped, seen = [], {}, [], set()
        with atomic_path(self.dest) as tmp:
            with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_STORED) as out:
                for start, _, path in self.shards():
                    with zipfile.ZipFile(path) as z:
                        shard_labels = json.loads(z.read('labels.json'))
                        members = set(z.namelist())
                        extra = json.loads(z.read(EXTRA)) if EXTRA in members else {}
                        skipped += [s for s in extra.get('skipped', []) if s['index'] < count]
                        for fname in sorted(shard_labels):
                            if int(fname[-12:-4]) >= count or fname in seen:
                                continue
                            seen.add(fname)
                            out.writestr(fname, z.read(fname))
                            out.writestr(data.w_name(fname), z.read(data.w_name(fname)))
                            if data.mask_name(fname) in members:
                                out.writestr(data.mask_name(fname), z.read(data.mask_name(fname)))
                            labels.append([fname, shard_labels[fname]])
                            rows[fname] = extra.get('rows', {}).get(fname)
                labels.sort()
                if csv_columns:
                    out.writestr(LABELS_CSV, _csv(labels, rows, csv_columns))
                out.writestr('dataset.json', json.dumps({'labels': labels}))
                meta = dict(meta, format=data.DATASET_FORMAT, count=len(labels), skipped=sorted(skipped, key=lambda s: s['index']))
                out.writestr(data.DATASET_META, json.dumps(meta, indent=2))
        shutil.rmtree(self.partial, ignore_errors=True)
        return len(labels), meta['skipped']


LABELS_CSV = 'labels.csv'


def _todo(shards, count, batch):
    """[(start, n)]: the indices below `count` that no shard of `shards` covers, in runs of <= batch."""
    covered = set()
    for start, n, _ in shards:
        covered.update(range(start, start + n))
    todo, i = [], 0
    while i < count:
        if i in covered:
            i += 1
            continue
        j = i
        while j < count and j not in covered and j - i < batch:
            j += 1
        todo.append((i, j - i))
        i = j
    return todo


def _csv(labels, rows, columns):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(['fname'] + list(columns))
    for fname, _ in labels:
        row = rows.get(fname) or {}
        writer.writerow([fname] + [row.get(c, '') for c in columns])
    return buf.getvalue()


def _render_shards(sampler, seed, todo, partial, done_fn=None):
    for start, n in todo:
        seeds = [data.derive_seed(seed, i) for i in range(start, start + n)]
        write_shard(Path(partial) / f'shard-{start:08d}.zip', start, sampler.sample_seeds(seeds, masks=True))
        if done_fn is not None:
            done_fn(n)


def _worker(g_bytes, eg3d_root, sampler_args, seed, todo, partial, threads, queue):
    """A spawned rendering process: its own copy of G, `threads` threads, shards `todo`."""
    try:
        torch.set_num_threads(threads)
        bridge.import_eg3d(eg3d_root)
        G = bridge.prepare_generator(pickle.loads(g_bytes))
        with torch.no_grad():
            _render_shards(data.PairSampler(G, *sampler_args), seed, todo, Path(partial), lambda n: queue.put(n))
    except BaseException as e:  # reported to the parent, which stops the others
        queue.put(f'{type(e).__name__}: {e}')
        raise SystemExit(1)


def default_workers(device):
    """Rendering processes: 1 on a GPU; on a CPU one per core, at most 4 (sharing the threads)."""
    return 1 if torch.device(device).type != 'cpu' else max(1, min(4, os.cpu_count() or 1))


def _render_parallel(G, sampler, seed, todo, partial, workers, bar):
    threads = max(1, torch.get_num_threads() // workers)
    g_bytes = pickle.dumps(G)
    ctx = multiprocessing.get_context('spawn')  # fork after torch started its thread pools can hang
    queue = ctx.Queue()
    args = (sampler.resolution, sampler.trunc_range, sampler.cond_pose)
    procs = [ctx.Process(target=_worker, args=(g_bytes, str(bridge.eg3d_root()), args, seed, todo[k::workers],
                                               str(partial), threads, queue), daemon=True) for k in range(workers)]
    for p in procs:
        p.start()
    try:
        remaining = sum(n for _, n in todo)
        while remaining > 0:
            try:
                msg = queue.get(timeout=1.0)
            except queue_lib.Empty:  # see whether a worker died without a word
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise UserError('a rendering process died (out of memory?); rerun to continue, or render with workers=1') from None
                continue
            if isinstance(msg, str):
                raise UserError(f'a rendering process failed: {msg}; rerun to continue, or render with workers=1')
            remaining -= msg
            bar.update(msg)
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()


def make_dataset_zip(G, dest, count, seed=0, trunc_range=data.DEFAULT_TRUNC, batch=16, resolution=None,
                     cond_pose='random', network=None, progress=True, workers=1):
    """Render `count` pairs of generator G into `dest` (a .zip), resuming an interrupted run.
    workers > 1 renders in that many spawned processes (CPU; G must be pickleable)."""
    dest = check_dest(dest)
    if count < 1 or batch < 1 or workers < 1:
        raise UserError(f'count, batch and workers must be at least 1 (got {count}, {batch}, {workers})')
    resolution = int(resolution or G.img_resolution)
    if not 8 <= resolution <= MAX_RESOLUTION:
        raise UserError(f'resolution {resolution}: expected 8 to {MAX_RESOLUTION}')
    sampler = data.PairSampler(G, resolution, trunc_range, cond_pose)
    settings = dict(generator=fingerprint.generator_fingerprint(G), seed=seed, trunc_range=list(sampler.trunc_range),
                    cond_pose=cond_pose, resolution=resolution, z_sampling='np.random.RandomState(derive_seed(seed, i))')
    store = ShardStore(dest, settings)
    todo = store.todo(count, batch)
    left = sum(n for _, n in todo)
    if left < count:
        print(f'Resuming {dest}: {count - left} of {count} samples already rendered')
    workers = min(workers, len(todo))
    with tqdm(total=count, initial=count - left, unit='img', disable=not progress, desc='Rendering') as bar:
        if workers > 1 and sampler.device.type == 'cpu':
            _render_parallel(G, sampler, seed, todo, store.partial, workers, bar)
        else:
            _render_shards(sampler, seed, todo, store.partial, bar.update)
    meta = dict(settings, network=str(network) if network else None, plugin_version=__version__,
                created=time.strftime('%Y-%m-%d %H:%M:%S'), layout=LAYOUT)
    n, _ = store.assemble(count, meta)
    if n != count:
        raise RuntimeError(f'assembled {n} samples, expected {count}')
    return dest


LAYOUT = ('images NNNNN/imgNNNNNNNN.png, labels in dataset.json (EG3D), w in ws/NNNNN/imgNNNNNNNN.npy (1, num_ws, w_dim), '
          'background masks in masks/NNNNN/imgNNNNNNNN.png (255: background)')
