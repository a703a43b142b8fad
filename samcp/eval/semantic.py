"""Mean IoU of the semantic maps implied by panoptic segments (void pixels ignored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def semantic_map(id_map: np.ndarray, segments: Sequence[Mapping], index: Mapping[int, int]) -> np.ndarray:
    """(H, W) class index per pixel (-1 where void), via `index` from category id to 0..C-1."""
    lookup = {s["id"]: index[s["category_id"]] for s in segments}
    out = np.full(id_map.shape, -1, dtype=np.int64)
    for segment_id, cls in lookup.items():
        out[id_map == segment_id] = cls
    return out


class SemanticIoU:
    def __init__(self, category_ids: Sequence[int]):
        self.category_ids = list(category_ids)
        self.index = {c: i for i, c in enumerate(self.category_ids)}
        n = len(self.category_ids)
        self.confusion = np.zeros((n + 1, n + 1), dtype=np.int64)  # last row/col: void

    def update(self, gt: np.ndarray, gt_segments: Sequence[Mapping], pred: np.ndarray,
               pred_segments: Sequence[Mapping]) -> None:
        n = len(self.category_ids)
        g = semantic_map(gt, gt_segments, self.index)
        p = semantic_map(pred, pred_segments, self.index)
        g[g < 0], p[p < 0] = n, n
        self.confusion += np.bincount(g.ravel() * (n + 1) + p.ravel(),
                                      minlength=(n + 1) ** 2).reshape(n + 1, n + 1)

    def summary(self) -> dict:
        """mIoU in percent over classes present in ground truth or prediction; GT void is ignored,
        predicted void on labeled pixels counts as a miss."""
        n = len(self.category_ids)
        labeled = self.confusion[:n]  # rows: GT classes (void GT rows dropped)
        inter = np.diag(labeled[:, :n])
        gt_total = labeled.sum(1)
        pred_total = labeled[:, :n].sum(0)
        union = gt_total + pred_total - inter
        present = union > 0
        per_class = {self.category_ids[i]: 100 * inter[i] / union[i] for i in np.flatnonzero(present)}
        return {"miou": float(np.mean(list(per_class.values()))) if per_class else 0.0,
                "per_class": per_class}
