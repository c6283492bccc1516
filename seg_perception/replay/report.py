"""The presentation side of `seg-perception eval`: report.json, report.md, plots and the overlay video.

``evaluate.py`` measures; this module checks the report's shape (``validate_report``) and renders it
(``write_report``). The report schema is documented field by field in ``docs/EVAL_REPORT.md``.

Figures are built on ``matplotlib.figure.Figure`` directly, not pyplot: no global backend or figure registry,
so nothing leaks over a long run and no display is ever needed. matplotlib and Pillow are imported lazily
because ``evaluate.py`` (and each of its worker processes) imports this module for ``OverlaySample`` alone.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import cv2
import numpy as np

from seg_perception.datasets.labels import CLASS_NAMES, IGNORE_TRAIN_ID, PALETTE, colorize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FORMAT = "seg_perception.eval_report/1"

STAGE_ORDER = ("preprocess", "inference", "postprocess", "smoothing", "end_to_end")
PLOT_NAMES = ("latency", "class_iou", "temporal_consistency", "overlays", "birds_eye")
MAX_OVERLAY_ROWS = 8
MAX_MARKDOWN_FAILURES = 20
MAX_MARKDOWN_STREAMS = 20  # TC rows in report.md; beyond it only the least steady half is listed
MAX_TC_LINES = 8  # beyond it the TC plot joins streams of the same camera (keys are "<bag>:<camera>")
MAX_LISTED_FAILURES = 100  # the evaluator keeps the first 100 in report.json
PNG_BUDGET_BYTES = 300_000
OVERLAY_ALPHA = 0.45  # same weight as the node's overlay output (ros_io.outputs), not imported: that pulls torch
DPI = 100
_PANEL_PX = 400  # width of one overlay grid cell; images are shrunk to it before plotting
_FRACTION_SLACK = 1e-9  # sums of float ratios may land a rounding step above 1.0
_STORAGES = ("mcap", "sqlite3", "unknown")  # evaluate._storage says "unknown" for a folder it cannot classify
_PIPELINE_KEYS = ("output_resolution", "smoothing_enabled", "smoothing_strength", "smoothing_label_prior",
                  "smoothing_max_gap_s", "tracking_iou_threshold", "tracking_max_misses")
_FRAME_COUNTS = ("received", "processed", "decode_failures", "labelled", "unlabelled")
_SCORES = ("miou", "miou_present", "pixel_acc", "mean_acc", "fwiou")
_PQ_GROUPS = ("all", "things", "stuff")
_LANE_F_KEYS = ("fscore_1px", "fscore_2px", "fscore_5px")
_LATENCY_KEYS = ("p50", "p90", "p99", "mean")


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == has no single truth value
class OverlaySample:
    """One frame to show in the overlay grid: the camera image, our prediction and the label if the bag has one."""

    camera: str
    stamp_ns: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    prediction: np.ndarray  # (h, w) uint8 class ids, any resolution
    ground_truth: np.ndarray | None = None  # (h', w') uint8 class ids, 255 = ignore; None: the bag has no labels

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"OverlaySample {self.camera}: image must be (H, W, 3) uint8 RGB, "
                             f"got {self.image.shape} {self.image.dtype}")
        for name in ("prediction", "ground_truth"):
            labels = getattr(self, name)
            if labels is not None and (labels.ndim != 2 or labels.dtype != np.uint8):
                raise ValueError(f"OverlaySample {self.camera}: {name} must be (H, W) uint8 class ids, "
                                 f"got {labels.shape} {labels.dtype}")


# ------------------------------------------------------------------------------------------------ validation


@dataclass(frozen=True)
class _At:
    """A value inside the report and the path that leads to it, so every error names the exact key."""

    value: Any
    where: str

    def __getitem__(self, key: str) -> _At:
        if not isinstance(self.value, Mapping):
            raise self.fail("an object (dict)")
        if key not in self.value:
            raise ValueError(f"eval report: missing key {self.where}[{key!r}]")
        return _At(self.value[key], f"{self.where}[{key!r}]")

    def require(self, *keys: str) -> None:
        for key in keys:
            self[key]

    def fail(self, expected: str) -> ValueError:
        shown = repr(self.value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ValueError(f"eval report: {self.where} must be {expected}, got {shown}")

    def expect(self, kind: str, *, nullable: bool = False) -> Any:
        """Check the value's kind; returns it. Kinds: str, int (>= 0), number (finite, >= 0), fraction, list, dict."""
        v = self.value
        if v is None:
            if nullable:
                return v
            raise self.fail(f"{_KINDS[kind]}, not null")
        ok = {
            "str": isinstance(v, str),
            "int": _is_int(v) and v >= 0,
            "number": _is_number(v) and math.isfinite(v) and v >= 0,
            "fraction": _is_number(v) and -_FRACTION_SLACK <= v <= 1 + _FRACTION_SLACK,  # False for NaN too
            "list": isinstance(v, list),
            "dict": isinstance(v, Mapping),
        }[kind]
        if not ok:
            hint = "; NaN is not JSON, use null" if _is_number(v) and math.isnan(v) else ""
            raise self.fail(_KINDS[kind] + (" or null" if nullable else "") + hint)
        return v

    def keys(self, kind: str, *, nullable: bool = False) -> dict[str, Any]:
        """A dict of str keys whose values are all of one kind."""
        for key in self.expect("dict"):
            if not isinstance(key, str):
                raise self.fail("a dict with string keys")
            self[key].expect(kind, nullable=nullable)
        return self.value

    def items(self) -> Iterator[_At]:
        for index, item in enumerate(self.expect("list")):
            yield _At(item, f"{self.where}[{index}]")


