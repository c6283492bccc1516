"""Native TensorRT backend: engines built from our ONNX graph, cached by ``engine_cache``.

Needs an NVIDIA GPU and the ``tensorrt`` Python package (installed only where a GPU is; not part of
requirements.lock). FP16 by default; INT8 with a calibration cache made from user or synthetic images.
A timing cache next to the engines makes rebuilds (new TensorRT, new precision) much faster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from seg_perception.inference import engine_cache
from seg_perception.inference.backends import BackendError, smoothing_inputs
from seg_perception.inference.device_runtime import HostStaging
from seg_perception.inference.export import INPUT_NAME, SMOOTHING_INPUT_NAME, SMOOTHING_TERMS, STATE_INPUT_NAME
from seg_perception.models.card import ModelCard, sha256_of
from seg_perception.models.panoptic import ModelOutputs

LOG = logging.getLogger(__name__)
TIMING_CACHE = "timing.cache"
_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "INT32": torch.int32, "INT64": torch.int64,
                 "UINT8": torch.uint8, "BOOL": torch.bool}


def _tensorrt():
    try:
        import tensorrt as trt
    except ImportError as error:
        raise BackendError("the tensorrt backend needs the `tensorrt` package and an NVIDIA GPU "
                           "(pip install tensorrt on a CUDA machine); use onnxruntime here") from error
    if not torch.cuda.is_available():
        raise BackendError("the tensorrt backend needs a CUDA GPU; none is visible to torch")
    return trt


def engine_key(onnx_path: Path, card: ModelCard, *, precision: str, max_batch: int,
               calibration_cache: Path | None = None) -> engine_cache.EngineKey:
    trt = _tensorrt()
    major, minor = torch.cuda.get_device_capability()
    return engine_cache.EngineKey(
        onnx_sha256=sha256_of(onnx_path), tensorrt_version=trt.__version__,
        gpu_name=torch.cuda.get_device_name(), compute_capability=f"{major}.{minor}", precision=precision,
        max_batch=max_batch, input_height=card.input_height, input_width=card.input_width,
        calibration_sha256=sha256_of(calibration_cache) if calibration_cache and calibration_cache.exists() else "",
    )


def onnx_state_shape(onnx_path: Path) -> tuple[int, int, int]:
    """(C, h, w) of the graph's smoothing-state input, read from the ONNX file."""
    import onnx

    for tensor in onnx.load(str(onnx_path), load_external_data=False).graph.input:
        if tensor.name == STATE_INPUT_NAME:
            return tuple(d.dim_value for d in tensor.type.tensor_type.shape.dim[1:])
    raise BackendError(f"{onnx_path}: no input {STATE_INPUT_NAME!r}; re-export it with `seg-perception export`")


def synthetic_calibration_images(input_size: tuple[int, int], count: int = 32) -> Iterator[np.ndarray]:
    """(1, H, W, 3) uint8 batches of held-out synthetic driving frames, for INT8 calibration without user data."""
    from seg_perception.synth import render_sequence

    width, height = input_size
    for step in render_sequence(seed=9000, sequence=0, num_frames=count, width=width, height=height,
                                cameras=("front",)):
        yield step["front"].image[None]


class Int8Calibrator:
    """Entropy calibration over batches of uint8 NHWC images; the cache file makes later builds skip it.

    The smoothing inputs are fed as zeros (a first frame), the state the graph sees most often after resets.
    """

    def __new__(cls, images: Iterator[np.ndarray], cache_file: Path, state_shape: tuple[int, int, int]):
        trt = _tensorrt()

        class _Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self) -> None:
                super().__init__()
                self.batches, self.cache_file, self.current = images, cache_file, {}

            def get_batch_size(self) -> int:
                return 1

            def get_batch(self, names: Sequence[str]):
                batch = next(self.batches, None)
                if batch is None:
                    return None
                self.current = {
                    INPUT_NAME: torch.from_numpy(np.ascontiguousarray(batch)).cuda(),
                    STATE_INPUT_NAME: torch.zeros((1, *state_shape), device="cuda"),
                    SMOOTHING_INPUT_NAME: torch.zeros((1, SMOOTHING_TERMS), device="cuda"),
                }
                return [int(self.current[name].data_ptr()) for name in names]

            def read_calibration_cache(self):
                return self.cache_file.read_bytes() if self.cache_file.exists() else None

            def write_calibration_cache(self, cache) -> None:
                self.cache_file.write_bytes(bytes(cache))

        return _Calibrator()


def _static_dims(network, name: str) -> tuple[int, ...]:
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name == name:
            return tuple(tensor.shape)[1:]
    raise BackendError(f"the ONNX graph has no input {name!r}; re-export it with `seg-perception export`")


