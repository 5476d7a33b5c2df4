"""Coloured meshes of a w code: the surface of EG3D's density volume (marching cubes at EG3D's
density level 10, through render.extract_mesh and its fallback for untrained generators), each
vertex coloured by the generator's own radiance there, written as .ply, .obj or .glb.

Colour: EG3D's decoder (training/triplane.py, OSGDecoder) returns 32 'rgb' feature channels,
sigmoid(x) * 1.002 - 0.001, roughly [0, 1]. The neural-rendering image `image_raw` is the first 3
channels of the composited features after the ray marcher's `* 2 - 1` (ray_marcher.py: "Scale to
(-1, 1)"), and it becomes uint8 as every EG3D image does, (x * 127.5 + 128) clipped. A vertex gets
exactly that mapping of the features evaluated at its position: the colour of the low-resolution
raw image (before the super-resolution network, which has no 3-D meaning).

Coordinates: EG3D world units, the frame of render.extract_mesh and of EG3D's renderer (the
tri-plane box of side box_warp centred on the origin), in every format; nothing is rotated for
glTF's conventions.
"""

from pathlib import Path

import numpy as np
import torch

from . import render
from .catalog import SHAPE_FORMATS
from .errors import EXTRAS, UserError, extra_available, require_extra
from .files import atomic_path

MESH_FORMATS = ('.ply', '.obj', '.glb')
DENSITY_LEVEL = 10.0  # EG3D's gen_samples.py / its shape-extraction notebook


def _planes(G, w, seed=render.SEED):
    """The tri-planes of w [1, num_ws, w_dim], shaped [1, 3, 32, H, W] as the renderer wants them."""
    with torch.no_grad(), render.seeded(seed, w.device):
        planes = G.backbone.synthesis(w, noise_mode='const')
    return planes.view(len(planes), 3, 32, planes.shape[-2], planes.shape[-1])


def features_to_uint8(rgb3):
    """The decoder's first 3 'rgb' feature channels (~[0, 1]) -> uint8 colours as EG3D's raw image
    shows them: the ray marcher's x * 2 - 1, then EG3D's (x * 127.5 + 128) clipped to [0, 255]."""
    x = np.asarray(rgb3, dtype=np.float32) * 2 - 1
    return np.clip(x * 127.5 + 128, 0, 255).astype(np.uint8)


def vertex_colours(G, w, vertices, chunk=2 ** 16, seed=render.SEED):
    """uint8 RGB [V, 3]: the generator's radiance at each vertex (EG3D world units), evaluated with
    G.renderer.run_model in chunks of `chunk` points."""
    vertices = np.asarray(vertices, dtype=np.float32)
    out = np.empty((len(vertices), 3), dtype=np.uint8)
    if not len(vertices):
        return out
    planes = _planes(G, w, seed)
    with torch.no_grad(), render.seeded(seed, w.device):
        for start in range(0, len(vertices), chunk):
            pts = torch.from_numpy(vertices[start:start + chunk]).to(w.device)[None]
            dirs = torch.zeros_like(pts)
            dirs[..., -1] = -1  # the decoder ignores directions; this is sample_density's choice
            feats = G.renderer.run_model(planes, G.decoder, pts, dirs, G.rendering_kwargs)['rgb']
            out[start:start + len(pts[0])] = features_to_uint8(feats[0, :, :3].float().cpu().numpy())
    return out


def colour_mesh(mesh, G, w, chunk=2 ** 16):
    """Set mesh's vertex colours to the generator's radiance at its vertices (in place); returns it."""
    import trimesh
    rgb = vertex_colours(G, w, mesh.vertices, chunk=chunk)
    rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    return mesh


def mesh_from_density(sigmas, box_warp=1.0, level=DENSITY_LEVEL):
    """trimesh.Trimesh of render.extract_mesh (same frame, same fallback), without colours."""
    import trimesh
    verts, faces = render.extract_mesh(sigmas, box_warp, level)
    return trimesh.Trimesh(verts, faces, process=False)


def coloured_mesh(G, w, shape_res=256, colour=True, level=DENSITY_LEVEL, progress=True, clean=True,
                  decimate=None):
    """Extract the surface of w [1, num_ws, w_dim] at shape_res^3 and colour it. clean / decimate as
    in clean_mesh (colours are evaluated after them, at the final vertices)."""
    sigmas = render.sample_density(G, w, shape_res, progress=progress)
    mesh = mesh_from_density(sigmas, G.rendering_kwargs['box_warp'], level)
    if not len(mesh.faces):
        raise UserError(f'the density volume of w has no surface at shape_res={shape_res} (nothing to mesh)')
    if clean or decimate:
        mesh = clean_mesh(mesh, keep_largest=clean, decimate_to=decimate)
    if colour:
        colour_mesh(mesh, G, w)
    return mesh

