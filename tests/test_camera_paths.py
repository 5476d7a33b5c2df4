"""Camera paths: the built-in sweeps, JSON files and every invalid case's message."""

import json
import math

import numpy as np
import pytest
import torch

from eg3d_regressor_plugin import camera_paths, cameras
from eg3d_regressor_plugin.errors import UserError


@pytest.mark.parametrize('name', ['orbit', 'yaw', 'pitch'])
def test_builtin_paths(name):
    path = camera_paths.parse_camera_path(name, 24, offset=(0.1, -0.05))
    assert len(path) == 24
    yaw = np.array([c['yaw'] for c in path]) - 0.1
    pitch = np.array([c['pitch'] for c in path]) + 0.05
    assert all(c['radius'] == cameras.FFHQ_RADIUS and c['focal'] == cameras.FFHQ_FOCAL for c in path)
    if name == 'orbit':
        assert np.allclose(np.c_[yaw, pitch], cameras.orbit(24))
    elif name == 'yaw':
        assert np.allclose(pitch, 0) and np.isclose(yaw.max(), camera_paths.YAW_RANGE)
        assert np.isclose(yaw.min(), -camera_paths.YAW_RANGE)
    else:
        assert np.allclose(yaw, 0) and np.isclose(pitch.max(), camera_paths.PITCH_RANGE)
    # Smooth and periodic: no step is much bigger than the others, including the loop's wrap.
    steps = np.hypot(np.diff(np.r_[yaw, yaw[0]]), np.diff(np.r_[pitch, pitch[0]]))
    assert steps.max() < 2 * math.pi * max(camera_paths.YAW_RANGE, camera_paths.PITCH_RANGE) / 24 * 1.01
    assert camera_paths.parse_camera_path(name.upper(), 3)  # case-insensitive


@pytest.mark.eg3d
def test_path_labels(eg3d_root):
    path = camera_paths.parse_camera_path('orbit', 8, offset=(0.2, 0.1))
    c = camera_paths.path_labels(path)
    assert c.shape == (8, 25)
    yaw, pitch, radius = cameras.label_to_pose(c)
    assert torch.allclose(yaw, torch.tensor([p['yaw'] for p in path]), atol=1e-4)
    assert torch.allclose(pitch, torch.tensor([p['pitch'] for p in path]), atol=1e-4)
    assert torch.allclose(radius, torch.full((8,), cameras.FFHQ_RADIUS), atol=1e-4)
    assert torch.allclose(c[:, 16:], cameras.intrinsics().reshape(1, 9))


@pytest.mark.eg3d
def test_json_path(tmp_path, eg3d_root):
    f = tmp_path / 'cams.json'
    f.write_text(json.dumps({'frames': [{'yaw': 0.3, 'pitch': -0.1},
                                        {'yaw': -0.2, 'pitch': 0.0, 'radius': 3.0, 'fov': 20}]}))
    path = camera_paths.parse_camera_path(str(f), frames=99)  # the file sets the frame count
    assert path == [dict(yaw=0.3, pitch=-0.1, radius=cameras.FFHQ_RADIUS, focal=cameras.FFHQ_FOCAL),
                    dict(yaw=-0.2, pitch=0.0, radius=3.0, fov_deg=20.0)]
    c = camera_paths.path_labels(path)
    yaw, pitch, radius = cameras.label_to_pose(c)
    assert torch.allclose(radius, torch.tensor([cameras.FFHQ_RADIUS, 3.0]), atol=1e-4)
    assert torch.allclose(c[1, 16:], cameras.intrinsics(fov_deg=20).reshape(9))
    f.write_text(json.dumps([{'yaw': 0, 'pitch': 0}]))  # a bare list, integers
    assert camera_paths.parse_camera_path(f, 5)[0]['yaw'] == 0.0


BAD = [
    ('{"yaw": ', 'is not valid JSON'),
    ('{"yaw": 0, "pitch": 0}', 'expected a list of cameras'),
    ('[]', 'has no frames'),
    ('[{"yaw": 0, "pitch": 0}, 3]', 'frame 1: expected an object'),
    ('[{"yaw": 0, "pitch": 0}, {"yaw": 0.1}]', "frame 1: missing 'pitch'"),
    ('[{"pitch": 0}]', "frame 0: missing 'yaw'"),
    ('[{"yaw": "0.1", "pitch": 0}]', 'frame 0: yaw must be a finite number, got "0.1"'),
    ('[{"yaw": true, "pitch": 0}]', 'frame 0: yaw must be a finite number'),
    ('[{"yaw": 0, "pitch": NaN}]', 'frame 0: pitch must be a finite number'),
    ('[{"yaw": 0, "pitch": 0}, {"yaw": 4, "pitch": 0}]', r'frame 1: yaw 4 is outside \[-pi, pi\]'),
    ('[{"yaw": 0, "pitch": 1.6}]', 'frame 0: pitch 1.6 is outside'),
    ('[{"yaw": 0, "pitch": 0, "radius": 0}]', 'frame 0: radius 0 must be > 0'),
    ('[{"yaw": 0, "pitch": 0, "fov": 180}]', r'frame 0: fov 180 must be in \[1, 180\) degrees'),
    ('[{"yaw": 0, "pitch": 0, "fov": 0.5}]', 'frame 0: fov 0.5 must be in'),
    ('[{"yaw": 0, "pitch": 0, "fov_deg": 20}]', "frame 0: unknown key\\(s\\) 'fov_deg'"),
]


@pytest.mark.parametrize('text,message', BAD)
def test_invalid_json(tmp_path, text, message):
    f = tmp_path / 'bad.json'
    f.write_text(text)
    with pytest.raises(UserError, match=message) as e:
        camera_paths.parse_camera_path(str(f), 10)
    assert str(f) in e.value.message and '\n' not in e.value.message


def test_invalid_specs(tmp_path):
    with pytest.raises(UserError, match="camera_path 'spiral': expected one of orbit, yaw, pitch or a .json file"):
        camera_paths.parse_camera_path('spiral', 10)
    with pytest.raises(UserError, match='does not exist'):
        camera_paths.parse_camera_path(str(tmp_path / 'missing.json'), 10)
    with pytest.raises(UserError, match='frames must be a whole number >= 1'):
        camera_paths.parse_camera_path('orbit', 0)
