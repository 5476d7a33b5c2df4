"""The CUDA paths: EG3D's custom ops built and agreeing with their reference code, rendering,
regressors, on-the-fly data, training and `gen` on a GPU. Marked `cuda`; skipped with the reason
where no CUDA device is available (CI, laptops)."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import run_cli

pytestmark = [pytest.mark.eg3d, pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 matmuls differ from the CPU in the third digit: compare in full float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope='module')
def G_cuda(tiny_G):
    import copy
    return copy.deepcopy(tiny_G).cuda()


def _close(a, b, tol):
    """Largest difference relative to b's largest magnitude, below tol."""
    err = float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max() / b.abs().max().clamp_min(1e-8))
    assert err < tol, err


def test_custom_ops_are_built_and_match_their_reference(eg3d_root):
    from torch.utils.cpp_extension import CUDA_HOME
    if CUDA_HOME is None or shutil.which('ninja') is None:
        pytest.skip('needs the CUDA compiler and ninja to build the custom ops')
    from eg3d_regressor_plugin import bridge
    from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d
    status = bridge.custom_ops_status(torch.device('cuda'))
    assert status == dict.fromkeys(('bias_act', 'upfirdn2d', 'filtered_lrelu'), 'compiled'), status
    gen = torch.Generator(device='cuda').manual_seed(0)
    x = torch.randn(4, 16, 32, 32, device='cuda', generator=gen, requires_grad=True)
    b = torch.randn(16, device='cuda', generator=gen)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=torch.device('cuda'))
    cases = {
        'bias_act': lambda impl: bias_act.bias_act(x, b, act='lrelu', clamp=256, impl=impl),
        'upfirdn2d': lambda impl: upfirdn2d.upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4, impl=impl),
        'filtered_lrelu': lambda impl: filtered_lrelu.filtered_lrelu(x, f, f, b, up=2, down=2, padding=[1, 2, 1, 2],
                                                                     clamp=256, impl=impl),
    }
    for name, op in cases.items():
        out, ref = op('cuda'), op('ref')
        _close(out, ref, 1e-3)  # the ops are built with --use_fast_math
        grad, = torch.autograd.grad(out.square().sum(), x)
        grad_ref, = torch.autograd.grad(ref.square().sum(), x)
        _close(grad, grad_ref, 1e-3)


def test_generator_on_cuda_matches_cpu(tiny_G, G_cuda):
    """Mapping and tri-plane backbone (the custom ops' users) agree with the CPU; a full render is
    finite and in range (its ray jitter draws from another RNG on each device)."""
    from eg3d_regressor_plugin import render
    from eg3d_regressor_plugin.cameras import frontal_label
    z = torch.randn(2, tiny_G.z_dim, generator=torch.Generator().manual_seed(1))
    c = frontal_label(2)
    with torch.no_grad():
        w_cpu = tiny_G.mapping(z, c, truncation_psi=0.7)
        w_gpu = G_cuda.mapping(z.cuda(), c.cuda(), truncation_psi=0.7)
        _close(w_gpu, w_cpu, 1e-4)
        planes_cpu = tiny_G.backbone.synthesis(w_cpu, noise_mode='const')
        planes_gpu = G_cuda.backbone.synthesis(w_cpu.cuda(), noise_mode='const')
        _close(planes_gpu, planes_cpu, 1e-3)
    out = render.render(G_cuda, w_cpu.cuda(), c.cuda())
    img = out['image']
    assert img.device.type == 'cuda' and img.shape == (2, 3, 128, 128) and torch.isfinite(img).all()
    ref = render.render(tiny_G, w_cpu, c)['image']
    assert abs(float(img.mean()) - float(ref.mean())) < 0.05


@pytest.mark.parametrize('arch', ['vit', 'unet', 'psp'])
def test_regressors_on_cuda_match_cpu(arch):
    from eg3d_regressor_plugin.training.networks import build_regressor
    torch.manual_seed(0)
    model = build_regressor(arch, num_ws=14, w_dim=512, input_resolution=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = model.cuda()(x.cuda())
    for key in ('w', 'pose'):
        assert out[key].device.type == 'cuda'
        _close(out[key], ref[key], 1e-3)


def test_pairs_are_rendered_and_resized_on_the_gpu(G_cuda, monkeypatch):
    """On the fly data never leaves the GPU: no tensor there is copied to the host."""
    from eg3d_regressor_plugin.training.data import PairSampler

    def refuse(name):
        original = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            assert not self.is_cuda, f'Tensor.{name}() on a CUDA tensor: a round trip through the host'
            return original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, method)
    for name in ('cpu', 'numpy', 'tolist'):
        refuse(name)
    batch = PairSampler(G_cuda, resolution=64).sample_seeds(range(4))
    monkeypatch.undo()
    assert batch['img'].shape == (4, 3, 64, 64) and batch['w'].shape == (4, 14, 512)
    assert all(v.is_cuda for v in batch.values())


