"""The eval report's presentation layer: validation, report.md/json, plots and the overlay video."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from seg_perception.datasets.labels import CLASS_NAMES
from seg_perception.replay.report import (
    PNG_BUDGET_BYTES,
    REPORT_FORMAT,
    OverlaySample,
    OverlayVideo,
    _encode_png,
    render_markdown,
    validate_report,
    write_report,
)

COMMAND = ["seg-perception", "eval", "bags/run 1.mcap", "--model", "models/demo", "--workers", "2"]


def make_report(*, labelled: bool = True) -> dict[str, Any]:
    ious: dict[str, float | None] = {name: round(0.3 + 0.03 * i, 4) for i, name in enumerate(CLASS_NAMES)}
    ious["train"] = None  # neither in the labels nor predicted
    metrics = {
        "miou": 0.7342, "miou_present": 0.7511, "pixel_acc": 0.9402, "mean_acc": 0.8123, "fwiou": 0.8899,
        "iou_per_class": ious,
        "pq": {"all": {"pq": 0.5561, "sq": 0.8012, "rq": 0.6789, "n": 19},
               "things": {"pq": 0.4123, "sq": 0.7777, "rq": 0.5301, "n": 8},
               "stuff": {"pq": 0.6612, "sq": 0.8188, "rq": 0.7865, "n": 11}},
        "pq_per_class": {"car": {"pq": 0.6, "sq": 0.8, "rq": 0.75, "tp": 6, "fp": 2, "fn": 2}},
        "drivable_iou": 0.9567, "lane_iou": 0.4321,
        "lane_fscore": {"fscore_1px": 0.6111, "fscore_2px": 0.7222, "fscore_5px": 0.8333},
    }
    return {
        "format": REPORT_FORMAT,
        "created": "2026-12-01T10:00:00+00:00",
        "command": list(COMMAND),
        "model": {"path": "models/demo", "arch": "ddrnet23_slim", "input_size": [512, 256],
                  "weights_sha256": "ab" * 32, "classes": list(CLASS_NAMES)},
        "backend": "onnxruntime:CPUExecutionProvider",
        "pipeline": {"output_resolution": "camera", "smoothing_enabled": True, "smoothing_strength": 0.0,
                     "smoothing_label_prior": 0.75, "smoothing_max_gap_s": 0.5, "tracking_iou_threshold": 0.3,
                     "tracking_max_misses": 2},
        "bags": [{"path": "bags/run 1.mcap", "storage": "mcap",
                  "cameras": {"front": "/cam/front/image_raw", "left": "/cam/left/image_raw"},
                  "label_source": "topics" if labelled else None, "frames": 120, "decode_failures": 2,
                  "output_bag": "bags/run 1" if labelled else None}],
        "frames": {"received": 122, "processed": 120, "decode_failures": 2, "labelled": 120 if labelled else 0,
                   "unlabelled": 0 if labelled else 120},
        "metrics": metrics if labelled else None,
        "temporal_consistency": {"mean": 0.9123, "per_camera": {"front": 0.9012, "left": 0.9234}, "pairs": 118},
        "latency_ms": {stage: {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "mean": p50 * 1.02, "n": 120}
                       for stage, p50 in (("preprocess", 0.8), ("inference", 48.25), ("postprocess", 12.5),
                                          ("smoothing", 1.75), ("end_to_end", 63.5))},
        "throughput_fps": 15.9, "wall_s": 7.55,
        "smoothing_resets": {"stamp_gap": 3, "size_changed": 0},
        "decode_failure_list": [{"bag": "bags/run 1.mcap", "topic": "/cam/left/image_raw",
                                 "stamp_ns": 1_700_000_000_000_000_000 + i, "error": "truncated JPEG | bad"}
                                for i in range(2)],
        "outputs": {"video": "overlay.mp4"},
    }


def latency_samples(rng: np.random.Generator) -> dict[str, list[float]]:
    out = {s: list(rng.gamma(4.0, m / 4, 120)) for s, m in (("preprocess", 0.8), ("inference", 48.0),
                                                            ("postprocess", 12.0), ("smoothing", 1.7))}
    out["end_to_end"] = [*(rng.normal(63, 2, 118)), 900.0, 1200.0]  # spikes: the log-x branch
    return out


def tc_series() -> dict[str, list[float]]:
    t = np.arange(59)
    front = (0.9 + 0.05 * np.sin(t / 5)).tolist()
    front[10] = math.nan  # a pair with no class in either map
    return {"front": front, "left": (0.92 + 0.03 * np.cos(t / 7)).tolist()}


def overlay_samples(rng: np.random.Generator, *, labelled: bool = True) -> list[OverlaySample]:
    samples = []
    for i in range(3):
        image = rng.integers(0, 256, (96, 192, 3), dtype=np.uint8)  # noise: the hardest case for the PNG budget
        prediction = np.zeros((48, 96), np.uint8)  # half resolution, as with output_resolution=model
        prediction[24:] = 0
        prediction[:24] = 10
        prediction[30:40, 10 + 20 * i:30 + 20 * i] = 13
        truth = None
        if labelled and i != 2:  # the last sample has no label even in a labelled run
            truth = prediction.copy()
            truth[:4] = 255
        samples.append(OverlaySample(camera=("front", "left")[i % 2], stamp_ns=1_700_000_000_123_456_789 + i,
                                     image=image, prediction=prediction, ground_truth=truth))
    return samples


def check_png(path: Path) -> tuple[int, int]:
    assert path.is_file(), path
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable PNG"
    height, width = image.shape[:2]
    assert 200 <= width <= 2000 and 150 <= height <= 2500, (path, width, height)
    assert path.stat().st_size <= PNG_BUDGET_BYTES, (path, path.stat().st_size)
    return width, height


def test_write_report_with_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    report = make_report()
    original = copy.deepcopy(report)
    out = tmp_path / "eval"
    outputs = write_report(out, report, latency_samples=latency_samples(rng), tc_series=tc_series(),
                           overlays=overlay_samples(rng))
    assert report == original, "write_report must not modify the caller's report"

    plots = {name: f"plots/{name}.png" for name in ("latency", "class_iou", "temporal_consistency", "overlays")}
    assert outputs == {"video": "overlay.mp4", "report_md": "report.md", "report_json": "report.json",
                       "plots": plots}
    for rel in plots.values():
        check_png(out / rel)

    saved = json.loads((out / "report.json").read_text())
    validate_report(saved)
    assert saved["outputs"] == outputs
    assert {k: v for k, v in saved.items() if k != "outputs"} == {k: v for k, v in report.items() if k != "outputs"}

    md = (out / "report.md").read_text()
    assert md == render_markdown(saved)
    for expected in ("| mIoU | 73.4 |", "| PQ all | 55.6 |", "| PQ things | 41.2 |", "| PQ stuff | 66.1 |",
                     "| drivable-area IoU | 95.7 |", "| lane IoU | 43.2 |", "| lane F-score @ 1 px | 61.1 |",
                     "| lane F-score @ 2 px | 72.2 |", "| lane F-score @ 5 px | 83.3 |",
                     "| temporal consistency (118 frame pairs) | 91.2 |", "| train | n/a |", "| road | 30.0 |",
                     "| inference | 120 | 48.25 | 53.08 | 62.73 | 49.22 |", "| front | 90.1 |",
                     "| stamp_gap | 3 |", "1700000000.000000001", "truncated JPEG \\| bad",
                     "onnxruntime:CPUExecutionProvider", "15.9 frames/s"):
        assert expected in md, expected
    for rel in plots.values():
        assert f"]({rel})" in md
    assert "](overlay.mp4)" in md
    # shell-quoted, so the path with a space survives copy and paste
    assert "seg-perception eval 'bags/run 1.mcap' --model models/demo --workers 2" in md
    assert "n/a: no labels" not in md


def test_write_report_without_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    report = make_report(labelled=False)
    report["outputs"] = {}
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "class_iou.png").write_bytes(b"stale")  # from an earlier labelled run
    outputs = write_report(tmp_path, report, latency_samples=latency_samples(rng), tc_series={},
                           overlays=overlay_samples(rng, labelled=False))
    assert set(outputs["plots"]) == {"latency", "overlays"}
    assert not (tmp_path / "plots" / "class_iou.png").exists()
    assert not (tmp_path / "plots" / "temporal_consistency.png").exists()
    check_png(tmp_path / "plots" / "overlays.png")
    md = (tmp_path / "report.md").read_text()
    assert "| mIoU | n/a |" in md and "| PQ all | n/a |" in md and "| lane F-score @ 5 px | n/a |" in md
    assert "class_iou.png" not in md
    assert "n/a: no labels." in md
    validate_report(json.loads((tmp_path / "report.json").read_text()))


def test_no_samples_no_plots(tmp_path: Path) -> None:
    report = make_report(labelled=False)
    report["latency_ms"] = {}
    outputs = write_report(tmp_path, report, latency_samples={"inference": []}, tc_series={"front": [math.nan]},
                           overlays=[])
    assert outputs["plots"] == {}
    assert "## Plots" not in (tmp_path / "report.md").read_text()
    # degenerate samples still plot: smoothing disabled (all 0 ms), one frame only, a NaN
    outputs = write_report(tmp_path, report, tc_series={}, overlays=[],
                           latency_samples={"smoothing": [0.0] * 5, "inference": [42.0], "end_to_end": [math.nan, 50]})
    assert list(outputs["plots"]) == ["latency"]
    check_png(tmp_path / "plots" / "latency.png")


@pytest.mark.parametrize(("mutate", "named"), [
    (lambda r: r.pop("backend"), "['backend']"),
    (lambda r: r["model"].pop("weights_sha256"), "['model']['weights_sha256']"),
    (lambda r: r["metrics"].update(miou=1.2), "['metrics']['miou']"),
    (lambda r: r["metrics"]["iou_per_class"].update(road=1.5), "['metrics']['iou_per_class']['road']"),
    (lambda r: r["metrics"]["pq"]["things"].update(rq=-0.1), "['metrics']['pq']['things']['rq']"),
    (lambda r: r["metrics"]["pq_per_class"]["car"].update(fn=-1), "['metrics']['pq_per_class']['car']['fn']"),
    (lambda r: r["metrics"]["pq_per_class"]["car"].pop("sq"), "['metrics']['pq_per_class']['car']['sq']"),
    (lambda r: r["temporal_consistency"].update(mean=math.nan), "['temporal_consistency']['mean']"),
    (lambda r: r["frames"].update(processed="120"), "['frames']['processed']"),
    (lambda r: r["bags"][0].update(storage="zip"), "['bags'][0]['storage']"),
    (lambda r: r["latency_ms"]["inference"].pop("p99"), "['latency_ms']['inference']['p99']"),
    (lambda r: r.update(format="other/1"), "['format']"),
    (lambda r: r.update(created="yesterday"), "['created']"),
    (lambda r: r.update(throughput_fps=True), "['throughput_fps']"),
])
def test_validate_rejects(mutate: Any, named: str) -> None:
    report = make_report()
    validate_report(report)
    mutate(report)
    with pytest.raises(ValueError, match=r"eval report: .*report" + re.escape(named)):
        validate_report(report)


def test_validate_accepts_reports_from_before_pq_per_class() -> None:
    report = make_report()
    report["metrics"].pop("pq_per_class")
    validate_report(report)
    report["metrics"]["pq_per_class"] = None  # a labelled run without instance labels
    validate_report(report)


def test_validate_messages(tmp_path: Path) -> None:
    report = make_report()
    report["metrics"]["miou"] = 1.2
    with pytest.raises(ValueError, match=r"\['miou'\] must be a fraction in \[0, 1\] or null, got 1\.2"):
        write_report(tmp_path, report, latency_samples={}, tc_series={}, overlays=[])
    assert not (tmp_path / "report.json").exists()  # validated before anything is written
    report = make_report()
    del report["pipeline"]["tracking_max_misses"]
    with pytest.raises(ValueError, match=r"missing key report\['pipeline'\]\['tracking_max_misses'\]"):
        validate_report(report)
    report = make_report()
    report["metrics"]["pixel_acc"] = math.nan
    with pytest.raises(ValueError, match="NaN is not JSON, use null"):
        validate_report(report)
    report = make_report()
    report["metrics"]["fwiou"] = np.float32(0.5)  # numpy scalars are accepted and written as plain numbers
    report["frames"]["processed"] = np.int64(120)
    write_report(tmp_path, report, latency_samples={}, tc_series={}, overlays=[])
    assert json.loads((tmp_path / "report.json").read_text())["frames"]["processed"] == 120


def test_overlay_sample_checks_shapes() -> None:
    with pytest.raises(ValueError, match="image must be"):
        OverlaySample("front", 0, np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="ground_truth must be"):
        OverlaySample("front", 0, np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8),
                      np.zeros((4, 4), np.int32))


def test_png_budget_shrinks_photos() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    data = _encode_png(noise, budget=150_000)
    assert len(data) <= 150_000
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[1] < 1200  # had to shrink: noise does not compress
    plain = np.full((300, 400, 3), 255, np.uint8)
    assert cv2.imdecode(np.frombuffer(_encode_png(plain), np.uint8), cv2.IMREAD_COLOR).shape == (300, 400, 3)


def read_video(path: Path) -> tuple[int, int, int, list[np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    try:
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    return width, height, len(frames), frames


def test_overlay_video_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "overlay.mp4"
    video = OverlayVideo(path, fps=10)
    for i in range(10):
        left = np.zeros((80, 160, 3), np.uint8)
        left[:, :, 2] = 200  # red in bgr
        right = np.full((80, 160, 3), 20 * i, np.uint8)
        video.add([left, right])
    assert video.close() == path
    assert video.close() == path  # idempotent
    width, height, count, frames = read_video(path)
    assert (width, height, count) == (320, 80, 10)
    assert frames[0][:, :150, 2].mean() > 150 and frames[0][:, :150, :2].mean() < 60  # left camera on the left
    assert abs(float(frames[9][:, 170:].mean()) - 180) < 15


def test_overlay_video_common_height_and_fixed_size(tmp_path: Path) -> None:
    path = tmp_path / "mixed.mp4"
    with OverlayVideo(path, fps=5, max_height=60) as video:
        video.add([np.zeros((120, 200, 3), np.uint8), np.zeros((81, 81), np.uint8)])  # mono, odd sizes
        video.add([np.zeros((120, 200, 3), np.uint8)])  # a camera missing: resized to the first frame's size
    width, height, count, _ = read_video(path)
    # heights -> min(60, 81, 120) = 60: 100 + 60 px wide
    assert (width, height, count) == (160, 60, 2)


def test_overlay_video_empty_and_unopenable(tmp_path: Path) -> None:
    assert OverlayVideo(tmp_path / "none.mp4", fps=10).close() is None
    assert not (tmp_path / "none.mp4").exists()
    bad = tmp_path / "missing-folder" / "overlay.mp4"
    video = OverlayVideo(bad, fps=10)
    video.add([np.zeros((80, 160, 3), np.uint8)])  # does not raise: the evaluation goes on
    with pytest.raises(RuntimeError, match=re.escape(str(bad))):
        video.close()
    with pytest.raises(ValueError, match="fps"):
        OverlayVideo(tmp_path / "x.mp4", fps=0)


def test_many_bags_keep_tc_readable(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    report = make_report()
    series = {f"bag{b:03d}:{cam}": list(np.clip(0.9 + rng.normal(0, 0.04, 20), 0, 1))
              for b in range(40) for cam in ("front", "left")}
    report["temporal_consistency"]["per_camera"] = {k: float(np.mean(v)) for k, v in series.items()}
    report["temporal_consistency"]["per_camera"]["bag007:left"] = 0.42
    outputs = write_report(tmp_path, report, latency_samples={}, tc_series=series, overlays=[])
    assert set(outputs["plots"]) == {"class_iou", "temporal_consistency"}
    check_png(tmp_path / outputs["plots"]["temporal_consistency"])
    md = (tmp_path / "report.md").read_text()
    assert "80 streams (bag:camera); the 10 least steady" in md
    assert "| bag007:left | 42.0 |" in md
    assert md.count("| bag0") == 10
