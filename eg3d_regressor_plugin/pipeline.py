"""Photo files -> face folders: the `gen` pipeline (read, align, regress, optionally refine,
render, write), a failure on one input kept from losing the others.

A folder of inputs runs as three overlapping stages (workers > 0):

1. reading and aligning: `workers` processes (concurrent.futures.ProcessPoolExecutor; forked
   where the platform can, before the writer thread starts, so they start at once without
   importing anything; 'spawn' elsewhere) run inputs.load_job a few inputs ahead of
2. regression and rendering: the main process, on the device, one input after another in the
   order given (invert.reconstruct, outputs.compute_outputs), which hands each folder's files to
3. writing: a background thread writing them (outputs.write_files) into a folder that appears
   only once complete (files.atomic_dir), while the main process renders the next input.

Every stage sees the inputs in the same order, with the same seeds and the same functions as
workers=0 (everything in turn in the main process), so the files are the same; only pose.json's
timings differ. A disk that fills up (files.WriteError) stops the whole run at once: the later
folders could not be written either."""

import os
import queue
import sys
import threading
import traceback
from pathlib import Path

from .errors import UserError
from .files import WriteError, atomic_dir
from .inputs import load_job
from .invert import reconstruct
from .outputs import compute_outputs, output_names, write_files

LOOKAHEAD = 2   # inputs read ahead per worker (bounds the memory of loaded images)
WRITE_QUEUE = 2  # rendered folders waiting for the writer (bounds the memory of rendered files)
# Readers and the writer run at a lower CPU priority (a higher nice value): on a CPU device the
# renders use every core through torch's threads, and a reader or writer taking one of them at an
# equal share stalls all of torch's threads at each of their barriers; at a lower share they fill
# the gaps instead. Measured with benchmarks/folder_throughput.py.
BACKGROUND_NICE = 10


