"""What the torch backend needs to feed a GPU without waiting on it: pinned staging and CUDA graphs.

``HostStaging`` hands the pipeline the host buffer to resize a batch into. On CUDA it is page-locked
(pinned) memory, so the upload is one asynchronous copy instead of a synchronous, staged one; on the CPU
it is a plain array and "uploading" is a view.

``GraphedNetwork`` replays the network from one CUDA graph per batch size: a DDRNet forward is a few
hundred small kernels, and launching them from Python costs more than running them (docs/BENCHMARKS.md).
Inputs are copied into the graph's static tensors and outputs cloned out of them, so a replay never
overwrites what a caller still holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from seg_perception.inference.errors import BackendError

LOG = logging.getLogger(__name__)
_CAPTURE_WARMUP_CALLS = 3  # cuDNN picks its algorithms in the first calls; capture after them


class HostStaging:
    """Per batch size one host buffer (N, H, W, 3) uint8, pinned on CUDA, reused from call to call."""

    def __init__(self, image_shape: tuple[int, int, int], device: torch.device) -> None:
        self.image_shape, self.device = image_shape, device
        self.pinned = device.type == "cuda"
        self._buffers: dict[int, torch.Tensor] = {}
        self._uploads: dict[int, torch.cuda.Event] = {}

    def buffer(self, batch: int) -> np.ndarray:
        """Where to write the next batch. On CUDA: waits until the previous upload from it has been read."""
        if not self.pinned:
            return np.empty((batch, *self.image_shape), np.uint8)  # fresh: the caller may keep it
        if batch not in self._buffers:
            self._buffers[batch] = torch.empty((batch, *self.image_shape), dtype=torch.uint8, pin_memory=True)
        if batch in self._uploads:
            self._uploads[batch].synchronize()
        return self._buffers[batch].numpy()

    def upload(self, images: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        """``images`` on the device (into ``out`` when given). From our pinned buffer the copy is asynchronous;
        from any other array it is an ordinary, synchronous copy, and still correct."""
        source = self._buffers.get(len(images))
        if self.pinned and source is not None and images.ctypes.data == source.data_ptr() \
                and images.shape == tuple(source.shape):
            host = source
        else:
            host = torch.from_numpy(np.ascontiguousarray(images))
        if out is None:
            device_images = host.to(self.device, non_blocking=self.pinned and host is source)
        else:
            device_images = out.copy_(host, non_blocking=self.pinned and host is source)
        if host is source:
            event = self._uploads.setdefault(len(images), torch.cuda.Event())
            event.record()
        return device_images


@dataclass
class _CapturedBatch:
    graph: torch.cuda.CUDAGraph
    images: torch.Tensor  # static inputs, written before each replay
    state: torch.Tensor
    weights: torch.Tensor
    outputs: tuple[torch.Tensor, ...]  # static outputs, overwritten by each replay


class GraphedNetwork:
    """``forward(images_uint8_nhwc, state, weights) -> tuple of tensors``, replayed from CUDA graphs."""

    def __init__(self, forward: Callable[..., tuple[torch.Tensor, ...]], *, image_shape: tuple[int, int, int],
                 state_shape: tuple[int, int, int], smoothing_terms: int, device: torch.device) -> None:
        if device.type != "cuda":
            raise BackendError(f"CUDA graphs need a CUDA device, not {device}")
        self._forward, self.device = forward, device
        self.image_shape, self.state_shape, self.smoothing_terms = image_shape, state_shape, smoothing_terms
        self._captured: dict[int, _CapturedBatch] = {}
        self._pool = torch.cuda.graph_pool_handle()  # one memory pool: batches are replayed one at a time

    def static_images(self, batch: int) -> torch.Tensor:
        """The graph's own input tensor for ``batch``: upload straight into it, no device-side copy."""
        return self._capture(batch).images

    def __call__(self, images: torch.Tensor, state: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        captured = self._capture(images.shape[0])
        if images.data_ptr() != captured.images.data_ptr():
            captured.images.copy_(images)
        captured.state.copy_(state)
        captured.weights.copy_(weights)
        captured.graph.replay()
        return tuple(output.clone() for output in captured.outputs)

    @torch.no_grad()
    def _capture(self, batch: int) -> _CapturedBatch:
        if batch in self._captured:
            return self._captured[batch]
        images = torch.zeros((batch, *self.image_shape), dtype=torch.uint8, device=self.device)
        state = torch.zeros((batch, *self.state_shape), dtype=torch.float32, device=self.device)
        weights = torch.zeros((batch, self.smoothing_terms), dtype=torch.float32, device=self.device)
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up off the capturing stream, as CUDA graphs require
                for _ in range(_CAPTURE_WARMUP_CALLS):
                    self._forward(images, state, weights)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                outputs = self._forward(images, state, weights)
        except RuntimeError as error:  # e.g. out of memory, or an op that cannot be captured
            raise BackendError(f"capturing the network in a CUDA graph for batch {batch} failed ({error}); "
                               "run without CUDA graphs (cuda_graphs=False)") from error
        LOG.info("captured the network in a CUDA graph for batch %d at %dx%d", batch, self.image_shape[1],
                 self.image_shape[0])
        self._captured[batch] = _CapturedBatch(graph, images, state, weights, tuple(outputs))
        return self._captured[batch]
