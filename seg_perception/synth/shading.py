"""Appearance: sun lighting, material colours, world-space textures, sky, haze and camera effects."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np

from seg_perception.datasets.labels import train_id
from seg_perception.synth.camera import CameraModel, CameraPose
from seg_perception.synth.config import STREAM_LOOK, SceneConfig, stream
from seg_perception.synth.geometry import Material

FINE_TEXEL_M = 0.04  # asphalt grain
COARSE_TEXEL_M = 0.7  # patches, wear, lawn variation
CLOUD_TEXEL_M = 40.0
CLOUD_ALTITUDE_M = 1500.0
TILE = 256

RGB = tuple[float, float, float]


@lru_cache(maxsize=8)
def noise_tile(seed: int, beta: float = 1.6, size: int = TILE) -> np.ndarray:
    """Periodic fractal noise (power spectrum ~ 1/f^beta), zero mean, unit std; wraps seamlessly."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** (beta / 2.0)
    spectrum[0, 0] = 0.0
    tile = np.fft.irfft2(spectrum, s=(size, size))
    return ((tile - tile.mean()) / tile.std()).astype(np.float32)


def _tint(kelvin: float) -> np.ndarray:
    """Per-channel gain of a light of this colour temperature, relative to 6500 K (mean 1)."""
    t = (kelvin - 6500.0) / 3000.0
    gain = np.array([1.0 - 0.16 * t, 1.0 - 0.03 * t, 1.0 + 0.2 * t])
    return gain / gain.mean()


def _jitter(rng: np.random.Generator, rgb: RGB, amount: float) -> RGB:
    c = np.clip(
        np.asarray(rgb) * (1.0 + rng.uniform(-amount, amount)) + rng.uniform(-amount, amount, 3) * 0.3,
        0.0,
        1.0,
    )
    return (float(c[0]), float(c[1]), float(c[2]))


@dataclass(frozen=True)
class Look:
    """Per-sequence lighting and ground materials."""

    sun: np.ndarray  # unit vector towards the sun
    ambient: float
    direct: float
    gain: np.ndarray  # exposure * colour temperature, per channel
    zenith: np.ndarray
    horizon: np.ndarray
    cloud_rgb: np.ndarray
    cloud_cover: float
    visibility_m: float
    ground: dict[str, Material]
    noise_sigma: float
    blur_sigma: float
    # opt-in variety (defaults: the pre-variety look)
    lamp_gain: float = 1.0  # vehicle lamps' brightness factor (night: they glow)
    rain_streaks: float = 0.0  # streaks per 1000 pixels per frame
    rain_angle: float = 0.0  # streak slant from vertical, radians

    def light(self, normal: np.ndarray | tuple[float, float, float]) -> float:
        """Lambert shading factor of a surface with this (unit) normal; 1.0 is the flat ground."""
        n = np.asarray(normal, dtype=np.float64)
        return (self.ambient + self.direct * max(0.0, float(n @ self.sun))) / (
            self.ambient + self.direct * self.sun[2]
        )

    def light_many(self, normals: np.ndarray) -> np.ndarray:
        """Vectorised ``light`` for (n, 3) normals."""
        lam = np.maximum(normals @ self.sun, 0.0)
        return (self.ambient + self.direct * lam) / (self.ambient + self.direct * self.sun[2])

    def lit(self, rgb: RGB, normal: np.ndarray | tuple[float, float, float], tid: int, instance: int = 0,
            texture: float = 0.04) -> Material:
        f = self.light(normal)
        return Material((rgb[0] * f, rgb[1] * f, rgb[2] * f), tid, instance, texture)


