"""Pose <-> camera label, built on EG3D's camera_utils."""

import math

import numpy as np
import pytest
import torch

from eg3d_regressor_plugin import cameras

pytestmark = pytest.mark.eg3d


def test_label_layout_and_frontal(eg3d_root):
    c = cameras.frontal_label(2)
    assert c.shape == (2, 25)
    m = c[0, :16].reshape(4, 4)
    # Frontal camera on +z at radius 2.7, looking at the pivot (0, 0, 0.2).
    assert torch.allclose(m[:3, 3], torch.tensor([0, 0, 2.7]), atol=1e-5)
    assert torch.allclose(c[0, 16:].reshape(3, 3), torch.tensor([[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]]))


def test_matches_eg3d_gen_samples_convention(eg3d_root):
    import camera_utils
    pivot = torch.tensor([0, 0, 0.2])
    ref = camera_utils.LookAtPoseSampler.sample(math.pi / 2 + 0.4, math.pi / 2 - 0.2, pivot, radius=2.7)
    ours = cameras.pose_to_label(0.4, -0.2)[0, :16].reshape(4, 4)
    assert torch.allclose(ref[0], ours, atol=1e-6)
    # +yaw moves the camera toward +x.
    assert ours[0, 3] > 0


def test_round_trip(eg3d_root):
    g = torch.Generator().manual_seed(0)
    yaw, pitch = cameras.sample_poses(200, g)
    y2, p2, r = cameras.label_to_pose(cameras.pose_to_label(yaw, pitch))
    assert torch.allclose(yaw, y2, atol=1e-4) and torch.allclose(pitch, p2, atol=1e-4)
    assert torch.allclose(r, torch.full_like(r, 2.7), atol=1e-5)


def test_fov_intrinsics_use_eg3d(eg3d_root):
    K = cameras.intrinsics(fov_deg=18.837)
    assert abs(K[0, 0].item() - 4.2634) < 1e-3


def test_elevation_conversion_round_trip():
    p = np.linspace(-0.5, 0.5, 11)
    assert np.allclose(cameras.elevation_to_pitch(cameras.pitch_to_elevation(p)), p)
    assert cameras.pitch_to_elevation(0.0) == pytest.approx(0.0)
    # A pitch offset is not an elevation angle.
    assert abs(cameras.pitch_to_elevation(0.3) - 0.3) > 0.05


def test_pose_sampling_is_seeded_and_bounded():
    a = cameras.sample_poses(500, torch.Generator().manual_seed(5))
    b = cameras.sample_poses(500, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].abs().max() <= cameras.FFHQ_YAW_MAX and a[1].abs().max() <= cameras.FFHQ_PITCH_MAX
    assert 0.2 < a[0].std() < 0.4



def test_traced_label_matches_pose_to_label(eg3d_root):
    """The traced sampler (what a GPU replays) gives pose_to_label's labels for other poses than
    the ones it was traced at, with other options too."""
    yaw, pitch = torch.tensor([0.3, -0.5, 0.0]), torch.tensor([-0.2, 0.1, 0.35])
    for kwargs in ({}, dict(radius=3.0, fov_deg=20.0)):
        traced = cameras._traced_label(3, torch.device('cpu'), **kwargs)
        assert torch.allclose(traced(yaw, pitch), cameras.pose_to_label(yaw, pitch, **kwargs), atol=1e-6)
    assert cameras.label_function(3) is not cameras.label_function(3)  # the CPU builds labels eagerly


def test_traced_label_copies_nothing_from_the_host(eg3d_root):
    """Traced for another device, every tensor the label is made of already lives there: a call
    makes no host->device copy (each one waits for the GPU) and can be captured in a CUDA graph."""
    meta = torch.device('meta')
    fn = cameras.label_function(2, meta)
    assert fn is cameras.label_function(2, meta)  # traced once per batch size and device
    constants = [getattr(fn, node.target) for node in fn.graph.nodes if node.op == 'get_attr']
    assert len(constants) >= 2 and all(t.device == meta for t in constants)
    for node in fn.graph.nodes:
        device = node.kwargs.get('device')
        assert node.target is not torch.ops.aten._to_copy.default, node
        if device is not None and node.target is not torch.ops.aten.empty.memory_format:
            assert torch.device(device) == meta, node
    c = fn(torch.zeros(2, device=meta), torch.zeros(2, device=meta))
    assert c.shape == (2, 25) and c.device == meta
