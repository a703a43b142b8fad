"""Post-processing settings scored on labeled synthetic images: each image's SAM patches are
computed once and reused by every setting; the head and post-processing run once per setting
and image."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tqdm import tqdm

from samcp.data.synthetic import SyntheticCorpus
from samcp.eval.evaluator import PanopticEvaluator
from samcp.postprocess import PostprocessConfig


def sweep_postprocess(labeler, corpus: SyntheticCorpus, indices: Sequence[int],
                      settings: Sequence[PostprocessConfig]) -> list[dict]:
    """Score every setting on the images `corpus[i]` for i in `indices` with `labeler` (a
    `samcp.Labeler`, left with its own settings): one dict per setting, in order, with the
    setting ("postprocess") and its PQ (all / things / stuff), mask AP and mIoU."""
    if labeler.region_classifier is None and any(s.kappa for s in settings):
        raise ValueError("a kappa > 0 needs the labeler's CLIP region classifier: build the labeler "
                         "with a trained CLIP and kappa > 0")
    samples = [corpus[i] for i in indices]
    patch_sets = [labeler.generator([s.image])[0] for s in tqdm(samples, desc="SAM patches", unit="img")]
    own = labeler.postprocess
    results = []
    try:
        for setting in tqdm(settings, desc="settings", unit="setting"):
            labeler.postprocess = setting
            evaluator = PanopticEvaluator(corpus.categories)
            for sample, patches in zip(samples, patch_sets):
                result = labeler.label_patches(patches, sample.image)
                evaluator.update(sample.panoptic, sample.metadata()["segments_info"], result.id_map,
                                 result.segments)
            summary = evaluator.summary()
            results.append({"postprocess": dataclasses.asdict(setting), "pq": summary["pq"],
                            "mask_ap": summary["mask_ap"], "miou": summary["miou"]})
    finally:
        labeler.postprocess = own
    return results
