"""The soak benchmark's statistics (no ROS): growth, windowed p99 drift, the per-tenth profile."""

from __future__ import annotations

import os

import pytest

from seg_perception.soak import (
    SoakConfig,
    fraction_slice,
    growth_percent,
    latency_drift,
    node_command,
    process_tree,
    profile,
    rss_growth,
)


def test_growth_percent() -> None:
    assert growth_percent(200.0, 210.0) == pytest.approx(5.0)
    assert growth_percent(200.0, 190.0) == pytest.approx(-5.0)


def test_fraction_slice_takes_the_share_of_the_length() -> None:
    values = list(range(100))
    assert fraction_slice(values, 0.1, 0.2) == list(range(10, 20))
    assert fraction_slice(values, 0.9, 1.0) == list(range(90, 100))
    assert fraction_slice([], 0.1, 0.2) == []


def test_latency_drift_compares_the_window_after_warm_up_with_the_last() -> None:
    # Warm-up frames are slow and must not count; the last tenth is 20 % slower than frames 10-20 %.
    latencies = [500.0] * 100 + [100.0] * 800 + [120.0] * 100
    drift = latency_drift(latencies)
    assert drift["first_window"]["p99"] == pytest.approx(100.0)
    assert drift["last_window"]["p99"] == pytest.approx(120.0)
    assert drift["p99_drift_pct"] == pytest.approx(20.0)
    assert drift["first_window"]["frames"] == drift["last_window"]["frames"] == 100


def test_latency_drift_of_too_few_frames_is_unknown() -> None:
    assert latency_drift([])["p99_drift_pct"] is None


def test_rss_growth_starts_after_warm_up_and_fits_a_slope() -> None:
    # A start-up jump before frame 100, then 1 KiB per 10 frames: 100 KiB per 1000 frames.
    samples = [(0, 50_000.0), (50, 90_000.0)] + [(f, 100_000.0 + (f - 100) / 10) for f in range(100, 1001, 50)]
    growth = rss_growth(samples, warmup_frames=100)
    assert growth["warm_kib"] == 100_000.0 and growth["end_kib"] == pytest.approx(100_090.0)
    assert growth["growth_pct"] == pytest.approx(0.09)
    assert growth["slope_kib_per_1000_frames"] == pytest.approx(100.0)
    assert rss_growth(samples[:2], warmup_frames=100)["growth_pct"] is None


def test_profile_has_a_row_per_tenth_with_the_rss_reached_by_then() -> None:
    latencies = [float(i) for i in range(1000)]
    samples = [(f, 1000.0 + f) for f in range(0, 1001, 100)]
    rows = profile(latencies, samples)
    assert [r["part"] for r in rows] == list(range(1, 11))
    assert all(r["frames"] == 100 for r in rows)
    assert rows[0]["p50"] == pytest.approx(49.5) and rows[-1]["rss_kib"] == 2000.0


def test_node_command_runs_the_cli_with_the_callers_overrides_last() -> None:
    command = node_command(SoakConfig(frames=300, node_set=("backend:=torch",)))
    assert command[1:4] == ["-m", "seg_perception.cli", "node"]
    sets = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    assert sets[0] == "cameras:=[front,rear]" and sets[-1] == "backend:=torch"


def test_process_tree_includes_the_root() -> None:
    assert process_tree(os.getpid())[0] == os.getpid()
