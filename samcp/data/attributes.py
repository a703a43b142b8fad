"""Compositional thing classes for the synthetic corpus: an attribute (a surface pattern) plus an
object, e.g. `striped ball` or `dotted kite`.

The attribute is painted over the whole thing, across its parts, so it belongs to the instance;
the object is its shape. A corpus made with attributes has one thing class per (attribute,
object) pair, with id `100 * (attribute index + 1) + object id` (101 = first attribute + ball),
and the stuff classes of the plain corpus.
"""

from __future__ import annotations

import numpy as np

from samcp.data.categories import STUFF_CATEGORIES, THING_CATEGORIES, Category

PATTERNS = ("plain", "striped", "dotted", "checkered")


def compositional_categories(attributes: tuple[str, ...]) -> tuple[Category, ...]:
    """Thing classes for every (attribute, object) pair, then the stuff classes."""
    unknown = [a for a in attributes if a not in PATTERNS]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; choose from {PATTERNS}")
    things = tuple(Category(attribute_class_id(i, thing.id), f"{attribute} {thing.name}", True,
                            _shade(thing.color, i), thing.parts)
                   for i, attribute in enumerate(attributes) for thing in THING_CATEGORIES)
    return things + STUFF_CATEGORIES


def attribute_class_id(attribute_index: int, object_id: int) -> int:
    return 100 * (attribute_index + 1) + object_id


def _shade(color: tuple[int, int, int], index: int) -> tuple[int, int, int]:
    return tuple(int(min(255, c + 40 * index)) for c in color)


def apply_pattern(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, pattern: str) -> None:
    """Modulate the brightness of `image` (H, W, 3) float inside `mask` (H, W) bool with `pattern`.

    Stripes and checks have a period of 7..11 px at a random angle; dots are discs of radius 2..3 px
    on a jittered grid. Marks are 40% darker or brighter than the surface, so the object keeps its colour.
    """
    if pattern == "plain":
        return
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    angle, period = rng.uniform(0, np.pi), rng.uniform(7, 11)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if pattern == "striped":
        on = np.sin(2 * np.pi * u / period) > 0
    elif pattern == "checkered":
        on = (np.sin(2 * np.pi * u / period) > 0) ^ (np.sin(2 * np.pi * v / period) > 0)
    elif pattern == "dotted":
        step, radius = period, rng.uniform(2, 3)
        du, dv = (u % step) - step / 2, (v % step) - step / 2
        on = du ** 2 + dv ** 2 < radius ** 2
    else:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {PATTERNS}")
    marks = 0.6 if rng.random() < 0.5 else 1.4  # dark or light marks
    factor = np.where(on, marks, 1.0)
    image[mask] = np.clip(image[mask] * factor[mask][:, None], 0, 255)
