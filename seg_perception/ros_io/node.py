"""``seg_perception_node``: the ROS 2 shell around ``PerceptionPipeline``.

Subscription callbacks decode and hand frames to ``LatestFrameSlots``; one worker thread batches the
newest frame of every camera into one backend call and publishes the results, each with its input's
header. Nothing here decides what a mask is: that is the pipeline's job.

Shutdown: SIGINT and SIGTERM only ask the spin loop to stop; the worker is stopped and joined while
the ROS context is still valid, and only then is the context shut down, so nothing publishes into a
dead context and both signals exit 0.

Two clocks: stamp ages (frame age, latency) are read on the node's ROS clock, which follows /clock
under ``use_sim_time``; processing durations are read on the steady clock, which nothing can rewind.
"""

from __future__ import annotations

import array
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from seg_perception.geometry import GeometryError, Intrinsics, Mount
from seg_perception.geometry.grid import GridSpec
from seg_perception.geometry.motion import EgoMotion
from seg_perception.inference.backends import BackendError
from seg_perception.inference.factory import BackendRequest, open_backend
from seg_perception.models.card import ModelCardError
from seg_perception.models.weights import WeightsError
from seg_perception.pipeline.pipeline import (
    CameraFrame,
    CameraGeometry,
    FrameResult,
    PerceptionPipeline,
    PipelineSettings,
)
from seg_perception.pipeline.scheduler import LatestFrameSlots
from seg_perception.pipeline.stats import PipelineStats
from seg_perception.postprocess.roles import RoleConfigError, role_mapping_for
from seg_perception.ros_io.diagnostics import HealthMonitor, OdometryMonitor, startup_status, to_diagnostic_array
from seg_perception.ros_io.environment import apply_ros_defaults, resolve_model_path
from seg_perception.ros_io.image_codec import (
    ImageConversionError,
    ImageTooLargeError,
    compressed_to_rgb,
    image_to_rgb,
)
from seg_perception.ros_io.outputs import (
    GROUND_FRAME_ID,
    OUTPUT_NAMES,
    LatencyTimes,
    MessageTypes,
    image_outputs,
    latency_msg,
    stamp_age_ms,
)
from seg_perception.ros_io.params import (
    ROS_OWNED,
    NodeSettings,
    ParamsError,
    declare_parameters,
    read_settings,
    settings_with_changes,
)
from seg_perception.ros_io.stamps import stamp_ns
from seg_perception.ros_io.sync import StampSynchronizer

NODE_NAME = "seg_perception_node"
EXIT_CONFIG_ERROR = 2
# A stamp ahead of the node's clock by more than this on arrival is flagged in diagnostics (clocks of
# different machines, or a sim clock published a little behind the data, differ by less).
STAMP_AHEAD_TOLERANCE_NS = 50_000_000
WORKER_JOIN_TIMEOUT_S = 10.0
SPIN_PERIOD_S = 0.1  # how soon the spin loop sees a stop request


def pipeline_settings(settings: NodeSettings) -> PipelineSettings:
    return PipelineSettings(
        output_resolution=settings.output_resolution, smoothing_enabled=settings.smoothing.enabled,
        smoothing_strength=settings.smoothing.strength, smoothing_label_prior=settings.smoothing.label_prior,
        smoothing_max_gap_s=settings.smoothing.max_gap_s,
        tracking_iou_threshold=settings.tracking.iou_threshold, tracking_max_misses=settings.tracking.max_misses)


def _qos(reliability: str, depth: int) -> QoSProfile:
    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


