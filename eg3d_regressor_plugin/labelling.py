"""Pseudo-labelling real photos (the work of `eg3d-regress label`): each photo aligned (EG3D's
crop), its (w, pose) regressed, its W+ refined against it with the project's optimiser
(invert.reconstruct), and all written as a training set in the layout `dataset` writes (EG3D's
dataset_tool layout plus ws/*.npy; see training/data.py), which training/data.PairDataset reads:

    NNNNN/imgNNNNNNNN.png      the aligned photo at the generator's resolution (NNNNNNNN: the
                               photo's index in the sorted input list)
    dataset.json               camera labels: the input zip's own when it has them, else the
                               predicted pose's
    ws/NNNNN/imgNNNNNNNN.npy   the refined w (1, num_ws, w_dim)
    labels.csv                 per photo: its source name, the pose, the reconstruction PSNR of
                               the regressor's w and of the refined w
    regressor_dataset.json     kind "label", the generator's fingerprint, the regressor, the
                               settings, the photos skipped (no face, unreadable) and why

Resumable like `dataset` (training/dataset_writer.ShardStore): rerunning the same call after an
interruption labels only the photos no finished shard holds.
"""

import hashlib
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from . import __version__, cameras, fingerprint
from .errors import UserError
from .invert import Inverter, reconstruct
from .metrics import psnr
from .render import render_image
from .training import dataset_writer, real_data
from .training import data as training_data

CSV_COLUMNS = ('source', 'yaw', 'pitch', 'psnr_regressor', 'psnr')


def _sha(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()[:16]


def _label_one(G, inverter, img, c_known, refine):
    """(w [num_ws,w_dim], label [25], row) of one aligned photo: regressed, refined at the known
    camera (an input zip's label) or the predicted one."""
    steps = refine['refine_steps']
    rec = reconstruct(G, inverter, img, refine_steps=0 if c_known is not None else steps,
                      refine_lr=refine['refine_lr'], refine_optimizer=refine['refine_optimizer'])
    c = rec['c_pred'] if c_known is None else c_known.reshape(1, 25).to(rec['w'])
    w = rec['w']
    if c_known is not None and steps:
        from .optimize import optimize_w
        w, _ = optimize_w(G, img, c, rec['w_regressor'], steps, lr=refine['refine_lr'],
                          optimizer=refine['refine_optimizer'])
    yaw, pitch, _ = cameras.label_to_pose(c.cpu())
    row = dict(yaw=round(float(yaw[0]), 5), pitch=round(float(pitch[0]), 5),
               psnr_regressor=round(psnr(img, render_image(G, rec['w_regressor'], c)[0]), 3))
    row['psnr'] = round(psnr(img, render_image(G, w, c)[0]), 3) if steps else row['psnr_regressor']
    return w[0].detach().cpu().numpy(), c[0].detach().cpu().numpy(), row


def label_photos(G, regressor_path, spec, dest, align=True, refine_steps=50, refine_lr=0.01,
                 refine_optimizer='lbfgs', predict_pose=False, batch=8, workers=real_data.ALIGN_WORKERS,
                 device='cpu', progress=True, log=print):
    """Label the photos of `spec` (a file, folder or glob of photos, or an EG3D dataset zip of
    crops) for generator G with the regressor checkpoint into `dest` (a .zip), resuming an
    interrupted run. An input zip's camera labels are used (refused without them unless
    predict_pose); its images are EG3D crops already, so they are not aligned. Returns dict(dest,
    labelled, skipped: [dict(index, name, reason)], psnr_mean)."""
    dest = dataset_writer.check_dest(dest)
    if batch < 1 or workers < 1 or refine_steps < 0:
        raise UserError(f'batch and workers must be at least 1, refine_steps at least 0 (got {batch}, {workers}, {refine_steps})')
    kind, entries, info = real_data.read_entries(spec, what='spec')
    labels = None
    if kind == 'zip':
        align = False
        if info['meta'] is not None and info['meta'].get('kind') == 'label':
            raise UserError(f'spec {spec} is a label zip already (its w are labelled)')
        if not predict_pose:
            if info['labels'] is None or not info['has_label'].all():
                missing = len(entries) if info['labels'] is None else int((~info['has_label']).sum())
                raise UserError(f'spec {spec}: {missing} image(s) have no camera label in dataset.json; '
                                'pass predict_pose to use the regressor\'s pose instead')
            labels = torch.from_numpy(info['labels'])
    inverter = Inverter(G, regressor_path, device=device, cuda_graph=False)  # refuses another generator's
    refine = dict(refine_steps=int(refine_steps), refine_lr=refine_lr, refine_optimizer=refine_optimizer)
    settings = dict(generator=fingerprint.generator_fingerprint(G), regressor_sha=_sha(regressor_path),
                    inputs=hashlib.sha256('\n'.join(e['name'] for e in entries).encode()).hexdigest()[:16],
                    align=bool(align), predict_pose=bool(predict_pose), resolution=int(G.img_resolution), **refine)
    store = dataset_writer.ShardStore(dest, settings)
    todo = store.todo(len(entries), batch)
    left = sum(n for _, n in todo)
    if left < len(entries):
        log(f'Resuming {dest}: {len(entries) - left} of {len(entries)} photos already labelled')
    with real_data.Preparer(align, G.img_resolution, workers) as prep, \
            tqdm(total=len(entries), initial=len(entries) - left, unit='img', disable=not progress, desc='Labelling') as bar:
        for start, n in todo:
            items, skipped = [], []
            for k, (img, reason) in enumerate(prep([e['source'] for e in entries[start:start + n]])):
                i = start + k
                if img is None:
                    skipped.append(dict(index=i, name=entries[i]['name'], reason=reason))
                    bar.write(f'Skipping {entries[i]["name"]}: {reason}')
                else:
                    w, c, row = _label_one(G, inverter, img, None if labels is None else labels[i], refine)
                    items.append(dict(fname=training_data.image_name(i), img=img, w=w, label=c,
                                      row=dict(row, source=entries[i]['name'])))
                bar.update(1)
            dataset_writer.write_items(store.shard_path(start), start, n, items, skipped)
    meta = dict(settings, kind='label', source=str(spec), regressor=str(regressor_path), plugin_version=__version__,
                created=time.strftime('%Y-%m-%d %H:%M:%S'), layout=dataset_writer.LAYOUT + ', per-photo figures in labels.csv')
    count, skipped = store.assemble(len(entries), meta, csv_columns=CSV_COLUMNS)
    if count == 0:
        dest.unlink(missing_ok=True)
        raise UserError(f'spec {spec}: no photo could be labelled ({len(skipped)} skipped: {skipped[0]["reason"]})')
    return dict(dest=dest, labelled=count, skipped=skipped, psnr_mean=_mean_psnr(dest))


def _mean_psnr(dest):
    import csv
    import io
    import zipfile
    with zipfile.ZipFile(dest) as z:
        rows = list(csv.DictReader(io.StringIO(z.read(dataset_writer.LABELS_CSV).decode())))
    vals = [float(r['psnr']) for r in rows if r.get('psnr') not in (None, '')]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else None
