"""PQ/SQ/RQ, mask AP and mIoU of panoptic predictions, image by image."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from samcp.data.categories import Category
from samcp.data.coco import PanopticDataset
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.eval.instances import MaskAP
from samcp.eval.panoptic import PanopticQuality
from samcp.eval.semantic import SemanticIoU


class PanopticEvaluator:
    def __init__(self, categories: Sequence[Category]):
        self.categories = list(categories)
        self.pq = PanopticQuality({c.id: c.isthing for c in categories})
        self.miou = SemanticIoU([c.id for c in categories])
        self.ap = MaskAP([c.id for c in categories if c.isthing])

    def update(self, gt: np.ndarray, gt_segments: Sequence[Mapping], pred: np.ndarray,
               pred_segments: Sequence[Mapping]) -> None:
        """(H, W) id maps with their segment lists; predicted segments carry a `score` for AP."""
        for metric in (self.pq, self.miou, self.ap):
            metric.update(gt, gt_segments, pred, pred_segments)

    def summary(self) -> dict:
        pq = self.pq.summary()
        names = {c.id: c.name for c in self.categories}
        return {
            "pq": {k: pq[k] for k in ("All", "Things", "Stuff")},
            "per_class": {names[c]: v for c, v in pq["per_class"].items()},
            "mask_ap": self.ap.summary(),
            "miou": self.miou.summary()["miou"],
        }

    @staticmethod
    def format(summary: dict) -> str:
        lines = [f"{'':8s}{'PQ':>7s}{'SQ':>7s}{'RQ':>7s}{'n':>4s}"]
        for group in ("All", "Things", "Stuff"):
            r = summary["pq"][group]
            lines.append(f"{group:8s}{r['pq']:7.1f}{r['sq']:7.1f}{r['rq']:7.1f}{r['n']:4d}")
        ap = summary["mask_ap"]
        lines.append(f"mask AP {ap['ap']:.1f} (AP50 {ap['ap50']:.1f}, AP75 {ap['ap75']:.1f})   "
                     f"mIoU {summary['miou']:.1f}")
        return "\n".join(lines)


def evaluate_on_synthetic(labeler, split: str, num_images: int, desc: str = "label + evaluate",
                          **corpus_options) -> dict:
    """Label images 0..num_images-1 of a synthetic split with `labeler` (a `samcp.Labeler`) and
    score them; `corpus_options` are `SyntheticConfig` fields (e.g. `attributes`, `thing_hues`)."""
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS[split], **corpus_options))
    evaluator = PanopticEvaluator(corpus.categories)
    for index in tqdm(range(num_images), desc=desc, unit="img"):
        sample = corpus[index]
        result = labeler.label(sample.image)
        evaluator.update(sample.panoptic, sample.metadata()["segments_info"], result.id_map, result.segments)
    return evaluator.summary()


Prediction = tuple[np.ndarray, Sequence[Mapping]]


def evaluate_against(ground_truth: PanopticDataset,
                     predict: Callable[[str], Prediction | None], desc: str = "evaluate") -> dict:
    """Score predictions for every image of a COCO panoptic dataset.

    `predict(stem)` gets the annotation's PNG name without extension (the sample
    key for folders written by this project) and returns (id map, segments), or
    None for an image with no prediction, which is scored as empty and reported.
    """
    evaluator = PanopticEvaluator(ground_truth.categories)
    missing = []
    for name, annotation in tqdm(ground_truth.annotations.items(), desc=desc, unit="img"):
        gt_ids = ground_truth.ids(name)
        prediction = predict(name.rsplit(".", 1)[0])
        if prediction is None:
            missing.append(name)
            prediction = (np.zeros_like(gt_ids), [])
        pred_ids, segments = prediction
        evaluator.update(gt_ids, annotation["segments_info"], pred_ids,
                         [{"score": 1.0, **s} for s in segments])
    if missing:
        print(f"warning: {len(missing)} images have no prediction (scored as empty), e.g. {missing[0]}",
              file=sys.stderr)
    return evaluator.summary()
