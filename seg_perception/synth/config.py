"""What one synthetic sequence contains: road layout, traffic, lighting. Sampled from the seed.

``describe_sequence(seed, sequence)`` is the single source of the world parameters, so tests and users can
see (and override with ``dataclasses.replace``) what a sequence renders.

``describe_sequence(seed, sequence, variety=True)`` opts in to harder scenes (see ``Variety``): motorcycles
with riders in the traffic lanes, zebra crosswalks, dusk and night, rain. It is opt-in and draws only from
its own random stream (``STREAM_VARIETY``), so without it every sequence -- and with it the recorded
held-out splits such as seed 2000 -- renders byte for byte as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

ENVIRONMENTS = ("urban", "suburban", "rural")
ROAD_START_M = -700.0  # the road exists from here (rear cameras look back); the ego starts at s = 0
ROAD_LENGTH_M = 4700.0  # sampled layout; beyond it the road continues straight
CURVED_ABOVE = 1.0 / 1000.0  # |curvature| (1/m) from which a road counts as curved

# Random-stream tags: each part of the world draws from its own generator, so changing one part (or
# rendering more frames) does not reshuffle the others.
STREAM_CONFIG, STREAM_ROAD, STREAM_STATIC, STREAM_AGENTS, STREAM_LOOK = range(5)
STREAM_VARIETY = 5  # opt-in variety only; appended so the tags above keep their values

LIGHTINGS = ("day", "dusk", "night")
# Variety probabilities, per sequence (each feature is drawn independently of the others).
LIGHTING_P = (0.55, 0.2, 0.25)
RAIN_P = 0.25
MOTORCYCLE_P = {"urban": 0.7, "suburban": 0.6, "rural": 0.4}
CROSSWALK_P = {"urban": 0.8, "suburban": 0.25, "rural": 0.0}


def stream(seed: int, sequence: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng((seed, sequence, *tags))


@dataclass(frozen=True)
class Variety:
    """Opt-in extras of one sequence (``describe_sequence(..., variety=True)``).

    Per sequence: lighting is day / dusk / night with probabilities ``LIGHTING_P`` (0.55 / 0.2 / 0.25), rain
    ``RAIN_P`` (0.25), motorcycles ``MOTORCYCLE_P`` (0.7 urban, 0.6 suburban, 0.4 rural) and zebra crosswalks
    ``CROSSWALK_P`` (0.8 urban, 0.25 suburban, never rural). Dusk and night also rewrite the sun elevation,
    colour temperature and (higher) noise fields of the ``SceneConfig`` and darken the exposure by
    ``light_level``; rain rewrites overcast and visibility. Vehicle lamps glow at dusk and night.
    Intersections are not modelled: crosswalks cross the one road there is (zebra bars painted white and
    labelled ``road``, under the lane markings, which stay as they were).
    """

    lighting: str  # "day" | "dusk" | "night"
    light_level: float  # scene illumination relative to daylight (scales the exposure); 1 by day
    lamp_gain: float  # vehicle head/tail lights are boosted by this (they glow at night); 1 by day
    rain: bool  # wet, darker ground and a grey sky
    rain_streaks: float  # rain streaks per 1000 image pixels per frame; 0 when dry
    rain_angle_deg: float  # slant of the streaks from vertical (wind)
    motorcycle_density: float  # per 100 m per traffic lane; 0: none
    crosswalks: tuple[float, ...]  # arc length of each zebra crossing's start (its bars run along the road)
    crosswalk_length_m: float  # bar length along the road
    crosswalk_bar_m: float  # bar width across the road
    crosswalk_gap_m: float  # gap between bars


@dataclass(frozen=True)
class SceneConfig:
    """World parameters of one (seed, sequence). Distances in metres, speeds in m/s, angles in degrees."""

    seed: int
    sequence: int
    environment: str  # "urban" | "suburban" | "rural"
    # carriageway
    num_lanes: int  # 1-4
    oncoming_lanes: int  # lanes on the left driving towards the ego (0 = one-way road)
    lane_width_m: float
    ego_lane: int  # 0 = rightmost lane
    road_segments: tuple[tuple[float, float], ...]  # (length, curvature 1/m, + = left) from ROAD_START_M
    # markings
    marking_width_m: float
    lane_line: str  # between lanes of one direction: "dashed" | "solid"
    centre_line: str  # between the directions: "dashed" | "solid" | "double"
    centre_line_yellow: bool
    edge_lines: bool
    dash_length_m: float
    dash_gap_m: float
    # road side
    bike_lane: bool  # 1.5 m cycle lane at the right edge, behind a solid line
    parking_right: bool
    parking_left: bool
    shoulder_m: float  # road surface outside the outermost line
    curb_height_m: float  # 0: no curb
    sidewalk_width_m: float  # 0: no sidewalk
    verge_width_m: float  # terrain between sidewalk and buildings
    building_setback_m: float
    # traffic
    ego_speed_mps: float
    ego_speed_variation: float  # relative amplitude of the slow speed oscillation
    ego_sway_m: float  # amplitude of the lateral sway within the lane
    car_density: float  # moving vehicles per 100 m per lane
    truck_fraction: float
    bus_fraction: float
    parked_density: float  # parked cars per 100 m of parking lane
    pedestrian_density: float  # per 100 m per sidewalk
    crossing_rate: float  # pedestrians crossing the road per 100 m
    cyclist_density: float  # per 100 m
    # look
    sun_elevation_deg: float
    sun_azimuth_deg: float
    overcast: float  # 0 clear .. 1 fully overcast
    exposure: float
    colour_temperature_k: float
    visibility_m: float  # haze: distance at which contrast drops to 1/e
    noise_sigma: float  # sensor noise, in 8-bit grey levels
    blur_sigma_px: float
    camera_height_m: float
    camera_pitch_deg: float
    variety: Variety | None = None  # opt-in extras; None renders exactly the pre-variety world

    @property
    def lane_directions(self) -> tuple[int, ...]:
        """+1 (with the ego) or -1 (oncoming) for each lane, rightmost first."""
        forward = self.num_lanes - self.oncoming_lanes
        return (1,) * forward + (-1,) * self.oncoming_lanes

    @property
    def max_curvature(self) -> float:
        return max(abs(k) for _, k in self.road_segments)

    def curvature_between(self, s0: float, s1: float) -> float:
        """Largest |curvature| of the layout pieces overlapping [s0, s1] (before smoothing)."""
        start, worst = ROAD_START_M, 0.0
        for length, k in self.road_segments:
            if start < s1 and start + length > s0:
                worst = max(worst, abs(k))
            start += length
        return worst

    @property
    def curved(self) -> bool:
        """Whether the first few hundred metres the ego sees bend noticeably."""
        return self.curvature_between(-50.0, 400.0) > CURVED_ABOVE

    @property
    def cycle_place(self) -> str:
        """Where cyclists ride: "bike_lane", "shoulder", "sidewalk" or "none"."""
        if self.bike_lane:
            return "bike_lane"
        if self.shoulder_m >= 1.0:
            return "shoulder"
        if self.sidewalk_width_m >= 2.8:
            return "sidewalk"
        return "none"


def _road_segments(rng: np.random.Generator, style: str) -> tuple[tuple[float, float], ...]:
    """Alternating straights and constant-curvature arcs; turns are limited to ~110 deg each."""
    segments: list[tuple[float, float]] = []
    total = 0.0
    straight_next = bool(rng.random() < 0.5)
    while total < ROAD_LENGTH_M:
        if straight_next or style == "straight":
            length = float(rng.uniform(30.0, 220.0))
            k = 0.0
        else:
            radius = float(rng.uniform(70.0, 450.0) if style == "curvy" else rng.uniform(450.0, 1500.0))
            length = float(min(rng.uniform(40.0, 180.0), 1.9 * radius))
            k = float(rng.choice([-1.0, 1.0])) / radius
        segments.append((round(length, 3), k))
        total += length
        straight_next = not straight_next
    return tuple(segments)


def describe_sequence(seed: int, sequence: int, *, variety: bool = False) -> SceneConfig:
    """The world parameters of ``(seed, sequence)``; deterministic.

    ``variety=True`` adds the opt-in extras of ``Variety``, drawn from their own stream: all the other draws
    are unchanged, so the default (and every dataset recorded with it) stays as it was.
    """
    cfg = _base_config(seed, sequence)
    return _with_variety(cfg) if variety else cfg


def _base_config(seed: int, sequence: int) -> SceneConfig:
    rng = stream(seed, sequence, STREAM_CONFIG)
    env = str(rng.choice(ENVIRONMENTS, p=[0.5, 0.3, 0.2]))
    urban, rural = env == "urban", env == "rural"

    lane_weights = {"urban": [0.2, 0.35, 0.2, 0.25], "suburban": [0.3, 0.55, 0.15, 0.0],
                    "rural": [0.3, 0.45, 0.05, 0.2]}[env]
    num_lanes = int(rng.choice([1, 2, 3, 4], p=lane_weights))
    two_way = num_lanes > 1 and rng.random() < 0.8
    oncoming = {1: 0, 2: 1, 3: 1, 4: 2}[num_lanes] if two_way else 0
    forward = num_lanes - oncoming
    style = str(rng.choice(["straight", "gentle", "curvy"], p=[0.3, 0.25, 0.45]))

    sidewalk = 0.0 if rural else float(rng.uniform(2.0, 4.5) if urban else rng.uniform(1.5, 2.6))
    bike_lane = bool(not rural and rng.random() < (0.35 if urban else 0.2))
    shoulder = float({"urban": rng.uniform(0.15, 0.5), "suburban": rng.uniform(0.3, 1.4),
                      "rural": rng.uniform(0.6, 1.8)}[env])
    parking = urban and rng.random() < 0.55
    dash = [(3.0, 6.0), (3.0, 9.0), (4.5, 7.5), (6.0, 12.0)][int(rng.integers(4))]

    ego_speed = float({"urban": rng.uniform(7.0, 12.0), "suburban": rng.uniform(9.0, 14.0),
                       "rural": rng.uniform(13.0, 22.0)}[env])
    sun_elevation = float(rng.uniform(8.0, 65.0))
    return SceneConfig(
        seed=seed,
        sequence=sequence,
        environment=env,
        num_lanes=num_lanes,
        oncoming_lanes=oncoming,
        lane_width_m=float(rng.uniform(2.9, 3.7)),
        ego_lane=int(rng.integers(forward)),
        road_segments=_road_segments(stream(seed, sequence, STREAM_ROAD), style),
        marking_width_m=float(rng.uniform(0.11, 0.16)),
        lane_line="dashed" if rng.random() < 0.85 else "solid",
        centre_line=str(rng.choice(["dashed", "solid", "double"], p=[0.35, 0.35, 0.3])),
        centre_line_yellow=bool(rng.random() < 0.25),
        edge_lines=bool(rng.random() < (0.9 if rural else 0.65)),
        dash_length_m=dash[0],
        dash_gap_m=dash[1],
        bike_lane=bike_lane,
        parking_right=parking,
        parking_left=bool(parking and oncoming and rng.random() < 0.6),
        shoulder_m=shoulder,
        curb_height_m=0.0 if rural else float(rng.uniform(0.08, 0.16)),
        sidewalk_width_m=sidewalk,
        verge_width_m=float(rng.uniform(0.0, 1.5) if urban else rng.uniform(2.0, 8.0)),
        building_setback_m=float(rng.uniform(0.0, 2.0) if urban else rng.uniform(3.0, 12.0)),
        ego_speed_mps=ego_speed,
        ego_speed_variation=float(rng.uniform(0.0, 0.15)),
        ego_sway_m=float(rng.uniform(0.03, 0.25)),
        car_density=float(
            {
                "urban": rng.uniform(1.0, 4.0),
                "suburban": rng.uniform(0.5, 2.0),
                "rural": rng.uniform(0.3, 1.5),
            }[env]
        ),
        truck_fraction=float(rng.uniform(0.05, 0.2)),
        bus_fraction=float(rng.uniform(0.04, 0.15) if urban else rng.uniform(0.0, 0.04)),
        parked_density=float(rng.uniform(3.0, 10.0)) if parking else 0.0,
        pedestrian_density=float(
            {"urban": rng.uniform(3.0, 12.0), "suburban": rng.uniform(0.5, 3.0), "rural": 0.0}[env]
        ),
        crossing_rate=float(rng.uniform(0.1, 0.5) if urban else rng.uniform(0.0, 0.1)) if not rural else 0.0,
        cyclist_density=float(rng.uniform(0.3, 1.5) if not rural else rng.uniform(0.0, 0.5)),
        sun_elevation_deg=sun_elevation,
        sun_azimuth_deg=float(rng.uniform(0.0, 360.0)),
        overcast=float(rng.beta(1.2, 1.8)),
        exposure=float(rng.uniform(0.85, 1.15)),
        colour_temperature_k=float(np.clip(rng.normal(4500.0 + 60.0 * sun_elevation, 600.0), 3500.0, 8000.0)),
        visibility_m=float(rng.uniform(350.0, 2500.0)),
        noise_sigma=float(rng.uniform(1.0, 5.0)),
        blur_sigma_px=float(rng.uniform(0.3, 1.0)),
        camera_height_m=float(rng.uniform(1.25, 1.65)),
        camera_pitch_deg=float(rng.uniform(0.5, 3.5)),
    )


def _with_variety(cfg: SceneConfig) -> SceneConfig:
    """Samples ``Variety`` from STREAM_VARIETY and adjusts the look fields it implies. Every value is drawn
    unconditionally and in a fixed order, so one feature's outcome does not reshuffle the others."""
    rng = stream(cfg.seed, cfg.sequence, STREAM_VARIETY)
    env = cfg.environment
    lighting = LIGHTINGS[int(rng.choice(len(LIGHTINGS), p=LIGHTING_P))]
    dusk_sun, night_sun = float(rng.uniform(-1.0, 6.0)), float(rng.uniform(-25.0, -8.0))
    dusk_level, night_level = float(rng.uniform(0.4, 0.65)), float(rng.uniform(0.16, 0.3))
    dusk_kelvin, night_kelvin = float(rng.uniform(3400.0, 4400.0)), float(rng.uniform(3200.0, 4200.0))
    night_noise = float(rng.uniform(5.0, 10.0))
    rain = bool(rng.random() < RAIN_P)
    rain_overcast, rain_visibility = float(rng.uniform(0.85, 1.0)), float(rng.uniform(120.0, 450.0))
    rain_streaks, rain_angle = float(rng.uniform(2.0, 6.0)), float(rng.normal(0.0, 12.0))
    motorcycles = bool(rng.random() < MOTORCYCLE_P[env])
    motorcycle_density = float(rng.uniform(0.3, 1.2))
    crosswalks = bool(rng.random() < CROSSWALK_P[env])
    gaps = rng.uniform(70.0, 260.0, size=int(ROAD_LENGTH_M // 70.0) + 1)
    first = ROAD_START_M + float(rng.uniform(0.0, 100.0))
    positions = first + np.concatenate([[0.0], np.cumsum(gaps)])
    bar, gap = float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.7))
    length = float(rng.uniform(2.5, 4.0))

    look: dict = {}
    if lighting == "dusk":
        look = {"sun_elevation_deg": dusk_sun, "colour_temperature_k": dusk_kelvin,
                "noise_sigma": cfg.noise_sigma + 0.5 * night_noise}
    elif lighting == "night":
        look = {"sun_elevation_deg": night_sun, "colour_temperature_k": night_kelvin,
                "noise_sigma": cfg.noise_sigma + night_noise}
    if rain:
        look |= {"overcast": rain_overcast, "visibility_m": min(cfg.visibility_m, rain_visibility)}
    level = {"day": 1.0, "dusk": dusk_level, "night": night_level}[lighting]
    if rain:
        level *= 0.75  # heavy cloud
    extra = Variety(
        lighting=lighting,
        light_level=level,
        lamp_gain=1.0 if lighting == "day" else 1.6 / level,  # lamps saturate despite the dark exposure
        rain=rain,
        rain_streaks=rain_streaks if rain else 0.0,
        rain_angle_deg=float(np.clip(rain_angle, -30.0, 30.0)),
        motorcycle_density=motorcycle_density if motorcycles else 0.0,
        crosswalks=tuple(round(float(p), 2) for p in positions if p < ROAD_START_M + ROAD_LENGTH_M)
        if crosswalks else (),
        crosswalk_length_m=length,
        crosswalk_bar_m=bar,
        crosswalk_gap_m=gap,
    )
    return replace(cfg, variety=extra, **look)
