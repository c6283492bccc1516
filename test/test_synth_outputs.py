"""`seg-perception synth` output opens as a Cityscapes folder (ours and the official scripts) and as a
bag that both rosbags and mcap-ros2-support read, with the exact ground truth the renderer produced."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seg_perception.bags.reader import BagError, bag_topics, read_messages
from seg_perception.datasets import cityscapes, labels
from seg_perception.datasets.synthetic import bag_path, camera_topics, city_name, write_synthetic
from seg_perception.ros_io.image_codec import image_to_numpy, image_to_rgb
from seg_perception.synth import render_sequence

SIZE = (192, 96)
CAMERAS = ("front", "front_left")
SEED = 11


def _rendered(sequence: int, frames: int) -> list[dict]:
    return list(render_sequence(seed=SEED, sequence=sequence, num_frames=frames, width=SIZE[0], height=SIZE[1],
                                cameras=CAMERAS))


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    write_synthetic(root, fmt="cityscapes", sequences=2, frames=3, width=SIZE[0], height=SIZE[1], seed=SEED,
                    cameras=CAMERAS, split="val", show_progress=False)
    return root


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = {}
    for storage in ("mcap", "sqlite3"):
        out = tmp_path_factory.mktemp(f"bag_{storage}")
        write_synthetic(out, fmt="bag", sequences=1, frames=3, width=SIZE[0], height=SIZE[1], seed=SEED,
                        cameras=CAMERAS, storage=storage, show_progress=False)
        paths[storage] = bag_path(out, 0)
    return paths


def test_cityscapes_folder_holds_exact_ground_truth(cityscapes_root: Path) -> None:
    samples = cityscapes.find_samples(cityscapes_root, "val")
    assert len(samples) == 2 * 3 * len(CAMERAS)
    by_stem = {s.stem: s for s in samples}
    for sequence in range(2):
        for step in _rendered(sequence, 3):
            for cam, frame in step.items():
                sample = by_stem[cityscapes.sample_stem(city_name(cam), sequence, frame.index)]
                arrays = cityscapes.load_sample(sample)
                np.testing.assert_array_equal(arrays["image"], frame.image)
                np.testing.assert_array_equal(arrays["train_ids"], frame.semantic)
                np.testing.assert_array_equal(arrays["instance_ids"], frame.instance.astype(np.int32))
                np.testing.assert_array_equal(arrays["lane"], frame.lane)
                np.testing.assert_array_equal(arrays["drivable"], frame.drivable)
    camera = json.loads(next((cityscapes_root / "camera" / "val").rglob("*_camera.json")).read_text())
    assert set(camera) == {"extrinsic", "intrinsic"} and camera["intrinsic"]["fx"] > 0
    manifest = json.loads((cityscapes_root / "synth_manifest_val.json").read_text())
    assert manifest["seed"] == SEED and len(manifest["scenes"]) == 2
    assert [c["name"] for c in manifest["label_space"]] == list(labels.CLASS_NAMES)


def test_official_cityscapes_scripts_accept_the_folder(cityscapes_root: Path, tmp_path: Path) -> None:
    """The official evaluator scores ground truth against itself as perfect, and the official panoptic
    converter finds exactly our thing instances."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as pixel_eval
    from cityscapesscripts.helpers.csHelpers import getCsFileInfo
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    samples = cityscapes.find_samples(cityscapes_root, "val")
    info = getCsFileInfo(str(samples[0].image))
    assert (info.city, info.type) == (samples[0].city, "leftImg8bit")

    args = pixel_eval.args
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, True
    gt_files = [str(s.label_ids) for s in samples]
    results = pixel_eval.evaluateImgLists(gt_files, gt_files, args)
    present = {labels.CLASSES[t].name for s in samples for t in np.unique(cityscapes.load_sample(s)["train_ids"])}
    present.discard("lane_marking")  # stored as road in labelIds
    scores = {name: results["classScores"][name] for name in present}
    assert scores and all(score == pytest.approx(1.0) for score in scores.values()), scores

    convert2panoptic(cityscapesPath=str(cityscapes_root / "gtFine"), outputFolder=str(tmp_path), setNames=["val"])
    panoptic = json.loads((tmp_path / "cityscapes_panoptic_val.json").read_text())
    things = {c["id"] for c in panoptic["categories"] if c["isthing"]}
    for annotation in panoptic["annotations"]:
        sample = next(s for s in samples if s.stem == annotation["image_id"])
        instance_ids = cityscapes.load_sample(sample)["instance_ids"]
        ours = {int(i) for i in np.unique(instance_ids) if i >= 1000}
        theirs = {seg["id"] for seg in annotation["segments_info"] if seg["category_id"] in things}
        assert theirs == ours


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_topics_and_ground_truth_with_rosbags(bags: dict[str, Path], storage: str) -> None:
    bag = bags[storage]
    suffix = {"mcap": "*.mcap", "sqlite3": "*.db3"}[storage]
    assert len(list(bag.glob(suffix))) == 1, f"{bag} is not {storage} storage"
    topics = bag_topics(bag)
    for cam in CAMERAS:
        t = camera_topics(cam)
        assert topics[t.image] == ("sensor_msgs/msg/Image", 3)
        assert topics[t.camera_info] == ("sensor_msgs/msg/CameraInfo", 3)
        for label_topic in (t.semantic, t.instance, t.drivable, t.lane):
            assert topics[label_topic] == ("sensor_msgs/msg/Image", 3)

    expected = {(cam, f.stamp_ns): f for step in _rendered(0, 3) for cam, f in step.items()}
    checked = 0
    for cam in CAMERAS:
        t = camera_topics(cam)
        for topic, log_ns, msg in read_messages(bag, [t.image, t.semantic, t.instance, t.lane, t.camera_info]):
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert stamp == log_ns and msg.header.frame_id == f"{cam}_optical_frame"
            frame = expected[(cam, stamp)]
            if topic == t.image:
                np.testing.assert_array_equal(image_to_rgb(msg), frame.image)
            elif topic == t.semantic:
                np.testing.assert_array_equal(image_to_numpy(msg), frame.semantic)
            elif topic == t.instance:
                assert msg.encoding == "mono16"
                np.testing.assert_array_equal(image_to_numpy(msg), frame.instance)
            elif topic == t.lane:
                np.testing.assert_array_equal(image_to_numpy(msg) > 0, frame.lane)
            else:
                np.testing.assert_allclose(np.asarray(msg.k).reshape(3, 3), frame.camera.intrinsic_matrix())
            checked += 1
    assert checked == len(CAMERAS) * 5 * 3


