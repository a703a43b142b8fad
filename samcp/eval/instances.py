"""Mask AP of thing segments through pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samcp.data.coco import encode_rle


class MaskAP:
    """Collects thing segments of ground truth and predictions (with scores), then runs COCOeval."""

    def __init__(self, thing_ids: Sequence[int]):
        self.thing_ids = list(thing_ids)
        self.images: list[dict] = []
        self.gt: list[dict] = []
        self.dt: list[dict] = []

    def update(self, gt: np.ndarray, gt_segments: Sequence[Mapping], pred: np.ndarray,
               pred_segments: Sequence[Mapping]) -> None:
        image_id = len(self.images) + 1
        h, w = gt.shape
        self.images.append({"id": image_id, "height": h, "width": w})
        for s in gt_segments:
            if s["category_id"] in self.thing_ids:
                rle = encode_rle(gt == s["id"])
                self.gt.append({"id": len(self.gt) + 1, "image_id": image_id, "category_id": s["category_id"],
                                "segmentation": rle, "area": int(mask_utils.area(rle)),
                                "bbox": list(s.get("bbox", [0, 0, w, h])), "iscrowd": s.get("iscrowd", 0)})
        for s in pred_segments:
            if s["category_id"] in self.thing_ids:
                self.dt.append({"image_id": image_id, "category_id": s["category_id"],
                                "segmentation": encode_rle(pred == s["id"]), "score": float(s["score"])})

    def summary(self) -> dict:
        """AP, AP50, AP75 in percent (COCO's 0.5:0.95 IoU thresholds)."""
        if not self.gt or not self.dt:
            return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = {"images": self.images, "annotations": self.gt,
                               "categories": [{"id": c} for c in self.thing_ids]}
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(self.dt)
            evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = evaluator.stats
        return {"ap": 100 * float(stats[0]), "ap50": 100 * float(stats[1]), "ap75": 100 * float(stats[2])}