def make_look(cfg: SceneConfig) -> Look:
    rng = stream(cfg.seed, cfg.sequence, STREAM_LOOK)
    el, az = math.radians(cfg.sun_elevation_deg), math.radians(cfg.sun_azimuth_deg)
    sun = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    oc = cfg.overcast
    direct = 0.9 * (1.0 - oc) ** 1.5
    ambient = 0.45 + 0.35 * oc
    gain = cfg.exposure * _tint(cfg.colour_temperature_k)
    clear_zenith, clear_horizon = np.array([0.22, 0.42, 0.78]), np.array([0.68, 0.78, 0.9])
    grey = np.array([0.72, 0.74, 0.77]) * rng.uniform(0.85, 1.05)
    zenith = clear_zenith * (1 - oc) + grey * 0.9 * oc
    horizon = clear_horizon * (1 - oc) + grey * oc
    if cfg.sun_elevation_deg < 20:  # low sun: warmer horizon
        horizon = horizon * np.array([1.08, 1.0, 0.9])
    asphalt = float(rng.uniform(0.26, 0.42))
    grasses = [(0.3, 0.42, 0.17), (0.36, 0.45, 0.2), (0.45, 0.43, 0.27), (0.28, 0.36, 0.2)]
    pavings = [(0.62, 0.6, 0.57), (0.55, 0.53, 0.52), (0.6, 0.45, 0.4), (0.7, 0.68, 0.64)]
    grass, paving = grasses[int(rng.integers(4))], pavings[int(rng.integers(4))]
    road_tid, side_tid = train_id("road"), train_id("sidewalk")
    lane_tid, terr_tid = train_id("lane_marking"), train_id("terrain")

    def mat(rgb: RGB, tid: int, tex: float, jitter: float = 0.05) -> Material:
        c = _jitter(rng, rgb, jitter)
        return Material(c, tid, 0, tex)

    white = float(rng.uniform(0.78, 0.95))
    ground = {
        "road": mat((asphalt, asphalt, asphalt * 1.04), road_tid, 0.22, 0.03),
        "bike_lane": mat([(0.55, 0.27, 0.24), (0.33, 0.5, 0.33)][int(rng.integers(2))], road_tid, 0.18),
        "marking": mat((white, white, white * 0.98), lane_tid, 0.12, 0.02),
        "marking_yellow": mat((0.86, 0.7, 0.22), lane_tid, 0.12, 0.03),
        "sidewalk": mat(paving, side_tid, 0.2),
        "curb_top": mat((0.72, 0.71, 0.69), side_tid, 0.12),
        "gravel": mat((0.5, 0.46, 0.4), terr_tid, 0.35),
        "terrain": mat(grass, terr_tid, 0.45, 0.08),
    }
    curb = ground["curb_top"].rgb
    ground["curb_face"] = Material(tuple(c * 0.78 for c in curb), side_tid, 0, 0.1)  # type: ignore[arg-type]
    look = Look(sun=sun, ambient=ambient, direct=direct, gain=gain.astype(np.float32),
                zenith=zenith.astype(np.float32), horizon=horizon.astype(np.float32),
                cloud_rgb=(np.array([0.93, 0.93, 0.95]) * (1.0 - 0.35 * oc)).astype(np.float32),
                cloud_cover=float(np.clip(rng.uniform(0.0, 0.6) + 0.4 * oc, 0.0, 1.0)),
                visibility_m=cfg.visibility_m, ground=ground, noise_sigma=cfg.noise_sigma,
                blur_sigma=cfg.blur_sigma_px)
    return look if cfg.variety is None else _vary_look(look, cfg)


NIGHT_ZENITH, NIGHT_HORIZON = np.array([0.01, 0.015, 0.04]), np.array([0.06, 0.065, 0.1])
CITY_GLOW = np.array([0.2, 0.14, 0.09])  # sodium light scattered by the urban sky
WET = {"road": 0.6, "bike_lane": 0.7, "marking": 0.9, "marking_yellow": 0.9, "sidewalk": 0.8,
       "curb_top": 0.82, "curb_face": 0.8, "gravel": 0.8, "terrain": 0.85}  # wet surfaces look darker


