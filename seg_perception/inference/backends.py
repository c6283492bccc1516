"""Inference backends behind one interface: a batch of uint8 RGB images in, ``ModelOutputs`` out.

The images are already at the model's input size (``preprocess.resize_batch``, written into the
backend's ``input_buffer``: pinned host memory where the backend uploads to a GPU); what runs the network
is the backend's business, the pipeline above does not care. Every backend takes the temporal smoothing
state too (``previous_logits`` (N, C, h, w) and per-image terms ``smoothing`` (N, 2)); without them it
runs unsmoothed. Outputs stay on the device that made them (``postprocess/`` works there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from seg_perception.inference.device_runtime import GraphedNetwork, HostStaging
from seg_perception.inference.errors import BackendError
from seg_perception.inference.export import (
    CARD_METADATA_KEY,
    INPUT_NAME,
    SMOOTHING_INPUT_NAME,
    SMOOTHING_TERMS,
    STATE_INPUT_NAME,
    CameraPixelsModel,
    state_shape,
)
from seg_perception.models.card import ModelCard, card_from_dict
from seg_perception.models.checkpoint import load_checkpoint
from seg_perception.models.export_wrappers import NormalizedModel
from seg_perception.models.panoptic import ModelOutputs

TORCH_PRECISIONS = ("fp32", "fp16")


class Backend(Protocol):
    name: str  # e.g. "torch:cpu", "onnxruntime:CPUExecutionProvider"
    input_size: tuple[int, int]  # (width, height)
    state_shape: tuple[int, int, int]  # (C, h, w) of the smoothing state; smoothing terms are (N, 2)

    def input_buffer(self, batch: int) -> np.ndarray:
        """(batch, H, W, 3) uint8 host memory to write the next ``infer`` batch into."""
        ...

    def infer(self, images: np.ndarray, previous_logits: torch.Tensor | None = None,
              smoothing: torch.Tensor | None = None) -> ModelOutputs: ...


def _check_batch(images: np.ndarray, input_size: tuple[int, int]) -> None:
    width, height = input_size
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (height, width, 3):
        raise BackendError(f"expected (N, {height}, {width}, 3) uint8 RGB, got {images.shape} {images.dtype}")


def smoothing_inputs(batch: int, shape: tuple[int, int, int], previous_logits: torch.Tensor | None,
                     smoothing: torch.Tensor | None, device: torch.device | str = "cpu",
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The state inputs to feed, zeros with weight 0 (exactly unsmoothed) when the caller has none."""
    if previous_logits is None:
        return torch.zeros((batch, *shape), device=device), torch.zeros((batch, SMOOTHING_TERMS), device=device)
    if (smoothing is None or tuple(previous_logits.shape) != (batch, *shape)
            or tuple(smoothing.shape) != (batch, SMOOTHING_TERMS)):
        raise BackendError(f"smoothing state must be ({batch}, {', '.join(map(str, shape))}) with "
                           f"({batch}, {SMOOTHING_TERMS}) terms, got {tuple(previous_logits.shape)} and "
                           f"{None if smoothing is None else tuple(smoothing.shape)}")
    return previous_logits.to(device, torch.float32), smoothing.to(device, torch.float32)


def _card_from_metadata(onnx_path: Path | str, metadata: dict[str, str]) -> ModelCard:
    if CARD_METADATA_KEY not in metadata:
        raise BackendError(f"{onnx_path}: no model card in its metadata; export it with `seg-perception export`")
    try:
        return card_from_dict(json.loads(metadata[CARD_METADATA_KEY]), f"{onnx_path} metadata")
    except ValueError as error:  # ModelCardError and JSONDecodeError both are
        raise BackendError(f"{onnx_path}: embedded model card is invalid: {error}") from error


