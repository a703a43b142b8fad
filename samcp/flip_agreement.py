"""Flip agreement: does the labeling of an image find a segment again in its mirror image?

A segment that the labeler finds again, with the same class and nearly the same
mask, when the image is mirrored left-right is right more often than its score
alone says (docs/self-training.md, attempt 10), so pseudo-labels can be
filtered by it.
"""

from __future__ import annotations

import numpy as np

from samcp.masks import id_map_ious


def flip_ious(id_map: np.ndarray, classes: dict[int, int], mirrored_id_map: np.ndarray,
              mirrored_classes: dict[int, int]) -> dict[int, float]:
    """Each segment's best IoU with a same-class segment of the mirror image's labeling.

    id_map, mirrored_id_map: (H, W) segment ids (0 = void), the second labeled on the image
    mirrored left-right; classes: segment id -> class id, for each. Returns segment id -> IoU
    (0 when the mirror image has no segment of that class).
    """
    ious = id_map_ious(id_map, np.ascontiguousarray(mirrored_id_map[:, ::-1]))
    result = {}
    for segment, category in classes.items():
        same = [j for j, c in mirrored_classes.items() if c == category]
        result[segment] = float(ious[segment, same].max()) if same else 0.0
    return result