class PerceptionNode(Node):
    def __init__(self, **kwargs) -> None:
        # First, so that destroy_node works on a node whose set-up failed half way.
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self.settings = read_settings(self)
        self._open_pipeline()
        self.types = MessageTypes.rclpy()
        self._lock = threading.Lock()  # guards settings swaps against the worker reading them
        self._backend_failure = ""

        cameras = self.settings.cameras
        self.stats = PipelineStats(cameras)
        self.slots = LatestFrameSlots(cameras, max_age_s=self.settings.max_frame_age_s, stats=self.stats,
                                      clock_ns=self._now_ns)
        self.health = HealthMonitor(self.get_fully_qualified_name(), latency_budget_ms=self.settings.latency_budget_ms,
                                    no_input_timeout_s=self.settings.no_input_timeout_s)
        qos = self.settings.qos
        output_qos = _qos(qos.output_reliability, qos.output_depth)
        self.publishers_by_camera = {
            camera: {name: self.create_publisher(self._output_type(name), f"~/{camera}/out/{name}", output_qos)
                     for name in OUTPUT_NAMES}
            for camera in cameras
        }
        self.camera_inputs = [self._subscribe(camera, _qos(qos.input_reliability, qos.input_depth))
                               for camera in cameras]
        self.grid_publisher = None
        self.odometry: OdometryMonitor | None = None  # with geometry.odometry
        self.tf_buffer = None  # with geometry.mounts_from_tf: where the camera poses come from
        self.lane_publishers: dict[str, object] = {}
        if self.settings.geometry.enabled:  # publish.drivable_grid may switch the grid on and off while running
            from nav_msgs.msg import OccupancyGrid

            g = self.settings.geometry
            self.tf_buffer = self._listen_to_tf_static() if g.mounts_from_tf else None
            self.grid_spec = GridSpec(g.grid_resolution_m, *g.grid_extent_m)
            self.pipeline.set_grid(self.grid_spec, max_age_s=self.settings.max_frame_age_s)
            self.grid_publisher = self.create_publisher(OccupancyGrid, "~/out/drivable_grid", output_qos)
            from seg_perception_msgs.msg import LaneBoundaryArray
            from visualization_msgs.msg import MarkerArray

            self.lane_publishers = {camera: self.create_publisher(LaneBoundaryArray, f"~/{camera}/out/lanes",
                                                                  output_qos) for camera in cameras}
            self.fused_lane_publisher = self.create_publisher(LaneBoundaryArray, "~/out/lanes", output_qos)
            self.lane_marker_publisher = self.create_publisher(MarkerArray, "~/out/lane_markers", output_qos)
            if g.odometry:
                from nav_msgs.msg import Odometry

                self.odometry = OdometryMonitor(self.get_fully_qualified_name())
                self.odometry_input = self.create_subscription(Odometry, "~/in/odometry", self._on_odometry,
                                                               _qos(qos.input_reliability, qos.input_depth))
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Steady, not ROS time: diagnostics must go on (and report stale input) when a sim clock stops.
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._diagnostics_timer = self._create_diagnostics_timer(self.settings.diagnostics_period_s)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._worker = threading.Thread(target=self._work, name="seg_perception_worker", daemon=True)
        self._worker.start()
        self._publish_startup()
        self.get_logger().info(f"ready: {self.backend.name}, cameras {', '.join(cameras)}, "
                               f"model {self.card.summary()}")

    # ------------------------------------------------------------------------------------------- set-up

    def _open_pipeline(self) -> None:
        s = self.settings
        request = BackendRequest(model_path=resolve_model_path(s.model_path), backend=s.backend,
                                 precision=s.precision, device=s.device, input_size=s.input_size,
                                 intra_op_threads=s.intra_op_threads, max_batch=max(1, len(s.cameras)),
                                 engine_cache_dir=Path(s.engine_cache_dir) if s.engine_cache_dir else None)
        self.backend, self.card = open_backend(request)
        self.roles = role_mapping_for(self.card.class_names, self.card.thing_ids,
                                      Path(s.roles_config) if s.roles_config else None)
        self.pipeline = PerceptionPipeline(self.backend, self.card, self.roles, pipeline_settings(s))
        self._check_overhang_classes(s)
        # camera -> what its obstacles get: "metres", or why pixels only (published in diagnostics)
        self.geometry_state = {camera: "no camera_info received yet" if s.geometry.enabled
                               else "pixels only (geometry.enabled is false)" for camera in s.cameras}
        self._camera_info_seen: dict[str, tuple] = {}

    def _check_overhang_classes(self, s) -> None:
        unknown = [name for name in s.geometry.overhang_classes if name not in self.card.class_names]
        if unknown:
            raise ParamsError(f"node {self.get_fully_qualified_name()}", {
                "geometry.overhang_classes": f"{', '.join(unknown)} not among the model's classes "
                                            f"({', '.join(self.card.class_names)})"})

    def _create_diagnostics_timer(self, period_s: float):
        return self.create_timer(period_s, self._publish_diagnostics, clock=self._steady_clock)

    def _output_type(self, name: str) -> type:
        return {"obstacle_list": self.types.obstacle_list, "latency": self.types.latency}.get(name, self.types.image)

    def _subscribe(self, camera: str, qos: QoSProfile):
        compressed = self.settings.input_transport == "compressed"
        if compressed:
            from sensor_msgs.msg import CompressedImage as message_type
        else:
            from sensor_msgs.msg import Image as message_type
        topic = f"~/{camera}/in/image" + ("/compressed" if compressed else "")
        if not self.settings.sync_camera_info:
            subscriptions = [self.create_subscription(message_type, topic, partial(self._on_image, camera), qos)]
            if self.settings.geometry.enabled:  # the intrinsics, not paired with images
                from sensor_msgs.msg import CameraInfo

                subscriptions.append(self.create_subscription(CameraInfo, f"~/{camera}/in/camera_info",
                                                              partial(self._on_camera_info, camera), qos))
            return subscriptions
        return self._subscribe_synchronised(camera, message_type, topic, qos)

    def _subscribe_synchronised(self, camera: str, message_type: type, topic: str, qos: QoSProfile):
        """Images paired with camera_info by exact stamp (message_filters when installed, else our own)."""
        from sensor_msgs.msg import CameraInfo

        info_topic = f"~/{camera}/in/camera_info"
        try:
            import message_filters
        except ImportError:
            message_filters = None
        if message_filters is not None:
            image_sub = message_filters.Subscriber(self, message_type, topic, qos_profile=qos)
            info_sub = message_filters.Subscriber(self, CameraInfo, info_topic, qos_profile=qos)
            synchroniser = message_filters.TimeSynchronizer([image_sub, info_sub], 10)
            synchroniser.registerCallback(lambda image, info: (self._on_camera_info(camera, info),
                                                                self._on_image(camera, image)))
            return [image_sub, info_sub, synchroniser]

        def discarded(index: int, message) -> None:
            if index == 0:
                self.stats.drop(camera, "not_synchronised", "no camera_info with the image's stamp")

        def received(image) -> None:
            self.stats.received(camera)  # counted on arrival, so unpaired images show as drops
            synchroniser.add(0, image, stamp_ns(image.header.stamp))

        synchroniser = StampSynchronizer(2, queue_size=10, on_discard=discarded,
                                         callback=lambda image, info: self._on_image(camera, image, counted=True))
        return [
            self.create_subscription(message_type, topic, received, qos),
            self.create_subscription(CameraInfo, info_topic,
                                     lambda info: (self._on_camera_info(camera, info),
                                                   synchroniser.add(1, info, stamp_ns(info.header.stamp))), qos),
        ]

    # ------------------------------------------------------------------------------------------ callbacks

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _listen_to_tf_static(self):
        """geometry.mounts_from_tf: the camera poses come from TF (tf2_ros: not on PyPI, so only with a ROS
        install); without tf2_ros the node does not start, rather than fall back to the parameters' mounts."""
        try:
            import tf2_ros
        except ImportError as error:
            problem = ("needs tf2_ros, which is not installed here (it has no PyPI wheel); set it to false and "
                       "give the poses in geometry.mounts")
            raise ParamsError(f"node {self.get_fully_qualified_name()}",
                              {"geometry.mounts_from_tf": problem}) from error
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self)
        return buffer

    def _mount(self, camera: str, frame_id: str) -> Mount | None:
        """The camera's pose in base_link: from the parameters, or from TF for the frame of its camera_info
        (an optical frame, by ROS convention); None while TF does not know that frame yet."""
        if self.tf_buffer is None:
            return Mount(*self.settings.mount_of(camera))
        import tf2_ros
        from rclpy.time import Time

        try:
            stamped = self.tf_buffer.lookup_transform(GROUND_FRAME_ID, frame_id, Time())
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException, tf2_ros.ExtrapolationException):
            return None
        t, q = stamped.transform.translation, stamped.transform.rotation
        return Mount.from_transform((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))

    def _on_camera_info(self, camera: str, info) -> None:
        """New intrinsics give the camera's obstacles metres; refused ones take them away, with the reason."""
        if not self.settings.geometry.enabled:
            return
        seen = (info.width, info.height, tuple(info.k), tuple(info.d), info.distortion_model)
        if self._camera_info_seen.get(camera) == seen:
            return  # the same camera_info every frame: nothing to redo
        self._camera_info_seen[camera] = seen
        try:
            intrinsics = Intrinsics.from_camera_info(info)
            mount = self._mount(camera, info.header.frame_id)
        except GeometryError as error:
            self.pipeline.set_geometry(camera, None)
            self.geometry_state[camera] = f"camera_info refused: {error}"
            self.get_logger().warning(f"camera {camera}: pixel outputs only, camera_info refused: {error}")
            return
        if mount is None:
            del self._camera_info_seen[camera]  # asked again with the next camera_info
            self.geometry_state[camera] = (f"waiting for the transform {GROUND_FRAME_ID} -> "
                                           f"'{info.header.frame_id}' on TF")
            return
        # Replacing the dict entry is atomic: the worker's next frame of this camera uses it.
        g = self.settings.geometry
        self.pipeline.set_geometry(camera, CameraGeometry(intrinsics, mount, g.max_range_m, g.sidewalk_height_m,
                                                          g.overhangs))
        self.geometry_state[camera] = "metres"

    def _on_odometry(self, msg) -> None:
        """The vehicle's own motion, for the velocity filter; a twist of another frame or not finite is refused
        (and said in diagnostics), never used as base_link's."""
        assert self.odometry is not None
        if msg.child_frame_id and msg.child_frame_id != GROUND_FRAME_ID:
            self.odometry.refuse(f"twist of '{msg.child_frame_id}', not {GROUND_FRAME_ID}")
            return
        try:
            motion = EgoMotion.from_odometry(msg)
        except ValueError as error:
            self.odometry.refuse(str(error))
            return
        self.pipeline.set_ego_motion(motion)
        self.odometry.used(time.monotonic())

    def _on_image(self, camera: str, msg, counted: bool = False) -> None:
        receive_ns, receive_steady_ns = self._now_ns(), time.monotonic_ns()
        if not counted:
            self.stats.received(camera)
        try:
            decode = image_to_rgb if hasattr(msg, "encoding") else compressed_to_rgb
            image = decode(msg, max_pixels=self.settings.max_image_pixels)
        except ImageTooLargeError as error:
            self.stats.drop(camera, "bad_frame", str(error))
            return
        except ImageConversionError as error:
            self.stats.drop(camera, "decode_error", str(error))
            return
        if image.shape[0] < 8 or image.shape[1] < 8:
            self.stats.drop(camera, "bad_frame", f"image of {image.shape[1]}x{image.shape[0]} px is too small")
            return
        stamp = stamp_ns(msg.header.stamp)
        if stamp - receive_ns > STAMP_AHEAD_TOLERANCE_NS:
            self.stats.stamp_ahead(camera, (stamp - receive_ns) / 1e6)
        self.slots.put(CameraFrame(camera=camera, image=image, stamp_ns=stamp, frame_id=msg.header.frame_id,
                                   receive_ns=receive_ns, receive_steady_ns=receive_steady_ns, header=msg.header))

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Validate the whole change first; a refused change answers why and changes nothing."""
        changes = {p.name: p.value for p in parameters if p.name not in ROS_OWNED}  # rclpy handles its own
        if not changes:
            return SetParametersResult(successful=True)
        try:
            updated = settings_with_changes(self.settings, changes)
            configured = pipeline_settings(updated)  # validates the pipeline's own ranges too
            self._check_overhang_classes(updated)
        except (ParamsError, ValueError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        with self._lock:
            period_changed = updated.diagnostics_period_s != self.settings.diagnostics_period_s
            self.settings = updated
            self.pipeline.configure(configured)
            self.slots.set_max_age(updated.max_frame_age_s)
            self.health.latency_budget_ms = updated.latency_budget_ms
            self.health.no_input_timeout_s = updated.no_input_timeout_s
            g = updated.geometry
            for camera, geometry in list(self.pipeline.geometry.items()):
                wanted = (g.max_range_m, g.sidewalk_height_m, g.overhangs)
                if (geometry.max_range_m, geometry.sidewalk_height_m, geometry.overhangs_m) != wanted:
                    self.pipeline.set_geometry(camera, replace(geometry, max_range_m=g.max_range_m,
                                                               sidewalk_height_m=g.sidewalk_height_m,
                                                               overhangs_m=g.overhangs))
        if period_changed:
            self._diagnostics_timer.cancel()
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self._create_diagnostics_timer(updated.diagnostics_period_s)
        return SetParametersResult(successful=True)

    # ----------------------------------------------------------------------------------------------- work

    def _work(self) -> None:
        while not self._stop.is_set():
            frames = self.slots.take(timeout_s=0.1)
            if not frames:
                continue
            picked_steady_ns = time.monotonic_ns()
            try:
                with self._lock:
                    results = self.pipeline.process(frames)
            except Exception as error:  # a failed batch is dropped, counted and reported; the node goes on
                detail = f"{type(error).__name__}: {error}"
                self._backend_failure = detail
                for frame in frames:
                    self.stats.drop(frame.camera, "backend_error", detail)
                self.get_logger().error(f"dropped {len(frames)} frame(s): {detail}", throttle_duration_sec=5.0)
                continue
            self._backend_failure = ""
            for result in results:
                if self._stop.is_set():
                    return  # shutting down: the publishers may be going away
                self._publish(result, picked_steady_ns)
            if self.grid_publisher is not None and self.settings.publish.drivable_grid:
                self._publish_grid(results)
            if self.grid_publisher is not None and self.settings.publish.lanes:
                self._publish_lanes(results)

    def _publish_lanes(self, results: Sequence[FrameResult]) -> None:
        """Per camera, fused over the batch, and as RViz line strips (solid green, dashed yellow)."""
        from seg_perception_msgs.msg import LaneBoundary as LaneBoundaryMsg
        from visualization_msgs.msg import Marker, MarkerArray

        fused, newest = [], None  # newest: the latest frame with boundaries, whose header the fused ones take
        for result in results:
            boundaries = self.pipeline.lane_boundaries(result)
            if boundaries is None:
                continue  # no geometry for this camera yet, or a model without the lane role
            messages = [LaneBoundaryMsg(points=[self.types.point(x=float(x), y=float(y), z=0.0)
                                                for x, y in b.points_xy],
                                        coefficients=list(b.coefficients), style=b.style,
                                        confidence=b.confidence, length_m=b.length_m, camera=result.frame.camera)
                        for b in boundaries]
            array_msg = self.lane_publishers[result.frame.camera].msg_type(boundaries=messages)
            array_msg.header.stamp = result.frame.header.stamp if result.frame.header else array_msg.header.stamp
            array_msg.header.frame_id = GROUND_FRAME_ID
            self.lane_publishers[result.frame.camera].publish(array_msg)
            fused += messages
            if newest is None or result.frame.stamp_ns >= newest[0]:
                newest = (result.frame.stamp_ns, array_msg.header.stamp)
        if newest is None:
            return
        fused_msg = self.fused_lane_publisher.msg_type(boundaries=fused)
        fused_msg.header.stamp, fused_msg.header.frame_id = newest[1], GROUND_FRAME_ID
        self.fused_lane_publisher.publish(fused_msg)
        markers = [Marker(action=Marker.DELETEALL)]  # last batch's lines go, whatever their number
        for index, boundary in enumerate(fused):
            marker = Marker(ns="lanes", id=index, type=Marker.LINE_STRIP, action=Marker.ADD, points=boundary.points)
            marker.header = fused_msg.header
            marker.scale.x = 0.15
            marker.color.a, marker.color.g = 1.0, 1.0
            marker.color.r = 1.0 if boundary.style == "dashed" else 0.0
            markers.append(marker)
        self.lane_marker_publisher.publish(MarkerArray(markers=markers))


    def _publish_grid(self, results: Sequence[FrameResult]) -> None:
        """The cameras' latest drivable masks fused on the ground, stamped with the newest frame in it."""
        fused = self.pipeline.update_grid(results)
        if fused is None:
            return  # no camera has geometry yet (diagnostics say why)
        grid, stamp = fused
        message = self.grid_publisher.msg_type()
        message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        message.header.frame_id = GROUND_FRAME_ID
        message.info.map_load_time = message.header.stamp
        message.info.resolution = float(self.grid_spec.resolution_m)
        message.info.width, message.info.height = self.grid_spec.width, self.grid_spec.height
        message.info.origin.position.x, message.info.origin.position.y = self.grid_spec.x_min, self.grid_spec.y_min
        message.data = array.array("b", grid.tobytes())  # row-major from (x_min, y_min), as OccupancyGrid wants
        self.grid_publisher.publish(message)

    def _publish(self, result: FrameResult, picked_steady_ns: int) -> None:
        camera, header = result.frame.camera, result.frame.header
        publishers = self.publishers_by_camera[camera]
        enabled = self.settings.publish
        wanted = {name for name in OUTPUT_NAMES if getattr(enabled, name)}
        if publishers["overlay"].get_subscription_count() == 0:
            wanted.discard("overlay")  # people look at it; computed only while someone does
        started = time.perf_counter()
        for name, message in image_outputs(result, wanted, header, self.types).items():
            publishers[name].publish(message)
        publish_ms = (time.perf_counter() - started) * 1000.0
        published_ns, published_steady_ns = self._now_ns(), time.monotonic_ns()
        received_steady_ns = result.frame.receive_steady_ns
        processing_ms = (published_steady_ns - received_steady_ns) / 1e6
        self.stats.processed(camera, stamp_age_ms(published_ns, result.frame.stamp_ns),
                             result.timings_ms | {"publish": publish_ms}, processing_ms=processing_ms)
        if "latency" in wanted:
            received, processed, dropped = self.stats.counts(camera)
            times = LatencyTimes(receive_ns=result.frame.receive_ns, published_ns=published_ns,
                                 queue_ms=(picked_steady_ns - received_steady_ns) / 1e6, processing_ms=processing_ms,
                                 publish_ms=publish_ms, frames_received=received, frames_processed=processed,
                                 frames_dropped=dropped)
            publishers["latency"].publish(latency_msg(result, header, times, self.backend.name, self.types))

    # -------------------------------------------------------------------------------------- diagnostics

    def _publish_startup(self) -> None:
        self._model_status = startup_status(self.get_fully_qualified_name(), backend=self.backend.name,
                                            card_summary=self.card.summary(), roles=self.roles.summary(),
                                            missing=self.roles.missing, cameras=self.settings.cameras)
        self.diagnostics.publish(to_diagnostic_array([self._model_status], self.get_clock().now().to_msg()))

    def _publish_diagnostics(self) -> None:
        statuses = self.health.statuses(self.stats.snapshot(), backend=self.backend.name,
                                        seconds_since_start=self.stats.seconds_since_start(),
                                        backend_failure=self._backend_failure,
                                        geometry=dict(self.geometry_state) if self.settings.geometry.enabled else {})
        if self.odometry is not None:
            statuses.append(self.odometry.status(time.monotonic()))
        # The model status rides along every time: an aggregator that started late still sees it.
        statuses.append(self._model_status)
        self.diagnostics.publish(to_diagnostic_array(statuses, self.get_clock().now().to_msg()))

    def stop_worker(self) -> None:
        """Stop the worker and wait for it, so that nothing publishes after this returns."""
        self._stop.set()
        if hasattr(self, "slots"):
            self.slots.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=WORKER_JOIN_TIMEOUT_S)
            if self._worker.is_alive():
                self.get_logger().warning(
                    f"worker still busy after {WORKER_JOIN_TIMEOUT_S:.0f} s; shutting down anyway")

    def destroy_node(self) -> None:
        self.stop_worker()
        super().destroy_node()


def _stop_on_signals(stop: threading.Event) -> dict[int, object]:
    """SIGINT/SIGTERM set ``stop`` instead of tearing the ROS context down under the worker's feet."""
    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    return {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}


def main(args: Sequence[str] | None = None) -> int:
    apply_ros_defaults()  # our Fast DDS profile unless the user set one; before the first participant
    stop = threading.Event()
    previous_handlers = _stop_on_signals(stop)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = PerceptionNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ParamsError, BackendError, ModelCardError, WeightsError, RoleConfigError, FileNotFoundError) as error:
        print(f"{NODE_NAME}: cannot start: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    finally:
        if node is not None:
            node.destroy_node()  # worker joined while the context is still valid
        rclpy.try_shutdown()
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