_KINDS = {"str": "a string", "int": "an integer >= 0", "number": "a finite number >= 0",
          "fraction": "a fraction in [0, 1]", "list": "a list", "dict": "an object (dict)"}


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def validate_report(report: dict[str, Any]) -> None:
    """Raise ValueError naming the first missing or mistyped key, or fraction outside [0, 1]; None if valid.

    Keys beyond the schema are allowed (newer evaluators may add some). NaN is rejected everywhere: it is not
    valid JSON, and the schema says null for "not measured".
    """
    if not isinstance(report, Mapping):
        raise ValueError(f"eval report: expected a dict, got {type(report).__name__}")
    r = _At(report, "report")
    if r["format"].expect("str") != REPORT_FORMAT:
        raise r["format"].fail(repr(REPORT_FORMAT))
    try:
        datetime.fromisoformat(r["created"].expect("str"))
    except ValueError:
        raise r["created"].fail("an ISO 8601 time") from None
    for item in r["command"].items():
        item.expect("str")

    model = r["model"]
    model.expect("dict")
    for key in ("path", "arch", "weights_sha256"):
        model[key].expect("str")
    size = model["input_size"]
    if not (isinstance(size.value, list) and len(size.value) == 2 and all(_is_int(v) and v > 0 for v in size.value)):
        raise size.fail("[width, height] as two positive integers")
    for item in model["classes"].items():
        item.expect("str")
    r["backend"].expect("str")
    pipeline = r["pipeline"]
    pipeline.expect("dict")
    pipeline.require(*_PIPELINE_KEYS)  # presence only: the values are the pipeline's own settings

    for bag in r["bags"].items():
        bag.expect("dict")
        bag["path"].expect("str")
        if bag["storage"].expect("str") not in _STORAGES:
            raise bag["storage"].fail(" or ".join(map(repr, _STORAGES)))
        bag["cameras"].keys("str")
        if bag["label_source"].value not in ("topics", None):
            raise bag["label_source"].fail("'topics' or null")
        bag["frames"].expect("int")
        bag["decode_failures"].expect("int")
        bag["output_bag"].expect("str", nullable=True)

    frames = r["frames"]
    frames.expect("dict")
    for key in _FRAME_COUNTS:
        frames[key].expect("int")

    metrics = r["metrics"]
    if metrics.expect("dict", nullable=True) is not None:
        _validate_metrics(metrics)

    tc = r["temporal_consistency"]
    tc.expect("dict")
    tc["mean"].expect("fraction", nullable=True)
    tc["per_camera"].keys("fraction", nullable=True)
    tc["pairs"].expect("int")

    latency = r["latency_ms"]
    latency.expect("dict")
    for stage in latency.value:
        stats = latency[stage]
        stats.expect("dict")
        for key in _LATENCY_KEYS:
            stats[key].expect("number", nullable=True)  # null only when n == 0
        stats["n"].expect("int")
    r["throughput_fps"].expect("number")
    r["wall_s"].expect("number")
    r["smoothing_resets"].keys("int")

    failures = r["decode_failure_list"]
    if len(failures.expect("list")) > MAX_LISTED_FAILURES:
        raise failures.fail(f"at most {MAX_LISTED_FAILURES} entries")
    for failure in failures.items():
        failure.expect("dict")
        for key in ("bag", "topic", "error"):
            failure[key].expect("str")
        if not _is_int(failure["stamp_ns"].value):
            raise failure["stamp_ns"].fail("an integer (ns)")
    r["outputs"].expect("dict")