def _lower_priority():
    """Raise the calling thread's (Linux: each thread has its own) or process's nice value."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):  # not Linux / not permitted: run at the normal priority
        pass


def default_workers(num_inputs):
    """Reader processes for num_inputs inputs: none for one input (nothing to overlap), else up
    to 4 and at most the CPU count less one (the main process renders), at least 1."""
    if num_inputs < 2:
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1, num_inputs))


def reconstruct_file(G, inverter, path, folder, align=True, face_index=None, reconstruct_kwargs=None,
                     output_kwargs=None, meta=None):
    """One input file -> `folder` (appears only once complete). Returns the reconstruction."""
    faces, load_s = load_job(path, align=align, face_index=face_index, size=G.img_resolution)
    _, img, face = faces[0]
    rec = reconstruct(G, inverter, img, **(reconstruct_kwargs or {}))
    rec['seconds'] = dict(load=load_s, **rec['seconds'])
    items = compute_outputs(G, img, rec, meta=dict(source=str(path), face=face or None, **(meta or {})),
                            **(output_kwargs or {}))
    with atomic_dir(folder) as tmp:
        write_files(tmp, items)
    return rec


class _Loader:
    """Inputs loaded in order: in worker processes `ahead` inputs ahead, or inline (workers=0).
    Each item is (faces, seconds) or the exception raised loading it."""

    def __init__(self, paths, workers, **kwargs):
        self.paths, self.kwargs, self.pool, self.futures = list(paths), kwargs, None, {}
        if workers:
            import concurrent.futures
            import multiprocessing
            method = 'fork' if 'fork' in multiprocessing.get_all_start_methods() else 'spawn'
            self.pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                                               initializer=_lower_priority)
            self.ahead = workers * LOOKAHEAD + 1
            # With 'fork', the executor starts all its processes at the first submit: do it now,
            # before this module starts the writer thread (a fork copies no running thread's locks).
            for j in range(self.ahead):
                self._submit(j)

    def _submit(self, i):
        if i < len(self.paths) and i not in self.futures:
            self.futures[i] = self.pool.submit(load_job, self.paths[i], **self.kwargs)

    def get(self, i):
        from concurrent.futures.process import BrokenProcessPool
        try:
            if self.pool is not None:
                for j in range(i, i + self.ahead):
                    self._submit(j)
                try:
                    return self.futures.pop(i).result()
                except BrokenProcessPool:
                    # A worker died (e.g. a script without `if __name__ == '__main__':`, which the
                    # 'spawn' start re-runs): read the rest here, one after another; same files.
                    import warnings
                    warnings.warn('the reader processes stopped; reading the remaining inputs in the main process')
                    self.close()
                    self.pool, self.futures = None, {}
            return load_job(self.paths[i], **self.kwargs)
        except Exception as e:  # handed to the caller, which decides per input
            return e

    def close(self):
        if self.pool is not None:
            for f in self.futures.values():
                f.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)


class _Writer:
    """Writes (index, folder, items) jobs: in a background thread (threaded) or at once. Errors
    are kept per input index; a WriteError (the disk) is kept as `fatal` and ends the writing."""

    def __init__(self, threaded):
        self.errors, self.fatal = {}, None
        self.queue = queue.Queue(WRITE_QUEUE) if threaded else None
        if threaded:
            self.thread = threading.Thread(target=self._run, name='gen-writer', daemon=True)
            self.thread.start()

    def _write(self, index, folder, items):
        if self.fatal is not None:
            return
        try:
            with atomic_dir(folder) as tmp:
                write_files(tmp, items)
        except WriteError as e:
            self.fatal = e
        except Exception as e:  # one folder's failure must not lose the others
            self.errors.setdefault(index, (e, traceback.format_exc()))

    def _run(self):
        _lower_priority()
        while True:
            job = self.queue.get()
            if job is None:
                return
            self._write(*job)

    def put(self, index, folder, items):
        if self.queue is None:
            self._write(index, folder, items)
        else:
            self.queue.put((index, folder, items))

    def close(self):
        if self.queue is not None:
            self.queue.put(None)
            self.thread.join()


def reconstruct_files(G, inverter, paths, outdir, progress=None, workers=None, align=True, face_index=None,
                      all_faces=False, reconstruct_kwargs=None, output_kwargs=None, meta=None, names=None, single=None):
    """Every input into outdir/<name>/ (with all_faces, outdir/<name>_face0/, _face1/, ...: every
    face of the photo in align.detect_faces' order), the three stages overlapping with `workers`
    reader processes (None: default_workers; 0: everything in turn in this process). Returns the
    failures as [(path, message)] in input order: a UserError's message names its file; an
    unexpected error is printed with its traceback and listed. With a single input (`single`,
    default: one path), its error is raised instead; a WriteError (disk full, ...) is always
    raised, ending the run."""
    from tqdm import tqdm
    paths = list(paths)
    if not paths:
        return []
    single = len(paths) == 1 if single is None else single
    names = names or output_names(paths)
    workers = default_workers(len(paths)) if workers is None else int(workers)
    rkw, okw = reconstruct_kwargs or {}, output_kwargs or {}
    loader = _Loader(paths, workers, align=align, face_index=face_index, size=G.img_resolution, all_faces=all_faces)
    writer = _Writer(threaded=workers > 0)
    errors = {}
    try:
        for i in tqdm(range(len(paths)), desc='images', unit='img', disable=None if progress is None else not progress):
            if writer.fatal is not None:
                break
            loaded = loader.get(i)
            if isinstance(loaded, Exception):
                errors[i] = (loaded, ''.join(traceback.format_exception(loaded)))
                continue
            faces, load_s = loaded
            try:
                for suffix, img, face in faces:
                    rec = reconstruct(G, inverter, img, **rkw)
                    rec['seconds'] = dict(load=load_s / len(faces), **rec['seconds'])
                    items = compute_outputs(G, img, rec, meta=dict(source=str(paths[i]), face=face or None,
                                                                   **(meta or {})), **okw)
                    writer.put(i, Path(outdir) / (names[i] + suffix), items)
            except Exception as e:
                errors[i] = (e, traceback.format_exc())
    finally:
        writer.close()
        loader.close()
    if writer.fatal is not None:
        raise writer.fatal
    for i, err in writer.errors.items():
        errors.setdefault(i, err)
    failures = []
    for i in sorted(errors):
        e, tb = errors[i]
        if isinstance(e, WriteError):
            raise e
        if single:
            raise e
        if isinstance(e, UserError):
            failures.append((paths[i], str(e)))
        else:
            print(tb, end='', file=sys.stderr, flush=True)
            failures.append((paths[i], f'{paths[i]}: {type(e).__name__}: {e}'))
    return failures


def render_tuned_face(G, tuned_path, folder, pose='predicted', output_kwargs=None, meta=None):
    """A tuned-face file (gen --tune-steps's tuned.pt) loaded back onto G, the base generator it
    was tuned from -> `folder` (appears only once complete) with the outputs of compute_outputs
    but input.png and comparison.png (there is no input image): reconstruction.png at the file's
    camera (pose 'predicted') is the tuned reconstruction again. Returns the face dict."""
    import time
    from .sources import Sources
    t0 = time.perf_counter()
    G_t, src = Sources(G, pose=pose, device=next(G.parameters()).device).tuned(tuned_path)
    rec = dict(w=src['w'], c=src['c'], yaw=[src['yaw_own']], pitch=[src['pitch_own']], history=None, G=None,
               seconds=dict(load=time.perf_counter() - t0))
    items = compute_outputs(G_t, None, rec, meta=dict(source=str(tuned_path), **(meta or {})), **(output_kwargs or {}))
    with atomic_dir(folder) as tmp:
        write_files(tmp, items)
    return src


def reconstruct_clips(G, inverter, clips, outdir, names, single=False, **video_kwargs):
    """Video files -> outdir/<name>/ each (video_gen.reconstruct_video, video_kwargs go to it), one
    after another. Returns (summaries, failures [(path, message)]), as reconstruct_files: with
    `single` (the only input) an error is raised instead of listed; a WriteError always is."""
    from .video_gen import reconstruct_video
    summaries, failures = [], []
    for path, name in zip(clips, names):
        try:
            summaries += reconstruct_video(G, inverter, path, outdir, name=name, **video_kwargs)
        except WriteError:
            raise
        except UserError as e:
            if single:
                raise
            failures.append((path, str(e)))
    return summaries, failures