def _vary_look(look: Look, cfg: SceneConfig) -> Look:
    """The opt-in variety's look: dusk/night darken the exposure (the shading is relative to the flat
    ground, so the overall light level goes into the gain), rain darkens the wet ground, crosswalks get
    their paint. Uses no random numbers: everything random is in ``cfg.variety``."""
    v = cfg.variety
    assert v is not None
    ground = dict(look.ground)
    if v.crosswalks:  # zebra paint, labelled road (BDD100K's lane class excludes crosswalks)
        ground["crosswalk"] = Material(ground["marking"].rgb, train_id("road"), 0, 0.12)
    if v.rain:
        ground = {k: Material(tuple(c * WET.get(k, 0.6) for c in m.rgb), m.train_id, m.instance,  # type: ignore[arg-type]
                              m.texture * 0.7) for k, m in ground.items()}
    zenith, horizon, clouds = look.zenith, look.horizon, look.cloud_rgb
    ambient, direct = look.ambient, look.direct
    if v.lighting == "dusk":  # the sun at the horizon: weak direct light, orange horizon
        direct *= 0.3
        horizon = horizon * np.array([1.1, 0.8, 0.6], np.float32)
        zenith = zenith * np.array([0.6, 0.6, 0.75], np.float32)
    elif v.lighting == "night":  # no sun: flat, dim light; a black sky with a glow over cities
        direct, ambient = 0.0, ambient * v.light_level
        glow = CITY_GLOW if cfg.environment == "urban" else np.zeros(3)
        zenith = (NIGHT_ZENITH + 0.3 * glow).astype(np.float32)
        horizon = (NIGHT_HORIZON + glow).astype(np.float32)
        clouds = (0.12 * look.cloud_rgb + 0.5 * glow).astype(np.float32)
    return replace(look, ground=ground, zenith=zenith, horizon=horizon, cloud_rgb=clouds, ambient=ambient,
                   direct=direct, gain=(look.gain * v.light_level).astype(np.float32), lamp_gain=v.lamp_gain,
                   rain_streaks=v.rain_streaks, rain_angle=math.radians(v.rain_angle_deg))


