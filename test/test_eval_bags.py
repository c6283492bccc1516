"""`seg-perception eval BAG...`: synthetic bags through the node's pipeline, metrics against the ground truth."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from seg_perception.bags.reader import BagError, read_messages
from seg_perception.bags.writer import BagWriter
from seg_perception.datasets.synthetic import bag_path, write_synthetic
from seg_perception.evaluation.semantic import ConfusionMatrix
from seg_perception.inference.factory import BackendRequest, open_backend
from seg_perception.models.card import load_card
from seg_perception.pipeline.pipeline import CameraFrame, PerceptionPipeline, PipelineSettings
from seg_perception.postprocess.roles import role_mapping_for
from seg_perception.replay.evaluate import ReplayConfig, evaluate_bags
from seg_perception.ros_io.image_codec import to_image_msg
from seg_perception.synth import render_sequence

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "demo"
CAMERAS = ("front", "rear")
FRAMES, SIZE, SEED = 4, (512, 256), 7300


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def drive(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"drive_{request.param}")
    write_synthetic(out, fmt="bag", sequences=1, frames=FRAMES, width=SIZE[0], height=SIZE[1], seed=SEED,
                    cameras=CAMERAS, storage=request.param, show_progress=False)
    return bag_path(out, 0)


def _config(out: Path | None, **changes) -> ReplayConfig:
    return ReplayConfig(model=BackendRequest(model_path=DEMO), output_dir=out, show_progress=False, **changes)


def _reference_miou() -> float:
    """The same frames through the pipeline directly, scored here: what eval must report."""
    card = load_card(DEMO)
    backend, _ = open_backend(BackendRequest(model_path=DEMO))
    pipeline = PerceptionPipeline(backend, card, role_mapping_for(card.class_names, card.thing_ids),
                                  PipelineSettings())
    confusion = ConfusionMatrix(card.num_classes, class_names=card.class_names)
    for step in render_sequence(seed=SEED, sequence=0, num_frames=FRAMES, width=SIZE[0], height=SIZE[1],
                                cameras=CAMERAS):
        frames = [CameraFrame(camera=c, image=f.image, stamp_ns=f.stamp_ns, frame_id=c) for c, f in step.items()]
        for result, truth in zip(pipeline.process(frames), step.values(), strict=True):
            confusion.update(result.semantic, truth.semantic)
    return confusion.compute().miou


def test_eval_scores_a_synthetic_bag_against_its_labels(drive: Path, tmp_path: Path) -> None:
    report, acc = evaluate_bags([drive], _config(tmp_path))
    assert report["frames"] == {"received": 8, "processed": 8, "decode_failures": 0, "labelled": 8, "unlabelled": 0}
    (bag,) = report["bags"]
    assert bag["cameras"] == {"front": "/front/image_raw", "rear": "/rear/image_raw"}
    assert bag["label_source"] == "topics" and bag["storage"] in ("mcap", "sqlite3")
    metrics = report["metrics"]
    assert metrics["miou"] == pytest.approx(_reference_miou(), abs=1e-6)
    assert metrics["drivable_iou"] >= 0.9 and metrics["lane_iou"] >= 0.4
    assert metrics["pq"]["all"]["n"] > 0 and set(metrics["lane_fscore"]) == {"fscore_1px", "fscore_2px",
                                                                              "fscore_5px"}
    tc = report["temporal_consistency"]
    assert tc["pairs"] == len(CAMERAS) * (FRAMES - 1) and 0 < tc["mean"] <= 1
    assert {"preprocess", "inference", "postprocess", "smoothing", "end_to_end"} <= set(report["latency_ms"])
    assert report["latency_ms"]["end_to_end"]["n"] == 8 and report["throughput_fps"] > 0
    assert report["smoothing_resets"] == {"first_frame": 2}
    assert acc.overlays and all(o.ground_truth is not None for o in acc.overlays)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:mcap_ros2.reader")
def test_output_bag_is_readable_by_rosbags_and_mcap_ros2(drive: Path, tmp_path: Path) -> None:
    from mcap_ros2.reader import read_ros2_messages

    report, _ = evaluate_bags([drive], _config(tmp_path))
    output = Path(report["bags"][0]["output_bag"])
    stamps_in = sorted(stamp for _, stamp, _ in read_messages(drive, ["/front/image_raw"]))
    topic = "/seg_perception_node/front/out/drivable_area"
    ours = list(read_messages(output, [topic, "/seg_perception_node/front/out/obstacle_list"]))
    masks = [m for t, _, m in ours if t == topic]
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in masks] == stamps_in
    assert all(m.encoding == "mono8" and m.header.frame_id == "front_optical_frame" for m in masks)
    lists = [m for t, _, m in ours if t.endswith("obstacle_list")]
    assert len(lists) == FRAMES and all(o.track_id >= 1 for m in lists for o in m.obstacles)
    (mcap_file,) = output.glob("*.mcap")
    seen = {}
    for message in read_ros2_messages(str(mcap_file)):
        seen[message.channel.topic] = seen.get(message.channel.topic, 0) + 1
    expected = {f"/seg_perception_node/{c}/out/{o}" for c in CAMERAS for o in
                ("drivable_area", "lane_markings", "obstacles", "instances", "semantic", "obstacle_list", "latency")}
    assert set(seen) == expected and set(seen.values()) == {FRAMES}


def test_workers_give_the_same_report_as_one_process(drive: Path, tmp_path: Path) -> None:
    if "sqlite3" in str(drive.parent):
        pytest.skip("one storage is enough for the sharding check")
    second = tmp_path / "second"
    shutil.copytree(drive, second) if drive.is_dir() else shutil.copy(drive, second)
    one, _ = evaluate_bags([drive, second], _config(None, temporal_consistency=False))
    two, _ = evaluate_bags([drive, second], _config(None, temporal_consistency=False), workers=2)
    assert two["frames"] == one["frames"] and two["metrics"] == one["metrics"]


def _bag_with(path: Path, images: list[tuple[str, str, np.ndarray]]) -> Path:
    with BagWriter(path) as bag:
        for i, (topic, encoding, array) in enumerate(images):
            header = bag.header(1_000_000_000 + i * 100_000_000, "front_optical_frame")
            bag.write(topic, to_image_msg(array, encoding, header, bag.typestore.types["sensor_msgs/msg/Image"]),
                      1_000_000_000 + i * 100_000_000)
    return path


def test_bad_frames_are_skipped_counted_and_listed(tmp_path: Path) -> None:
    good = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    bag = _bag_with(tmp_path / "mixed", [("/front/image_raw", "rgb8", good), ("/front/image_raw", "rgb8", good),
                                         ("/front/image_raw", "rgb8", good)])
    # Rewrite the middle frame's encoding in place: same bytes, an encoding no camera driver uses.
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data.replace(b"rgb8", b"yuv9", 2).replace(b"yuv9", b"rgb8", 1))
    report, _ = evaluate_bags([bag], _config(None))
    assert report["frames"]["received"] == 3 and report["frames"]["processed"] == 2
    assert report["frames"]["decode_failures"] == 1 and report["metrics"] is None
    assert report["metric_outputs"] is None  # no rig, no camera_info, no ground truth in metres: not scored
    (failure,) = report["decode_failure_list"]
    assert failure["topic"] == "/front/image_raw" and "yuv9" in failure["error"]


def test_bad_bags_name_themselves_and_the_problem(tmp_path: Path, drive: Path) -> None:
    with pytest.raises(BagError, match=r"missing\.mcap.*no such file"):
        evaluate_bags([tmp_path / "missing.mcap"], _config(None))
    labels_only = _bag_with(tmp_path / "labels_only", [("/front/labels/semantic", "mono8",
                                                        np.zeros((8, 8), np.uint8))])
    with pytest.raises(BagError, match=r"labels_only.*no camera image topic"):
        evaluate_bags([labels_only], _config(None))
    if "mcap" in str(drive.parent):
        truncated = tmp_path / "truncated"
        shutil.copytree(drive, truncated)
        (mcap,) = truncated.glob("*.mcap")
        mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
        with pytest.raises(BagError, match="truncated"):
            evaluate_bags([truncated], _config(None))
    with pytest.raises(BagError, match="no camera 'side'"):
        evaluate_bags([drive], _config(None, cameras=("side",)))


def test_cli_writes_the_report_folder(drive: Path, tmp_path: Path) -> None:
    if "sqlite3" in str(drive.parent):
        pytest.skip("the CLI is storage-agnostic; the mcap run covers it")
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "seg_perception.cli", "eval", str(drive), "--model", str(DEMO),
                             "--out", str(out), "--video"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["frames"]["processed"] == 8 and (out / "report.md").is_file() and (out / "overlay.mp4").is_file()
    assert all((out / p).is_file() for p in report["outputs"]["plots"].values())
    assert "birds_eye" in report["outputs"]["plots"] and "## Outputs in metres" in (out / "report.md").read_text()
    assert "mIoU" in result.stdout and "report.md" in result.stdout
    again = subprocess.run([sys.executable, "-m", "seg_perception.cli", "eval", str(drive), "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_labels_from_a_cityscapes_folder_matched_by_name(drive: Path, tmp_path: Path) -> None:
    """The same drive written as a Cityscapes folder scores exactly like the bag's own label topics."""
    if "sqlite3" in str(drive.parent):
        pytest.skip("label matching does not depend on the storage")
    folder = tmp_path / "cityscapes"
    write_synthetic(folder, fmt="cityscapes", sequences=1, frames=FRAMES, width=SIZE[0], height=SIZE[1],
                    seed=SEED, cameras=CAMERAS, split="val", show_progress=False)
    from_topics, _ = evaluate_bags([drive], _config(None, temporal_consistency=False))
    from_folder, _ = evaluate_bags([drive], _config(None, temporal_consistency=False,
                                                     label_folder=(folder, "val", 0)))
    assert from_folder["bags"][0]["label_source"] == f"cityscapes:{folder}:val"
    assert from_folder["frames"]["labelled"] == 8 and from_folder["metrics"] == from_topics["metrics"]
    other_sequence, _ = evaluate_bags([drive], _config(None, temporal_consistency=False,
                                                        label_folder=(folder, "val", 5)))
    assert other_sequence["frames"]["labelled"] == 0 and other_sequence["metrics"] is None