class TorchBackend:
    """PyTorch, the reference: the same camera-pixels graph as the ONNX export (``CameraPixelsModel``).

    CPU: float32, eager. CUDA: float32 or float16, channels_last, replayed from CUDA graphs (one per batch
    size, captured on first use; batch 1 at construction, so a graph that cannot be captured fails the start,
    not a frame); uploads from pinned memory (``input_buffer``). Outputs stay on the device.
    """

    def __init__(self, checkpoint: Path | str, *, device: str = "cpu", input_size: tuple[int, int] | None = None,
                 precision: str = "fp32", cuda_graphs: bool = True) -> None:
        self.device = torch.device(device)
        if precision not in TORCH_PRECISIONS:
            raise BackendError(f"the torch backend runs {' or '.join(TORCH_PRECISIONS)}, not {precision}")
        if self.device.type != "cuda" and (precision != "fp32"):
            raise BackendError(f"{precision} needs a CUDA device; the torch backend on {self.device} runs fp32")
        model, self.card = load_checkpoint(checkpoint, device=device)
        self.input_size = input_size or self.card.input_size  # fully convolutional: other sizes run too
        self.state_shape = state_shape(model, self.input_size)
        # The wrapper's normalisation buffers are made on the CPU: move the whole graph, not just the model.
        graph = CameraPixelsModel(NormalizedModel(model, mean=self.card.mean, std=self.card.std)).to(self.device)
        if precision == "fp16":
            graph = graph.half()
        if self.device.type == "cuda":
            graph = graph.to(memory_format=torch.channels_last)  # the NHWC input permuted is channels_last too
        self._graph, self._names = graph, graph.output_names
        width, height = self.input_size
        self.staging = HostStaging((height, width, 3), self.device)
        self.graphed: GraphedNetwork | None = None
        if self.device.type == "cuda" and cuda_graphs:
            self.graphed = GraphedNetwork(self._run_graph, image_shape=(height, width, 3),
                                          state_shape=self.state_shape, smoothing_terms=SMOOTHING_TERMS,
                                          device=self.device)
            self.graphed.static_images(1)
        mode = "" if self.device.type == "cpu" else f":{precision}{':graphs' if self.graphed else ':eager'}"
        self.name = f"torch:{self.device}{mode}"

    def input_buffer(self, batch: int) -> np.ndarray:
        return self.staging.buffer(batch)

    @torch.no_grad()
    def _run_graph(self, images: torch.Tensor, state: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._graph(images, state, weights)

    @torch.no_grad()
    def run_on_device(self, images: torch.Tensor, previous_logits: torch.Tensor | None = None,
                      smoothing: torch.Tensor | None = None) -> ModelOutputs:
        """The network on (N, H, W, 3) uint8 images already on the device (also what the bench times alone)."""
        state, weights = smoothing_inputs(len(images), self.state_shape, previous_logits, smoothing, self.device)
        run = self.graphed or self._run_graph
        values = dict(zip(self._names, run(images, state, weights), strict=True))
        return ModelOutputs(semantic_logits=values["semantic_logits"], semantic_ids=values["semantic_ids"],
                            center=values.get("center"), offset=values.get("offset"))

    def infer(self, images: np.ndarray, previous_logits: torch.Tensor | None = None,
              smoothing: torch.Tensor | None = None) -> ModelOutputs:
        _check_batch(images, self.input_size)
        target = self.graphed.static_images(len(images)) if self.graphed else None
        return self.run_on_device(self.staging.upload(images, out=target), previous_logits, smoothing)


class OnnxRuntimeBackend:
    """ONNX Runtime on the graph of ``export_onnx``; CPU by default, CUDA/TensorRT providers when asked for."""

    def __init__(self, onnx_path: Path | str, *, providers: tuple[str, ...] = ("CPUExecutionProvider",),
                 intra_op_threads: int = 0, allow_spinning: bool = False) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:  # never fall back silently to another provider
            raise BackendError(f"ONNX Runtime providers {missing} are not available here; available: {available}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        # Spinning threads keep the cores busy after each run, right when the post-processing needs them:
        # off, grouping at 1024x512 took 85 instead of 151 ms on the 2-core machine (docs/BENCHMARKS.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=list(providers))
        except Exception as error:  # onnxruntime's errors (InvalidProtobuf, NoSuchFile, Fail...) share no base class
            raise BackendError(f"{onnx_path}: ONNX Runtime cannot load it as a graph: {error}") from error
        self.card = _card_from_metadata(onnx_path, self.session.get_modelmeta().custom_metadata_map)
        self.input_size = self.card.input_size
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        if set(inputs) != {INPUT_NAME, STATE_INPUT_NAME, SMOOTHING_INPUT_NAME}:
            raise BackendError(f"{onnx_path}: graph inputs {sorted(inputs)} are not those of `seg-perception export` "
                               f"({INPUT_NAME}, {STATE_INPUT_NAME}, {SMOOTHING_INPUT_NAME}); re-export it")
        self.state_shape = tuple(inputs[STATE_INPUT_NAME][1:])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.name = f"onnxruntime:{self.session.get_providers()[0]}"

    def input_buffer(self, batch: int) -> np.ndarray:
        width, height = self.input_size
        return np.empty((batch, height, width, 3), np.uint8)

    @staticmethod
    def read_card(onnx_path: Path | str) -> ModelCard:
        """The model card embedded by `seg-perception export`, without starting a session."""
        import onnx
        from google.protobuf.message import DecodeError

        try:
            proto = onnx.load(str(onnx_path), load_external_data=False)
        except (OSError, DecodeError) as error:
            raise BackendError(f"{onnx_path}: not a readable ONNX graph: {error}") from error
        return OnnxRuntimeBackend.card_of(onnx_path, proto)

    @staticmethod
    def card_of(onnx_path: Path | str, proto) -> ModelCard:
        """The model card embedded in an already loaded ``onnx.ModelProto``; ``onnx_path`` names it in errors."""
        return _card_from_metadata(onnx_path, {p.key: p.value for p in proto.metadata_props})

    def infer(self, images: np.ndarray, previous_logits: torch.Tensor | None = None,
              smoothing: torch.Tensor | None = None) -> ModelOutputs:
        _check_batch(images, self.input_size)
        state, weights = smoothing_inputs(len(images), self.state_shape, previous_logits, smoothing)
        feeds = {INPUT_NAME: images, STATE_INPUT_NAME: state.numpy(), SMOOTHING_INPUT_NAME: weights.numpy()}
        values = dict(zip(self.output_names, self.session.run(None, feeds), strict=True))
        tensors = {k: torch.from_numpy(v) for k, v in values.items()}
        return ModelOutputs(semantic_logits=tensors["semantic_logits"], semantic_ids=tensors["semantic_ids"],
                            center=tensors.get("center"), offset=tensors.get("offset"))
