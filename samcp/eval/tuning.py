"""Post-processing settings scored on labeled synthetic images: each image's SAM patches are
computed once, the SAM-CP head runs once per image, and post-processing once per setting and
image."""

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
    samples = [corpus[i] for i in indices]
    evaluators = [PanopticEvaluator(corpus.categories) for _ in settings]
    for sample in tqdm(samples, desc="images", unit="img"):
        patches = labeler.generator([sample.image])[0]
        outputs = labeler.head_outputs([patches], [sample.image])
        for setting, evaluator in zip(settings, evaluators):
            result = labeler.label_outputs([patches], outputs, setting)[0]
            evaluator.update(sample.panoptic, sample.metadata()["segments_info"], result.id_map,
                             result.segments)
    results = []
    for setting, evaluator in zip(settings, evaluators):
        summary = evaluator.summary()
        results.append({"postprocess": dataclasses.asdict(setting), "pq": summary["pq"],
                        "mask_ap": summary["mask_ap"], "miou": summary["miou"]})
    return results
