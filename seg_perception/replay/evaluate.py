"""`seg-perception eval BAG...`: replay bags through the node's pipeline as fast as the backend allows.

Frames are batched as the node batches them (one per camera; a camera seen again closes the batch), run
through ``PerceptionPipeline`` (smoothing and tracking included), written to an output bag with the node's
topics, and scored when the bag carries label topics (``/<cam>/labels/{semantic,instance,drivable,lane}``,
as ``seg-perception synth`` writes them). Metric state lives in ``EvalAccumulator``, which merges, so
bags can be sharded over processes (``--workers``) or machines and give the same report.

Offline there is no transport: a frame's ``end_to_end`` latency is the processing time of its batch, and
its LatencyReport carries receive = queue = 0.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.highlevel import AnyReaderError
from tqdm import tqdm

from seg_perception.bags.reader import BagError, first_line, open_bag
from seg_perception.bags.writer import BagWriter
from seg_perception.datasets.cityscapes import find_samples, load_sample, sample_stem
from seg_perception.datasets.synthetic import city_name
from seg_perception.evaluation.metric_outputs import MetricOutputScores
from seg_perception.evaluation.scoring import LABEL_KINDS, LabelledScores, sample_labels
from seg_perception.evaluation.summary import metric_value
from seg_perception.evaluation.temporal import TemporalConsistencyMeter
from seg_perception.geometry.camera import GeometryError
from seg_perception.inference.factory import BackendRequest, open_backend
from seg_perception.models.card import ModelCard
from seg_perception.pipeline.pipeline import STAGES, CameraFrame, FrameResult, PerceptionPipeline, PipelineSettings
from seg_perception.postprocess.roles import role_mapping_for
from seg_perception.replay.metric_replay import (
    TRUTH_LANES_TOPIC,
    TRUTH_OBSTACLES_TOPIC,
    BirdsEyeSample,
    MetricReplay,
    bag_rig,
)
from seg_perception.replay.report import REPORT_FORMAT, OverlaySample
from seg_perception.ros_io.image_codec import ImageConversionError, compressed_to_rgb, image_to_numpy, image_to_rgb
from seg_perception.ros_io.outputs import OUTPUT_NAMES, LatencyTimes, MessageTypes, image_outputs, latency_msg
from seg_perception.ros_io.stamps import stamp_ns

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
NODE_PREFIX = "/seg_perception_node"
MAX_LISTED_FAILURES = 100
STREAM_BREAKS = ("stamp_backwards", "stamp_gap", "size_changed")  # a new stream for TC pairs too


@dataclass(frozen=True)
class ReplayConfig:
    model: BackendRequest  # the checkpoint or .onnx and how to run it, exactly as the node would open it
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    cameras: tuple[str, ...] = ()  # image topics to use; empty: every image topic that is not a label
    # Labels in a Cityscapes folder instead of label topics: (root, split, sequence). The k-th image of camera
    # <cam> is <city>_<sequence:06d>_<k:06d> with city "synth-<cam>" (the names `synth` gives both outputs).
    label_folder: tuple[Path, str, int] | None = None
    roles_config: Path | None = None
    output_dir: Path | None = None  # output bags go to <output_dir>/bags/<bag name>; None: no output bag
    storage: str = "mcap"
    outputs: tuple[str, ...] = tuple(n for n in OUTPUT_NAMES if n != "overlay")
    temporal_consistency: bool = True
    tc_max_width: int = 512  # optical flow costs ~140 ms per pair at 1024x512 on 2 cores; TC is computed at most here
    overlay_samples: int = 2  # per camera and bag, spread over the bag
    max_frames: int = 0  # per bag; 0: all
    show_progress: bool = True
    metric_outputs: bool = True  # score grid, lanes and obstacles in metres where a bag has their ground truth


@dataclass
class BagInfo:
    path: str
    storage: str
    cameras: dict[str, str]
    label_source: str | None
    frames: int = 0
    decode_failures: int = 0
    output_bag: str | None = None


@dataclass
class EvalAccumulator:
    """Everything a report needs, mergeable across bags, processes and machines."""

    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]
    scores: LabelledScores = field(init=False)  # scored against labels (shared with `eval --dataset`)
    tc_series: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    frames: Counter[str] = field(default_factory=Counter)
    resets: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    bags: list[BagInfo] = field(default_factory=list)
    overlays: list[OverlaySample] = field(default_factory=list)
    metric_outputs: MetricOutputScores = field(default_factory=MetricOutputScores)
    birds_eye: list[BirdsEyeSample] = field(default_factory=list)  # one time step per bag, for the plot
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        self.scores = LabelledScores(class_names=self.class_names, thing_ids=self.thing_ids)

    def merge(self, other: EvalAccumulator) -> None:
        self.scores.merge(other.scores)  # first: it refuses another model's classes before anything is added
        for key, values in other.tc_series.items():
            self.tc_series[key].extend(values)
        for key, values in other.latency_ms.items():
            self.latency_ms[key].extend(values)
        self.frames.update(other.frames)
        self.resets.update(other.resets)
        self.failures.extend(other.failures)
        self.bags.extend(other.bags)
        self.overlays.extend(other.overlays)
        self.metric_outputs.merge(other.metric_outputs)
        self.birds_eye.extend(other.birds_eye)
        self.wall_s += other.wall_s

    # ------------------------------------------------------------------------------------------ report

    def report(self, *, card: ModelCard, model_path: Path, backend: str, pipeline: PipelineSettings,
               command: Sequence[str], wall_s: float) -> dict[str, Any]:
        processed, labelled = self.frames["processed"], self.scores.annotated["frames"]
        tc_values = [v for values in self.tc_series.values() for v in values if not math.isnan(v)]
        return {
            "format": REPORT_FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": list(command),
            "model": {"path": str(model_path), "arch": card.arch, "input_size": list(card.input_size),
                      "weights_sha256": card.weights_sha256, "classes": list(card.class_names)},
            "backend": backend,
            "pipeline": asdict(pipeline),
            "bags": [asdict(b) for b in self.bags],
            "frames": {"received": self.frames["received"], "processed": processed,
                       "decode_failures": self.frames["decode_failures"], "labelled": labelled,
                       "unlabelled": processed - labelled},
            "metrics": self.scores.summary() if labelled else None,
            "temporal_consistency": {
                "mean": metric_value(np.mean(tc_values)) if tc_values else None,
                "per_camera": {camera: metric_value(np.nanmean(values)) if _any_number(values) else None
                               for camera, values in sorted(self.tc_series.items())},
                "pairs": len(tc_values)},
            "latency_ms": {stage: _summary(values) for stage, values in self.latency_ms.items() if values},
            "throughput_fps": round(processed / wall_s, 3) if wall_s > 0 else 0.0,
            "wall_s": round(wall_s, 3),
            "smoothing_resets": dict(self.resets),
            "metric_outputs": None if self.metric_outputs.empty() else self.metric_outputs.summary(),
            "decode_failure_list": self.failures[:MAX_LISTED_FAILURES],
            "outputs": {},
        }


def _any_number(values: Sequence[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def _summary(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {"p50": round(float(np.percentile(array, 50)), 3), "p90": round(float(np.percentile(array, 90)), 3),
            "p99": round(float(np.percentile(array, 99)), 3), "mean": round(float(array.mean()), 3),
            "n": len(values)}


# ------------------------------------------------------------------------------------------------ bags


def camera_name(topic: str) -> str:
    """``/front/image_raw`` -> ``front``; the first namespace names the camera, as in our synthetic bags."""
    parts = [p for p in topic.split("/") if p]
    return parts[0] if len(parts) > 1 else parts[0] if parts else topic


def select_cameras(connections, wanted: Sequence[str], bag: Path) -> dict[str, str]:
    """camera name -> image topic of the bag, auto-detected or as asked (names or topics)."""
    images = {c.topic: c.msgtype for c in connections if c.msgtype in IMAGE_TYPES and "/labels/" not in c.topic}
    if not images:
        types = sorted({f"{c.topic} ({c.msgtype})" for c in connections})
        raise BagError(f"bag {bag}: no camera image topic (sensor_msgs/Image or CompressedImage); it has "
                       f"{', '.join(types) or 'no topics'}")
    cameras: dict[str, str] = {}
    for topic in sorted(images):
        name = camera_name(topic)
        if name in cameras:  # two image topics under one namespace: name them by the whole topic
            name = topic.strip("/").replace("/", "_")
        cameras[name] = topic
    if not wanted:
        return cameras
    chosen = {}
    for item in wanted:
        if item in cameras:
            chosen[item] = cameras[item]
        elif item in images:
            chosen[camera_name(item)] = item
        else:
            known = ", ".join(f"{n} ({t})" for n, t in cameras.items())
            raise BagError(f"bag {bag}: no camera {item!r}; it has {known}")
    return chosen


def cameras_with_messages(connections, wanted: Sequence[str], bag: Path) -> tuple[dict[str, str], int]:
    """``select_cameras`` and the number of image messages on them; BagError when there are none."""
    cameras = select_cameras(connections, wanted, bag)
    topics = set(cameras.values())
    total = sum(c.msgcount for c in connections if c.topic in topics)
    if total == 0:
        raise BagError(f"bag {bag}: the camera topics {', '.join(sorted(topics))} hold no messages")
    return cameras, total


def check_bags(paths: Sequence[Path], cameras: Sequence[str] = ()) -> None:
    """Every bag opens and has the cameras asked for, with images: a bad last bag is refused before the first
    is replayed, not after an hour of work."""
    if not paths:
        raise BagError("no bag given")
    for path in map(Path, paths):
        with open_bag(path) as reader:
            cameras_with_messages(reader.connections, cameras, path)


def tc_inputs(image: np.ndarray, labels: np.ndarray, max_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels at the labels' aspect, at most ``max_width`` wide: the size TC's optical flow runs at."""
    width = min(max_width, labels.shape[1])
    height = round(labels.shape[0] * width / labels.shape[1])
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if labels.shape != (height, width):
        labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, labels


