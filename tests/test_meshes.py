"""Coloured meshes: writers reopened by trimesh with their colours, cleaning, decimation."""

import importlib.util

import numpy as np
import pytest
import trimesh

from eg3d_regressor_plugin import meshes
from eg3d_regressor_plugin.errors import UserError

SHAPE_RES = 48


def two_spheres():
    big = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    small = trimesh.creation.icosphere(subdivisions=2, radius=0.3)
    small.apply_translation([3, 0, 0])
    mesh = trimesh.util.concatenate([big, small])
    colours = (np.abs(mesh.vertices) / 3 * 255).astype(np.uint8)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.c_[colours, np.full(len(colours), 255, np.uint8)])
    return mesh, len(big.faces)


def test_clean_keeps_largest_component():
    mesh, big_faces = two_spheres()
    assert len(mesh.split(only_watertight=False)) == 2
    out = meshes.clean_mesh(mesh)
    assert len(out.faces) == big_faces
    assert len(out.split(only_watertight=False)) == 1
    assert np.abs(out.vertices).max() <= 1.0 + 1e-6  # the big sphere, not the far small one
    assert out.visual.kind == 'vertex' and len(out.visual.vertex_colors) == len(out.vertices)
    assert len(meshes.clean_mesh(mesh, keep_largest=False).faces) == len(mesh.faces)


def test_decimate_reduces_faces():
    if importlib.util.find_spec('fast_simplification') is None:
        pytest.skip('fast-simplification is not installed')
    mesh, big_faces = two_spheres()
    out = meshes.clean_mesh(mesh, decimate_to=200)
    assert 0 < len(out.faces) <= 220 < big_faces
    assert out.visual.kind == 'vertex' and len(out.visual.vertex_colors) == len(out.vertices)


def test_decimate_errors(monkeypatch):
    mesh, _ = two_spheres()
    with pytest.raises(UserError, match='decimate_to'):
        meshes.clean_mesh(mesh, decimate_to=0)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'fast_simplification' else real(name, *a))
    with pytest.raises(UserError, match='pip install fast-simplification'):
        meshes.clean_mesh(mesh, decimate_to=100)


def test_save_mesh_rejects_unknown_suffix(tmp_path):
    mesh, _ = two_spheres()
    with pytest.raises(UserError, match=r'\.stl'):
        meshes.save_mesh(tmp_path / 'x.stl', mesh)
    assert not list(tmp_path.iterdir())


def test_features_to_uint8_matches_raw_image_mapping():
    # feature 0 -> raw -1 -> 0; 0.5 -> 0 -> 128; 1 -> 1 -> 255
    assert meshes.features_to_uint8([[0.0, 0.5, 1.0]]).tolist() == [[0, 128, 255]]


@pytest.mark.eg3d
@pytest.mark.parametrize('fmt', ['.ply', '.obj', '.glb'])
def test_coloured_mesh_files(tmp_path, tiny_G, fmt):
    w = tiny_G.backbone.mapping.w_avg.reshape(1, 1, -1).repeat(1, tiny_G.backbone.num_ws, 1)
    with pytest.warns(UserWarning, match='density never crosses'):  # an untrained generator
        path, n_faces = meshes.save_shape_file(tmp_path / 'shape', tiny_G, w, shape_res=SHAPE_RES,
                                               shape_format=fmt, progress=False)
    assert path.suffix == fmt and path.is_file() and n_faces > 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    m = trimesh.load(path, force='mesh', process=False)
    assert len(m.faces) == n_faces
    assert m.visual.kind == 'vertex'
    colours = np.asarray(m.visual.vertex_colors)
    assert colours.shape == (len(m.vertices), 4)
    assert colours[:, :3].std(0).max() > 0.5  # not one constant colour
    assert np.abs(m.vertices).max() <= tiny_G.rendering_kwargs['box_warp'] / 2 + 1e-5
    # The colours are the generator's radiance at the vertices, mapped as EG3D's raw image is.
    expected = meshes.vertex_colours(tiny_G, w, m.vertices[:50])
    assert np.abs(colours[:50, :3].astype(int) - expected).max() <= 1


@pytest.mark.eg3d
def test_decimated_coloured_mesh(tmp_path, tiny_G):
    if importlib.util.find_spec('fast_simplification') is None:
        pytest.skip('fast-simplification is not installed')
    w = tiny_G.backbone.mapping.w_avg.reshape(1, 1, -1).repeat(1, tiny_G.backbone.num_ws, 1)
    with pytest.warns(UserWarning, match='density never crosses'):
        _, full = meshes.save_shape_file(tmp_path / 'full.ply', tiny_G, w, shape_res=SHAPE_RES, progress=False)
        path, n_faces = meshes.save_shape_file(tmp_path / 'small.ply', tiny_G, w, shape_res=SHAPE_RES,
                                               decimate=full // 4, progress=False)
    assert n_faces <= full // 4 + 10 < full
    m = trimesh.load(path, process=False)
    assert len(m.faces) == n_faces and np.asarray(m.visual.vertex_colors)[:, :3].std(0).max() > 0.5


@pytest.mark.eg3d
def test_save_shape_file_mrc_and_bad_format(tmp_path, tiny_G):
    w = tiny_G.backbone.mapping.w_avg.reshape(1, 1, -1).repeat(1, tiny_G.backbone.num_ws, 1)
    path, n = meshes.save_shape_file(tmp_path / 'vol', tiny_G, w, shape_res=32, shape_format='.mrc', progress=False)
    assert path.name == 'vol.mrc' and path.is_file() and n is None
    with pytest.raises(UserError, match="shape_format must be one of .mrc, .ply, .obj, .glb, got '.stl'"):
        meshes.save_shape_file(tmp_path / 'x', tiny_G, w, shape_format='.stl')