def test_train_on_cuda_then_load_on_cpu(tmp_path, tiny_pkl, tiny_G):
    from eg3d_regressor_plugin.training import checkpoint
    proc = run_cli('train', '--network', tiny_pkl, '--outdir', tmp_path, '--kimg', 0.032, '--tick', 0.016, '--snap', 1,
                   '--arch', 'vit', '--input-res', 64, '--batch', 8, '--reuse', 1, '--val-seeds', '0-3',
                   '--device', 'cuda')
    assert proc.returncode == 0, proc.stderr
    (run,) = tmp_path.iterdir()
    stats = [json.loads(l) for l in (run / 'stats.jsonl').read_text().splitlines()]
    assert stats[-1]['Progress/nimg'] == 32 and np.isfinite(stats[-1]['Val/w_l1_norm'])
    snap = sorted(run.glob('regressor-snapshot-*.pt'))[-1]
    assert all(v.device.type == 'cpu' for v in torch.load(snap, weights_only=True)['state_dict'].values())
    pred = checkpoint.load_regressor(snap, G=tiny_G)
    w, pose = pred(torch.zeros(1, 3, 64, 64))
    assert w.shape == (1, 14, 512) and torch.isfinite(w).all() and pose.shape == (1, 2)


def test_gen_on_cuda_agrees_with_cpu(tmp_path, tiny_pkl, tiny_regressor, tiny_G):
    from eg3d_regressor_plugin.files import save_image
    from eg3d_regressor_plugin.training.data import PairSampler
    img = PairSampler(tiny_G).sample_seeds([1000])['img'][0]
    save_image(tmp_path / 'face.png', img)
    runs = {'cuda': ['--shapes', '--shape-res', 32], 'cpu': [], 'cuda-refined': ['--refine-steps', 3]}
    w = {}
    for name, extra in runs.items():
        out = tmp_path / name
        proc = run_cli('gen', '--network', tiny_pkl, '--regressor', tiny_regressor, '--image', tmp_path / 'face.png',
                       '--no-align', '--outdir', out, '--views', 2, *extra, '--device', name.split('-')[0])
        assert proc.returncode == 0, proc.stderr
        w[name] = np.load(out / 'face' / 'w.npy')
        assert (out / 'face' / 'reconstruction.png').is_file() and (out / 'face' / 'depth.npy').is_file()
    assert (tmp_path / 'cuda' / 'face' / 'shape.mrc').is_file()
    _close(torch.from_numpy(w["cuda"]), torch.from_numpy(w["cpu"]), 1e-2)  # the regressor alone (cuDNN may use TF32)
    assert not np.array_equal(w['cuda-refined'], w['cuda']) and np.isfinite(w['cuda-refined']).all()


@pytest.mark.parametrize('arch', ['vit', 'unet', 'psp'])
def test_predictor_cuda_graph_replays_the_eager_forward(tmp_path, arch):
    """The graphed forward gives the eager forward's outputs for every new input, per input shape."""
    from eg3d_regressor_plugin.training.checkpoint import Predictor, load_checkpoint, save_checkpoint
    from eg3d_regressor_plugin.training.networks import build_regressor
    torch.manual_seed(0)
    model = build_regressor(arch, num_ws=14, w_dim=512, input_resolution=64).eval()
    stats = dict(center=torch.randn(14, 512), scale=torch.rand(14, 512) + 0.5)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / 'r.pt', model, stats, dict(num_ws=14, w_dim=512)))
    graphed, eager = Predictor(ckpt, device='cuda'), Predictor(ckpt, device='cuda', cuda_graph=False)
    for shape in [(1, 3, 128, 128), (1, 3, 128, 128), (2, 3, 64, 64), (1, 3, 128, 128)]:
        x = torch.rand(shape, device='cuda') * 2 - 1
        (w, pose), (w_ref, pose_ref) = graphed(x), eager(x)
        assert torch.allclose(w, w_ref, atol=1e-5) and torch.allclose(pose, pose_ref, atol=1e-5)
    assert len(graphed._forward.graphs) == 2 and not graphed._forward.failed
    # With gradients it runs eagerly, and they reach the image.
    x = torch.rand(1, 3, 128, 128, device='cuda', requires_grad=True)
    w, _ = graphed.regress(x, grad=True)
    w.sum().backward()
    assert x.grad is not None and len(graphed._forward.graphs) == 2


def test_inverter_replays_image_to_label_without_waiting(tiny_G, G_cuda, tiny_regressor):
    """Inverter's graph (regressor + camera label) gives the eager path's w, pose and labels, and
    a call synchronises nothing with the host: the render's launches overlap the regression."""
    from eg3d_regressor_plugin import cameras
    from eg3d_regressor_plugin.invert import Inverter
    graphed, eager = Inverter(G_cuda, tiny_regressor, device='cuda'), Inverter(G_cuda, tiny_regressor, 'cuda', False)
    x = torch.rand(1, 3, 128, 128, device='cuda') * 2 - 1
    for pose in ['predicted', 'frontal', (0.3, -0.1)]:
        out, ref = graphed(x, pose=pose), eager(x, pose=pose)
        for k in ('w', 'yaw', 'pitch', 'c'):
            assert torch.allclose(out[k], ref[k], atol=1e-5), (pose, k)
    assert len(graphed._infer.graphs) == 1 and not graphed._infer.failed
    cpu = Inverter(tiny_G, tiny_regressor)(x.cpu())
    _close(graphed(x)['c'], cpu['c'], 1e-3)
    yaw, pitch = torch.full((1,), 0.2, device='cuda'), torch.zeros(1, device='cuda')
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        with pytest.raises(RuntimeError):  # the check works: EG3D's sampler, run eagerly, copies from the host
            cameras.pose_to_label(yaw, pitch, device='cuda')
        out = graphed(x)
        cameras.label_function(1, 'cuda')(yaw, pitch)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert out['c'].shape == (1, 25)