def rain_streaks(colour: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Thin, slanted, light streaks of falling rain over an (H, W, 3) float image; image only, no labels.
    Near drops are long and faint, far ones short: two layers."""
    h, w = colour.shape[:2]
    n = int(rng.poisson(look.rain_streaks * h * w / 1000.0))
    if n == 0:
        return colour
    mask = np.zeros((h, w), np.float32)
    scale = h / 512.0
    layers = ((0.7, (6, 18), 1, 0.25), (0.3, (20, 45), max(1, round(2 * scale)), 0.18))
    for share, (lo, hi), thick, alpha in layers:
        m = max(1, int(n * share))
        start = rng.uniform((-0.1 * w, -0.1 * h), (1.1 * w, h), size=(m, 2))
        length = rng.uniform(lo, hi, size=m) * max(scale, 0.3)
        angle = look.rain_angle + rng.normal(0.0, 0.05, size=m)
        end = start + np.stack([np.sin(angle), np.cos(angle)], axis=1) * length[:, None]
        segs = np.round(np.stack([start, end], axis=1) * 16).astype(np.int32)
        layer = np.zeros((h, w), np.float32)
        cv2.polylines(layer, list(segs), False, alpha, thick, cv2.LINE_8, 4)
        np.maximum(mask, layer, out=mask)
    return colour + (np.float32(0.8) - colour) * mask[..., None]  # light grey, like drops catching the sky


def _warp_plane(tile: np.ndarray, pose: CameraPose, plane_z: float, texel: float, rows: tuple[int, int],
                origin: np.ndarray, step: int = 1) -> np.ndarray:
    """Sample a periodic texture laid on a horizontal plane into image rows [r0, r1), every ``step``-th
    pixel (the result is ``step`` times smaller; callers upsample smooth textures)."""
    m = pose.model
    r0, r1 = rows
    period = texel * tile.shape[0]
    o = np.floor(origin / period) * period  # keeps texture coordinates small without moving the pattern
    scale = np.array([[1.0 / texel, 0.0, -o[0] / texel], [0.0, 1.0 / texel, -o[1] / texel], [0.0, 0.0, 1.0]])
    c = (step - 1) / 2.0  # pixel centres of the coarse grid in full-resolution pixels
    shift = np.array([[step, 0.0, c], [0.0, step, r0 + c], [0.0, 0.0, 1.0]])
    h = scale @ pose.plane_homography(plane_z) @ shift
    size = (-(-m.width // step), -(-(r1 - r0) // step))
    return cv2.warpPerspective(tile, h, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_WRAP)


def ground_texture(pose: CameraPose, first_row: int, depth_rows: np.ndarray) -> np.ndarray:
    """(H, W) float32 noise fixed to the ground plane, faded out where it would alias. Sampled at half
    resolution (the camera blur hides the difference) and upsampled."""
    m = pose.model
    out = np.zeros((m.height, m.width), np.float32)
    if first_row >= m.height:
        return out
    rows = (first_row, m.height)
    z = depth_rows[first_row:, None]
    fine = _warp_plane(noise_tile(101, 1.2), pose, 0.0, FINE_TEXEL_M, rows, pose.position[:2], step=2)
    coarse = _warp_plane(noise_tile(202, 1.8), pose, 0.0, COARSE_TEXEL_M, rows, pose.position[:2], step=2)
    size = (m.width, m.height - first_row)
    fine = cv2.resize(fine, (fine.shape[1] * 2, fine.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    coarse = cv2.resize(coarse, (coarse.shape[1] * 2, coarse.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    # full strength while a texel spans >= 1.5 px, fading as it shrinks (it would alias into noise)
    a_fine = (0.35 * np.clip(FINE_TEXEL_M * m.fy / (1.5 * z), 0.0, 1.0)).astype(np.float32)
    a_coarse = (0.7 * np.clip(COARSE_TEXEL_M * m.fy / (1.5 * z), 0.0, 1.0)).astype(np.float32)
    out[first_row:] = fine[:size[1], :size[0]] * a_fine + coarse[:size[1], :size[0]] * a_coarse
    return out


def sky_image(look: Look, pose: CameraPose, last_row: int) -> np.ndarray:
    """(last_row, W, 3) sky: gradient by elevation plus clouds on a plane high above the ground.
    Computed at quarter resolution and upsampled: it is smooth."""
    m = pose.model
    scale = 4
    w, h = -(-m.width // scale), -(-last_row // scale)
    small = CameraPose(CameraModel(m.name, w, h, m.fx / scale, m.fy / scale, (m.cx + 0.5) / scale - 0.5,
                                   (m.cy + 0.5) / scale - 0.5, m.mount_height_m, m.yaw_deg, m.pitch_deg),
                       pose.position, pose.rotation, pose.heading)
    horizon = small.model.horizon_row()
    v = np.arange(h, dtype=np.float32)
    elev = np.arctan(np.maximum(horizon - v, 0.0) / small.model.fy)
    t = (1.0 - np.exp(-elev / 0.35))[:, None]
    grad = look.horizon[None, :] * (1.0 - t) + look.zenith[None, :] * t  # (rows, 3)
    sky = np.broadcast_to(grad[:, None, :], (h, w, 3)).copy()
    if look.cloud_cover > 0.02:
        clouds = _warp_plane(
            noise_tile(303, 2.2), small, CLOUD_ALTITUDE_M, CLOUD_TEXEL_M, (0, h), pose.position[:2]
        )
        threshold = 1.2 - 2.0 * look.cloud_cover
        fade = np.clip(elev / 0.08, 0.0, 1.0)[:, None]  # clouds alias near the horizon: fade them into haze
        cover = np.clip((clouds - threshold) * 0.8, 0.0, 0.95) * fade
        sky += (look.cloud_rgb[None, None, :] - sky) * cover[..., None]
    big = cv2.resize(sky, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
    return big[:last_row, :m.width]


@lru_cache(maxsize=8)
def vignette(width: int, height: int, strength: float = 0.22) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((x - (width - 1) / 2) / (width / 2)) ** 2 + ((y - (height - 1) / 2) / (width / 2)) ** 2
    return (1.0 - strength * r2 / 1.25)[..., None].astype(np.float32)


@lru_cache(maxsize=4)
def sensor_noise_bank(width: int, height: int) -> np.ndarray:
    """Unit gaussian noise a little larger than the image; frames take shifted crops (cheap, still random)."""
    rng = np.random.default_rng(4242)
    return rng.standard_normal((height + 32, width + 32, 3)).astype(np.float32)


@lru_cache(maxsize=16)
def _gain_image(width: int, height: int, gain: tuple[float, float, float]) -> np.ndarray:
    return np.ascontiguousarray(vignette(width, height) * np.array(gain, np.float32)[None, None, :] * 255.0)


def camera_effects(rgb: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Exposure, vignetting, lens blur and sensor noise; float RGB (0..1) -> uint8."""
    h, w = rgb.shape[:2]
    img = cv2.multiply(rgb, _gain_image(w, h, tuple(float(g) for g in look.gain)))
    if look.blur_sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), look.blur_sigma)
    oy, ox = (int(v) for v in rng.integers(0, 32, size=2))
    img = cv2.scaleAdd(
        np.ascontiguousarray(sensor_noise_bank(w, h)[oy : oy + h, ox : ox + w]), look.noise_sigma, img
    )
    return cv2.convertScaleAbs(cv2.max(img, 0.0))