class _BagReplay:
    """One bag through one pipeline, into one accumulator (and an output bag, an overlay video)."""

    def __init__(self, path: Path, config: ReplayConfig, backend, card: ModelCard, acc: EvalAccumulator,
                 video: Any = None, output_name: str | None = None) -> None:
        self.path, self.config, self.backend, self.card, self.acc, self.video = path, config, backend, card, acc, video
        self.output_name = output_name or output_names([path])[0]
        roles = role_mapping_for(card.class_names, card.thing_ids, config.roles_config)
        self.pipeline = PerceptionPipeline(backend, card, roles, config.pipeline)
        self.meters: dict[str, TemporalConsistencyMeter] = {}
        self.batch: dict[str, CameraFrame] = {}
        self.pending_results: dict[tuple[str, int], FrameResult] = {}
        self.pending_labels: dict[tuple[str, int], dict[str, np.ndarray]] = defaultdict(dict)
        self.label_kinds: dict[str, tuple[str, ...]] = {}
        self.folder_samples: dict[str, Any] | None = None  # stem -> CityscapesSample with --labels
        self.message_index: Counter[str] = Counter()  # image messages seen per camera (names count from 0)
        self.frame_index: dict[tuple[str, int], int] = {}
        self.writer: BagWriter | None = None
        self.types: MessageTypes | None = None
        self.overlay_every = 0
        self.processed = 0
        self.per_camera: Counter[str] = Counter()
        self.to_sample: set[tuple[str, int]] = set()  # frames picked for the overlay grid
        self.metric: MetricReplay | None = None  # outputs in metres, scored where the bag has their truth

    def run(self) -> None:
        started = time.perf_counter()
        try:
            with open_bag(self.path) as reader:
                self._replay(reader)
        finally:
            if self.writer is not None:
                self.writer.__exit__(None, None, None)
        self.acc.wall_s += time.perf_counter() - started

    def _messages(self, reader, connections) -> Iterator[tuple[Any, int, bytes]]:
        """The bag's messages; reading errors (e.g. a truncated file) name the bag, errors of ours (writing the
        output bag, say) pass through the caller's loop untouched."""
        count = 0
        try:
            for item in reader.messages(connections=connections):
                count += 1
                yield item
        except (AnyReaderError, OSError, ValueError, KeyError) as error:
            where = f"after {count} messages" if count else "before its first message"
            raise BagError(f"bag {self.path}: unreadable {where}: {first_line(error)}") from error

    def _replay(self, reader) -> None:
        connections = reader.connections
        cameras, total = cameras_with_messages(connections, self.config.cameras, self.path)
        topics = {c.topic for c in connections}
        label_topics = {}
        for camera, topic in cameras.items():
            namespace = "/" + topic.strip("/").split("/")[0]
            kinds = tuple(k for k in LABEL_KINDS if f"{namespace}/labels/{k}" in topics)
            self.label_kinds[camera] = kinds
            label_topics.update({f"{namespace}/labels/{k}": (camera, k) for k in kinds})
        image_topics = {topic: camera for camera, topic in cameras.items()}
        wanted = [c for c in connections if c.topic in image_topics or c.topic in label_topics]
        if self.config.max_frames:
            total = min(total, self.config.max_frames)
        label_source = "topics" if label_topics else None
        if self.config.label_folder is not None:
            root, split, _ = self.config.label_folder
            self.folder_samples = {s.stem: s for s in find_samples(root, split)}
            label_topics, label_source = {}, f"cityscapes:{root}:{split}"
            self.label_kinds = dict.fromkeys(cameras, ("folder",))
            wanted = [c for c in connections if c.topic in image_topics]
        info = BagInfo(path=str(self.path), storage=_storage(self.path), cameras=cameras, label_source=label_source)
        self.acc.bags.append(info)
        per_camera = total // len(cameras)
        self.overlay_every = max(1, per_camera // max(1, self.config.overlay_samples))
        rig = bag_rig(reader) if self.config.metric_outputs and self.config.label_folder is None else {}
        if rig and {TRUTH_LANES_TOPIC, TRUTH_OBSTACLES_TOPIC} <= topics:
            self.metric = MetricReplay(self.pipeline, self.acc.metric_outputs, rig, cameras,
                                       bag_name=self.path.name, sample_step=per_camera // 2,
                                       samples=self.acc.birds_eye)
            wanted += [c for c in connections if c.topic in self.metric.topics]
        if self.config.output_dir is not None:
            out = self.config.output_dir / "bags" / self.output_name
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists():
                raise FileExistsError(f"output bag {out} exists; remove it or choose another --out")
            self.writer = BagWriter(out, storage=self.config.storage).__enter__()
            self.types = MessageTypes.rosbags(self.writer.typestore)
            info.output_bag = str(out)

        seen = 0
        # Closed however the replay ends: a bar drawn after an error or "interrupted" garbles that line.
        with tqdm(total=total, desc=self.path.name, unit="frame", disable=not self.config.show_progress) as progress:
            for connection, log_ns, raw in self._messages(reader, wanted):
                if connection.topic in image_topics:
                    if self.config.max_frames and seen >= self.config.max_frames:
                        break
                    seen += 1
                    progress.update()
                    self._image(reader, connection, image_topics[connection.topic], log_ns, raw, info)
                elif connection.topic in label_topics:
                    camera, kind = label_topics[connection.topic]
                    self._label(reader, connection, camera, kind, log_ns, raw)
                else:
                    self._metric_message(reader, connection, log_ns, raw)
            self._flush()
        info.frames = seen

    def _image(self, reader, connection, camera: str, log_ns: int, raw: bytes, info: BagInfo) -> None:
        self.acc.frames["received"] += 1
        index = self.message_index[camera]
        self.message_index[camera] += 1
        try:
            msg = reader.deserialize(raw, connection.msgtype)
            image = image_to_rgb(msg) if connection.msgtype.endswith("/Image") else compressed_to_rgb(msg)
        except (ImageConversionError, AssertionError, ValueError, KeyError, IndexError) as error:
            # Skipped, counted and listed: one bad frame never ends a replay.
            self.acc.frames["decode_failures"] += 1
            info.decode_failures += 1
            self.acc.failures.append({"bag": str(self.path), "topic": connection.topic, "stamp_ns": log_ns,
                                      "error": f"{type(error).__name__}: {error}"})
            return
        if camera in self.batch:
            self._flush()
        stamp = stamp_ns(msg.header.stamp)
        if self.folder_samples is not None:
            self.frame_index[(camera, stamp)] = index
        self.batch[camera] = CameraFrame(camera=camera, image=image, stamp_ns=stamp, frame_id=msg.header.frame_id,
                                         header=msg.header)

    def _label(self, reader, connection, camera: str, kind: str, log_ns: int, raw: bytes) -> None:
        try:
            msg = reader.deserialize(raw, connection.msgtype)
            array = image_to_numpy(msg)
        except (ImageConversionError, AssertionError, ValueError, KeyError) as error:
            self.acc.failures.append({"bag": str(self.path), "topic": connection.topic, "stamp_ns": log_ns,
                                      "error": f"label: {type(error).__name__}: {error}"})
            return
        key = (camera, stamp_ns(msg.header.stamp))
        self.pending_labels[key][kind] = array
        self._score_if_complete(key)

    def _metric_message(self, reader, connection, log_ns: int, raw: bytes) -> None:
        try:
            msg = reader.deserialize(raw, connection.msgtype)
            self.metric.on_message(connection.topic, msg)
        except (AssertionError, ValueError, KeyError, GeometryError) as error:
            self.acc.failures.append({"bag": str(self.path), "topic": connection.topic, "stamp_ns": log_ns,
                                      "error": f"metric input: {type(error).__name__}: {error}"})

    def _flush(self) -> None:
        if not self.batch:
            return
        frames = list(self.batch.values())
        self.batch = {}
        started = time.perf_counter_ns()
        results = self.pipeline.process(frames)
        processing_ms = (time.perf_counter_ns() - started) / 1e6
        if self.metric is not None:
            self.metric.after_process(results)
        for result in results:
            self.processed += 1
            self.acc.frames["processed"] += 1
            for stage in STAGES:
                self.acc.latency_ms[stage].append(result.timings_ms.get(stage, 0.0))
            self.acc.latency_ms["end_to_end"].append(processing_ms)
            if result.reset_reason is not None:
                self.acc.resets[result.reset_reason] += 1
            self._write(result, processing_ms)
            self._temporal(result)
            key = (result.frame.camera, result.frame.stamp_ns)
            self.per_camera[result.frame.camera] += 1
            index = self.per_camera[result.frame.camera] - 1
            if index % self.overlay_every == self.overlay_every // 2 and \
                    index // self.overlay_every < self.config.overlay_samples:
                self.to_sample.add(key)
            self.pending_results[key] = result
            self._score_if_complete(key)
        if self.video is not None:
            from seg_perception.ros_io.outputs import overlay_bgr

            self.video.add([overlay_bgr(r) for r in results])

    def _write(self, result: FrameResult, processing_ms: float) -> None:
        if self.writer is None or self.types is None:
            return
        frame = result.frame
        topic = f"{NODE_PREFIX}/{frame.camera}/out/"
        for name, message in image_outputs(result, self.config.outputs, frame.header, self.types).items():
            self.writer.write(topic + name, message, frame.stamp_ns)
        if "latency" in self.config.outputs:
            times = LatencyTimes(receive_ns=frame.stamp_ns, published_ns=frame.stamp_ns + int(processing_ms * 1e6),
                                 queue_ms=0.0, processing_ms=processing_ms, publish_ms=0.0,
                                 frames_received=self.acc.frames["received"],
                                 frames_processed=self.acc.frames["processed"],
                                 frames_dropped=self.acc.frames["decode_failures"])
            self.writer.write(topic + "latency", latency_msg(result, frame.header, times, self.backend.name,
                                                             self.types), frame.stamp_ns)

    def _temporal(self, result: FrameResult) -> None:
        if not self.config.temporal_consistency:
            return
        camera = result.frame.camera
        meter = self.meters.setdefault(camera, TemporalConsistencyMeter(num_classes=self.card.num_classes))
        if result.reset_reason in STREAM_BREAKS:
            meter.end_stream()
        score = meter.update(*tc_inputs(result.frame.image, result.semantic, self.config.tc_max_width))
        if score is not None:
            self.acc.tc_series[f"{Path(self.path).stem}:{camera}"].append(score)

    def _folder_labels(self, key: tuple[str, int]) -> dict[str, np.ndarray] | None:
        sequence = self.config.label_folder[2]
        stem = sample_stem(city_name(key[0]), sequence, self.frame_index.pop(key))
        sample = self.folder_samples.get(stem)
        if sample is None:
            return None
        return sample_labels(load_sample(sample))

    def _score_if_complete(self, key: tuple[str, int]) -> None:
        camera, _ = key
        if self.folder_samples is not None:
            result = self.pending_results.pop(key, None)
            if result is not None:
                labels = self._folder_labels(key)
                self._sample(result, None) if labels is None else self._score(result, labels)
            return
        labels = self.pending_labels.get(key, {})
        result = self.pending_results.get(key)
        kinds = self.label_kinds.get(camera, ())
        if result is None or not kinds or set(labels) != set(kinds):
            if result is not None and not kinds:
                self._sample(result, None)
                del self.pending_results[key]
            return
        del self.pending_results[key]
        del self.pending_labels[key]
        self._score(result, labels)

    def _score(self, result: FrameResult, labels: dict[str, np.ndarray]) -> None:
        truth = self.acc.scores.score(result.semantic, result.instances, result.masks, labels)
        if self.metric is not None:
            self.metric.on_labels(result, labels)
        self._sample(result, truth)

    def _sample(self, result: FrameResult, truth: np.ndarray | None) -> None:
        key = (result.frame.camera, result.frame.stamp_ns)
        if key not in self.to_sample:
            return
        self.to_sample.discard(key)
        semantic = result.semantic
        if truth is not None and semantic.shape != truth.shape:
            semantic = cv2.resize(semantic, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_NEAREST)
        self.acc.overlays.append(OverlaySample(
            camera=result.frame.camera, stamp_ns=result.frame.stamp_ns, image=result.frame.image,
            prediction=semantic, ground_truth=None if truth is None else truth.astype(np.uint8)))


def output_names(paths: Sequence[Path]) -> list[str]:
    """Output bag names, one per input: the input's name, numbered from the second of the same name on
    (day1/drive and day2/drive both in one run must not meet at bags/drive after the first is done)."""
    seen: Counter[str] = Counter()
    names = []
    for path in map(Path, paths):
        stem = path.stem.removesuffix(".mcap")
        seen[stem] += 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def _storage(path: Path) -> str:
    if path.is_dir():
        return "mcap" if any(path.glob("*.mcap")) else "sqlite3" if any(path.glob("*.db3")) else "unknown"
    return "mcap" if path.suffix == ".mcap" else "sqlite3" if path.suffix == ".db3" else "unknown"


# ------------------------------------------------------------------------------------------- entry points


def _open(config: ReplayConfig, threads: int | None = None):
    """The backend as the config asks for it; ``threads`` overrides its intra-op threads (parallel workers)."""
    return open_backend(config.model if threads is None else replace(config.model, intra_op_threads=threads))


def evaluate_bag(path: Path, config: ReplayConfig, *, backend=None, card: ModelCard | None = None,
                 video: Any = None, output_name: str | None = None) -> EvalAccumulator:
    """One bag; opens the backend itself unless given one (e.g. from a Ray task, a worker process).
    ``output_name``: of the output bag under ``config.output_dir/bags`` (default: the bag's name)."""
    if backend is None or card is None:
        backend, card = _open(config)
    acc = EvalAccumulator(class_names=card.class_names, thing_ids=card.thing_ids)
    _BagReplay(Path(path), config, backend, card, acc, video, output_name).run()
    return acc


def _worker_signals() -> None:
    # A Ctrl-C reaches the whole process group: the parent alone decides, and terminates the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # terminate() sends SIGTERM; exiting through Python runs multiprocessing's finalizers, so the resource
    # tracker has no "leaked semaphore" (tqdm's lock) to warn about.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def _worker(args: tuple[Path, ReplayConfig, int, str]) -> EvalAccumulator:
    path, config, threads, name = args
    backend, card = _open(config, threads)
    return evaluate_bag(path, config, backend=backend, card=card, output_name=name)


def evaluate_bags(paths: Sequence[Path], config: ReplayConfig, *, workers: int = 1, command: Sequence[str] = (),
                  video: Any = None, progress: Callable[[str], None] = print) -> tuple[dict[str, Any], EvalAccumulator]:
    """The merged report of all bags, and the accumulator behind it (for plots)."""
    check_bags(paths, config.cameras)
    names = output_names(paths)
    started = time.perf_counter()
    backend, card = _open(config)
    if workers <= 1 or len(paths) == 1:
        total = EvalAccumulator(class_names=card.class_names, thing_ids=card.thing_ids)
        for path, name in zip(paths, names, strict=True):
            total.merge(evaluate_bag(Path(path), config, backend=backend, card=card, video=video, output_name=name))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        quiet = replace(config, show_progress=False)
        # spawn, not fork: ONNX Runtime and torch thread pools do not survive a fork. A Pool, not a
        # ProcessPoolExecutor: on an interruption or a failed bag, terminate() stops the other bags at once.
        pool = get_context("spawn").Pool(workers, initializer=_worker_signals)
        try:
            parts = pool.map(_worker, [(Path(p), quiet, threads, n) for p, n in zip(paths, names, strict=True)],
                             chunksize=1)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
        total = parts[0]
        for part in parts[1:]:
            total.merge(part)
        progress(f"{len(paths)} bags on {workers} processes")
    wall_s = time.perf_counter() - started
    report = total.report(card=card, model_path=config.model.model_path, backend=backend.name, pipeline=config.pipeline,
                          command=command, wall_s=wall_s)
    return report, total