def _validate_metrics(metrics: _At) -> None:
    for key in _SCORES:
        metrics[key].expect("fraction", nullable=True)  # null: no class could be scored
    metrics["iou_per_class"].keys("fraction", nullable=True)
    pq = metrics["pq"]
    if pq.expect("dict", nullable=True) is not None:
        for group in _PQ_GROUPS:
            scores = pq[group]
            scores.expect("dict")
            for key in ("pq", "sq", "rq"):
                scores[key].expect("fraction", nullable=True)  # null when the group has no class (n == 0)
            scores["n"].expect("int")
    per_class = metrics["pq_per_class"] if "pq_per_class" in metrics.value else None  # absent in older reports
    if per_class is not None and per_class.expect("dict", nullable=True) is not None:
        for name in per_class.value:
            for key in ("pq", "sq", "rq"):
                per_class[name][key].expect("fraction", nullable=True)
            for key in ("tp", "fp", "fn"):
                per_class[name][key].expect("int")
    metrics["drivable_iou"].expect("fraction", nullable=True)
    metrics["lane_iou"].expect("fraction", nullable=True)
    lane_f = metrics["lane_fscore"]
    if lane_f.expect("dict", nullable=True) is not None:
        for key in _LANE_F_KEYS:
            lane_f[key].expect("fraction", nullable=True)


