"""Panoptic quality (PQ = SQ x RQ) with the COCO panoptic API's definition.

Per image, a predicted and a ground-truth segment match when they have the
same category and IoU > 0.5, where the union leaves out the prediction's
pixels on ground-truth void (id 0). An unmatched prediction is a false
positive unless more than half of it lies on void plus crowd regions of its
own category. Crowd ground truth never counts as a false negative. PQ of a
category = sum of matched IoU / (TP + FP/2 + FN/2); averages run over the
categories that occur (TP + FP + FN > 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Segment ids run up to 2**24 - 1 (COCO's RGB encoding); a (gt, pred) pair is encoded as
# gt * _OFFSET + pred, which stays below 2**48 in int64.
_OFFSET = 2**24


@dataclass
class _ClassStats:
    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


@dataclass
class PanopticQuality:
    """Accumulates PQ statistics over images; `summary()` gives PQ/SQ/RQ in percent."""

    isthing: Mapping[int, bool]
    stats: dict[int, _ClassStats] = field(default_factory=lambda: defaultdict(_ClassStats))

    def update(self, gt: np.ndarray, gt_segments: Sequence[Mapping], pred: np.ndarray,
               pred_segments: Sequence[Mapping]) -> None:
        """gt, pred: (H, W) segment ids (0 = void); segments: dicts with id, category_id (and iscrowd)."""
        if gt.shape != pred.shape:
            raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
        gt_info = {s["id"]: s for s in gt_segments}
        pred_info = {s["id"]: s for s in pred_segments}
        for s in pred_segments:
            if s["category_id"] not in self.isthing:
                raise ValueError(f"predicted segment {s['id']} has unknown category {s['category_id']}")
        for name, ids in (("ground truth", gt), ("prediction", pred)):
            if ids.size and (ids.min() < 0 or ids.max() >= _OFFSET):
                raise ValueError(f"{name} segment ids must lie in [0, 2**24) (COCO panoptic's RGB ids), "
                                 f"got {ids.min()}..{ids.max()}")
        pairs, counts = np.unique(gt.astype(np.int64) * _OFFSET + pred.astype(np.int64),
                                  return_counts=True)
        gt_area: dict[int, int] = defaultdict(int)
        pred_area: dict[int, int] = defaultdict(int)
        intersection: dict[tuple[int, int], int] = {}
        for pair, count in zip(pairs.tolist(), counts.tolist()):
            g, p = divmod(pair, _OFFSET)
            gt_area[g] += count
            pred_area[p] += count
            intersection[(g, p)] = count
        unknown = (set(gt_area) - {0} - set(gt_info)) | (set(pred_area) - {0} - set(pred_info))
        if unknown:
            raise ValueError(f"segment ids in a map but not in its segment list: {sorted(unknown)}")

        matched_gt, matched_pred = set(), set()
        for (g, p), inter in intersection.items():
            if g == 0 or p == 0:
                continue
            gs, ps = gt_info[g], pred_info[p]
            if gs.get("iscrowd", 0) or gs["category_id"] != ps["category_id"]:
                continue
            union = pred_area[p] + gt_area[g] - inter - intersection.get((0, p), 0)
            iou = inter / union
            if iou > 0.5:
                stats = self.stats[gs["category_id"]]
                stats.tp += 1
                stats.iou += iou
                matched_gt.add(g)
                matched_pred.add(p)

        crowd_by_class: dict[int, int] = {}
        for g, gs in gt_info.items():
            if gs.get("iscrowd", 0):
                crowd_by_class[gs["category_id"]] = g
            elif g not in matched_gt:
                self.stats[gs["category_id"]].fn += 1
        for p, ps in pred_info.items():
            if p in matched_pred or pred_area.get(p, 0) == 0:
                continue
            ignored = intersection.get((0, p), 0)
            crowd = crowd_by_class.get(ps["category_id"])
            if crowd is not None:
                ignored += intersection.get((crowd, p), 0)
            if ignored / pred_area[p] > 0.5:
                continue
            self.stats[ps["category_id"]].fp += 1

    def summary(self) -> dict:
        """{"All"|"Things"|"Stuff": {pq, sq, rq, n}, "per_class": {id: {pq, sq, rq, tp, fp, fn}}}."""
        per_class = {}
        for cid, s in sorted(self.stats.items()):
            if s.tp + s.fp + s.fn == 0:
                continue
            sq = s.iou / s.tp if s.tp else 0.0
            rq = s.tp / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
            per_class[cid] = {"pq": 100 * sq * rq, "sq": 100 * sq, "rq": 100 * rq,
                              "tp": s.tp, "fp": s.fp, "fn": s.fn}
        result = {"per_class": per_class}
        for name, keep in (("All", lambda c: True), ("Things", lambda c: self.isthing[c]),
                           ("Stuff", lambda c: not self.isthing[c])):
            rows = [v for c, v in per_class.items() if keep(c)]
            result[name] = {k: float(np.mean([r[k] for r in rows])) if rows else 0.0
                            for k in ("pq", "sq", "rq")}
            result[name]["n"] = len(rows)
        return result
