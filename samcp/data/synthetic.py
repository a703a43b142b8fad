"""A procedural panoptic corpus with exact ground truth.

Each image is textured stuff bands (sky or wall above grass, water or sand)
with things painted over them: several instances per class, some touching or
occluding each other, and several classes built from differently coloured
parts (robot = head + torso + wheels, ...) so that SAM cuts them into pieces
that must be merged back into one instance. Image `index` of a corpus with
`seed` is a pure function of (seed, index), so any shard can be regenerated
alone.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from samcp.data import shapes
from samcp.data.attributes import PATTERNS, apply_pattern, attribute_class_id, compositional_categories
from samcp.data.categories import (
    CATEGORY_BY_NAME,
    SYNTHETIC_CATEGORIES,
    THING_CATEGORIES,
    Category,
)
from samcp.data.textures import STUFF_TEXTURES, shaded_surface
from samcp.masks import mask_bbox

# Corpus seeds of the standard splits: models train on "train" and are measured on "val".
SPLIT_SEEDS: dict[str, int] = {"train": 1, "val": 2, "test": 3}


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator. Sizes are in pixels; `min_visible` is a fraction of a thing's area."""

    seed: int = 0
    height: int = 256
    width: int = 256
    min_things: int = 3
    max_things: int = 8
    min_radius: float = 0.07  # thing radius as a fraction of min(height, width)
    max_radius: float = 0.2
    repeat_prob: float = 0.45  # chance that a thing repeats the previous thing's class
    touch_prob: float = 0.4  # chance that a thing is placed against an existing one
    min_visible: float = 0.5  # each thing keeps at least this share of its area visible
    min_area: int = 64  # and at least this many visible pixels
    image_noise: float = 3.0
    # Compositional thing classes (`samcp.data.attributes`): each thing gets one of these surface
    # patterns and its class is "<attribute> <object>". Empty: the plain 8 thing classes.
    attributes: tuple[str, ...] = ()
    # True: the patterns are painted but the classes stay the plain objects (the same images as
    # with False; a texture shift between corpora that share one vocabulary, e.g. for self-training).
    texture_only: bool = False
    # Hue interval of thing colours (HSV hue in [0, 1]): a colour-shifted corpus, e.g. (0, 0.5) for
    # a source domain and (0.5, 1) for its target. Wheels stay grey whatever the interval.
    thing_hues: tuple[float, float] = field(default=(0.0, 1.0), metadata={
        "help": "hue interval of thing colours in [0, 1], e.g. 0 0.5: a colour-shifted corpus",
        "metavar": ("LOW", "HIGH")})
    # Largest rotation (radians, either way) of the classes drawn upright (all but ball, kite and
    # star, which take any angle): pi turns them every way (a rotation-shifted corpus).
    upright_tilt: float = field(default=0.4, metadata={
        "help": "largest rotation (radians) of the upright thing classes (all but ball, kite, star); "
                "3.14159: any angle, a rotation-shifted corpus"})

    def __post_init__(self) -> None:
        if self.height < 32 or self.width < 32:
            raise ValueError(f"image size must be at least 32x32, got {self.height}x{self.width}")
        if not 0 <= self.min_things <= self.max_things:
            raise ValueError(f"need 0 <= min_things <= max_things, got {self.min_things}, {self.max_things}")
        if len(set(self.attributes)) != len(self.attributes) or not set(self.attributes) <= set(PATTERNS):
            raise ValueError(f"attributes must be distinct names from {PATTERNS}, got {self.attributes}")
        if self.texture_only and not self.attributes:
            raise ValueError("texture_only needs attributes: the patterns to paint")
        if not 0 < self.min_radius <= self.max_radius:
            raise ValueError(f"need 0 < min_radius <= max_radius, got {self.min_radius}, {self.max_radius}")
        if not 0 <= self.upright_tilt <= np.pi:
            raise ValueError(f"upright_tilt must be in [0, pi], got {self.upright_tilt}")
        if len(self.thing_hues) != 2 or not 0 <= self.thing_hues[0] < self.thing_hues[1] <= 1:
            raise ValueError(f"thing_hues must be (low, high) with 0 <= low < high <= 1, "
                             f"got {self.thing_hues}")


@dataclass
class Segment:
    """One panoptic segment; `bbox` is COCO (x, y, w, h)."""

    id: int
    category_id: int
    bbox: list[int]
    area: int
    iscrowd: int = 0

    def to_coco(self) -> dict:
        return {"id": self.id, "category_id": self.category_id, "bbox": self.bbox,
                "area": self.area, "iscrowd": self.iscrowd}


@dataclass
class Part:
    """One visible part of a thing segment, with its own id in the part map."""

    id: int
    segment_id: int
    name: str
    bbox: list[int]
    area: int

    def to_json(self) -> dict:
        return {"id": self.id, "segment_id": self.segment_id, "name": self.name,
                "bbox": self.bbox, "area": self.area}