#----------------------------------------------------------------------------
# Cleaning.

def _component_labels(mesh):
    """Per face, the index of its connected component (faces joined by shared edges)."""
    import trimesh
    return trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))


def component_count(mesh):
    """How many connected components (faces joined by shared edges) the mesh has."""
    return int(_component_labels(mesh).max()) + 1 if len(mesh.faces) else 0


def largest_component(mesh):
    """The connected component (faces joined by shared edges) with the most faces, vertex colours kept."""
    if not len(mesh.faces):
        return mesh.copy()
    labels = _component_labels(mesh)
    keep = labels == np.bincount(labels).argmax()
    return mesh.submesh([np.flatnonzero(keep)], append=True, repair=False)


def decimate_mesh(mesh, face_count):
    """Quadric decimation to about face_count faces (fast-simplification, an optional package).
    Vertex colours are carried over from the nearest vertex of the input mesh."""
    if not extra_available('mesh'):  # the same check as gen's, before any work
        pkgs = ' '.join(p for _, p in EXTRAS['mesh'])
        raise UserError(f'decimating a mesh needs the "mesh" extra; install it with: pip install {pkgs}')
    require_extra('mesh')
    import trimesh
    out = mesh.simplify_quadric_decimation(face_count=int(face_count))
    if mesh.visual.kind == 'vertex' and len(out.vertices):
        from scipy.spatial import cKDTree
        _, nearest = cKDTree(mesh.vertices).query(out.vertices)
        out.visual = trimesh.visual.ColorVisuals(out, vertex_colors=mesh.visual.vertex_colors[nearest])
    return out


def clean_mesh(mesh, keep_largest=True, decimate_to=None):
    """Keep only the largest connected component (marching cubes leaves floaters) and/or decimate to
    about `decimate_to` faces (nothing happens when the mesh has no more). Returns a new mesh."""
    if decimate_to is not None and (isinstance(decimate_to, bool) or int(decimate_to) != decimate_to
                                    or decimate_to < 4):
        raise UserError(f'decimate_to must be a whole number of faces >= 4, got {decimate_to!r}')
    out = largest_component(mesh) if keep_largest else mesh.copy()
    if decimate_to is not None and len(out.faces) > decimate_to:
        out = decimate_mesh(out, decimate_to)
    return out

#----------------------------------------------------------------------------
# Writing.

def save_mesh(path, mesh):
    """Write a trimesh to .ply (binary, vertex colours as uchar red/green/blue/alpha), .obj (vertex
    colours as 'v x y z r g b' floats in [0, 1]) or .glb (glTF binary, colours as COLOR_0),
    atomically. The format comes from path's suffix."""
    path = Path(path)
    fmt = path.suffix.lower()
    if fmt not in MESH_FORMATS:
        raise UserError(f'path {path}: a mesh is written as {", ".join(MESH_FORMATS)}, not {fmt or "(no suffix)"}')
    with atomic_path(path) as tmp:
        # trimesh would take the format from the temporary name's suffix (.tmp.ply etc.): name it.
        mesh.export(tmp, file_type=fmt[1:])
    return path


def save_shape_file(path, G, w, shape_res=256, shape_format=None, colour=True, clean=True, decimate=None,
                    level=DENSITY_LEVEL, progress=True):
    """Sample w's density at shape_res^3 and write `path` (its suffix replaced by shape_format
    when given): .mrc is the volume (render.save_mrc); .ply/.obj/.glb a mesh, cleaned to its
    largest component with `clean`, decimated to `decimate` faces when given, coloured with
    `colour`. Returns (path, number of faces or None for .mrc)."""
    path = Path(path)
    fmt = (shape_format or path.suffix).lower()
    if fmt not in SHAPE_FORMATS:
        raise UserError(f'shape_format must be one of {", ".join(SHAPE_FORMATS)}, got {fmt or "(none)"!r}')
    path = path.with_suffix(fmt)
    if fmt == '.mrc':
        render.save_mrc(path, render.sample_density(G, w, shape_res, progress=progress))
        return path, None
    mesh = coloured_mesh(G, w, shape_res, colour=colour, level=level, progress=progress, clean=clean,
                         decimate=decimate)
    save_mesh(path, mesh)
    return path, len(mesh.faces)
