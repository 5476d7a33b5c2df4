"""Starting a training run, in the style of EG3D's train.py (launch_training, subprocess_fn): the
numbered run folders and their snapshots, resuming, and the processes that run training_loop
(this one, `world` spawned ones, or one rank of torchrun's).

A run lives in a numbered folder `outdir/00000-<arch>-<desc>/` holding

    training_options.json            the options of the (latest) invocation
    log.txt                          everything the run printed (appended to on resume)
    stats.jsonl                      one JSON line per tick: progress, timing, losses, validation
    events.out.tfevents.*            the same scalars for TensorBoard (when it is installed)
    val-grid-KKKKKK.png              held-out inputs | the predicted w rendered at the predicted pose
    regressor-snapshot-KKKKKK.pt     checkpoints with their resume state (KKKKKK = kimg, as EG3D)
"""

import json
import os
import re
import tempfile
import time
from pathlib import Path

import torch

from .. import __version__, bridge
from ..errors import UserError
from ..files import atomic_path
from . import checkpoint, distributed
from .training_loop import training_loop

SNAPSHOT_RE = re.compile(r'^regressor-snapshot-(\d+)\.pt$')
RUN_RE = re.compile(r'^(\d+)-([a-z]+)-')

#----------------------------------------------------------------------------
# Run folders and snapshots.

def run_dirs(outdir, arch=None):
    """Numbered run folders of `outdir` (for `arch`, when given), newest (highest number) first."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        return []
    runs = []
    for d in outdir.iterdir():
        m = RUN_RE.match(d.name)
        if d.is_dir() and m and (arch is None or m.group(2) == arch):
            runs.append((int(m.group(1)), d))
    return [d for _, d in sorted(runs, reverse=True)]


def next_run_dir(outdir, desc):
    ids = [int(m.group(1)) for d in Path(outdir).glob('*') if (m := re.match(r'^(\d+)', d.name))] if Path(outdir).is_dir() else []
    return Path(outdir) / f'{max(ids, default=-1) + 1:05d}-{desc}'


def latest_snapshot(run_dir):
    """(path, checkpoint dict) of the newest snapshot in run_dir that loads and holds a resume
    state, or (None, None). A damaged file is passed over."""
    snaps = []
    for p in Path(run_dir).glob('regressor-snapshot-*.pt'):
        m = SNAPSHOT_RE.match(p.name)
        if m:
            snaps.append((int(m.group(1)), p.stat().st_mtime, p))
    for _, _, p in sorted(snaps, reverse=True):
        try:
            ckpt = checkpoint.load_checkpoint(p)
        except UserError:
            continue
        if ckpt.get('state'):
            return p, ckpt
    return None, None


def find_resume(resume, outdir, arch=None):
    """resume (a snapshot path, or 'latest': the newest snapshot of a run of `arch` in outdir) ->
    (snapshot path, checkpoint, run folder to continue in or None)."""
    if resume == 'latest':
        for d in run_dirs(outdir, arch):
            path, ckpt = latest_snapshot(d)
            if path is not None:
                return path, ckpt, d
        what = f' for arch {arch}' if arch else ''
        raise UserError(f"resume 'latest': no run folder in {outdir} holds a snapshot to resume{what}")
    path = Path(resume)
    ckpt = checkpoint.load_checkpoint(path)
    if not ckpt.get('state'):
        raise UserError(f'resume {resume}: this checkpoint holds no resume state (it is no training snapshot)')
    run_dir = path.parent if (path.parent / 'training_options.json').is_file() else None
    return path, ckpt, run_dir


def clean_resumed_run(run_dir, cur_nimg):
    """Before continuing a run at cur_nimg: drop the temporary files a killed run left and the stats
    lines after the snapshot (they will be written again)."""
    for p in Path(run_dir).glob('.*.tmp*'):
        p.unlink(missing_ok=True)
    stats = Path(run_dir) / 'stats.jsonl'
    if stats.is_file():
        keep = []
        for line in stats.read_text().splitlines():
            try:
                if json.loads(line)['Progress/nimg'] <= cur_nimg:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                pass  # the partial last line of a killed run
        with atomic_path(stats) as tmp:
            Path(tmp).write_text(''.join(l + '\n' for l in keep))


def prepare_run_dir(run_dir, options, eg3d, resume_nimg):
    """Create the folder, record the options; when resuming, tidy what a killed run left behind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume_nimg is not None:
        clean_resumed_run(run_dir, resume_nimg)
    root = bridge.import_eg3d(eg3d)
    record = dict(options, run_dir=str(run_dir), eg3d=str(root), eg3d_commit=bridge.eg3d_commit(root),
                  plugin_version=__version__, torch_version=torch.__version__, started=time.strftime('%Y-%m-%d %H:%M:%S'))
    with atomic_path(run_dir / 'training_options.json') as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2))

#----------------------------------------------------------------------------
# Processes.

def subprocess_fn(rank, kwargs, base_device, world, temp_dir):
    """One process of a `world`-process run (torch.multiprocessing.spawn): training_loop(**kwargs)."""
    device = distributed.rank_device(base_device, rank)
    distributed.init_process_group(device, rank, world, f'file://{os.path.abspath(os.path.join(temp_dir, ".torch_distributed_init"))}')
    try:
        training_loop(**kwargs, device=device, rank=rank, world=world)
    except UserError as e:
        # The parent turns this into the one-line error (a child's traceback would be many lines).
        Path(temp_dir, f'error-{rank}.txt').write_text(e.message)
        raise SystemExit(2)
    finally:
        torch.distributed.destroy_process_group()


def launch_training(options, run_dir, device, world=1, eg3d=None, resume_nimg=None, torchrun=None):
    """Run training_loop(**options) in run_dir (recording options there and in the snapshots):
    in this process, in `world` spawned processes, or, when torchrun (distributed.torchrun_world())
    is given, as one of its ranks, all in rank 0's run folder. device: the base device (a rank
    uses its own CUDA device). resume_nimg: the snapshot's progress when continuing in its own
    run folder (what a killed run wrote after it is dropped)."""
    kwargs = dict(options, run_dir=str(run_dir), eg3d=eg3d, record_options=True)
    if torchrun:
        rank, local_rank, world = torchrun
        dev = distributed.rank_device(device, local_rank)
        distributed.init_process_group(dev, rank, world, 'env://')
        holder = [str(run_dir)]
        torch.distributed.broadcast_object_list(holder, src=0)  # every rank uses rank 0's folder
        kwargs['run_dir'] = holder[0]
        if rank == 0:
            prepare_run_dir(Path(holder[0]), options, eg3d, resume_nimg)
        torch.distributed.barrier()
        try:
            training_loop(**kwargs, device=dev, rank=rank, world=world)
        finally:
            torch.distributed.destroy_process_group()
        return

    prepare_run_dir(Path(run_dir), options, eg3d, resume_nimg)
    if world == 1:
        training_loop(**kwargs, device=device)
        return
    with tempfile.TemporaryDirectory() as temp_dir:
        try:
            torch.multiprocessing.spawn(fn=subprocess_fn, args=(kwargs, device, world, temp_dir), nprocs=world)
        except Exception:
            errors = sorted(Path(temp_dir).glob('error-*.txt'))
            if errors:
                raise UserError(errors[0].read_text()) from None
            raise