# -------------------------------------------------------------------------------------------------- markdown


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cell(value: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    text = str(value)
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> list[str]:
    """Markdown table; ``align`` has one letter per column, "r" right-aligns (numbers)."""
    rule = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _stamp(stamp_ns: int) -> str:
    sign, stamp_ns = ("-", -stamp_ns) if stamp_ns < 0 else ("", stamp_ns)
    return f"{sign}{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"


def _link(path: str) -> str:
    return quote(path, safe="/._-~")


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: summary, metric tables (percent), latency (ms), bags, failures, plots and the command."""
    frames, model, metrics = report["frames"], report["model"], report.get("metrics")
    tc = report["temporal_consistency"]
    out: list[str] = ["# Evaluation report", ""]
    bags = report["bags"]
    out.append(f"{frames['processed']:,} of {frames['received']:,} frames processed from {len(bags)} "
               f"bag{'s' if len(bags) != 1 else ''} on backend {_code(report['backend'])}: "
               f"{report['throughput_fps']:.1f} frames/s over {report['wall_s']:.1f} s.")
    out.append("")
    width, height = model["input_size"]
    out.append(f"Model {_code(model['arch'])} from {_code(model['path'])}, input {width}x{height}, "
               f"weights sha256 {_code(model['weights_sha256'][:16] or 'unknown')}; created {report['created']}. "
               f"Frames with labels: {frames['labelled']:,}, without: {frames['unlabelled']:,}; "
               f"decode failures: {frames['decode_failures']:,}.")
    out.append("")
    if metrics is None:
        out += ["> The bags carry no labels, so accuracy metrics are n/a. Latency, throughput and temporal "
                "consistency need no labels and are measured.", ""]

    m = metrics or {}
    pq = m.get("pq") or {}
    lane_f = m.get("lane_fscore") or {}
    out += ["## Metrics", "", "Percent, one decimal; n/a: not measured (no labels of that kind).", ""]
    rows = [
        ("mIoU", _pct(m.get("miou"))),
        ("mIoU, classes present in the labels", _pct(m.get("miou_present"))),
        ("pixel accuracy", _pct(m.get("pixel_acc"))),
        ("mean class accuracy", _pct(m.get("mean_acc"))),
        ("frequency-weighted IoU", _pct(m.get("fwiou"))),
        *((f"PQ {group}", _pct((pq.get(group) or {}).get("pq"))) for group in _PQ_GROUPS),
        ("drivable-area IoU", _pct(m.get("drivable_iou"))),
        ("lane IoU", _pct(m.get("lane_iou"))),
        *((f"lane F-score @ {key.removeprefix('fscore_').removesuffix('px')} px", _pct(lane_f.get(key)))
          for key in _LANE_F_KEYS),
        (f"temporal consistency ({tc['pairs']:,} frame pairs)", _pct(tc["mean"])),
    ]
    out += [*_table(("metric", "%"), rows, "lr"), ""]

    out += ["## Per-class IoU", ""]
    if metrics is None:
        out += ["n/a: no labels.", ""]
    else:
        out += ["n/a: the class is neither in the labels nor predicted.", ""]
        out += [*_table(("class", "IoU %"), [(name, _pct(v)) for name, v in m["iou_per_class"].items()], "lr"), ""]
        if pq:
            out += ["Panoptic quality by group (n: classes scored):", ""]
            out += [*_table(("group", "PQ %", "SQ %", "RQ %", "n"),
                            [(g, _pct(s["pq"]), _pct(s["sq"]), _pct(s["rq"]), s["n"])
                             for g, s in ((g, pq[g]) for g in _PQ_GROUPS if pq.get(g))], "lrrrr"), ""]

    out += ["## Temporal consistency", "",
            "mIoU between each prediction and the previous one warped by optical flow (Liu et al., ECCV 2020); "
            "higher is steadier.", ""]
    per_camera = tc["per_camera"]
    if len(per_camera) > MAX_MARKDOWN_STREAMS:  # one stream per bag and camera: hundreds with many bags
        lowest = sorted(per_camera.items(), key=lambda item: (item[1] is None, item[1] or 0.0))
        out += [f"{len(per_camera):,} streams (bag:camera); the {MAX_MARKDOWN_STREAMS // 2} least steady "
                "(all in report.json):", ""]
        out += [*_table(("stream", "TC %"), [(c, _pct(v)) for c, v in lowest[:MAX_MARKDOWN_STREAMS // 2]], "lr"), ""]
    elif per_camera:
        out += [*_table(("stream", "TC %"), [(c, _pct(v)) for c, v in per_camera.items()], "lr"), ""]
    else:
        out += ["n/a: no frame pairs scored.", ""]

    where = ("live under DDS: transport is player publish -> node callback" if report.get("live")
             else "offline replay (no transport)")
    out += ["## Latency", "", f"Milliseconds per frame, {where}.", ""]
    latency = report["latency_ms"]
    if latency:
        stages = sorted(latency, key=_stage_key)
        rows = [(s, f"{latency[s]['n']:,}", *(_ms(latency[s][k]) for k in _LATENCY_KEYS)) for s in stages]
        out += [*_table(("stage", "frames", "p50", "p90", "p99", "mean"), rows, "lrrrrr"), ""]
    else:
        out += ["n/a: no frame was processed.", ""]

    out += _metric_outputs_markdown(report.get("metric_outputs"))

    out += ["## Pipeline settings", ""]
    out += [*_table(("setting", "value"), [(k, v) for k, v in report["pipeline"].items()]), ""]

    out += ["## Bags", ""]
    rows = [(_code(b["path"]), b["storage"], ", ".join(f"{c} ({t})" for c, t in b["cameras"].items()) or "none",
             b["label_source"] or "none", f"{b['frames']:,}", f"{b['decode_failures']:,}",
             _code(b["output_bag"]) if b["output_bag"] else "none") for b in bags]
    out += [*_table(("bag", "storage", "cameras", "labels", "frames", "decode failures", "output bag"), rows,
                    "llllrrl"), ""]

    out += ["## Decode failures", ""]
    failures = report["decode_failure_list"]
    if not failures and not frames["decode_failures"]:
        out += ["none", ""]
    else:
        shown = failures[:MAX_MARKDOWN_FAILURES]
        rows = [(_code(f["bag"]), f["topic"], _stamp(f["stamp_ns"]), f["error"]) for f in shown]
        out += [*_table(("bag", "topic", "stamp (s)", "error"), rows), ""]
        if frames["decode_failures"] > len(shown):
            out += [f"{len(shown)} of {frames['decode_failures']:,} shown; report.json lists the first "
                    f"{MAX_LISTED_FAILURES}.", ""]

    out += ["## Smoothing resets", ""]
    resets = report["smoothing_resets"]
    if any(resets.values()):
        out += [*_table(("reason", "count"), [(k, f"{v:,}") for k, v in sorted(resets.items())], "lr"), ""]
    else:
        out += ["none", ""]

    outputs = report.get("outputs") or {}
    plots = outputs.get("plots") or {}
    if plots:
        out += ["## Plots", ""]
        for name, path in plots.items():
            out += [f"![{name.replace('_', ' ')}]({_link(path)})", ""]
    files = [(k, v) for k, v in outputs.items() if k != "plots" and isinstance(v, str)]
    if files:
        out += ["## Files", "", *(f"- {key}: [{_code(path)}]({_link(path)})" for key, path in files), ""]

    out += ["## Reproduce", ""]
    if report["command"]:
        out += ["```sh", shlex.join(report["command"]), "```", ""]
    else:
        out += ["The command was not recorded.", ""]
    return "\n".join(out)


def _metres(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _metric_outputs_markdown(scores: Mapping[str, Any] | None) -> list[str]:
    """The outputs in metres against the synthetic ground truth (``evaluation/metric_outputs.py``)."""
    if not scores:
        return []
    out = ["## Outputs in metres (base_link, flat ground)", "",
           "Scored against the synthetic world's exact ground truth; how each score is defined is in "
           "`seg_perception/evaluation/metric_outputs.py`.", ""]
    lanes = scores["lanes"]
    rows = [(f"{station} m", s["truth"], s["predicted"], s["matched"], _pct(s["recall"]), _pct(s["precision"]),
             _metres(s["median_lateral_error_m"]), _metres(s["p90_lateral_error_m"]))
            for station, s in [*lanes["stations"].items(), ("<= 20", lanes["within_20m"])]]
    out += [f"Lane boundaries ({lanes['frames']} camera frames looking along the road; matched within "
            f"{lanes['match_within_m']:g} m):", ""]
    out += [*_table(("station", "true lines", "predicted", "matched", "recall %", "precision %",
                     "median lateral error m", "p90 m"), rows, "lrrrrrrr"), ""]
    obstacles = scores["obstacles"]
    rows = [(name, b["count"], _metres(b["median_error_m"]), _metres(b["median_error_pct_of_range"], 1),
             _metres(b["p90_error_pct_of_range"], 1))
            for name, b in [*obstacles["bins"].items(), ("< 40 m", obstacles["within_40m"])]]
    out += [f"Obstacle ground contacts ({obstacles['matched']} of {obstacles['with_position']} obstacles with a "
            f"position matched to a true instance at mask IoU >= {obstacles['min_instance_iou']:g}):", ""]
    out += [*_table(("true range", "obstacles", "median error m", "median % of range", "p90 % of range"), rows,
                    "lrrrr"), ""]
    by_class = obstacles.get("within_40m_by_class") or {}
    if by_class:
        rows = [(name, c["count"], _metres(c["median_error_m"]), _metres(c["median_radial_error_m"]))
                for name, c in by_class.items()]
        out += ["Within 40 m by class (radial error > 0: placed farther than the true contact):", "",
                *_table(("class", "obstacles", "median error m", "median radial error m"), rows, "lrrr"), ""]
    velocity, grid = scores["velocity"], scores["grid"]
    odometry = velocity.get("odometry_messages", 0)
    out += [f"Velocity relative to base_link, tracks with >= {velocity['min_samples']} positions: "
            f"{velocity['count']} estimates, median error {_metres(velocity['median_error_mps'])} m/s, "
            f"p90 {_metres(velocity['p90_error_mps'])} m/s; "
            + (f"the ego's motion taken out with its odometry ({odometry} messages)." if odometry else
               "without odometry (relative positions only)."), ""]
    bins = velocity.get("bins") or {}
    if bins:
        out += [*_table(("true range", "estimates", "median error m/s"),
                        [(name, b["count"], _metres(b["median_error_mps"])) for name, b in bins.items()], "lrr"), ""]
    out += [f"Free-space grid IoU within {grid['range_m']:g} m: {_pct(grid['free_iou'])} % over {grid['steps']} "
            "time steps.", ""]
    rows = [(name, "n/a" if t["value"] is None else f"{t['value']:g}", t["target"],
             "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**"))
            for name, t in scores["targets"].items()]
    out += ["Issue 17's targets:", "", *_table(("target", "measured", "bound", "met"), rows, "lrrl"), ""]
    return out


def _stage_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


# ----------------------------------------------------------------------------------------------------- plots


def _latency_figure(samples: Mapping[str, Sequence[float]], stats: Mapping[str, Any]) -> Figure | None:
    from matplotlib.figure import Figure

    data = {stage: v[np.isfinite(v)] for stage, v in ((s, np.asarray(x, np.float64)) for s, x in samples.items())}
    stages = sorted((s for s, v in data.items() if v.size), key=_stage_key)
    if not stages:
        return None
    fig = Figure(figsize=(8, 1.9 * len(stages) + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(stages), 1, squeeze=False)[:, 0]
    for ax, stage in zip(axes, stages, strict=True):
        values = data[stage]
        known = stats.get(stage) or {}
        # the report's percentiles, so the plot and the table agree; computed only if the report lacks them
        p50 = known.get("p50") if known.get("p50") is not None else float(np.percentile(values, 50))
        p99 = known.get("p99") if known.get("p99") is not None else float(np.percentile(values, 99))
        low, high = float(values.min()), float(values.max())
        log_x = low > 0 and high / low > 20  # long tails (spikes of 10x and more) squash a linear axis
        bins = np.geomspace(low, high, 50) if log_x else 50
        ax.hist(values, bins=bins, color="C0", alpha=0.85)
        if log_x:
            ax.set_xscale("log")
        ax.axvline(p50, color="C1", lw=1.5, label=f"p50 {p50:.2f} ms")
        ax.axvline(p99, color="C3", lw=1.5, ls="--", label=f"p99 {p99:.2f} ms")
        ax.set_title(f"{stage} (n={values.size:,})", loc="left", fontsize=10)
        ax.set_xlabel("latency per frame [ms]" + (", log scale" if log_x else ""))
        ax.set_ylabel("frames")
        ax.legend(loc="upper right", fontsize=8)
    return fig


def _class_colour(name: str) -> tuple[float, float, float]:
    if name in CLASS_NAMES:
        r, g, b = PALETTE[CLASS_NAMES.index(name)]
        return (r / 255, g / 255, b / 255)
    return (0.6, 0.6, 0.6)  # a class outside our label space (e.g. a baseline model's)


def _class_iou_figure(metrics: Mapping[str, Any]) -> Figure | None:
    from matplotlib.figure import Figure

    ious: Mapping[str, float | None] = metrics["iou_per_class"]
    if not ious:
        return None
    scored = sorted(((v, n) for n, v in ious.items() if v is not None))  # ascending: barh draws bottom-up
    absent = [n for n, v in ious.items() if v is None]
    names = absent + [n for _, n in scored]
    values = [0.0] * len(absent) + [100 * v for v, _ in scored]
    fig = Figure(figsize=(7, 0.27 * len(names) + 1.1), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    # black edges: lane_marking's palette colour is white
    ax.barh(y, values, color=[_class_colour(n) for n in names], edgecolor="black", linewidth=0.5)
    for yi, value, is_absent in zip(y, values, [True] * len(absent) + [False] * len(scored), strict=True):
        ax.text(value + 1, yi, "n/a" if is_absent else f"{value:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(0, 110)
    ax.set_xlabel("IoU [%]")
    if metrics.get("miou") is not None:
        ax.axvline(100 * metrics["miou"], color="0.3", ls="--", lw=1, label=f"mIoU {_pct(metrics['miou'])} %")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Per-class IoU (n/a: neither in the labels nor predicted)", loc="left", fontsize=10)
    return fig


def _tc_figure(series: Mapping[str, Sequence[float]], tc: Mapping[str, Any]) -> Figure | None:
    from matplotlib.figure import Figure

    data = {c: np.asarray(v, np.float64) for c, v in series.items()}
    data = {c: v for c, v in data.items() if np.isfinite(v).any()}
    if not data:
        return None
    means = dict(tc.get("per_camera") or {})
    joined_bags = len(data) > MAX_TC_LINES
    if joined_bags:  # hundreds of bags: one line per camera, its bags one after another
        joined: dict[str, list[np.ndarray]] = {}
        for key, values in data.items():
            joined.setdefault(key.rpartition(":")[2], []).append(values)
        data = {camera: np.concatenate(parts) for camera, parts in joined.items()}
        means = {}  # the report's means are per bag and camera; these lines need their own
    fig = Figure(figsize=(9, 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for index, (camera, values) in enumerate(sorted(data.items())):
        colour = f"C{index % 10}"
        mean = means.get(camera)
        mean = float(np.nanmean(values)) if mean is None else mean
        # NaN pairs (no class in either map) leave gaps in the line, as they are skipped in the mean
        ax.plot(np.arange(values.size), 100 * values, color=colour, lw=0.8, marker="." if values.size < 60 else None,
                label=f"{camera} (mean {_pct(mean)} %)")
        ax.axhline(100 * mean, color=colour, ls=":", lw=1)
    if tc.get("mean") is not None:
        ax.axhline(100 * tc["mean"], color="black", ls="--", lw=1.2, label=f"all cameras (mean {_pct(tc['mean'])} %)")
    lowest = min(float(np.nanmin(v)) for v in data.values())
    ax.set_ylim(max(0.0, math.floor(10 * lowest) * 10 - 5), 101)  # zoomed: TC mostly lives in 80-100 %
    ax.set_xlabel("frame pair (consecutive frames of one camera, in order" + (", bags one after another)"
                                                                               if joined_bags else ")"))
    ax.set_ylabel("temporal consistency [%]")
    ax.set_title("Temporal consistency: mIoU of each prediction vs. the flow-warped previous one", loc="left",
                 fontsize=10)
    ax.legend(loc="lower left", fontsize=8, ncols=1 + len(data) // 6)
    return fig


def _birds_eye_figure(samples: Sequence[Any]) -> Figure | None:
    """Predicted beside true, from above: grid (free light, occupied dark, unknown grey), lane boundaries and
    obstacle contacts with their velocities; one row per sampled time step (one per bag, at most four)."""
    from matplotlib.figure import Figure

    samples = list(samples)[:4]
    if not samples:
        return None
    fig = Figure(figsize=(10, 2.6 * len(samples) + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(samples), 2, squeeze=False)
    shade = np.array([0.75, 0.97, 0.25])  # unknown, free, occupied (as grey levels)
    for row, sample in zip(axes, samples, strict=True):
        spec = sample.spec
        extent = (spec.x_min, spec.x_max, spec.y_min, spec.y_max)
        panels = ((sample.grid, sample.lanes, sample.obstacles, "predicted"),
                  (sample.truth_grid, sample.truth_lanes, sample.truth_obstacles, "ground truth"))
        for ax, (grid, lanes, obstacles, title) in zip(row, panels, strict=True):
            levels = np.select([grid == 0, grid == 100], [shade[1], shade[2]], shade[0])
            ax.imshow(levels, origin="lower", extent=extent, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            for lane in lanes:
                ax.plot(lane[:, 0], lane[:, 1], color="tab:orange", lw=1.2)
            for (x, y), velocity in obstacles:
                ax.plot(x, y, "o", color="tab:red", ms=3)
                if velocity is not None:
                    ax.arrow(x, y, velocity[0], velocity[1], color="tab:red", width=0.05, head_width=0.6)
            ax.plot(0, 0, marker=">", color="tab:blue", ms=8)
            ax.set_xlim(spec.x_min, spec.x_max)
            ax.set_ylim(spec.y_min, spec.y_max)
            ax.set_aspect("equal")
            ax.set_title(f"{title}: {sample.bag} at {_stamp(sample.stamp_ns)} s", loc="left", fontsize=8)
            ax.set_xlabel("x forward [m]", fontsize=8)
            ax.set_ylabel("y left [m]", fontsize=8)
    fig.suptitle("Bird's-eye view in base_link: grid (free light, occupied dark), lanes (orange), obstacles and "
                 "velocities (red, metres per second)", fontsize=9)
    return fig


def _blend(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    blended = cv2.addWeighted(image, 1.0 - OVERLAY_ALPHA, colorize(labels), OVERLAY_ALPHA, 0.0)
    # ignore pixels keep the plain image: blending in the palette's black would only darken them
    return np.where((labels == IGNORE_TRAIN_ID)[..., None], image, blended)


def _shrink(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def _overlay_panels(sample: OverlaySample) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Input, prediction overlay and label overlay at the image's resolution, shrunk to about a grid cell.

    Labels are brought to the image (nearest neighbour, ids must stay ids) rather than the image to the labels as
    the node's overlay does: a report is looked at closely, and the camera image has the detail.
    """
    image = _shrink(sample.image, 2 * _PANEL_PX)  # 2x the cell: matplotlib's own resampling still has detail
    size = (image.shape[1], image.shape[0])

    def overlay(labels: np.ndarray) -> np.ndarray:
        if labels.shape != image.shape[:2]:
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        return _blend(image, labels)

    truth = sample.ground_truth
    return image, overlay(sample.prediction), None if truth is None else overlay(truth)


def _overlay_figure(samples: Sequence[OverlaySample]) -> Figure | None:
    from matplotlib.figure import Figure

    if not samples:
        return None
    if len(samples) > MAX_OVERLAY_ROWS:  # spread the rows over the run rather than showing its start only
        picks = np.linspace(0, len(samples) - 1, MAX_OVERLAY_ROWS).round().astype(int)
        samples = [samples[i] for i in picks]
    height, width = samples[0].image.shape[:2]
    cell_w = _PANEL_PX / DPI
    cell_h = float(np.clip(cell_w * height / width, 1.0, 4.0))
    fig = Figure(figsize=(3 * cell_w, len(samples) * (cell_h + 0.3) + 0.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(samples), 3, squeeze=False)
    for row, sample in zip(axes, samples, strict=True):
        image, prediction, truth = _overlay_panels(sample)
        row[0].imshow(image)
        row[0].set_title(f"{sample.camera} @ {_stamp(sample.stamp_ns)} s", loc="left", fontsize=9)
        row[1].imshow(prediction)
        row[1].set_title("prediction", loc="left", fontsize=9)
        if truth is None:
            row[2].set_box_aspect(image.shape[0] / image.shape[1])
            row[2].set_facecolor("0.92")
            row[2].text(0.5, 0.5, "no labels", ha="center", va="center", transform=row[2].transAxes, fontsize=11)
            row[2].set_title("ground truth", loc="left", fontsize=9)
        else:
            row[2].imshow(truth)
            row[2].set_title("ground truth (unlabelled pixels plain)", loc="left", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def _png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def _encode_png(rgb: np.ndarray, budget: int = PNG_BUDGET_BYTES) -> bytes:
    """PNG of an (H, W, 3) uint8 RGB image, kept under ``budget`` bytes where possible.

    Line plots are small as truecolour PNG and stay lossless. Photos (the overlay grid) are not: they go to a
    256-colour palette (median cut: less banding on smooth skies than octree; about a fifth of the size), then
    shrink, by the area ratio the size calls for, until they fit.
    """
    from PIL import Image

    image = Image.fromarray(rgb)
    data = _png_bytes(image)
    while len(data) > budget:
        data = _png_bytes(image.quantize(colors=256, method=Image.Quantize.MEDIANCUT))
        if len(data) <= budget or min(image.size) < 200:
            break
        scale = min(0.9, max(0.5, 0.95 * math.sqrt(budget / len(data))))  # bytes grow about with the area
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return data


def _save_figure(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])
    path.write_bytes(_encode_png(rgb))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):  # numpy scalars pass validation (numbers.Real) but json cannot write them
        return value.item()
    raise TypeError(f"eval report: {type(value).__name__} is not JSON serialisable")


def write_report(out_dir: Path, report: dict[str, Any], *, latency_samples: Mapping[str, Sequence[float]],
                 tc_series: Mapping[str, Sequence[float]], overlays: Sequence[OverlaySample],
                 birds_eye: Sequence[Any] = ()) -> dict[str, Any]:
    """Validate ``report``, write plots/*.png, report.md and report.json into ``out_dir``; returns the outputs.

    The returned mapping (also stored as report.json's "outputs") holds paths relative to ``out_dir``:
    ``{"report_md": "report.md", "report_json": "report.json", "plots": {name: "plots/<name>.png"}}`` plus
    whatever the caller had already put in ``report["outputs"]`` (e.g. ``"video": "overlay.mp4"``). A plot
    without data (no labels, no TC pairs, no overlay samples) is not written. ``report`` itself is not modified.
    """
    validate_report(report)
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    metrics = report["metrics"]
    builders = {
        "latency": lambda: _latency_figure(latency_samples, report["latency_ms"]),
        "class_iou": lambda: None if metrics is None else _class_iou_figure(metrics),
        "temporal_consistency": lambda: _tc_figure(tc_series, report["temporal_consistency"]),
        "overlays": lambda: _overlay_figure(overlays),
        "birds_eye": lambda: _birds_eye_figure(birds_eye),
    }
    plots: dict[str, str] = {}
    for name in PLOT_NAMES:
        path = plots_dir / f"{name}.png"
        fig = builders[name]()  # one figure at a time: the overlay grid alone can take tens of MB
        if fig is None:
            path.unlink(missing_ok=True)  # a stale plot of an earlier run would contradict this report
            continue
        _save_figure(fig, path)
        plots[name] = path.relative_to(out_dir).as_posix()

    outputs = {**report["outputs"], "report_md": "report.md", "report_json": "report.json", "plots": plots}
    final = {**report, "outputs": outputs}
    (out_dir / "report.md").write_text(render_markdown(final), encoding="utf-8")
    text = json.dumps(final, indent=2, allow_nan=False, default=_json_default)
    (out_dir / "report.json").write_text(text + "\n", encoding="utf-8")
    return outputs


# ----------------------------------------------------------------------------------------------------- video


class OverlayVideo:
    """overlay.mp4: one video frame per time step, the cameras' overlays side by side.

    Tiles share one height (the smallest frame's, at most ``max_height``; never upscaled). The video's size is
    fixed by the first tile (rounded down to even: MPEG-4 encoders want even sizes); later tiles are resized to
    it. A writer OpenCV cannot open does not stop ``add`` (the evaluation matters more than its video); ``close``
    raises it.
    """

    def __init__(self, path: Path, fps: float, *, max_height: int = 360) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"overlay video fps must be > 0, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.max_height = max_height
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (width, height) once the first frame arrived
        self._writer: cv2.VideoWriter | None = None
        self._failed = False
        self._closed = False

    def add(self, frames_bgr: Sequence[np.ndarray]) -> None:
        """One time step: the bgr8 frames of the cameras, left to right."""
        if self._closed:
            raise RuntimeError(f"{self.path}: add() after close()")
        if not frames_bgr:
            raise ValueError("OverlayVideo.add needs at least one frame")
        if self._failed:
            return
        tile = self._tile(frames_bgr)
        if self._writer is None:
            height, width = tile.shape[:2]
            self.size = (max(2, width - width % 2), max(2, height - height % 2))
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not writer.isOpened():
                self._failed = True
                return
            self._writer = writer
        if (tile.shape[1], tile.shape[0]) != self.size:
            tile = cv2.resize(tile, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(tile)
        self.frames_written += 1

    def _tile(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        images = []
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
                raise ValueError(f"overlay video frames must be bgr8 (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
            images.append(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame)
        height = min(self.max_height, *(image.shape[0] for image in images))
        resized = [
            image if image.shape[0] == height else cv2.resize(
                image, (max(1, round(image.shape[1] * height / image.shape[0])), height), interpolation=cv2.INTER_AREA)
            for image in images
        ]
        return np.hstack(resized)

    def close(self) -> Path | None:
        """Finish the file; its path, or None if no frame was written. RuntimeError if the writer never opened."""
        if not self._closed:
            self._closed = True
            if self._writer is not None:
                self._writer.release()
                self._writer = None
        if self._failed:
            width, height = self.size or (0, 0)
            raise RuntimeError(f"OpenCV could not open a video writer for {self.path} "
                               f"(fourcc mp4v, {width}x{height} at {self.fps:g} fps; does the folder exist?)")
        return self.path if self.frames_written else None

    def __enter__(self) -> OverlayVideo:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(RuntimeError):  # an exception is already on its way: keep it, not the writer's
            self.close()
