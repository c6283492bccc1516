"""A pipeline on rendered drives: temporal consistency and accuracy together (the smoothing trade-off)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seg_perception.evaluation.semantic import ConfusionMatrix
from seg_perception.evaluation.temporal import TemporalConsistencyMeter

DRIVE_SPACING_NS = 100 * 10**9  # drives are placed 100 s apart on the clock, so each starts a new stream


@dataclass(frozen=True)
class VideoScores:
    tc: float  # mean TC over drives, in points (0-100)
    miou_present: float  # in points
    smoothing_stage_ms: tuple[float, ...]  # the pipeline's host-side smoothing stage, per frame


def score_video(pipeline: Any, drives: Sequence[Sequence[dict]], camera: str, class_names: Sequence[str]
                ) -> VideoScores:
    """Run ``pipeline`` (a PerceptionPipeline) over ``drives`` (lists of render_sequence steps) for one camera."""
    from seg_perception.pipeline.pipeline import CameraFrame

    confusion = ConfusionMatrix(len(class_names), class_names=tuple(class_names))
    consistency, stage_ms = [], []
    for k, drive in enumerate(drives):
        meter = TemporalConsistencyMeter(num_classes=len(class_names))
        for step in drive:
            truth = step[camera]
            frame = CameraFrame(camera=camera, image=truth.image, stamp_ns=truth.stamp_ns + k * DRIVE_SPACING_NS,
                                frame_id=f"{camera}_optical_frame")
            (result,) = pipeline.process([frame])
            confusion.update(result.semantic, truth.semantic)
            meter.update(truth.image, result.semantic)
            stage_ms.append(result.timings_ms["smoothing"])
        consistency.append(meter.result().mean)
    return VideoScores(tc=100 * float(np.mean(consistency)), miou_present=100 * confusion.compute().miou_present,
                       smoothing_stage_ms=tuple(stage_ms))
