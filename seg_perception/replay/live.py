"""`seg-perception eval --live BAG...`: the node under real DDS, fed by a real-time playback of each bag.

Per bag: the node starts as a child process (with the user's parameters, the bag's cameras and the
model asked for), a recorder child subscribes to its outputs, a player child publishes the bag's camera
images restamped to the wall clock, and once it is done the recorded outputs are scored against the
bag's labels with the same rules as the offline replay (``LabelledScores.score``). Header stamps map the outputs
back to the bag: ``bag stamp = published stamp - offset_ns`` from the player's offsets file.

Unlike offline, the node drops frames when it falls behind (latest-frame policy); those are counted,
not scored, and the report says how many. Latency comes from the node's own LatencyReport messages and
includes ``transport`` (source stamp -> image callback).
"""

from __future__ import annotations

import heapq
import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seg_perception.bags.reader import BagError, bag_topics, open_bag, read_messages
from seg_perception.evaluation.temporal import TemporalConsistencyMeter
from seg_perception.models.card import ModelCard
from seg_perception.replay.evaluate import (
    LABEL_KINDS,
    NODE_PREFIX,
    BagInfo,
    EvalAccumulator,
    ReplayConfig,
    _storage,
    output_names,
    select_cameras,
    tc_inputs,
)
from seg_perception.replay.report import OverlaySample
from seg_perception.ros_io.image_codec import ImageConversionError, compressed_to_rgb, image_to_numpy, image_to_rgb
from seg_perception.ros_io.outputs import ROLE_OUTPUTS
from seg_perception.ros_io.stamps import stamp_ns

LIVE_DIR = "live"
NODE_LOG = "node.log"
# Outputs that scoring reads; the recorder must be subscribed to all of them before the first frame.
SCORED_OUTPUTS = ("semantic", "instances", *ROLE_OUTPUTS.values(), "latency")
ROLE_OF_OUTPUT = {name: role for role, name in ROLE_OUTPUTS.items()}
# Stages from the node's LatencyReport; transport and end_to_end count from the player's publication.
LATENCY_FIELDS = {"transport": "receive_ms", "queue": "queue_ms", "preprocess": "preprocess_ms",
                  "inference": "inference_ms", "postprocess": "postprocess_ms", "smoothing": "smoothing_ms",
                  "end_to_end": "end_to_end_ms"}
FROM_STAMP = ("transport", "end_to_end")
CLI = (sys.executable, "-u", "-m", "seg_perception.cli")
SETTLE_S = 2.0  # after the last image: the node finishes its batch, the recorder writes the outputs
STOP_TIMEOUT_S = 10.0  # SIGINT, then SIGKILL
SUBSCRIBE_TIMEOUT_S = 30.0
RECORDER_NODE = "seg_perception_recorder"
# Input bags are read in log-time order, which may differ a little from header-stamp order (a driver's
# receive time); a frame is complete once both streams are this far past its stamp.
REORDER_SLACK_NS = 1_000_000_000


# ------------------------------------------------------------------------------------------ child processes


