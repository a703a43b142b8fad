"""Reading labeling output back: a Parquet row -> (H, W) id map and its segments."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


class LabelRowError(ValueError):
    """A row whose segments do not form a valid panoptic map."""


def row_id_map(row: dict) -> np.ndarray:
    """(height, width) int32 segment ids of an `ok` row (0 = void).

    Raises LabelRowError if a segment's RLE has another size, disagrees with its
    `area`, or overlaps another segment.
    """
    height, width = row["height"], row["width"]
    id_map = np.zeros((height, width), np.int32)
    for segment in row["segments"]:
        mask = mask_utils.decode({"size": [height, width], "counts": segment["counts"].encode()}).astype(bool)
        if mask.shape != (height, width):
            raise LabelRowError(f"{row['key']}: segment {segment['id']} has size {mask.shape}")
        if int(mask.sum()) != segment["area"]:
            raise LabelRowError(f"{row['key']}: segment {segment['id']} area {segment['area']} "
                                f"but its mask has {int(mask.sum())} pixels")
        if (id_map[mask] != 0).any():
            raise LabelRowError(f"{row['key']}: segment {segment['id']} overlaps another segment")
        id_map[mask] = segment["id"]
    return id_map


def prediction(row: dict | None) -> tuple[np.ndarray, list[dict]] | None:
    """(id map, segments) of a row for scoring; None for a missing or `error` row."""
    return None if row is None or row["status"] != "ok" else (row_id_map(row), row["segments"])
