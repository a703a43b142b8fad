"""How good are SAM's patches as raw material for SAM-CP?

Oracle PQ: each ground-truth segment takes the union of the patches that lie
mostly (> 50% of the patch's area) inside it, with the ground-truth class; the
PQ of that prediction is the ceiling any patch-merging head can reach. Recall
at IoU t: the share of ground-truth wholes (thing and stuff segments) and parts
(pieces of multi-part things) that some single patch covers with IoU >= t.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from samcp.data.categories import Category
from samcp.data.synthetic import SyntheticImage
from samcp.eval.panoptic import PanopticQuality

RECALL_THRESHOLDS = (0.5, 0.75)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between masks a (N, H, W) and b (K, H, W), both bool: (N, K)."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1)


def oracle_panoptic(patches: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The oracle prediction (H, W) of segment ids for patches (N, H, W) over a ground-truth id map (H, W).

    Where unions of different segments overlap, the smaller segment's union wins.
    """
    pred = np.zeros_like(gt)
    if len(patches) == 0:
        return pred
    ids, areas = np.unique(gt, return_counts=True)
    flat = patches.reshape(len(patches), -1)
    owner = np.zeros(len(patches), dtype=gt.dtype)
    for segment_id in ids[ids > 0]:
        inside = flat[:, (gt == segment_id).ravel()].sum(1)
        owner[inside * 2 > flat.sum(1)] = segment_id
    for segment_id in ids[np.argsort(-areas)]:
        if segment_id == 0 or not np.any(owner == segment_id):
            continue
        pred[np.any(patches[owner == segment_id], axis=0)] = segment_id
    return pred


class PatchQuality:
    """Accumulates oracle PQ and whole/part recall over images."""

    def __init__(self, categories: Mapping[int, Category]):
        self.categories = categories
        self.oracle = PanopticQuality({c.id: c.isthing for c in categories.values()})
        self.hits: dict[str, list[float]] = defaultdict(list)  # group -> best IoU per target
        self.hits_by_class: dict[str, list[float]] = defaultdict(list)  # class name -> best IoU per whole
        self.patch_counts: list[int] = []

    def update(self, patches: np.ndarray, sample: SyntheticImage) -> None:
        """patches: (N, H, W) bool for `sample`'s image."""
        segments = sample.metadata()["segments_info"]
        pred = oracle_panoptic(patches, sample.panoptic)
        pred_segments = [s for s in segments if np.any(pred == s["id"])]
        self.oracle.update(sample.panoptic, segments, pred, pred_segments)
        self.patch_counts.append(len(patches))

        groups = {"things": [], "stuff": [], "parts": []}
        names = {"things": [], "stuff": []}  # class name of each whole
        for s in sample.segments:
            category = self.categories[s.category_id]
            group = "things" if category.isthing else "stuff"
            groups[group].append(sample.panoptic == s.id)
            names[group].append(category.name)
            if len(category.parts) >= 2:
                groups["parts"] += [sample.part_map == p.id for p in sample.parts
                                    if p.segment_id == s.id]
        for name, masks in groups.items():
            if not masks:
                continue
            best = (pairwise_iou(patches, np.stack(masks)).max(0) if len(patches)
                    else np.zeros(len(masks)))
            self.hits[name] += best.tolist()
            for class_name, iou in zip(names.get(name, ()), best.tolist()):
                self.hits_by_class[class_name].append(iou)

    def summary(self) -> dict:
        pq = self.oracle.summary()
        result = {"oracle_pq": {k: pq[k] for k in ("All", "Things", "Stuff")},
                  "patches_per_image": float(np.mean(self.patch_counts)) if self.patch_counts else 0.0}
        wholes = self.hits["things"] + self.hits["stuff"]
        for name, values in (("wholes", wholes), ("things", self.hits["things"]),
                             ("stuff", self.hits["stuff"]), ("parts", self.hits["parts"])):
            result[f"recall_{name}"] = recall(values)
        result["recall_by_class"] = {name: recall(values)
                                     for name, values in sorted(self.hits_by_class.items())}
        return result


def recall(best_ious: list[float]) -> dict:
    """Share of targets whose best patch IoU reaches each of `RECALL_THRESHOLDS`, and their count."""
    best = np.asarray(best_ious)
    result: dict = {f"{t:.2f}": float((best >= t).mean()) if best.size else 0.0 for t in RECALL_THRESHOLDS}
    result["count"] = int(best.size)
    return result
