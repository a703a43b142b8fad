"""How right are pseudo-labels? Their thing segments checked against ground truth, per filter.

For a labeling output whose images also have ground truth (a COCO panoptic
folder, PNGs named by sample key), a thing segment is right when a
ground-truth thing of its class overlaps it with IoU > 0.5, and has a right
mask when any ground-truth thing does. A table over score and flip-agreement
thresholds gives precision (right / kept) and coverage (right / ground-truth
things): the trade-off that `--keep-score` and `--min-flip-iou` of
`jobs/train_on_pseudo_labels.py` choose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.labels import row_id_map
from samcp.data.coco import PanopticDataset
from samcp.masks import id_map_ious


@dataclass(frozen=True)
class CheckedSegment:
    score: float
    flip_iou: float | None  # None: labeled without --flip-agreement
    right: bool  # a ground-truth thing of its class at IoU > 0.5
    right_mask: bool  # some ground-truth thing at IoU > 0.5


def check_rows(rows: dict[str, dict], truth: PanopticDataset) -> tuple[list[CheckedSegment], int]:
    """The thing segments of the rows that the ground truth annotates, checked, and the number of
    ground-truth things in those images (an `error` row's things count, uncovered)."""
    things = {c.id for c in truth.categories if c.isthing}
    checked, truth_things = [], 0
    for key, row in rows.items():
        annotation = truth.annotations.get(f"{key}.png")
        if annotation is None:
            continue
        truth_segments = {s["id"]: s["category_id"] for s in annotation["segments_info"]
                          if s["category_id"] in things and not s.get("iscrowd")}
        truth_things += len(truth_segments)
        if row["status"] != "ok":
            continue
        ious = id_map_ious(row_id_map(row), truth.ids(annotation["file_name"]))
        for segment in row["segments"]:
            if not segment["isthing"]:
                continue
            matches = [j for j, iou in enumerate(ious[segment["id"]]) if iou > 0.5 and j in truth_segments]
            checked.append(CheckedSegment(
                segment["score"], segment.get("flip_iou"),
                right=any(truth_segments[j] == segment["category_id"] for j in matches),
                right_mask=bool(matches)))
    return checked, truth_things


def precision_table(checked: list[CheckedSegment], truth_things: int, keep_scores: list[float],
                    min_flip_ious: list[float]) -> list[dict]:
    """One row per (keep_score, min_flip_iou): segments kept, precision, mask precision, coverage.
    A min_flip_iou > 0 needs segments with flip_iou."""
    if any(t > 0 for t in min_flip_ious) and any(c.flip_iou is None for c in checked):
        raise ValueError("flip-agreement thresholds need labels made with --flip-agreement")
    score = np.array([c.score for c in checked])
    flip = np.array([c.flip_iou or 0.0 for c in checked])
    right = np.array([c.right for c in checked], bool)
    right_mask = np.array([c.right_mask for c in checked], bool)
    table = []
    for keep_score in keep_scores:
        for min_flip_iou in min_flip_ious:
            kept = (score >= keep_score) & ((flip >= min_flip_iou) if min_flip_iou > 0 else True)
            count = int(kept.sum())
            table.append({"keep_score": keep_score, "min_flip_iou": min_flip_iou, "kept": count,
                          "precision": float(right[kept].mean()) if count else None,
                          "mask_precision": float(right_mask[kept].mean()) if count else None,
                          "coverage": float(right[kept].sum() / max(truth_things, 1))})
    return table


def format_precision_table(table: list[dict], truth_things: int) -> str:
    lines = [f"| min score | min flip IoU | kept | precision | right mask | coverage of {truth_things} "
             "things |", "|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        shares = [f"{r[k]:.3f}" if r[k] is not None else "-"
                  for k in ("precision", "mask_precision", "coverage")]
        lines.append(f"| {r['keep_score']:g} | {r['min_flip_iou']:g} | {r['kept']} | {' | '.join(shares)} |")
    return "\n".join(lines)