@pytest.mark.parametrize(("flags", "message"), [
    (["--video", "--workers", "2"], "--video needs one process"),
    (["--live", "--workers", "2", "--video"], "--workers, --video cannot be combined with --live"),
    (["--rate", "2"], "--rate sets the playback speed of --live"),
])
def test_eval_refuses_flag_combinations_it_cannot_honour(flags: list[str], message: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before anything runs, instead of silently dropping one of the asked-for outputs."""
    from seg_perception.cli import main

    out = tmp_path / "report"
    assert main(["eval", str(tmp_path / "any.mcap"), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_eval_runs_the_model_at_the_input_size_the_node_would(drive: Path, tmp_path: Path) -> None:
    """The parameter file's input size applies offline as it does in the node; --input-size overrides both."""
    if "sqlite3" in str(drive.parent):
        pytest.skip("the input size does not depend on the storage")
    from seg_perception.cli import main

    shipped = yaml.safe_load((REPO / "config" / "perception.param.yaml").read_text())
    shipped["/**"]["ros__parameters"].update(input_width=256, input_height=128)
    params = tmp_path / "small.param.yaml"
    params.write_text(yaml.safe_dump(shipped))
    fast = ["--no-output-bag", "--no-tc", "--max-frames", "1"]
    for name, flags, expected in (("params", ["--params", str(params)], [256, 128]),
                                  ("both", ["--params", str(params), "--input-size", "384x192"], [384, 192]),
                                  ("card", [], list(load_card(DEMO).input_size))):
        out = tmp_path / name
        assert main(["eval", str(drive), "--model", str(DEMO), "--out", str(out), *fast, *flags]) == 0
        assert json.loads((out / "report.json").read_text())["model"]["input_size"] == expected, name


def test_eval_scores_the_outputs_in_metres_against_the_bags_ground_truth(drive: Path) -> None:
    """The bag's rig, camera_info and ground truth in base_link give the pipeline its geometry and the report
    scores of the grid, the lanes and the obstacles in metres (definitions: evaluation/metric_outputs.py)."""
    report, acc = evaluate_bags([drive], _config(None, temporal_consistency=False))
    scores = report["metric_outputs"]
    lanes, grid, obstacles = scores["lanes"], scores["grid"], scores["obstacles"]
    assert lanes["frames"] == FRAMES * len(CAMERAS)  # front and rear both look along the road
    near = lanes["within_20m"]
    assert near["truth"] >= FRAMES * 2 and near["recall"] >= 0.5 and near["median_lateral_error_m"] <= 0.15
    assert grid["steps"] == FRAMES and grid["free_iou"] >= 0.8
    assert obstacles["with_position"] >= obstacles["matched"] > 0
    assert obstacles["within_40m"]["median_error_pct_of_range"] <= 25.0
    assert scores["velocity"]["odometry_messages"] == FRAMES  # the bag's /odom reached the velocity filter
    assert sum(b["count"] for b in scores["velocity"]["bins"].values()) == scores["velocity"]["count"]
    assert set(scores["targets"]) == {
        "lane lateral error within 20 m, median (m)", "lane lateral error at 40 m, median (m)",
        "lane boundary recall within 20 m", "obstacle position error within 40 m, median (% of range)",
        "velocity error, tracks of >= 5 frames, median (m/s)", "free-space grid IoU within 30 m"}
    (sample,) = acc.birds_eye  # one time step of the bag, predicted beside true
    assert sample.grid.shape == sample.truth_grid.shape and sample.truth_lanes