@dataclass
class SyntheticImage:
    """An image with its panoptic ground truth.

    image: (H, W, 3) uint8 RGB. panoptic: (H, W) int32 segment id per pixel (0 = void).
    part_map: (H, W) int32 part id per thing pixel (0 elsewhere).
    """

    key: str
    image: np.ndarray
    panoptic: np.ndarray
    segments: list[Segment]
    part_map: np.ndarray
    parts: list[Part]
    seed: int = 0
    index: int = 0
    caption: str = ""  # the classes it shows, things first: "striped ball, dotted kite, sky, grass"

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def metadata(self) -> dict:
        """JSON-able ground truth besides the pixel maps."""
        return {
            "key": self.key,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "index": self.index,
            "segments_info": [s.to_coco() for s in self.segments],
            "parts_info": [p.to_json() for p in self.parts],
            "caption": self.caption,
        }


@dataclass
class _Thing:
    category: Category
    part_names: list[str]
    part_masks: list[np.ndarray]  # each (H, W) bool, full drawn extent, back to front
    colors: list[np.ndarray]
    pattern: str = "plain"
    visible: np.ndarray = field(init=False)  # (H, W) bool

    def __post_init__(self) -> None:
        self.visible = np.logical_or.reduce(self.part_masks)


def _rasterize(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=1)
    return np.asarray(canvas, dtype=bool)


def _distinct_colors(rng: np.random.Generator, names: list[str], hue_range: tuple[float, float]
                     ) -> list[np.ndarray]:
    """Saturated colours with hues in `hue_range` that differ between the parts of one thing;
    wheels are dark."""
    hues: list[float] = []
    colors = []
    for name in names:
        if name == "wheel":
            grey = rng.uniform(25, 60)
            colors.append(np.array([grey, grey, grey + rng.uniform(0, 15)]))
            continue
        for _ in range(20):
            hue = rng.uniform(*hue_range)
            if all(min(abs(hue - h), 1 - abs(hue - h)) > 0.16 for h in hues):
                break
        hues.append(hue)
        r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
        colors.append(np.array([r, g, b]) * 255)
    return colors


