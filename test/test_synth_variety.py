"""The opt-in synthetic variety (motorcycles, crosswalks, dusk/night, rain): off, every world renders byte
for byte as before; on, it adds what it promises with labels that still come from geometry."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from seg_perception.datasets import labels
from seg_perception.datasets.synthetic import write_synthetic
from seg_perception.synth import SynthFrame, describe_sequence, render_sequence
from seg_perception.synth.agents import lane_speeds
from seg_perception.synth.config import LIGHTINGS, SceneConfig, Variety
from seg_perception.synth.world import World

SIZE = (256, 128)
MOTO, RIDER = labels.train_id("motorcycle"), labels.train_id("rider")
VEHICLES = [labels.train_id(n) for n in ("car", "truck", "bus")]
VARIETY_SEED = 7
MOTO_LABEL_ID = int(labels.train_ids_to_label_ids(np.array([MOTO], np.uint8))[0])

# Pre-variety outputs, computed with the code before the variety option existed: sha256 over the image,
# semantic and instance bytes of frame 0, front camera, 256x128. The recorded held-out splits (seed 2000)
# and every other dataset written without --variety depend on these staying fixed.
PRE_VARIETY_SHA256 = {
    (2000, 0): "1eb90fe521c1c196420fc466ad93cf58c7c0ef42018296b4c9c3972a3e003a6a",
    (2000, 1): "a5c60c4745d3fedf31ee145a136757d02ca3c85ef8e0b417e9f3cc3b02800c2f",
    (2000, 2): "7db8437ebed9177faeb2bc7002f3da4ca62334a8a6e7b86c934ed5c7fa91e730",
    (0, 0): "65787267059dff44c8e6bc7292abe55d4940f2b6c4377c609ea1c774b1bf3869",
    (0, 1): "c4f983b78684b708086a9e8098902433c8ab263bb35ecf72cc28ab0ff978e897",
    (0, 2): "4267fcb73ccc0a1a694942664437df3f713f57b16ad7a6f3240ed174b462dafa",
}
LOOK_FIELDS = {"sun_elevation_deg", "colour_temperature_k", "noise_sigma", "overcast", "visibility_m", "variety"}


def _frame(seed: int, sequence: int, *, variety: bool = False, config: SceneConfig | None = None,
           camera: str = "front") -> SynthFrame:
    (step,) = render_sequence(seed=seed, sequence=sequence, num_frames=1, width=SIZE[0], height=SIZE[1],
                              cameras=(camera,), variety=variety, config=config)
    return step[camera]


def _digest(frame: SynthFrame) -> str:
    h = hashlib.sha256()
    for array in (frame.image, frame.semantic, frame.instance):
        h.update(array.tobytes())
    return h.hexdigest()


def _first(seed: int, want: Callable[[Variety], object], limit: int = 40) -> tuple[int, SceneConfig]:
    for sequence in range(limit):
        cfg = describe_sequence(seed, sequence, variety=True)
        if want(cfg.variety):
            return sequence, cfg
    raise AssertionError("no such sequence")


def _assert_labels_from_geometry(frame: SynthFrame) -> None:
    """Every pixel's instance value agrees with its class; the object list matches the instance image."""
    inst = frame.instance.astype(np.int64)
    label_of_pixel = np.where(inst >= 1000, inst // 1000, inst)
    np.testing.assert_array_equal(label_of_pixel, labels.train_ids_to_label_ids(frame.semantic))
    counts = np.bincount(inst.ravel(), minlength=65536)
    for obj in frame.objects:
        assert counts[obj.instance_id] == obj.visible_px
        assert (frame.semantic[frame.instance == obj.instance_id] == obj.train_id).all()


@pytest.mark.parametrize(("seed", "sequence"), sorted(PRE_VARIETY_SHA256))
def test_without_variety_frames_are_byte_identical_to_before(seed: int, sequence: int) -> None:
    assert describe_sequence(seed, sequence).variety is None
    assert _digest(_frame(seed, sequence)) == PRE_VARIETY_SHA256[(seed, sequence)]


def test_variety_draws_only_from_its_own_stream() -> None:
    configs = [describe_sequence(VARIETY_SEED, q, variety=True) for q in range(200)]
    for q, cfg in enumerate(configs[:40]):
        base = describe_sequence(VARIETY_SEED, q)
        for f in dataclasses.fields(SceneConfig):
            if f.name not in LOOK_FIELDS:
                assert getattr(cfg, f.name) == getattr(base, f.name), f.name
        assert cfg == describe_sequence(VARIETY_SEED, q, variety=True)
    extras = [c.variety for c in configs]
    assert {v.lighting for v in extras} == set(LIGHTINGS)
    assert 0.1 < np.mean([v.rain for v in extras]) < 0.45
    assert 0.3 < np.mean([v.motorcycle_density > 0 for v in extras]) < 0.9
    assert not any(c.variety.crosswalks for c in configs if c.environment == "rural")
    assert any(c.variety.crosswalks for c in configs if c.environment == "urban")
    night = [c for c in configs if c.variety.lighting == "night"]
    assert all(c.sun_elevation_deg < 0 and c.variety.light_level < 0.35 and c.variety.lamp_gain > 1 for c in night)


def test_motorcycles_with_riders_ride_in_the_traffic_lanes() -> None:
    found = set()
    for sequence in range(16):
        cfg = describe_sequence(VARIETY_SEED, sequence, variety=True)
        if not cfg.variety.motorcycle_density:
            continue
        world = World(VARIETY_SEED, sequence, cfg, 1.0)
        speeds = lane_speeds(cfg, world.ego, VARIETY_SEED, sequence)
        lo, hi = world.xs.lanes_right, world.xs.lanes_left
        moving = [v for v in world.agents.vehicles if v.speed != 0.0]
        for m in world.agents.motorcycles:
            assert m.speed in speeds and lo < m.d < hi  # a lane's traffic speed, inside the carriageway
            assert m.k_rider != m.k_moto
            lane = int((m.d - lo) // cfg.lane_width_m)
            for v in moving:  # same lane, same speed: the gap it was placed in stays free
                if int((v.d - lo) // cfg.lane_width_m) == lane:
                    assert abs(v.s0 - m.s0) >= 0.5 * (v.length + m.length)
        frame = _frame(VARIETY_SEED, sequence, variety=True)
        _assert_labels_from_geometry(frame)
        motos = {o.instance_id % 1000 for o in frame.objects if o.train_id == MOTO}
        riders = {o.instance_id % 1000 for o in frame.objects if o.train_id == RIDER}
        found |= {k for k in motos if k - 1 in riders}  # rider k, its motorcycle k + 1: two instances
        # motorcycle pixels exactly where motorcycle instance ids are
        np.testing.assert_array_equal(frame.semantic == MOTO, frame.instance // 1000 == MOTO_LABEL_ID)
    assert found, "no motorcycle with a visible rider in 16 sequences"


def test_crosswalks_are_white_road_and_leave_the_lane_markings() -> None:
    sequence, cfg = _first(VARIETY_SEED, lambda v: v.crosswalks and v.lighting == "day" and not v.rain)
    ahead = dataclasses.replace(cfg, variety=dataclasses.replace(cfg.variety, crosswalks=(6.0,)))
    bare = dataclasses.replace(cfg, variety=dataclasses.replace(cfg.variety, crosswalks=()))
    with_cw, without = _frame(VARIETY_SEED, sequence, config=ahead), _frame(VARIETY_SEED, sequence, config=bare)
    # the labels do not see the paint at all
    np.testing.assert_array_equal(with_cw.semantic, without.semantic)
    np.testing.assert_array_equal(with_cw.instance, without.instance)
    np.testing.assert_array_equal(with_cw.lane, without.lane)
    grey = lambda f: f.image.astype(np.int32).sum(axis=2)  # noqa: E731
    painted = grey(with_cw) - grey(without) > 150
    assert painted.sum() > 300
    assert (with_cw.semantic[painted] == labels.ROAD).mean() > 0.95
    _assert_labels_from_geometry(with_cw)


def test_night_is_much_darker_and_vehicle_lamps_glow() -> None:
    sequence, cfg = _first(VARIETY_SEED, lambda v: v.lighting == "night")
    night, day = _frame(VARIETY_SEED, sequence, variety=True), _frame(VARIETY_SEED, sequence)
    assert cfg.noise_sigma > describe_sequence(VARIETY_SEED, sequence).noise_sigma
    assert night.image.mean() < 0.4 * day.image.mean()
    vehicles = np.isin(night.semantic, VEHICLES)
    assert (night.image.max(axis=2)[vehicles] > 200).sum() > 5  # lamps, still labelled as their vehicle
    _assert_labels_from_geometry(night)
    sequence, _ = _first(VARIETY_SEED, lambda v: v.lighting == "dusk")
    assert _frame(VARIETY_SEED, sequence, variety=True).image.mean() < 0.8 * _frame(VARIETY_SEED, sequence).image.mean()


def test_rain_adds_streaks_to_the_image_only() -> None:
    sequence, cfg = _first(VARIETY_SEED, lambda v: v.rain and v.lighting == "day")
    assert cfg.visibility_m <= 450.0 and cfg.overcast >= 0.85
    dry_air = dataclasses.replace(cfg, variety=dataclasses.replace(cfg.variety, rain_streaks=0.0))
    rain, no_streaks = _frame(VARIETY_SEED, sequence, config=cfg), _frame(VARIETY_SEED, sequence, config=dry_air)
    np.testing.assert_array_equal(rain.semantic, no_streaks.semantic)
    np.testing.assert_array_equal(rain.instance, no_streaks.instance)
    diff = rain.image.astype(np.int32).sum(axis=2) - no_streaks.image.astype(np.int32).sum(axis=2)
    changed = np.abs(diff) > 15
    assert 0.003 < changed.mean() < 0.3  # thin streaks, not a veil
    assert (diff[changed] > 0).mean() > 0.9  # light streaks
    # wet roads are darker than the same road dry
    dry = _frame(VARIETY_SEED, sequence)
    road = (rain.semantic == labels.ROAD) & (dry.semantic == labels.ROAD) & ~changed
    assert rain.image[road].mean() < 0.8 * dry.image[road].mean()


def test_cli_variety_writes_a_loadable_synthetic_folder(tmp_path: Path) -> None:
    from seg_perception.training.data import parse_data_spec

    out = tmp_path / "synth"
    proc = subprocess.run([sys.executable, "-m", "seg_perception.cli", "synth", "--out", str(out), "--sequences", "2",
                           "--frames", "2", "--size", "128x64", "--seed", str(VARIETY_SEED), "--variety"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "synth_manifest_train.json").read_text())
    assert manifest["variety"] is True
    assert [s["variety"]["lighting"] for s in manifest["scenes"]] == [
        describe_sequence(VARIETY_SEED, q, variety=True).variety.lighting for q in range(2)]
    refs = parse_data_spec(f"synthetic:{out}:train")
    assert len(refs) == 2 * 2
    loaded = {(r.sample.stem): r.load() for r in refs}
    (step,) = render_sequence(seed=VARIETY_SEED, sequence=1, num_frames=1, width=128, height=64, variety=True)
    arrays = next(a for stem, a in loaded.items() if "_000001_000000" in stem)
    np.testing.assert_array_equal(arrays["image"], step["front"].image)
    np.testing.assert_array_equal(arrays["train_ids"], step["front"].semantic)
    # without the option the manifest has no trace of it (it is what it was before)
    plain = write_synthetic(tmp_path / "plain", fmt="cityscapes", sequences=1, frames=1, width=64, height=32,
                            seed=VARIETY_SEED, show_progress=False)
    manifest = json.loads(plain.read_text())
    assert "variety" not in manifest and "variety" not in manifest["scenes"][0]
