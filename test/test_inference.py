"""Export and backends: the ONNX graph and ONNX Runtime against eager torch, on the demo checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from seg_perception.inference.backends import BackendError, OnnxRuntimeBackend, TorchBackend
from seg_perception.inference.export import CARD_METADATA_KEY, export_onnx
from seg_perception.inference.preprocess import resize_batch
from seg_perception.models.card import load_card
from seg_perception.postprocess.panoptic import PanopticConfig, group_batch
from seg_perception.synth import render_sequence

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(DEMO, tmp_path_factory.mktemp("onnx") / "demo.onnx")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Two cameras of held-out synthetic frames (seed never used for training), at the card's input size."""
    card = load_card(DEMO)
    steps = list(render_sequence(seed=4242, sequence=0, num_frames=2, width=card.input_width,
                                 height=card.input_height, cameras=("front", "front_left")))
    return resize_batch([f.image for step in steps for f in step.values()], card.input_size)


def test_export_is_a_valid_graph_with_dynamic_batch_and_the_card(demo_onnx: Path) -> None:
    proto = onnx.load(str(demo_onnx))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version >= 17
    image, state, smoothing = proto.graph.input
    assert (image.name, state.name, smoothing.name) == ("images", "previous_logits", "smoothing")
    dims = image.type.tensor_type.shape.dim
    card = load_card(DEMO)
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [card.input_height,
                                                                             card.input_width, 3]
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    # The smoothing state lives at the head's 1/8 resolution (DDRNet), so smoothing costs next to nothing.
    state_dims = [d.dim_value for d in state.type.tensor_type.shape.dim[1:]]
    assert state_dims == [card.num_classes, card.input_height // 8, card.input_width // 8]
    smoothing_dims = smoothing.type.tensor_type.shape.dim
    assert smoothing_dims[0].dim_param == "batch" and smoothing_dims[1].dim_value == 2
    assert [o.name for o in proto.graph.output] == ["semantic_logits", "semantic_ids", "center", "offset"]
    assert any(p.key == CARD_METADATA_KEY for p in proto.metadata_props)


def test_onnxruntime_matches_torch_on_the_demo_checkpoint(demo_onnx: Path, frames: np.ndarray) -> None:
    reference = TorchBackend(DEMO).infer(frames)
    runtime = OnnxRuntimeBackend(demo_onnx)
    assert runtime.name == "onnxruntime:CPUExecutionProvider" and runtime.card == load_card(DEMO)
    outputs = runtime.infer(frames)
    agreement = float((outputs.semantic_ids == reference.semantic_ids).float().mean())
    assert agreement >= 0.999, f"semantic argmax agrees on {agreement:.5f} of pixels"
    # Centre peaks come out of the graph's NMS: where two neighbours tie within float noise, the peak may sit
    # one pixel apart between runtimes (2 of 524288 pixels seen). The grouped instances below must match.
    center_mismatch = float(((outputs.center - reference.center).abs() > 1e-3).float().mean())
    assert center_mismatch <= 1e-4, center_mismatch
    torch.testing.assert_close(outputs.offset, reference.offset, atol=2e-2, rtol=1e-3)

    card = load_card(DEMO)
    config = PanopticConfig.for_input(card.thing_ids, card.input_size)
    ours = group_batch(outputs.semantic_ids, outputs.center, outputs.offset, config)
    theirs = group_batch(reference.semantic_ids, reference.center, reference.offset, config)
    for a, b in zip(ours, theirs, strict=True):
        assert len(a.infos) == len(b.infos)
        assert [i.class_id for i in a.infos] == [i.class_id for i in b.infos]
        assert float((a.instances == b.instances).float().mean()) >= 0.999


def test_smoothing_in_the_graph_blends_with_the_previous_state(demo_onnx: Path, frames: np.ndarray) -> None:
    runtime, reference = OnnxRuntimeBackend(demo_onnx), TorchBackend(DEMO)
    assert runtime.state_shape == reference.state_shape
    first = runtime.infer(frames[:2])
    # Zero terms are exactly the unsmoothed result, whatever the state holds.
    noise = torch.randn(2, *runtime.state_shape)
    unsmoothed = runtime.infer(frames[:2], noise, torch.zeros(2, 2))
    assert torch.equal(unsmoothed.semantic_logits, first.semantic_logits)
    assert torch.equal(unsmoothed.semantic_ids, first.semantic_ids)
    # Per image: camera 0 blends exponentially and gets the label prior, camera 1 is reset.
    later = runtime.infer(frames[2:4])
    terms = torch.tensor([[0.6, 2.0], [0.0, 0.0]])
    blended = runtime.infer(frames[2:4], first.semantic_logits, terms)
    previous_label = torch.nn.functional.one_hot(first.semantic_logits[0].argmax(0), runtime.card.num_classes)
    expected = (0.6 * first.semantic_logits[0] + 0.4 * later.semantic_logits[0]
                + 2.0 * previous_label.permute(2, 0, 1).float())
    torch.testing.assert_close(blended.semantic_logits[0], expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(blended.semantic_logits[1], later.semantic_logits[1])
    torch_blended = reference.infer(frames[2:4], first.semantic_logits, terms)
    agreement = float((torch_blended.semantic_ids == blended.semantic_ids).float().mean())
    assert agreement >= 0.999
    with pytest.raises(BackendError, match="smoothing state"):
        runtime.infer(frames[:2], first.semantic_logits[:1], torch.zeros(1, 2))


def test_backends_refuse_what_they_cannot_do(demo_onnx: Path, frames: np.ndarray) -> None:
    with pytest.raises(BackendError, match="not available here"):
        OnnxRuntimeBackend(demo_onnx, providers=("NoSuchExecutionProvider",))
    with pytest.raises(BackendError, match="uint8 RGB"):
        OnnxRuntimeBackend(demo_onnx).infer(frames.astype(np.float32))
    bare = onnx.load(str(demo_onnx))
    del bare.metadata_props[:]
    path = demo_onnx.with_name("bare.onnx")
    onnx.save(bare, str(path))
    with pytest.raises(BackendError, match="no model card"):
        OnnxRuntimeBackend(path)
    entry = bare.metadata_props.add()
    entry.key, entry.value = CARD_METADATA_KEY, '{"format": "something else"}'
    onnx.save(bare, str(path))
    with pytest.raises(BackendError, match=r"embedded model card is invalid.*not a model card"):
        OnnxRuntimeBackend(path)


def test_bench_reports_every_configuration_with_stages_and_ratios() -> None:
    """A smoke run at a tiny size; real figures come from `seg-perception bench` into docs/BENCHMARKS.md."""
    from seg_perception.benchmark import markdown_table, run_benchmark

    result = run_benchmark(DEMO, backends=("torch", "onnxruntime"), sizes=[(128, 64)], batches=[1, 2], warmup=1,
                           calls=2, progress=lambda line: None)
    rows = result["rows"]
    assert len(rows) == 3 * 2  # torch, onnxruntime and the LR-ASPP baseline, at batch 1 and 2
    for row in rows:
        assert row["calls"] == 2 and 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        # Our pipeline also reports smoothing (state and tracking); the semantic-only baseline has none.
        expected = {"preprocess", "inference", "postprocess"} | ({"smoothing"} if row["model"] == "ddrnet23_slim"
                                                                 else set())
        assert set(row["stage_p50_ms"]) == expected
        assert row["fps"] > 0
    assert set(result["smoothing_blend_ms_per_image"]) == {"128x64"}
    assert set(result["ratios"]) == {"onnxruntime_vs_torch_fps_128x64_b1", "onnxruntime_vs_torch_fps_128x64_b2"}
    assert "lraspp_mobilenet_v3_large" in markdown_table(result) and result["machine"]["torch"] == torch.__version__