class _Child:
    """A child process whose stdout and stderr go to a log file; stopped with SIGINT, SIGKILL if stuck."""

    def __init__(self, name: str, args: Sequence[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("a") as sink:
            sink.write(f"--- {' '.join(args)}\n")
            sink.flush()
            self.offset = sink.tell()  # a log shared by several bags, and a command line naming paths: read past
            # Own session: a Ctrl-C in the terminal reaches only us, and we stop the children in order.
            self.proc = subprocess.Popen(list(args), stdout=sink, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        with self.log.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def wait_for(self, text: str, timeout_s: float) -> None:
        """Until ``text`` shows in the log; RuntimeError with the log tail if the child dies or times out."""
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode} before saying "
                                   f"{text!r}; {self.log} ends with:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not say {text!r} within {timeout_s:g} s; "
                                   f"{self.log} ends with:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _stop_all(children: Sequence[_Child]) -> dict[str, int]:
    return {child.name: child.stop() for child in children}


def _wait_for_recorder(topics: Sequence[str], recorder: _Child, timeout_s: float) -> None:
    """Until the recorder subscribes to every topic (it subscribes once it has seen the publisher)."""
    import rclpy

    from seg_perception.replay.play import ros_context_of

    with ros_context_of(None) as context:
        node = rclpy.create_node("seg_perception_live_eval", context=context)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                missing = [topic for topic in topics if not any(
                    info.node_name == RECORDER_NODE for info in node.get_subscriptions_info_by_topic(topic))]
                if not missing:
                    return
                if recorder.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"recorder is not subscribed to {', '.join(missing)} after {timeout_s:g} s "
                                       f"(exit code {recorder.proc.returncode}); {recorder.log} ends with:\n"
                                       f"{recorder.tail()}")
                time.sleep(0.2)
        finally:
            node.destroy_node()


# ---------------------------------------------------------------------------------------------- set-up


@dataclass
class _BagPlan:
    path: Path
    stem: str
    cameras: dict[str, str]  # camera -> image topic
    compressed: bool
    label_kinds: dict[str, tuple[str, ...]]  # camera -> label kinds the bag has
    label_topics: dict[str, tuple[str, str]]  # label topic -> (camera, kind)
    info_topics: dict[str, str]  # camera -> camera_info topic
    images: dict[str, int]  # camera -> image count
    duration_s: float


def _plan(path: Path, config: ReplayConfig, stem: str) -> _BagPlan:
    with open_bag(path) as reader:
        cameras = select_cameras(reader.connections, config.cameras, path)
        duration_s = reader.duration / 1e9
        types = {c.topic: c.msgtype for c in reader.connections}
        counts = Counter[str]()
        for connection in reader.connections:
            counts[connection.topic] += connection.msgcount
    compressed = {topic: types[topic].endswith("/CompressedImage") for topic in cameras.values()}
    if len(set(compressed.values())) > 1:
        raise BagError(f"bag {path}: cameras mix Image and CompressedImage topics ({', '.join(cameras.values())}); "
                       f"the node takes one input transport for all cameras; choose some with --cameras")
    label_kinds, label_topics, info_topics = {}, {}, {}
    for camera, topic in cameras.items():
        namespace = "/" + topic.strip("/").split("/")[0]  # /front/image_raw -> /front/labels/semantic
        found = {kind: f"{namespace}/labels/{kind}" for kind in LABEL_KINDS if f"{namespace}/labels/{kind}" in types}
        label_kinds[camera] = tuple(found)
        label_topics.update({t: (camera, kind) for kind, t in found.items()})
        if f"{namespace}/camera_info" in types:
            info_topics[camera] = f"{namespace}/camera_info"
    images = {camera: counts[topic] for camera, topic in cameras.items()}
    if not sum(images.values()):
        raise BagError(f"bag {path}: the camera topics {', '.join(cameras.values())} hold no messages")
    return _BagPlan(path=path, stem=stem, cameras=cameras, compressed=any(compressed.values()),
                    label_kinds=label_kinds, label_topics=label_topics, info_topics=info_topics, images=images,
                    duration_s=duration_s)


def _model_path(config: ReplayConfig) -> Path:
    from seg_perception.ros_io.environment import resolve_model_path

    # As the node resolves it (here, then the package share), made absolute: the node gets no other choice.
    return resolve_model_path(str(config.model.model_path)).resolve()


def _card(model_path: Path) -> ModelCard:
    if model_path.suffix == ".onnx":
        from seg_perception.inference.backends import OnnxRuntimeBackend

        return OnnxRuntimeBackend.read_card(model_path)
    from seg_perception.models.card import load_card

    return load_card(model_path)


_PLACEHOLDER_MOUNT = (0.0, 0.0, 1.5, 0.0, 0.0, 0.0)  # written with geometry off, where no mount is known


def write_node_params(params: Path | None, plan: _BagPlan, config: ReplayConfig, model_path: Path,
                      out: Path) -> dict[str, Any]:
    """Write to ``out`` the user's node parameters (default: shipped) with this bag's cameras and the model
    asked for; returns them (nested, as ``load_param_file`` gives them)."""
    from seg_perception.ros_io.environment import config_file
    from seg_perception.ros_io.params import PARAMS_FILE, load_param_file

    nested = load_param_file(params or config_file(PARAMS_FILE))  # validated: a bad file is named now
    request = config.model
    nested.update(cameras=list(plan.cameras), model_path=str(model_path), backend=request.backend,
                  precision=request.precision, device=request.device, intra_op_threads=request.intra_op_threads,
                  input_transport="compressed" if plan.compressed else "raw")
    if request.input_size is not None:
        nested["input_width"], nested["input_height"] = request.input_size
    if request.engine_cache_dir is not None:
        nested["engine_cache_dir"] = str(request.engine_cache_dir)
    if config.roles_config is not None:
        nested["roles_config"] = str(config.roles_config)
    geometry = nested["geometry"]
    if len(geometry["mounts"]) != 6 * len(plan.cameras):
        # The parameters describe another rig: no mount is known for these cameras, so no metres (the node's
        # diagnostics say "disabled"); the pixel outputs and their scores are unaffected.
        print(f"seg-perception eval --live: positions in metres are off for {plan.path}: the parameters' "
              f"geometry.mounts describe {len(geometry['mounts']) // 6} camera(s), the bag has "
              f"{len(plan.cameras)} ({', '.join(plan.cameras)})", flush=True)
        nested["geometry"] = {**geometry, "enabled": False, "mounts": list(_PLACEHOLDER_MOUNT) * len(plan.cameras)}
    if nested.get("sync_camera_info"):
        missing = [camera for camera in plan.cameras if camera not in plan.info_topics]
        if missing:
            raise BagError(f"bag {plan.path}: sync_camera_info is on in {params or PARAMS_FILE} but cameras "
                           f"{', '.join(missing)} have no <namespace>/camera_info topic")
    # Scoring reads these outputs: a parameter file that switches one off would leave nothing to score.
    nested["publish"] = {**nested.get("publish", {}), **dict.fromkeys(SCORED_OUTPUTS, True)}
    out.write_text(yaml.safe_dump({"/**": {"ros__parameters": nested}}, sort_keys=False))
    return nested


# ------------------------------------------------------------------------------------------------ running


@dataclass
class _Recording:
    bag: Path
    offset_ns: int  # published stamp - bag stamp
    started_ns: int  # wall clock of the first message
    rate: float
    play_s: float

    def published_ns(self, log_ns: int) -> int:
        """Wall clock at which the player published the bag message logged at ``log_ns`` (its schedule)."""
        first_ns = self.started_ns - self.offset_ns  # the player's offset is started - first log time
        return self.started_ns + round((log_ns - first_ns) / self.rate)


def _run_bag(plan: _BagPlan, config: ReplayConfig, params: Path | None, live: Path, rate: float,
             startup_timeout_s: float) -> _Recording:
    """Node, recorder and player for one bag; the children are always stopped, and must exit cleanly."""
    model_path = _model_path(config)
    node_params = live / f"{plan.stem}_params.yaml"
    settings = write_node_params(params, plan, config, model_path, node_params)
    # Restamped stamps keep the bag's spacing; slower than real time they fall behind the wall clock,
    # and the node drops frames older than max_frame_age_s (stamp to now) as it would live.
    drift_s = plan.duration_s * (1 / rate - 1)
    if drift_s > settings["max_frame_age_s"]:
        print(f"seg-perception eval --live: at rate {rate:g} the stamps of {plan.path} fall {drift_s:.1f} s behind "
              f"the clock by its end; the node drops frames older than max_frame_age_s = "
              f"{settings['max_frame_age_s']:g} s", file=sys.stderr)
    recorded = live / f"{plan.stem}_recorded"
    offsets_file = live / f"{plan.stem}_offsets.json"
    suffix = "/compressed" if plan.compressed else ""
    remaps = [f"~/{camera}/in/image{suffix}:={topic}" for camera, topic in plan.cameras.items()]
    play_topics = list(plan.cameras.values())
    if settings.get("sync_camera_info"):
        remaps += [f"~/{camera}/in/camera_info:={topic}" for camera, topic in plan.info_topics.items()]
        play_topics += list(plan.info_topics.values())

    children: list[_Child] = []
    try:
        node = _Child("node", [*CLI, "node", "--params", str(node_params),
                               *(arg for remap in remaps for arg in ("--remap", remap))], live / NODE_LOG)
        children.append(node)
        node.wait_for("ready:", startup_timeout_s)
        recorder = _Child("recorder", [*CLI, "record", "--out", str(recorded), "--storage", config.storage],
                          live / f"{plan.stem}_record.log")
        children.insert(0, recorder)  # stopped after the node: its last outputs still get written
        recorder.wait_for("recording ", startup_timeout_s)
        _wait_for_recorder([f"{NODE_PREFIX}/{camera}/out/{name}" for camera in plan.cameras
                            for name in SCORED_OUTPUTS], recorder, SUBSCRIBE_TIMEOUT_S)
        player = _Child("player", [*CLI, "play", str(plan.path), "--topics", *play_topics, "--restamp",
                                   "--offsets-file", str(offsets_file), "--rate", repr(rate),
                                   "--wait-for-subscribers", "30"], live / f"{plan.stem}_play.log")
        children.append(player)
        started = time.monotonic()
        timeout_s = plan.duration_s / rate + 30 + startup_timeout_s  # waiting for subscribers, starting Python
        try:
            player.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"player did not finish {plan.path} within {timeout_s:.0f} s; {player.log} ends "
                               f"with:\n{player.tail()}") from None
        play_s = time.monotonic() - started
        if player.proc.returncode != 0:
            raise RuntimeError(f"player failed on {plan.path} (exit code {player.proc.returncode}); {player.log} "
                               f"ends with:\n{player.tail()}")
        time.sleep(SETTLE_S)
    finally:
        # Player (if still running), then node, then recorder.
        codes = _stop_all(children[::-1])
    for child in children:
        if codes[child.name] != 0:
            raise RuntimeError(f"{child.name} exited with code {codes[child.name]} (SIGINT, then SIGKILL after "
                               f"{STOP_TIMEOUT_S:g} s); {child.log} ends with:\n{child.tail()}")
    offset_ns, started_ns = _offset(offsets_file)
    return _Recording(bag=recorded, offset_ns=offset_ns, started_ns=started_ns, rate=rate, play_s=play_s)


