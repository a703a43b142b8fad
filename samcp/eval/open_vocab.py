"""Open-vocabulary quality: PQ on class names the head was trained with vs names it never saw.

A head trained with a vocabulary of seen classes labels held-out synthetic images with the full
vocabulary; PQ is averaged separately over the seen and the held-out thing classes (each class
that occurs counts once, as in PQ's own class average), for each CLIP ensemble weight kappa
(one weight for every class: `kappa` and `kappa_seen` both). SAM and the head run once per
image; only the post-processing runs per kappa.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.eval.evaluator import PanopticEvaluator


def group_pq(per_class: dict[str, dict], names: set[str]) -> dict:
    """Mean PQ/SQ/RQ over the classes of `names` that occur in `per_class` (name -> stats)."""
    rows = [v for name, v in per_class.items() if name in names]
    return {**{k: float(np.mean([r[k] for r in rows])) if rows else 0.0 for k in ("pq", "sq", "rq")},
            "n": len(rows)}


def region_accuracy(classifier, vocab, corpus: SyntheticCorpus, num_images: int, seen: set[str]) -> dict:
    """Share of the ground-truth segments of images 0..num_images-1 that the CLIP region classifier
    names right (argmax over `vocab`): seen things, held-out things, stuff, and for all things the
    object and the pattern word alone ("striped kite": "kite", "striped")."""
    names = {c.id: c.name for c in corpus.categories}
    things = {c.id for c in corpus.categories if c.isthing}
    hits: dict[str, list[bool]] = {"seen_things": [], "held_out_things": [], "stuff": [],
                                   "thing_object": [], "thing_pattern": []}
    for index in range(num_images):
        sample = corpus[index]
        masks = torch.stack([torch.from_numpy(sample.panoptic == s.id) for s in sample.segments])
        guesses = classifier(torch.from_numpy(sample.image), masks).argmax(-1).tolist()
        for segment, guess in zip(sample.segments, guesses):
            truth, named = names[segment.category_id], vocab.classes[guess].name
            if segment.category_id not in things:
                hits["stuff"].append(truth == named)
                continue
            hits["seen_things" if truth in seen else "held_out_things"].append(truth == named)
            hits["thing_object"].append(truth.split()[-1] == named.split()[-1])
            hits["thing_pattern"].append(truth.split()[0] == named.split()[0])
    return {k: float(np.mean(v)) if v else 0.0 for k, v in hits.items()}


def evaluate_open_vocabulary(labeler, seen: Sequence[str], kappas: Sequence[float], num_images: int,
                             attributes: tuple[str, ...], split: str = "val") -> dict:
    """{kappa: {"pq": All/Things/Stuff, "seen_things", "held_out_things", "held_out_over_seen",
    "per_class"}, "clip_region_accuracy": see `region_accuracy`} for a `samcp.Labeler` built with
    the full vocabulary and a region classifier."""
    if labeler.region_classifier is None:
        raise ValueError("the labeler has no CLIP region classifier: build it with a CLIP checkpoint")
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS[split], attributes=attributes))
    evaluators = {k: PanopticEvaluator(corpus.categories) for k in kappas}
    settings = {k: dataclasses.replace(labeler.postprocess, kappa=k, kappa_seen=k) for k in kappas}
    for index in tqdm(range(num_images), desc="open vocabulary", unit="img"):
        sample = corpus[index]
        patches = labeler.generator([sample.image])[0]
        outputs = labeler.head_outputs([patches], [sample.image])  # the same for every kappa
        truth = sample.metadata()["segments_info"]
        for kappa, evaluator in evaluators.items():
            result = labeler.label_outputs([patches], outputs, settings[kappa])[0]
            evaluator.update(sample.panoptic, truth, result.id_map, result.segments)
    things = {c.name for c in corpus.categories if c.isthing}
    seen_things, held_out = things & set(seen), things - set(seen)
    results = {"clip_region_accuracy": region_accuracy(labeler.region_classifier, labeler.vocab, corpus,
                                                       num_images, set(seen))}
    for kappa, evaluator in evaluators.items():
        summary = evaluator.summary()
        seen_pq = group_pq(summary["per_class"], seen_things)
        held_pq = group_pq(summary["per_class"], held_out)
        results[kappa] = {"pq": summary["pq"], "seen_things": seen_pq, "held_out_things": held_pq,
                          "held_out_over_seen": held_pq["pq"] / seen_pq["pq"] if seen_pq["pq"] else 0.0,
                          "per_class": summary["per_class"]}
    return results
