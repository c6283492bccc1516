"""`make demo`: what a newcomer runs first.

Generates (or reuses) a short two-camera synthetic drive as a ROS 2 bag, replays it through the node's
pipeline with the committed demo checkpoint on ONNX Runtime (`seg-perception eval`), and leaves
demo_output/ with the output bag, report.md, plots and an overlay video.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from seg_perception.bags.reader import bag_topics, read_messages
from seg_perception.datasets import labels
from seg_perception.datasets.synthetic import bag_path, camera_topics, manifest_path, write_synthetic
from seg_perception.ros_io.image_codec import image_to_numpy, image_to_rgb

DEMO_DRIVE = {"fmt": "bag", "sequences": 1, "frames": 40, "width": 1024, "height": 512, "seed": 7,
              "cameras": ("front", "front_left"), "fps": 10.0}


def _drive_is_current(drive_dir: Path) -> bool:
    path = manifest_path(drive_dir, "bag", "")
    if not path.is_file() or not bag_path(drive_dir, 0).exists():
        return False
    manifest = json.loads(path.read_text())
    expected = {"seed": DEMO_DRIVE["seed"], "frames_per_sequence": DEMO_DRIVE["frames"],
                "size": [DEMO_DRIVE["width"], DEMO_DRIVE["height"]], "cameras": list(DEMO_DRIVE["cameras"])}
    return all(manifest.get(k) == v for k, v in expected.items())


def _preview(bag: Path, cameras: tuple[str, ...], frame_index: int) -> np.ndarray:
    """Rows of image | labels blended over the image, one per camera, read back from the bag."""
    wanted = {}
    for cam in cameras:
        topics = camera_topics(cam)
        wanted[topics.image] = (cam, "image")
        wanted[topics.semantic] = (cam, "semantic")
    seen: dict[tuple[str, str], int] = {}
    frames: dict[tuple[str, str], np.ndarray] = {}
    for topic, _, msg in read_messages(bag, wanted):
        key = wanted[topic]
        seen[key] = seen.get(key, -1) + 1
        if seen[key] == frame_index:
            frames[key] = image_to_rgb(msg) if key[1] == "image" else image_to_numpy(msg).copy()
    rows = []
    for cam in cameras:
        image, semantic = frames[(cam, "image")], frames[(cam, "semantic")]
        blended = cv2.addWeighted(image, 0.45, labels.colorize(semantic), 0.55, 0)
        row = np.hstack([image, blended])
        cv2.putText(row, cam, (12, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (255, 255, 255), 2, cv2.LINE_AA)
        rows.append(row)
    return np.vstack(rows)


def run_demo(out: Path, *, model: Path | None = None) -> int:
    """Synthetic drive (made once, then reused) -> eval with the demo checkpoint on ONNX Runtime -> report."""
    import shutil
    import time

    from seg_perception.inference.factory import BackendRequest
    from seg_perception.replay.command import finish_report, pipeline_settings_from_params, summary
    from seg_perception.replay.evaluate import ReplayConfig, evaluate_bags
    from seg_perception.replay.report import OverlayVideo
    from seg_perception.ros_io.environment import resolve_model_path

    started = time.perf_counter()
    model = model or resolve_model_path("models/demo")  # the source checkout, else the package share
    drive_dir = out / "drive"
    if _drive_is_current(drive_dir):
        print(f"reusing the synthetic drive in {drive_dir}")
    else:
        if drive_dir.exists():
            raise FileExistsError(f"{drive_dir} holds something else than the demo drive; remove it first")
        write_synthetic(drive_dir, **DEMO_DRIVE)
    bag = bag_path(drive_dir, 0)
    preview = out / "preview.png"
    cv2.imwrite(str(preview), cv2.cvtColor(_preview(bag, DEMO_DRIVE["cameras"], 20), cv2.COLOR_RGB2BGR))
    print(f"\nsynthetic drive (mcap bag): {bag}")
    for topic, (msgtype, count) in sorted(bag_topics(bag).items()):
        print(f"  {topic:34s} {count:4d} x {msgtype}")

    report_dir = out / "eval"
    if report_dir.exists():
        shutil.rmtree(report_dir)  # the demo's own output from a previous run
    report_dir.mkdir(parents=True)
    settings, _ = pipeline_settings_from_params(None)
    config = ReplayConfig(model=BackendRequest(model_path=model, backend="onnxruntime"), pipeline=settings,
                          output_dir=report_dir)
    video = OverlayVideo(report_dir / "overlay.mp4", fps=DEMO_DRIVE["fps"])
    command = ["seg-perception", "eval", str(bag), "--model", str(model), "--out", str(report_dir), "--video"]
    report, acc = evaluate_bags([bag], config, command=command, video=video)
    finish_report(report_dir, report, acc, video)
    print()
    print(summary(report, report_dir))
    print(f"output bag (open it in Foxglove next to the input): {report['bags'][0]['output_bag']}")
    print(f"overlay video: {report_dir / 'overlay.mp4'}; ground-truth preview: {preview}")
    print(f"demo took {time.perf_counter() - started:.0f} s")
    return 0