def _offset(path: Path) -> tuple[int, int]:
    """(offset_ns, started_ns) of the single pass the player made."""
    try:
        loops = json.loads(path.read_text())["loops"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RuntimeError(f"{path}: no readable offsets from the player: {error}") from error
    if len(loops) != 1:
        raise RuntimeError(f"{path}: expected the offset of one pass over one bag, found {len(loops)}")
    return int(loops[0]["offset_ns"]), int(loops[0]["started_ns"])


# ------------------------------------------------------------------------------------------------ scoring


def _stamp(msg: Any) -> int:
    return stamp_ns(msg.header.stamp)


Item = tuple[int, str, str, Any]  # (bag stamp ns, camera, part name, message)


def _input_items(plan: _BagPlan, recording: _Recording) -> Iterator[Item]:
    topics = {topic: (camera, "image") for camera, topic in plan.cameras.items()}
    topics.update({topic: (camera, f"label:{kind}") for topic, (camera, kind) in plan.label_topics.items()})
    for topic, log_ns, msg in read_messages(plan.path, topics):
        camera, part = topics[topic]
        yield _stamp(msg), camera, part, msg
        if part == "image":
            yield _stamp(msg), camera, "published_ns", recording.published_ns(log_ns)


def _output_items(plan: _BagPlan, recording: _Recording) -> Iterator[Item]:
    topics = {f"{NODE_PREFIX}/{camera}/out/{name}": (camera, name) for camera in plan.cameras
              for name in SCORED_OUTPUTS}
    present = [topic for topic in bag_topics(recording.bag) if topic in topics]  # a camera never answered: none
    for topic, _, msg in read_messages(recording.bag, present):
        camera, name = topics[topic]
        yield _stamp(msg) - recording.offset_ns, camera, name, msg


@dataclass
class _Scorer:
    """Recorded outputs and bag frames, met by (camera, bag stamp), scored as they complete."""

    plan: _BagPlan
    recording: _Recording
    config: ReplayConfig
    card: ModelCard
    acc: EvalAccumulator
    outputs: dict[str, set[str]]  # camera -> outputs recorded for it: a frame is answered fully with all
    meters: dict[str, TemporalConsistencyMeter] = field(default_factory=dict)
    seen: Counter[str] = field(default_factory=Counter)  # images per camera, for spreading overlay samples
    backend: str = ""

    def run(self) -> None:
        recording = self.recording
        pending: dict[tuple[str, int], dict[str, Any]] = {}
        merged = heapq.merge(_input_items(self.plan, recording), _output_items(self.plan, recording),
                             key=lambda item: item[0])
        for stamp, camera, part, msg in merged:
            pending.setdefault((camera, stamp), {})[part] = msg
            done = sorted((key for key in pending if key[1] < stamp - REORDER_SLACK_NS), key=lambda k: (k[1], k[0]))
            for key in done:
                self._frame(key, pending.pop(key))
        for key in sorted(pending, key=lambda k: (k[1], k[0])):
            self._frame(key, pending.pop(key))

    def _frame(self, key: tuple[str, int], parts: dict[str, Any]) -> None:
        camera, stamp = key
        acc = self.acc
        if "image" in parts:
            acc.frames["received"] += 1
            self.seen[camera] += 1
        if "latency" in parts:
            report = parts["latency"]
            self.backend = self.backend or report.backend
            shift_ms = self._stamp_lag_ms(stamp, parts.get("published_ns"))
            for stage, name in LATENCY_FIELDS.items():
                acc.latency_ms[stage].append(float(getattr(report, name)) + (shift_ms if stage in FROM_STAMP else 0.0))
        if "semantic" not in parts:
            return  # dropped by the node
        if "image" not in parts:
            acc.frames["unmatched"] += 1  # an output whose stamp maps to no image of the bag: offsets gone wrong
            return
        acc.frames["processed"] += 1
        if not self.outputs[camera] <= set(parts):
            acc.frames["incomplete"] += 1  # reliable QoS should prevent it; not scored rather than scored wrong
            return
        semantic = image_to_numpy(parts["semantic"])
        image = self._image(parts["image"], key)
        if image is not None and self.config.temporal_consistency:
            self._temporal(camera, image, semantic)
        labels = {part.removeprefix("label:"): image_to_numpy(msg) for part, msg in parts.items()
                  if part.startswith("label:")}
        truth = None
        kinds = self.plan.label_kinds[camera]
        if kinds and set(labels) == set(kinds):
            instances = (image_to_numpy(parts["instances"]) if "instances" in parts
                         else np.zeros(semantic.shape, np.uint16))
            masks = {ROLE_OF_OUTPUT[name]: image_to_numpy(parts[name]) for name in ROLE_OUTPUTS.values()
                     if name in parts}
            truth = acc.scores.score(semantic, instances, masks, labels)
        if image is not None and self._sampled(camera):
            acc.overlays.append(OverlaySample(camera=camera, stamp_ns=stamp, image=image, prediction=semantic,
                                              ground_truth=None if truth is None else truth.astype(np.uint8)))

    def _stamp_lag_ms(self, bag_stamp: int, published_ns: int | None) -> float:
        """Published stamp minus the moment the player published the frame, in ms: 0 at rate 1 with header
        stamps equal to log times. Otherwise the stamps keep the bag's spacing (and a recorded bag's own
        capture delay) while the player follows log times; the node measures from the stamp, we correct it."""
        if published_ns is None:
            return 0.0
        return (bag_stamp + self.recording.offset_ns - published_ns) / 1e6

    def _image(self, msg: Any, key: tuple[str, int]) -> np.ndarray | None:
        try:
            return compressed_to_rgb(msg) if self.plan.compressed else image_to_rgb(msg)
        except (ImageConversionError, ValueError, KeyError, IndexError) as error:
            # The node dropped it too (or decoded it differently): counted and listed, as offline.
            self.acc.frames["decode_failures"] += 1
            self.acc.failures.append({"bag": str(self.plan.path), "topic": self.plan.cameras[key[0]],
                                      "stamp_ns": key[1], "error": f"{type(error).__name__}: {error}"})
            return None

    def _temporal(self, camera: str, image: np.ndarray, semantic: np.ndarray) -> None:
        meter = self.meters.setdefault(camera, TemporalConsistencyMeter(num_classes=self.card.num_classes))
        # Optical flow at most tc_max_width wide, as offline, so both reports' TC compare.
        score = meter.update(*tc_inputs(image, semantic, self.config.tc_max_width))
        if score is not None:
            self.acc.tc_series[f"{self.plan.stem}:{camera}"].append(score)

    def _sampled(self, camera: str) -> bool:
        """Spread overlay_samples frames over the camera's images (answered ones; a dropped pick is skipped)."""
        samples = self.config.overlay_samples
        every = max(1, self.plan.images[camera] // max(1, samples))
        index = self.seen[camera] - 1
        return samples > 0 and index % every == every // 2 and index // every < samples


# ------------------------------------------------------------------------------------------- entry point


def _percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)}


