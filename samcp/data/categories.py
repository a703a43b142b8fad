"""The fixed category table of the synthetic panoptic corpus."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Category:
    """One panoptic category, as in COCO panoptic's `categories` list."""

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int]
    parts: tuple[str, ...] = ()

    def to_coco(self) -> dict:
        """COCO panoptic category dict (`parts` is an extra key, ignored by COCO tools)."""
        entry = asdict(self)
        entry["isthing"] = int(self.isthing)
        entry["color"] = list(self.color)
        entry["parts"] = list(self.parts)
        entry["supercategory"] = "thing" if self.isthing else "stuff"
        return entry


# Things first (ids 1..8), then stuff (ids 9..13). `parts` names the visually
# distinct pieces a thing is drawn from; an empty tuple means one piece.
SYNTHETIC_CATEGORIES: tuple[Category, ...] = (
    Category(1, "ball", True, (220, 20, 60)),
    Category(2, "kite", True, (119, 11, 32)),
    Category(3, "bottle", True, (0, 0, 142), ("body", "cap")),
    Category(4, "robot", True, (0, 0, 230), ("head", "torso", "wheel")),
    Category(5, "car", True, (106, 0, 228), ("chassis", "window", "wheel")),
    Category(6, "flower", True, (0, 60, 100), ("stem", "petals", "center")),
    Category(7, "house", True, (0, 80, 100), ("wall", "roof", "door")),
    Category(8, "star", True, (0, 0, 70)),
    Category(9, "sky", False, (70, 130, 180)),
    Category(10, "grass", False, (152, 251, 152)),
    Category(11, "water", False, (0, 114, 160)),
    Category(12, "wall", False, (102, 102, 156)),
    Category(13, "sand", False, (220, 190, 120)),
)

CATEGORY_BY_NAME: dict[str, Category] = {c.name: c for c in SYNTHETIC_CATEGORIES}
CATEGORY_BY_ID: dict[int, Category] = {c.id: c for c in SYNTHETIC_CATEGORIES}
THING_CATEGORIES: tuple[Category, ...] = tuple(c for c in SYNTHETIC_CATEGORIES if c.isthing)
STUFF_CATEGORIES: tuple[Category, ...] = tuple(c for c in SYNTHETIC_CATEGORIES if not c.isthing)
