"""Replay a function of one tensor as a CUDA graph, one graph per input shape.

A regressor's forward pass at batch 1 is a few hundred small kernels: on a fast GPU their launches
take longer than their work, a sizeable share of an EG3D render's time (benchmarks/overhead.py
shows it). Replaying them as one captured graph costs a single launch.
"""

import warnings

import torch


class GraphedCall:
    """fn(x) -> dict of tensors, replayed from a CUDA graph for CUDA inputs (gradients off);
    called directly otherwise. fn must not depend on anything but x's values that changes
    between calls (a model's weights may change in place). If capturing fails, warns once and
    calls fn directly from then on."""

    def __init__(self, fn, warmup=2, max_graphs=8):
        self.fn = fn
        self.warmup = warmup
        self.max_graphs = max_graphs  # each graph keeps its own memory: inputs of more shapes run eagerly
        self.graphs = {}  # (shape, dtype, device) -> (graph, static input, static outputs)
        self.failed = False

    def __call__(self, x):
        if self.failed or x.device.type != 'cuda' or torch.is_grad_enabled():
            return self.fn(x)
        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self.graphs:
            if len(self.graphs) >= self.max_graphs:
                return self.fn(x)
            try:
                with torch.cuda.device(x.device):  # capture and replay on x's GPU (cuda:N)
                    self.graphs[key] = self._capture(x)
            except Exception as e:  # an op that cannot be captured: stay correct, only slower
                self.failed = True
                warnings.warn(f'CUDA graph capture failed ({type(e).__name__}: {e}); running eagerly')
                return self.fn(x)
        graph, static_x, static_out = self.graphs[key]
        with torch.cuda.device(x.device):
            static_x.copy_(x)
            graph.replay()
            return {k: v.clone() for k, v in static_out.items()}

    def _capture(self, x):
        static_x = x.clone()
        # Warm up on a side stream, as torch.cuda.graphs asks (lazy init, cuDNN's algorithm search).
        stream = torch.cuda.Stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.fn(static_x)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_x)
        return graph, static_x, static_out
