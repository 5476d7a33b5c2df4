"""Photo files -> face folders: the `gen` pipeline (read, align, regress, optionally refine,
write), one input after another, a failure on one input kept from losing the others."""

import time
import traceback
from pathlib import Path

from .errors import UserError
from .files import atomic_dir
from .invert import load_input, reconstruct
from .outputs import output_names, write_outputs


def reconstruct_file(G, inverter, path, folder, align=True, face_index=None, reconstruct_kwargs=None,
                     output_kwargs=None, meta=None):
    """One input file -> `folder` (appears only once complete). Returns the reconstruction."""
    t0 = time.perf_counter()
    img, face = load_input(path, align=align, face_index=face_index, size=G.img_resolution)
    load_s = time.perf_counter() - t0
    rec = reconstruct(G, inverter, img, **(reconstruct_kwargs or {}))
    rec['seconds'] = dict(load=load_s, **rec['seconds'])
    with atomic_dir(folder) as tmp:
        write_outputs(tmp, G, img, rec, meta=dict(source=str(path), face=face or None, **(meta or {})),
                      **(output_kwargs or {}))
    return rec


def reconstruct_files(G, inverter, paths, outdir, progress=None, **kwargs):
    """Every input into outdir/<name>/ (see reconstruct_file for kwargs). Returns the failures as
    [(path, message)]: a UserError's message names its file; an unexpected error is printed with its
    traceback and listed. With a single input, its error is raised instead."""
    from tqdm import tqdm
    failures = []
    for path, name in zip(tqdm(paths, desc='images', unit='img', disable=progress), output_names(paths)):
        try:
            reconstruct_file(G, inverter, path, Path(outdir) / name, **kwargs)
        except UserError as e:
            if len(paths) == 1:
                raise
            failures.append((path, str(e)))
        except Exception as e:  # an unexpected failure on one image must not lose the others
            if len(paths) == 1:
                raise
            traceback.print_exc()
            failures.append((path, f'{path}: {type(e).__name__}: {e}'))
    return failures