class SyntheticCorpus:
    """Deterministic images: `corpus[i]` is the same image for the same config, always."""

    def __init__(self, config: SyntheticConfig | None = None):
        self.config = config or SyntheticConfig()
        attributes = self.config.attributes
        compositional = attributes and not self.config.texture_only
        self.categories: tuple[Category, ...] = (compositional_categories(attributes) if compositional
                                                 else SYNTHETIC_CATEGORIES)
        self._by_id = {c.id: c for c in self.categories}

    def key(self, index: int) -> str:
        return f"synthetic-s{self.config.seed}-{index:08d}"

    def __getitem__(self, index: int) -> SyntheticImage:
        if index < 0:
            raise IndexError(f"image index must be >= 0, got {index}")
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, index])
        stuff_map, stuff_names = self._stuff_layout(rng)
        image = np.zeros((cfg.height, cfg.width, 3), dtype=float)
        for i, name in enumerate(stuff_names):
            region = stuff_map == i
            image[region] = STUFF_TEXTURES[name](rng, cfg.height, cfg.width)[region]
        things = self._place_things(rng)
        for thing in things:
            for mask, color in zip(thing.part_masks, thing.colors):
                self._paint(rng, image, mask, color)
            if cfg.attributes:
                apply_pattern(rng, image, np.logical_or.reduce(thing.part_masks), thing.pattern)
        image += rng.normal(0, cfg.image_noise, image.shape)
        pixels = np.clip(image, 0, 255).round().astype(np.uint8)
        return self._ground_truth(index, pixels, stuff_map, stuff_names, things)

    def __iter__(self):
        raise TypeError("SyntheticCorpus is unbounded: index it or slice with range()")

    # -- layout --------------------------------------------------------------------------

    def _stuff_layout(self, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        """(H, W) index into the returned stuff names: one upper band over one or two lower bands."""
        h, w = self.config.height, self.config.width
        upper = "sky" if rng.random() < 0.65 else "wall"
        lower_pool = ["grass", "water", "sand"]
        n_lower = 1 if rng.random() < 0.5 else 2
        lower = list(rng.choice(lower_pool, size=n_lower, replace=False))
        names = [upper, *lower]
        xx = np.arange(w)[None, :]
        yy = np.arange(h)[:, None]
        stuff_map = np.zeros((h, w), dtype=np.int32)
        top = h * rng.uniform(0.3, 0.6)
        for band in range(1, len(names)):
            amplitude = h * rng.uniform(0.01, 0.06)
            wave = amplitude * np.sin(2 * np.pi * xx / (w * rng.uniform(0.4, 1.2)) + rng.uniform(0, 6.3))
            stuff_map[yy > top + wave] = band
            top += h * rng.uniform(0.15, 0.3)
        return stuff_map, names

    def _place_things(self, rng: np.random.Generator) -> list[_Thing]:
        cfg = self.config
        count = int(rng.integers(cfg.min_things, cfg.max_things + 1))
        things: list[_Thing] = []
        category = None
        for _ in range(count):
            if category is None or rng.random() >= cfg.repeat_prob:
                category = THING_CATEGORIES[int(rng.integers(len(THING_CATEGORIES)))]
            for _attempt in range(25):
                thing = self._draw_thing(rng, category, things)
                if thing is not None and cfg.attributes:
                    attribute = int(rng.integers(len(cfg.attributes)))
                    thing.pattern = cfg.attributes[attribute]
                    if not cfg.texture_only:
                        thing.category = self._by_id[attribute_class_id(attribute, category.id)]
                if thing is not None and self._occludes_acceptably(thing, things):
                    for other in things:
                        other.visible &= ~thing.visible
                    things.append(thing)
                    break
        return things

    def _draw_thing(self, rng: np.random.Generator, category: Category,
                    others: list[_Thing]) -> _Thing | None:
        cfg = self.config
        size = min(cfg.height, cfg.width)
        multipart = len(category.parts) > 0
        low = max(cfg.min_radius, 0.1) if multipart else cfg.min_radius
        radius = size * rng.uniform(low, max(low, cfg.max_radius))
        if category.name in shapes.FREELY_ROTATED:
            angle = rng.uniform(0, 2 * np.pi)
        else:
            angle = rng.uniform(-cfg.upright_tilt, cfg.upright_tilt)
        aspect = rng.uniform(0.8, 1.25)
        if others and rng.random() < cfg.touch_prob:
            anchor = others[int(rng.integers(len(others)))]
            ys, xs = np.nonzero(anchor.visible)
            direction = rng.uniform(0, 2 * np.pi)
            reach = 0.5 * (np.ptp(xs) + np.ptp(ys)) / 2 + radius * 0.9
            center = (xs.mean() + reach * np.cos(direction), ys.mean() + reach * np.sin(direction))
        else:
            center = (rng.uniform(0.05, 0.95) * cfg.width, rng.uniform(0.05, 0.95) * cfg.height)
        outlines = shapes.outline(category.name)
        masks = [
            _rasterize(shapes.place(o.polygon, center, radius, angle, aspect), cfg.height, cfg.width)
            for o in outlines
        ]
        if np.logical_or.reduce(masks).sum() < cfg.min_area:
            return None
        names = [o.name for o in outlines]
        return _Thing(category, names, masks, _distinct_colors(rng, names, cfg.thing_hues))

    def _occludes_acceptably(self, new: _Thing, things: list[_Thing]) -> bool:
        """True when every existing thing keeps its minimum visible share under `new`."""
        cfg = self.config
        for other in things:
            full = np.logical_or.reduce(other.part_masks).sum()
            left = (other.visible & ~new.visible).sum()
            if left < max(cfg.min_area, cfg.min_visible * full):
                return False
        return True

    @staticmethod
    def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray,
               color: np.ndarray) -> None:
        x, y, w, h = mask_bbox(mask)
        if w == 0:
            return
        crop = mask[y:y + h, x:x + w]
        surface = shaded_surface(rng, color, h, w)
        image[y:y + h, x:x + w][crop] = surface[crop]

    # -- ground truth -------------------------------------------------------------------

    def _ground_truth(self, index: int, pixels: np.ndarray, stuff_map: np.ndarray,
                      stuff_names: list[str], things: list[_Thing]) -> SyntheticImage:
        h, w = stuff_map.shape
        panoptic = np.zeros((h, w), dtype=np.int32)
        part_map = np.zeros((h, w), dtype=np.int32)
        segments: list[Segment] = []
        parts: list[Part] = []
        covered = np.zeros((h, w), dtype=bool)
        for thing in things:
            segment_id = len(segments) + 1
            panoptic[thing.visible] = segment_id
            covered |= thing.visible
            segments.append(Segment(segment_id, thing.category.id, mask_bbox(thing.visible),
                                    int(thing.visible.sum())))
            # A part is what stays of it under the later parts of the same thing.
            hidden = np.zeros((h, w), dtype=bool)
            part_visible = []
            for mask in reversed(thing.part_masks):
                part_visible.append(mask & ~hidden & thing.visible)
                hidden |= mask
            for name, mask in zip(thing.part_names, reversed(part_visible)):
                area = int(mask.sum())
                if area == 0:
                    continue
                part_id = len(parts) + 1
                part_map[mask] = part_id
                parts.append(Part(part_id, segment_id, name, mask_bbox(mask), area))
        for i, name in enumerate(stuff_names):
            region = (stuff_map == i) & ~covered
            area = int(region.sum())
            if area == 0:
                continue
            segment_id = len(segments) + 1
            panoptic[region] = segment_id
            segments.append(Segment(segment_id, CATEGORY_BY_NAME[name].id, mask_bbox(region), area))
        shown = dict.fromkeys(self._by_id[s.category_id].name for s in segments)
        return SyntheticImage(self.key(index), pixels, panoptic, segments, part_map, parts,
                              seed=self.config.seed, index=index, caption=", ".join(shown))
