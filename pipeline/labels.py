"""Reading labeling output back: rows by key, a row -> (H, W) id map, scoring against ground truth."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.output import LabelOutput
from samcp.data.coco import PanopticDataset
from samcp.eval.evaluator import evaluate_against


class LabelRowError(ValueError):
    """A row whose segments do not form a valid panoptic map."""


def segment_mask(counts: str, height: int, width: int) -> np.ndarray:
    """(height, width) bool mask of a segment's compressed COCO RLE `counts`."""
    return mask_utils.decode({"size": [height, width], "counts": counts.encode()}).astype(bool)


def row_id_map(row: dict) -> np.ndarray:
    """(height, width) int32 segment ids of an `ok` row (0 = void).

    Raises LabelRowError if a segment's RLE has another size, disagrees with its
    `area`, or overlaps another segment.
    """
    height, width = row["height"], row["width"]
    id_map = np.zeros((height, width), np.int32)
    for segment in row["segments"]:
        mask = segment_mask(segment["counts"], height, width)
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


def rows_by_key(labels: str, storage_options: dict | None = None) -> dict[str, dict]:
    """Every row of a labeling output (small outputs: evaluation, demos), by sample key."""
    return {r["key"]: r for r in LabelOutput(labels, storage_options).read_table().to_pylist()}


def score_rows(rows: dict[str, dict], ground_truth: str, desc: str = "evaluate") -> dict:
    """PQ/SQ/RQ, mask AP and mIoU of label rows against a COCO panoptic folder whose PNG names
    are the sample keys (error rows and missing keys score as empty images)."""
    return evaluate_against(PanopticDataset.folder(ground_truth), lambda key: prediction(rows.get(key)), desc)