def test_mcap_bag_reads_with_mcap_ros2_support(bags: dict[str, Path]) -> None:
    mcap_files = sorted(bags["mcap"].glob("*.mcap"))
    from mcap_ros2.reader import read_ros2_messages

    expected = {f.stamp_ns: f for step in _rendered(0, 3) for f in [step["front"]]}
    seen = {}
    for message in read_ros2_messages(str(mcap_files[0])):
        seen[message.channel.topic] = seen.get(message.channel.topic, 0) + 1
        if message.channel.topic == "/front/image_raw":
            ros = message.ros_msg
            pixels = np.frombuffer(bytes(ros.data), np.uint8).reshape(ros.height, ros.width, 3)
            stamp = ros.header.stamp.sec * 10**9 + ros.header.stamp.nanosec
            np.testing.assert_array_equal(pixels, expected[stamp].image)
        if message.channel.topic == "/odom":  # the ego's exact motion, twist in base_link
            ros = message.ros_msg
            ego = expected[ros.header.stamp.sec * 10**9 + ros.header.stamp.nanosec].ground_truth["ego"]
            assert ros.child_frame_id == "base_link" and ros.header.frame_id == "odom"
            twist = ros.twist.twist
            assert (twist.linear.x, twist.linear.y) == pytest.approx(ego["velocity_xy_mps"])
            assert twist.angular.z == pytest.approx(ego["yaw_rate_rps"]) and twist.linear.x > 1.0
            assert math.hypot(twist.linear.x, twist.linear.y) == pytest.approx(ego["speed_mps"])
    assert seen["/front/image_raw"] == 3 and seen["/front_left/labels/semantic"] == 3 and seen["/odom"] == 3
    # and the rig's ground truth (/labels/lanes, /labels/obstacles) and odometry (/odom)
    assert len(seen) == len(CAMERAS) * 6 + 3


def test_same_seed_same_files(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*.png"))}

    for name in ("a", "b"):
        write_synthetic(tmp_path / name, fmt="cityscapes", sequences=1, frames=2, width=96, height=48, seed=3,
                        show_progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and digest(tmp_path / "a")


def test_cli_synth_writes_a_bag_and_rejects_bad_arguments(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "seg_perception.cli", "synth"]
    ok = subprocess.run([*cli, "--out", str(tmp_path), "--format", "bag", "--frames", "2", "--size", "128x64"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert bag_topics(bag_path(tmp_path, 0))["/front/image_raw"][1] == 2
    again = subprocess.run([*cli, "--out", str(tmp_path), "--format", "bag", "--frames", "2", "--size", "128x64"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = subprocess.run([*cli, "--out", str(tmp_path), "--size", "12x5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "too small" in bad.stderr
    bad = subprocess.run([*cli, "--out", str(tmp_path), "--cameras", "roof"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown camera" in bad.stderr


def test_bad_folders_and_bags_name_themselves(tmp_path: Path) -> None:
    with pytest.raises(cityscapes.DatasetError, match="leftImg8bit/val"):
        cityscapes.find_samples(tmp_path, "val")
    image = tmp_path / "leftImg8bit" / "val" / "city" / "city_000000_000000_leftImg8bit.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"not a png")
    with pytest.raises(cityscapes.DatasetError, match="no labels"):
        cityscapes.find_samples(tmp_path, "val")
    with pytest.raises(BagError, match="no such file"):
        bag_topics(tmp_path / "missing_bag")
    broken = tmp_path / "broken_bag"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9")
    with pytest.raises(BagError, match="broken_bag"):
        bag_topics(broken)
