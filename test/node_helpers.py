"""What the tests that start seg_perception_node share: a parameter file for it, and waiting for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_node_params(path: Path, *, cameras: Sequence[str], latency_budget_ms: float,
                      changes: Mapping[str, Any]) -> Path:
    """The shipped parameters for ``cameras`` and the demo model, with ``changes`` on top (which may name
    other cameras), written to ``path``."""
    document = yaml.safe_load((REPO / "config" / "perception.param.yaml").read_text())
    params = document["/**"]["ros__parameters"]
    params.update(cameras=list(cameras), model_path=str(REPO / "models" / "demo"), backend="onnxruntime",
                  diagnostics_period_s=0.5, latency_budget_ms=latency_budget_ms, max_frame_age_s=2.0)
    params.update(changes)
    if "geometry" not in changes:  # the shipped mounts are for its two cameras: one per camera here
        params["geometry"]["mounts"] = params["geometry"]["mounts"][:6] * len(params["cameras"])
    path.write_text(yaml.safe_dump(document))
    return path


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
