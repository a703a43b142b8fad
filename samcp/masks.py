"""Small helpers on binary masks."""

from __future__ import annotations

import numpy as np


def mask_bbox(mask: np.ndarray) -> list[int]:
    """COCO (x, y, w, h) of the True pixels of a (H, W) mask; zeros for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