def build_engine(onnx_path: Path, path: Path, key: engine_cache.EngineKey, *, cache_dir: Path,
                 calibrator: object | None = None, workspace_gib: int = 4) -> float:
    """Build and serialise an engine; returns the build time in seconds."""
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    if key.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if key.precision == "int8":
        if calibrator is None:
            raise BackendError("int8 needs calibration images or a calibration cache")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    profile = builder.create_optimization_profile()
    shape = (key.input_height, key.input_width, 3)
    profile.set_shape(INPUT_NAME, (1, *shape), (key.max_batch, *shape), (key.max_batch, *shape))
    state = _static_dims(network, STATE_INPUT_NAME)
    profile.set_shape(STATE_INPUT_NAME, (1, *state), (key.max_batch, *state), (key.max_batch, *state))
    terms = (SMOOTHING_TERMS,)
    profile.set_shape(SMOOTHING_INPUT_NAME, (1, *terms), (key.max_batch, *terms), (key.max_batch, *terms))
    config.add_optimization_profile(profile)
    timing_path = cache_dir / TIMING_CACHE
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
    config.set_timing_cache(timing, ignore_mismatch=True)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} ({key.precision})")
    build_s = time.perf_counter() - started
    path.write_bytes(bytes(serialized))
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    engine_cache.record(path, key, build_s)
    return build_s


class TensorRTBackend:
    """Runs a cached (or freshly built) engine on torch CUDA tensors; same interface as the other backends."""

    def __init__(self, onnx_path: Path | str, card: ModelCard, *, cache_dir: Path | str, precision: str = "fp16",
                 max_batch: int = 4, calibration_images: Iterator[np.ndarray] | None = None,
                 calibration_cache: Path | None = None) -> None:
        trt = _tensorrt()
        onnx_path, cache_dir = Path(onnx_path), Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        calibration_cache = calibration_cache or cache_dir / f"{onnx_path.stem}.int8.calib"
        key = engine_key(onnx_path, card, precision=precision, max_batch=max_batch,
                         calibration_cache=calibration_cache if precision == "int8" else None)
        decision = engine_cache.decide(cache_dir, onnx_path.stem, key)
        self.build_s: float | None = None
        if decision.action == "build":
            LOG.warning("building TensorRT engine: %s", decision.reason)
            images = calibration_images or synthetic_calibration_images(card.input_size)
            calibrator = (Int8Calibrator(images, calibration_cache, onnx_state_shape(onnx_path))
                          if precision == "int8" else None)
            self.build_s = build_engine(onnx_path, decision.engine_path, key, cache_dir=cache_dir,
                                        calibrator=calibrator)
            LOG.warning("built %s in %.1f s", decision.engine_path.name, self.build_s)
        else:
            LOG.info("%s", decision.reason)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(decision.engine_path.read_bytes())
        if self.engine is None:  # e.g. written by a crashed build: forget it, the next start rebuilds
            engine_cache.invalidate(decision.engine_path)
            raise BackendError(f"{decision.engine_path} does not deserialise; it was removed from the cache, "
                               "restart to rebuild it")
        self.context = self.engine.create_execution_context()
        self.card, self.input_size, self.max_batch = card, card.input_size, max_batch
        self.engine_path = decision.engine_path
        self.name = f"tensorrt:{precision}"
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.state_shape = tuple(self.engine.get_tensor_shape(STATE_INPUT_NAME))[1:]
        width, height = self.input_size
        self.staging = HostStaging((height, width, 3), torch.device("cuda"))

    def input_buffer(self, batch: int) -> np.ndarray:
        return self.staging.buffer(batch)

    def infer(self, images: np.ndarray, previous_logits: torch.Tensor | None = None,
              smoothing: torch.Tensor | None = None) -> ModelOutputs:
        """Queued on torch's current stream and not waited for: the outputs stay on the GPU for the
        post-processing, which queues behind the engine on the same stream."""
        width, height = self.input_size
        batch_ok = 1 <= len(images) <= self.max_batch
        if images.dtype != np.uint8 or images.shape[1:] != (height, width, 3) or not batch_ok:
            raise BackendError(f"expected (1..{self.max_batch}, {height}, {width}, 3) uint8, got {images.shape}")
        batch = self.staging.upload(images)
        state, weights = smoothing_inputs(len(images), self.state_shape, previous_logits, smoothing, "cuda")
        inputs = {INPUT_NAME: batch, STATE_INPUT_NAME: state.contiguous(), SMOOTHING_INPUT_NAME: weights.contiguous()}
        for name, tensor in inputs.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.names:
            if name in inputs:
                continue
            dtype = _TORCH_DTYPES[self.engine.get_tensor_dtype(name).name]
            tensor = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, tensor.data_ptr())
            outputs[name] = tensor
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise BackendError(f"TensorRT could not run {self.engine_path.name} on a batch of {len(images)}")
        return ModelOutputs(semantic_logits=outputs["semantic_logits"].float(), semantic_ids=outputs["semantic_ids"],
                            center=_float(outputs.get("center")), offset=_float(outputs.get("offset")))


def _float(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.float()  # an fp16 engine may keep a half output; grouping needs float32