def evaluate_live(bags: Sequence[Path], config: ReplayConfig, *, params: Path | None, out: Path, rate: float = 1.0,
                  command: Sequence[str] = (), startup_timeout_s: float = 180.0) -> tuple[dict[str, Any],
                                                                                         EvalAccumulator]:
    """Each bag through a running node under DDS, one after the other; the merged report and its accumulator.

    Writes into ``out/live/``: the node's parameters and log (``node.log``), the recorded outputs
    (``<bag>_recorded``, removed afterwards when ``config.output_dir`` is None), the player's offsets and
    the logs of player and recorder. RuntimeError names the child and shows its log when one fails.
    """
    if not bags:
        raise BagError("no bag given")
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if config.max_frames:
        raise ValueError("--max-frames does not apply to --live: the player publishes whole bags")
    from seg_perception.ros_io.environment import apply_ros_defaults

    apply_ros_defaults()  # our Fast DDS profile for the children and our graph check, as the CLI does
    live = Path(out) / LIVE_DIR
    live.mkdir(parents=True, exist_ok=True)
    card = _card(_model_path(config))
    acc = EvalAccumulator(class_names=card.class_names, thing_ids=card.thing_ids)
    # Every bag planned (and so checked) before the first plays: a bad last bag fails now, not after the others.
    plans = [_plan(Path(path), config, stem) for path, stem in zip(bags, output_names(bags), strict=True)]
    backend = ""
    started = time.perf_counter()
    for plan in plans:
        path = plan.path
        recording = _run_bag(plan, config, params, live, rate, startup_timeout_s)
        acc.wall_s += recording.play_s
        received_before, processed_before = acc.frames["received"], acc.frames["processed"]
        recorded = bag_topics(recording.bag)
        scorer = _Scorer(plan, recording, config, card, acc, outputs={
            camera: {name for name in SCORED_OUTPUTS if f"{NODE_PREFIX}/{camera}/out/{name}" in recorded}
            for camera in plan.cameras})
        scorer.run()
        backend = backend or scorer.backend
        kept = config.output_dir is not None
        acc.bags.append(BagInfo(path=str(path), storage=_storage(path), cameras=plan.cameras,
                                label_source="topics" if plan.label_topics else None,
                                frames=acc.frames["received"] - received_before,
                                output_bag=str(recording.bag) if kept else None))
        if not kept:
            shutil.rmtree(recording.bag, ignore_errors=True)
        if acc.frames["processed"] == processed_before:
            print(f"seg-perception eval --live: the node answered no frame of {path}; see {live / NODE_LOG}",
                  file=sys.stderr)
    report = acc.report(card=card, model_path=config.model.model_path, backend=backend or config.model.backend,
                        pipeline=config.pipeline, command=command, wall_s=acc.wall_s)
    published, answered = acc.frames["received"], acc.frames["processed"]
    report["frames"]["dropped"] = published - answered
    report["live"] = {
        "rate": rate, "frames_published": published, "frames_answered": answered,
        "frames_dropped": published - answered, "frames_incomplete": acc.frames["incomplete"],
        "outputs_unmatched": acc.frames["unmatched"],
        "transport_latency_ms": _percentiles(acc.latency_ms.get("transport", [])),
        "node_log": f"{LIVE_DIR}/{NODE_LOG}", "setup_and_play_s": round(time.perf_counter() - started, 3)}
    return report, acc

