"""Procedural textures for stuff regions and thing surfaces.

Each stuff texture fills a whole (H, W, 3) float canvas in 0..255; the caller
keeps the pixels of its region. Textures are what tell stuff classes apart, so
each class has its own pattern family (gradient + clouds, blades, waves, bricks,
speckles), with colour and scale jittered per image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

Texture = Callable[[np.random.Generator, int, int], np.ndarray]


def _jitter(rng: np.random.Generator, base: tuple[int, int, int], spread: float) -> np.ndarray:
    return np.clip(np.asarray(base, dtype=float) + rng.normal(0, spread, 3), 0, 255)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise, rescaled to zero mean and unit std, (H, W)."""
    field = gaussian_filter(rng.standard_normal((h, w)), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    top, bottom = _jitter(rng, (90, 150, 225), 15), _jitter(rng, (190, 220, 245), 10)
    t = np.linspace(0, 1, h)[:, None, None]
    canvas = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
    clouds = np.clip(_smooth_noise(rng, h, w, rng.uniform(6, 12)) - 0.3, 0, None)[..., None]
    return canvas + clouds * (255 - canvas) * 0.45


def grass(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = _jitter(rng, (70, 150, 50), 15)
    yy, xx = np.mgrid[0:h, 0:w]
    blades = np.sin(xx * rng.uniform(1.2, 1.8) + 3 * np.sin(yy / rng.uniform(4, 8)))
    light = 22 * blades + 18 * _smooth_noise(rng, h, w, 1.0) + 15 * _smooth_noise(rng, h, w, 8)
    return base + light[..., None] * np.array([0.6, 1.0, 0.4])


def water(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = _jitter(rng, (30, 90, 170), 15)
    yy, xx = np.mgrid[0:h, 0:w]
    period = rng.uniform(5, 9)
    waves = np.sin(2 * np.pi * (yy / period + 0.25 * np.sin(xx / rng.uniform(10, 20))))
    light = 28 * waves + 8 * _smooth_noise(rng, h, w, 2)
    return base + light[..., None] * np.array([0.7, 0.9, 1.0])


def wall(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    brick_h = int(rng.integers(9, 15))
    brick_w = 2 * brick_h + int(rng.integers(0, 6))
    mortar = _jitter(rng, (200, 195, 185), 8)
    base = _jitter(rng, (165, 75, 55), 15)
    yy, xx = np.mgrid[0:h, 0:w]
    row = yy // brick_h
    col = (xx + (row % 2) * (brick_w // 2)) // brick_w
    brick_id = row * 10_000 + col
    shades = rng.normal(0, 14, int(brick_id.max()) + 1)
    canvas = base + shades[brick_id][..., None] + 6 * _smooth_noise(rng, h, w, 1.0)[..., None]
    joint = ((yy % brick_h) < 2) | (((xx + (row % 2) * (brick_w // 2)) % brick_w) < 2)
    canvas[joint] = mortar
    return canvas


def sand(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = _jitter(rng, (215, 190, 135), 12)
    speckle = rng.normal(0, 18, (h, w)) + 14 * _smooth_noise(rng, h, w, 10)
    return base + speckle[..., None]


STUFF_TEXTURES: dict[str, Texture] = {
    "sky": sky,
    "grass": grass,
    "water": water,
    "wall": wall,
    "sand": sand,
}


def shaded_surface(rng: np.random.Generator, color: np.ndarray, h: int, w: int) -> np.ndarray:
    """A flat colour lit by a soft linear gradient plus fine grain, (H, W, 3)."""
    yy, xx = np.mgrid[0:h, 0:w]
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * xx + np.sin(theta) * yy) / max(h, w)
    light = 1.0 + 0.25 * (ramp - ramp.mean())
    return color * light[..., None] + rng.normal(0, 4, (h, w, 1))
