"""Image -> (w, pose, camera label) -> reconstruction: the one path from a photo or render to
EG3D's latent code (and, optionally, a refined one), shared by gen, eval, interp, edit and the
benchmarks."""

import time

import numpy as np
import torch

from . import cameras
from .catalog import TUNE_COARSE
from .cudagraph import GraphedCall
from .images import to_tensor


class Inverter:
    """Regress w and the pose of images with a trained regressor checkpoint, for generator G."""

    def __init__(self, G, regressor_path, device='cpu', cuda_graph=True):
        from .training.checkpoint import load_regressor
        self.G = G
        self.device = torch.device(device)
        self.predictor = load_regressor(regressor_path, G=G, device=self.device, cuda_graph=False)
        # On a GPU, image -> (w, pose, camera label) replays as one CUDA graph that copies nothing
        # from the host: the CPU goes straight on to launch the render while the GPU regresses.
        self._infer = GraphedCall(self._infer_eager) if cuda_graph else self._infer_eager

    def _infer_eager(self, x):
        out = self.predictor.forward_eager(x)
        out['c'] = cameras.label_function(len(x), x.device)(out['pose'][:, 0], out['pose'][:, 1])
        return out

    def __call__(self, img, pose='predicted'):
        """img: uint8 [H,W,3] or a tensor [N,3,H,W] in [-1,1]. pose: 'predicted', 'frontal' or
        (yaw, pitch) for the returned camera label. Returns dict(w [N,num_ws,w_dim], yaw, pitch
        (the predicted pose, [N] tensors), c [N,25] (the label to render with))."""
        x = to_tensor(img, device=self.device) if isinstance(img, np.ndarray) else self.predictor.as_batch(img)
        with torch.no_grad():
            out = self._infer(x)
        w, c = out['w'], out['c']
        yaw, pitch = out['pose'][:, 0], out['pose'][:, 1]
        if pose != 'predicted':
            fixed = (0.0, 0.0) if pose == 'frontal' else pose
            n = len(w)
            c = cameras.label_function(n, self.device)(*(torch.full((n,), float(v), device=self.device) for v in fixed))
        return dict(w=w, yaw=yaw, pitch=pitch, c=c)


def truncate(G, w, psi):
    """EG3D's truncation applied to a regressed w: w_avg + psi * (w - w_avg)."""
    if psi == 1:
        return w
    w_avg = G.backbone.mapping.w_avg.to(w)
    return w_avg + psi * (w - w_avg)


def reconstruct(G, inverter, img, pose='predicted', truncation_psi=1.0, refine_steps=0, refine_lr=0.01,
                perceptual=None, refine_optimizer='lbfgs', tune_steps=0, tune_lr=None, tune_coarse=TUNE_COARSE,
                progress=False):
    """One aligned image (uint8 [R,R,3], R = G.img_resolution) -> dict of tensors and timings:
    w_regressor, w (final: refined when refine_steps > 0), yaw, pitch (predicted), c_pred (the
    predicted camera, where the refinement compares with the input), c (the camera to render at),
    history (refinement), seconds; with tune_steps > 0 also G (a copy of G tuned around the final
    w at c_pred: pivotal tuning, tuning.py, the first tune_coarse of the steps at half the neural
    rendering resolution) and tune_history, else G is None."""
    t0 = time.perf_counter()
    with torch.no_grad():
        inv = inverter(img, pose=pose)
    w = truncate(G, inv['w'], truncation_psi).float()
    c_pred = cameras.pose_to_label(inv['yaw'], inv['pitch'], device=w.device)
    seconds = dict(regress=time.perf_counter() - t0)
    result = dict(w_regressor=w, w=w, yaw=inv['yaw'], pitch=inv['pitch'], c_pred=c_pred, c=inv['c'].float(),
                  history=None)
    if refine_steps:
        from .optimize import optimize_w
        t0 = time.perf_counter()
        result['w'], result['history'] = optimize_w(G, img, c_pred, w, refine_steps, lr=refine_lr,
                                                    perceptual=perceptual, progress=progress,
                                                    desc='refine', optimizer=refine_optimizer)
        seconds['refine'] = time.perf_counter() - t0
    result['G'] = result['tune_history'] = None
    if tune_steps:
        from . import tuning
        t0 = time.perf_counter()
        history = []
        result['G'] = tuning.tune_generator(G, img, c_pred, result['w'], tune_steps, lr=tune_lr or tuning.PTI_LR,
                                            perceptual=perceptual, progress=progress,
                                            coarse=tune_coarse,
                                            warmup=tuning.REFINED_PIVOT_WARMUP if refine_steps else 0,
                                            callback=lambda step, record: history.append(record))
        result['tune_history'] = history
        seconds['tune'] = time.perf_counter() - t0
    result['seconds'] = seconds
    return result
