"""Outlines of the synthetic thing classes, as polygons of named parts.

Every shape lives in a unit frame centred on (0, 0) with its extent within
[-1, 1]; `place` scales, rotates and moves it into image pixels. Parts are
listed back to front: a later part is painted over an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PartOutline:
    """One visually distinct piece of a thing: a name and a closed polygon (P, 2) in x, y."""

    name: str
    polygon: np.ndarray


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def _star(points: int, inner: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False) - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _blossom(cx: float, cy: float, radius: float, lobes: int) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    r = radius * (0.72 + 0.28 * np.cos(lobes * t))
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


_OUTLINES: dict[str, tuple[PartOutline, ...]] = {
    "ball": (PartOutline("ball", _ellipse(0, 0, 1, 1)),),
    "kite": (PartOutline("kite", np.array([[0, -1], [0.62, -0.15], [0, 1], [-0.62, -0.15]])),),
    "star": (PartOutline("star", _star(5, 0.45)),),
    "bottle": (
        PartOutline(
            "body",
            np.array(
                [[-0.4, 1], [0.4, 1], [0.4, -0.15], [0.16, -0.45], [0.16, -0.66],
                 [-0.16, -0.66], [-0.16, -0.45], [-0.4, -0.15]]
            ),
        ),
        PartOutline("cap", _rect(-0.2, -1, 0.2, -0.66)),
    ),
    "robot": (
        PartOutline("torso", _rect(-0.6, -0.42, 0.6, 0.55)),
        PartOutline("head", _rect(-0.38, -1, 0.38, -0.42)),
        PartOutline("wheel", _ellipse(-0.34, 0.72, 0.28, 0.28)),
        PartOutline("wheel", _ellipse(0.34, 0.72, 0.28, 0.28)),
    ),
    "car": (
        PartOutline("window", np.array([[-0.55, -0.05], [-0.32, -0.6], [0.38, -0.6], [0.6, -0.05]])),
        PartOutline("chassis", _rect(-1, -0.08, 1, 0.42)),
        PartOutline("wheel", _ellipse(-0.55, 0.45, 0.3, 0.3)),
        PartOutline("wheel", _ellipse(0.55, 0.45, 0.3, 0.3)),
    ),
    "flower": (
        PartOutline("stem", _rect(-0.11, -0.1, 0.11, 1)),
        PartOutline("petals", _blossom(0, -0.4, 0.6, 6)),
        PartOutline("center", _ellipse(0, -0.4, 0.22, 0.22)),
    ),
    "house": (
        PartOutline("wall", _rect(-0.72, -0.22, 0.72, 1)),
        PartOutline("roof", np.array([[-0.95, -0.2], [0, -1], [0.95, -0.2]])),
        PartOutline("door", _rect(-0.2, 0.38, 0.2, 1)),
    ),
}

# Classes drawn at any angle; the others stand upright within a small tilt.
FREELY_ROTATED: frozenset[str] = frozenset({"ball", "kite", "star"})


def outline(name: str) -> tuple[PartOutline, ...]:
    """The parts of thing class `name`, back to front, in the unit frame."""
    try:
        return _OUTLINES[name]
    except KeyError:
        raise KeyError(f"no synthetic shape for class {name!r}; known: {sorted(_OUTLINES)}") from None


def place(polygon: np.ndarray, center: tuple[float, float], radius: float, angle: float,
          aspect: float = 1.0) -> np.ndarray:
    """Map a unit-frame polygon (P, 2) to image pixels: stretch x by `aspect`, scale, rotate, move."""
    xy = polygon * np.array([aspect, 1.0]) * radius
    c, s = np.cos(angle), np.sin(angle)
    rotated = xy @ np.array([[c, s], [-s, c]])
    return rotated + np.asarray(center, dtype=float)
