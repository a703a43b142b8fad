"""`jobs/label_corpus.py --demo`: label a small synthetic corpus end to end and score it.

Writes under `demo_output/`: `shards/` (WebDataset shards of held-out synthetic
images, plus a shard of real photos when scikit-image, which ships a few, is
installed), `ground_truth/` (the synthetic images as COCO panoptic), `labels/`
(the labeling job's Parquet) and `report/` (`index.html`: every image with its
labels drawn over it, the class histogram, the score distribution, the errors),
then prints PQ of the synthetic images' labels against their ground
truth. The photos show the models on real pictures, with the synthetic vocabulary.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from pipeline.config import JobConfig
from pipeline.job import run_label_job
from pipeline.labels import rows_by_key, score_rows
from pipeline.report import render_report
from pipeline.shards import synthetic_sample, write_shards
from samcp.data.categories import SYNTHETIC_CATEGORIES
from samcp.data.coco import export_coco
from samcp.data.imageio import encode_image
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.eval.evaluator import PanopticEvaluator


def run_demo(cfg: JobConfig, num_images: int = 16, shard_size: int = 8, root: str = "demo_output",
             log: Callable[[str], None] = print) -> dict:
    """Label `num_images` held-out synthetic images with `cfg`'s models; returns the PQ summary.

    `cfg.inputs` and `cfg.output` are replaced by the demo's own; earlier demo
    labels are overwritten. Without `cfg.ray_address` the demo starts a Ray of its
    own, even when another one runs on this machine.
    """
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))
    images = [corpus[i] for i in range(num_images)]
    log(f"[demo] {num_images} held-out synthetic images -> {root}/shards (ground truth: {root}/ground_truth)")
    shards = write_shards((synthetic_sample(image) for image in images), os.path.join(root, "shards"),
                          shard_size, progress=False)
    export_coco(images, os.path.join(root, "ground_truth"), SYNTHETIC_CATEGORIES)
    photos = sample_photos()
    if photos:
        log(f"[demo] {len(photos)} photos from scikit-image's sample data -> {root}/photos")
        samples = [{"__key__": key, "jpg": encode_image(photo, "jpg")} for key, photo in photos.items()]
        shards += write_shards(samples, os.path.join(root, "photos"), len(photos), progress=False)
    cfg = dataclasses.replace(cfg, inputs=tuple(shards), output=os.path.join(root, "labels"), overwrite=True,
                              ray_address=cfg.ray_address or "local")
    run_label_job(cfg, log)

    report = render_report(cfg.output, os.path.join(root, "report"), sample=num_images + len(photos),
                           log=lambda _: None)
    for key, reason in report["not_shown"].items():
        log(f"[demo] {key}: not shown: {reason}")
    summary = score_rows(rows_by_key(cfg.output), os.path.join(root, "ground_truth"), desc="score")
    log(f"[demo] labels: {cfg.output}/*.parquet, report: {root}/report/index.html; "
        "PQ against the synthetic ground truth:")
    log(PanopticEvaluator.format(summary))
    return summary


def sample_photos() -> dict[str, np.ndarray]:
    """A few real photos that scikit-image ships (none when it is not installed), keyed `photo-NAME`."""
    try:
        from skimage import data
    except ImportError:
        return {}
    return {f"photo-{name}": getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}
