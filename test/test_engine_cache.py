"""TensorRT engine cache decisions, testable without a GPU: reuse only what fits, rebuild the rest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from seg_perception.inference.backends import BackendError
from seg_perception.inference.engine_cache import EngineKey, decide, engine_path, invalidate, record

KEY = EngineKey(onnx_sha256="a" * 64, tensorrt_version="10.9.0", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability="9.0", precision="fp16", max_batch=4, input_height=512, input_width=1024)


def _cached(tmp_path: Path, key: EngineKey = KEY) -> Path:
    path = engine_path(tmp_path, "demo", key)
    path.write_bytes(b"serialised engine bytes")
    record(path, key, build_s=42.0)
    return path


def test_missing_engine_is_built(tmp_path: Path) -> None:
    decision = decide(tmp_path, "demo", KEY)
    assert decision.action == "build" and "no cached engine" in decision.reason


def test_matching_engine_is_reused(tmp_path: Path) -> None:
    path = _cached(tmp_path)
    decision = decide(tmp_path, "demo", KEY)
    assert (decision.action, decision.engine_path) == ("reuse", path) and "42.0 s" in decision.reason


@pytest.mark.parametrize("change", [
    {"tensorrt_version": "10.10.0"}, {"gpu_name": "NVIDIA H200"}, {"compute_capability": "8.9"},
    {"onnx_sha256": "b" * 64}, {"precision": "int8"}, {"max_batch": 2}, {"input_width": 2048},
])
def test_any_key_change_selects_another_engine(tmp_path: Path, change: dict) -> None:
    _cached(tmp_path)
    other = replace(KEY, **change)
    assert engine_path(tmp_path, "demo", other) != engine_path(tmp_path, "demo", KEY)
    assert decide(tmp_path, "demo", other).action == "build"


def test_foreign_engine_under_our_name_is_rebuilt_and_the_reason_names_the_difference(tmp_path: Path) -> None:
    path = _cached(tmp_path)
    sidecar = path.with_suffix(".engine.json")
    data = json.loads(sidecar.read_text())
    data["key"]["tensorrt_version"] = "8.6.1"  # e.g. copied from another machine
    sidecar.write_text(json.dumps(data))
    decision = decide(tmp_path, "demo", KEY)
    assert decision.action == "build" and "tensorrt_version: '8.6.1' -> '10.9.0'" in decision.reason


def test_corrupt_engine_or_sidecar_is_rebuilt(tmp_path: Path) -> None:
    path = _cached(tmp_path)
    path.write_bytes(b"truncated")
    assert "corrupt" in decide(tmp_path, "demo", KEY).reason
    path = _cached(tmp_path)
    path.with_suffix(".engine.json").write_text("{not json")
    assert "corrupt" in decide(tmp_path, "demo", KEY).reason
    path = _cached(tmp_path)
    invalidate(path)  # what the backend does when deserialisation fails
    assert decide(tmp_path, "demo", KEY).action == "build"


def test_invalid_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        replace(KEY, precision="bf8")
    with pytest.raises(ValueError, match="shapes"):
        replace(KEY, max_batch=0)


def test_tensorrt_backend_explains_what_it_needs_here(tmp_path: Path) -> None:
    """This machine has no GPU (CI neither): the backend must say so, not crash or fall back silently."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the GPU session runs the real TensorRT checks")
    from seg_perception.inference.tensorrt_backend import engine_key

    with pytest.raises(BackendError, match="tensorrt"):
        engine_key(tmp_path / "x.onnx", None, precision="fp16", max_batch=1)  # type: ignore[arg-type]


def test_int8_calibration_inputs_are_prepared_without_a_gpu(tmp_path: Path) -> None:
    """What the INT8 calibrator feeds besides images: the state shape from the graph, synthetic frames."""
    import onnx

    from seg_perception.inference.export import export_onnx
    from seg_perception.inference.tensorrt_backend import onnx_state_shape, synthetic_calibration_images
    from seg_perception.models.card import load_card

    demo = Path(__file__).resolve().parents[1] / "models" / "demo"
    card = load_card(demo)
    onnx_path = export_onnx(demo, tmp_path / "demo.onnx", input_size=(256, 128))
    assert onnx_state_shape(onnx_path) == (card.num_classes, 128 // 8, 256 // 8)
    images = list(synthetic_calibration_images((256, 128), count=3))
    assert len(images) == 3 and all(i.shape == (1, 128, 256, 3) and i.dtype.name == "uint8" for i in images)
    assert not (images[0] == images[2]).all()  # a drive, not one frame repeated
    bare = tmp_path / "bare.onnx"
    proto = onnx.load(str(onnx_path))
    proto.graph.input[1].name = "renamed"
    onnx.save(proto, str(bare))
    with pytest.raises(BackendError, match="previous_logits"):
        onnx_state_shape(bare)
