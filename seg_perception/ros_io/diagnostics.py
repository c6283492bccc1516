"""Health of the node for `/diagnostics`: pure logic from pipeline statistics to statuses, then messages.

Levels per camera: OK; WARN when the end-to-end p99 exceeds the latency budget, frames were dropped
or frames arrived stamped ahead of the node's clock since the last report; ERROR when no input arrived
for ``no_input_timeout_s`` or the backend failed since the last report.

Two clocks are kept apart: ``latency_*`` is stamp age (image stamp to publication, on ROS time, which
is /clock under use_sim_time) and ``processing_*`` is arrival to publication on the steady clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from seg_perception.pipeline.stats import CameraSnapshot

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels (bytes in the message)
HARDWARE_ID = "seg_perception"


@dataclass(frozen=True)
class Status:
    name: str
    level: int
    message: str
    values: tuple[tuple[str, str], ...]


def _fmt(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"


class HealthMonitor:
    """Turns snapshots into statuses; remembers the previous report to speak of what happened since."""

    def __init__(self, node_name: str, *, latency_budget_ms: float, no_input_timeout_s: float) -> None:
        self.node_name = node_name
        self.latency_budget_ms, self.no_input_timeout_s = latency_budget_ms, no_input_timeout_s
        self._previous: dict[str, CameraSnapshot] = {}

    def statuses(self, snapshots: Sequence[CameraSnapshot], *, backend: str, seconds_since_start: float,
                 backend_failure: str = "", geometry: Mapping[str, str] | None = None) -> list[Status]:
        """``geometry``: camera -> "metres" or why its obstacles have pixels only (empty when disabled)."""
        geometry = geometry or {}
        out = []
        for snap in snapshots:
            before = self._previous.get(snap.camera)
            new_drops = {reason: count - (before.dropped.get(reason, 0) if before else 0)
                         for reason, count in snap.dropped.items()}
            new_drops = {reason: n for reason, n in new_drops.items() if n > 0}
            problems_error, problems_warn = [], []
            silent_for = snap.seconds_since_input if snap.seconds_since_input is not None else seconds_since_start
            if silent_for > self.no_input_timeout_s:
                problems_error.append(f"no input for {silent_for:.1f} s")
            if new_drops.get("backend_error"):
                problems_error.append(f"backend failed on {new_drops['backend_error']} frame(s): {snap.last_error}")
            if snap.latency_p99_ms is not None and snap.latency_p99_ms > self.latency_budget_ms:
                problems_warn.append(f"latency p99 {snap.latency_p99_ms:.0f} ms > budget "
                                     f"{self.latency_budget_ms:.0f} ms")
            new_ahead = snap.stamps_ahead - (before.stamps_ahead if before else 0)
            if new_ahead > 0:
                problems_warn.append(f"{new_ahead} frame(s) stamped ahead of the node's clock (up to "
                                     f"{snap.max_stamp_ahead_ms / 1000:.3f} s; their latencies are clamped to 0): "
                                     "check the camera's clock or use_sim_time")
            state = geometry.get(snap.camera)
            if state is not None and state != "metres":
                problems_warn.append(f"pixel outputs only: {state}")
            other_drops = {r: n for r, n in new_drops.items() if r != "backend_error"}
            if other_drops:
                problems_warn.append("dropped " + ", ".join(f"{n} {r}" for r, n in sorted(other_drops.items())))
            level = ERROR if problems_error else WARN if problems_warn else OK
            message = "; ".join(problems_error + problems_warn) or "running"
            values = [
                ("backend", backend),
                ("input_rate_hz", _fmt(snap.input_hz)), ("output_rate_hz", _fmt(snap.output_hz)),
                ("frames_received", str(snap.received)), ("frames_processed", str(snap.processed)),
                ("frames_dropped", str(snap.dropped_total)),
                *((f"dropped.{reason}", str(count)) for reason, count in sorted(snap.dropped.items())),
                ("latency_p50_ms", _fmt(snap.latency_p50_ms)), ("latency_p99_ms", _fmt(snap.latency_p99_ms)),
                ("latency_budget_ms", _fmt(self.latency_budget_ms)),
                ("processing_p50_ms", _fmt(snap.processing_p50_ms)),
                ("processing_p99_ms", _fmt(snap.processing_p99_ms)),
                ("stamps_ahead_of_clock", str(snap.stamps_ahead)),
                ("max_stamp_ahead_ms", _fmt(snap.max_stamp_ahead_ms)),
                *((f"stage_p50_ms.{stage}", _fmt(ms)) for stage, ms in sorted(snap.stage_p50_ms.items())),
                ("last_error", snap.last_error or "none"),
                ("geometry", state if state is not None else "disabled"),
            ]
            out.append(Status(name=f"{self.node_name}: camera {snap.camera}", level=level, message=message,
                              values=tuple(values)))
            self._previous[snap.camera] = snap
        backend_level = ERROR if backend_failure else OK
        out.append(Status(name=f"{self.node_name}: backend", level=backend_level,
                          message=backend_failure or f"{backend} ready", values=(("backend", backend),)))
        return out


class OdometryMonitor:
    """What ~/in/odometry gave the velocity filter (geometry.odometry): WARN while velocities stay relative
    to base_link because no usable odometry came for ``stale_after_s`` (steady clock), or some was refused."""

    def __init__(self, node_name: str, *, stale_after_s: float = 1.0) -> None:
        self.node_name, self.stale_after_s = node_name, stale_after_s
        self.received = self.refused = 0
        self.last_error = ""
        self._last_used_s: float | None = None
        self._refused_before = 0

    def used(self, now_s: float) -> None:
        self.received += 1
        self._last_used_s = now_s

    def refuse(self, reason: str) -> None:
        self.received += 1
        self.refused += 1
        self.last_error = reason

    def status(self, now_s: float) -> Status:
        problems = []
        if self._last_used_s is None:
            problems.append("no odometry received on ~/in/odometry: velocities are relative to base_link only")
        elif now_s - self._last_used_s > self.stale_after_s:
            problems.append(f"no odometry for {now_s - self._last_used_s:.1f} s: velocities are relative to "
                            "base_link only")
        if self.refused > self._refused_before:
            problems.append(f"refused {self.refused - self._refused_before} message(s): {self.last_error}")
        self._refused_before = self.refused
        values = (("received", str(self.received)), ("refused", str(self.refused)),
                  ("last_error", self.last_error or "none"))
        return Status(name=f"{self.node_name}: odometry", level=WARN if problems else OK,
                      message="; ".join(problems) or "velocities over the ground", values=values)


def startup_status(node_name: str, *, backend: str, card_summary: str, roles: Mapping[str, object],
                   missing: Mapping[str, Sequence[str]], cameras: Sequence[str]) -> Status:
    """Published once at start-up: what model runs and which roles it can serve."""
    unavailable = [role for role, value in roles.items() if value == "unavailable"]
    level = WARN if unavailable else OK
    message = f"started with {backend}" + (f"; roles unavailable: {', '.join(unavailable)}" if unavailable else "")
    values = [("backend", backend), ("model", card_summary), ("cameras", ", ".join(cameras))]
    values += [(f"role.{role}", str(value)) for role, value in roles.items()]
    values += [(f"role.{role}.missing_classes", ", ".join(names)) for role, names in missing.items()]
    return Status(name=f"{node_name}: model", level=level, message=message, values=tuple(values))


def to_diagnostic_array(statuses: Sequence[Status], stamp: object) -> object:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    array = DiagnosticArray()
    array.header.stamp = stamp
    for status in statuses:
        array.status.append(DiagnosticStatus(
            level=bytes([status.level]), name=status.name, message=status.message, hardware_id=HARDWARE_ID,
            values=[KeyValue(key=k, value=v) for k, v in status.values]))
    return array
