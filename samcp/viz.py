"""Overlays of panoptic segments (and optional parts) on images, and image grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from samcp.data.categories import Category
from samcp.vocab import Vocabulary


def boundaries(id_map: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has another id."""
    edge = np.zeros(id_map.shape, dtype=bool)
    edge[:, :-1] |= id_map[:, 1:] != id_map[:, :-1]
    edge[:-1, :] |= id_map[1:, :] != id_map[:-1, :]
    return edge


def vocabulary_categories(vocab: Vocabulary) -> dict[int, Category]:
    """The vocabulary's classes with a fixed colour each (any vocabulary, not only the built-in)."""
    return {c.id: Category(c.id, c.name, c.isthing,
                           tuple(int(v) for v in np.random.default_rng(c.id).integers(40, 256, 3)))
            for c in vocab.classes}


def _instance_color(segment_id: int, base: tuple[int, int, int]) -> np.ndarray:
    jitter = np.random.default_rng(segment_id).integers(-60, 60, 3)
    return np.clip(np.asarray(base) + jitter, 0, 255)


def overlay_panoptic(image: np.ndarray, panoptic: np.ndarray, segments_info: Sequence[Mapping],
                     categories: Mapping[int, Category], part_map: np.ndarray | None = None,
                     alpha: float = 0.45, label: bool = True) -> np.ndarray:
    """Tint each segment of image (H, W, 3) uint8 by class, outline segments in white and
    parts (if given) in yellow, and write class names (with scores when present)."""
    out = image.astype(float)
    for segment in segments_info:
        category = categories[segment["category_id"]]
        mask = panoptic == segment["id"]
        color = _instance_color(segment["id"], category.color) if category.isthing else category.color
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, dtype=float)
    if part_map is not None:
        out[boundaries(part_map) & (part_map > 0)] = (255, 230, 0)
    out[boundaries(panoptic)] = (255, 255, 255)
    canvas = Image.fromarray(out.round().astype(np.uint8))
    if label:
        draw = ImageDraw.Draw(canvas)
        font = ImageFont.load_default(size=max(9, image.shape[0] // 24))
        for segment in segments_info:
            ys, xs = np.nonzero(panoptic == segment["id"])
            if ys.size == 0:
                continue
            # The mask pixel nearest the centroid: inside the segment even when it is not convex.
            nearest = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            text = categories[segment["category_id"]].name
            if "score" in segment:
                text += f" {segment['score']:.2f}"
            draw.text((float(xs[nearest]), float(ys[nearest])), text, fill=(255, 255, 255), font=font,
                      anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(canvas)


def grid(images: Sequence[np.ndarray], columns: int, pad: int = 4) -> np.ndarray:
    """Tile equally sized (H, W, 3) uint8 images row by row, separated by `pad` white pixels."""
    if not images:
        raise ValueError("grid() needs at least one image")
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = img
    return sheet
