"""`seg-perception bench` names its device, reports the network alone, and times CUDA work on CUDA events."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from seg_perception import cli
from seg_perception.benchmark import Stopwatch, device_name, markdown_table, run_benchmark

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


@pytest.fixture(scope="module")
def cpu_result() -> dict:
    return run_benchmark(DEMO, backends=("torch",), sizes=[(128, 64)], batches=[1], warmup=1, calls=2,
                         baseline=False, progress=lambda line: None)


def test_the_network_alone_is_reported_beside_end_to_end(cpu_result: dict) -> None:
    (row,) = cpu_result["rows"]
    assert row["network_p50_ms"] > 0 and row["p50_ms"] > 0
    assert row["inference_gpu_p50_ms"] is None  # CUDA events only on CUDA
    assert set(row["stage_p50_ms"]) == {"preprocess", "inference", "postprocess", "smoothing"}


def test_the_device_is_named_in_the_json_and_the_table(cpu_result: dict) -> None:
    assert cpu_result["device"] == "cpu"
    assert cpu_result["device_name"] == device_name("cpu") != ""
    table = markdown_table(cpu_result)
    assert "network p50 ms" in table.splitlines()[0]
    assert f"| {cpu_result['device_name']} | torch:cpu |" in table


def test_cpu_device_name_is_the_cpu_model() -> None:
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else []
    assert device_name("cpu") == models[0] if models else device_name("cpu")


def test_older_results_without_a_device_name_still_make_a_table(cpu_result: dict) -> None:
    old = {k: v for k, v in cpu_result.items() if k not in ("device", "device_name")}
    old["rows"] = [{k: v for k, v in r.items() if k not in ("network_p50_ms", "inference_gpu_p50_ms")}
                   for r in cpu_result["rows"]]
    assert f"| {old['machine']['cpu']} | torch:cpu |" in markdown_table(old)


def test_cpu_stopwatch_measures_host_time() -> None:
    watch = Stopwatch("cpu").start()
    time.sleep(0.02)
    assert 15 <= watch.stop().ms() < 1000


def test_bench_on_cuda_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["bench", "--device", "cuda", "--backends", "torch", "--sizes", "128x64"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rows_carry_event_times() -> None:
    result = run_benchmark(DEMO, backends=("torch",), sizes=[(256, 128)], batches=[1, 2], warmup=2, calls=5,
                           device="cuda", progress=lambda line: None)
    assert result["device_name"] == torch.cuda.get_device_name()
    for row in result["rows"]:
        assert row["stage_p50_ms"]["inference"] > 0
        if row["model"] == "ddrnet23_slim":
            assert row["network_p50_ms"] > 0 and row["inference_gpu_p50_ms"] > 0
            # The events cover the GPU part of the host-timed stage, which also waits for the copy back.
            assert row["inference_gpu_p50_ms"] <= row["stage_p50_ms"]["inference"] * 1.05 + 0.5


def test_fp16_torch_bench_on_the_cpu_is_refused_not_run_in_fp32(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--device", "cpu", "--backends", "torch", "--sizes", "128x64",
                     "--torch-precision", "fp16", "--no-baseline"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err


def test_bench_metres_times_the_grid_and_obstacle_positions(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "metres.json"
    assert cli.main(["bench", "--metres", "--sizes", "256x128", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["cameras"] == 2 and row["grid_ms_per_frame"] > 0 and row["obstacles_ms_per_frame"] >= 0
    assert "outputs in metres, 256x128, 2 cameras" in capsys.readouterr().out
