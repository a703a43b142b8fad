"""Retrain a head on a labeling job's pseudo-labels (self-training): a patch cache, then the trainer.

The labels' manifest names the SAM, its patch settings, the CLIP and the vocabulary that
made them; the cache (`OUTPUT/cache`, `pipeline.train.cache`) cuts the same patches with
the same models, and the one trainer (`pipeline.train.trainer`) retrains the starting
head on it. Images with real labels can train alongside (`ground_truth_images`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.inputs import expand_inputs
from pipeline.output import LabelOutput
from pipeline.selftrain.selection import ScoreFilter
from pipeline.train.cache import VIEW_HELP, CacheConfig, LabelSource, run_cache_job
from pipeline.train.trainer import TrainConfig, run_training
from samcp.checkpoint import file_sha256
from samcp.clip.region import check_clip_width
from samcp.data.coco import PanopticDataset
from samcp.data.decode import DecodeConfig
from samcp.flags import add_config_arguments, config_from_args
from samcp.model.factory import build_head
from samcp.shipped import checkpoint_file
from samcp.storage import absolute, absolute_reference, child

# The retraining settings that self-training shares with a single retraining run: one flag group
# (`add_retraining_arguments`).
RETRAINING_FIELDS = ("ground_truth_images", "ground_truth", "workers", "use_gpu", "epochs", "mirror", "turn",
                     "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip", "seed")


@dataclass(frozen=True)
class PseudoTrainConfig:
    labels: str  # output URI of jobs/label_corpus.py
    images: tuple[str, ...]  # the shards that were labeled (URIs, globs, brace patterns)
    output: str  # run URI: the patch cache, checkpoints, metrics, the final head
    init: str = "shipped"  # head checkpoint to start from
    # The SAM that made the labels, when the manifest's no longer is (e.g. "shipped" was updated since).
    sam_checkpoint: str | None = None
    scores: ScoreFilter = field(default_factory=ScoreFilter)
    ground_truth_images: tuple[str, ...] = field(default=(), metadata={
        "help": "shards of images with real labels, trained on too (they keep classes alive that the "
                "pseudo-labels miss): the labels inside each sample (samcp shards synthetic or coco), "
                "or those of --ground-truth", "repeat": True})
    ground_truth: str | None = field(default=None, metadata={
        "help": "a COCO panoptic folder that labels the --ground-truth-images (PNGs named by sample key)"})
    workers: int = field(default=2, metadata={"help": "Ray Train workers (DDP)"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker"})
    epochs: int = 10
    mirror: bool = field(default=False, metadata={"help": VIEW_HELP["mirror"]})
    turn: bool = field(default=False, metadata={"help": VIEW_HELP["turn"]})
    batch_size: int = field(default=4, metadata={"help": "images per worker and step"})
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0
    storage_options: dict | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    ray_address: str | None = None


def add_retraining_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `RETRAINING_FIELDS` and of the pseudo-label filter (`ScoreFilter`), as groups."""
    add_config_arguments(parser.add_argument_group("retraining"), PseudoTrainConfig, only=RETRAINING_FIELDS)
    add_config_arguments(parser.add_argument_group("pseudo-labels kept"), ScoreFilter)


def retraining_config(args: argparse.Namespace, **fields) -> PseudoTrainConfig:
    """The `PseudoTrainConfig` of the flags of `add_retraining_arguments`, then `fields`."""
    return config_from_args(PseudoTrainConfig, args, only=RETRAINING_FIELDS,
                            scores=config_from_args(ScoreFilter, args), **fields)


def labeling_models(labeling: dict, sam_checkpoint: str | None = None,
                    storage_options: dict | None = None) -> dict:
    """The manifest's `labeling` with SAM at `sam_checkpoint` (when given), after checking that SAM
    and CLIP are still the files that made the labels (their sha256 in the manifest): the examples
    must be cut into the same patches, with the same CLIP, as the labels were."""
    labeling = {**labeling, "sam": {**labeling["sam"],
                                    "checkpoint": sam_checkpoint or labeling["sam"]["checkpoint"]}}
    for part, flag in (("sam", "--sam-checkpoint"), ("clip", None)):
        model = labeling[part]
        if model["checkpoint"] in (None, "none") or not model.get("sha256"):
            continue  # random weights, or a manifest from before sha256 was recorded
        digest = file_sha256(checkpoint_file(part, model["model"], model["checkpoint"]), storage_options)
        if digest != model["sha256"]:
            fix = f"; pass the {part.upper()} checkpoint that made them with {flag}" if flag else ""
            raise ValueError(f"the labels were made with a {part.upper()} checkpoint of sha256 "
                             f"{model['sha256'][:12]}..., but {model['checkpoint']!r} is now "
                             f"{digest[:12]}...{fix}")
    return labeling


def run_pseudo_training(cfg: PseudoTrainConfig, log: Callable[[str], None] = print) -> dict:
    """Cache and train; returns the metrics, the number of training examples and the final head's path."""
    cfg = dataclasses.replace(cfg, labels=absolute(cfg.labels), output=absolute(cfg.output),
                              init=absolute_reference(cfg.init),
                              sam_checkpoint=absolute_reference(cfg.sam_checkpoint),
                              ground_truth=cfg.ground_truth and absolute(cfg.ground_truth))
    if cfg.ground_truth and not cfg.ground_truth_images:
        raise ValueError("--ground-truth labels the shards of --ground-truth-images: name them")
    if cfg.ground_truth:
        PanopticDataset.folder(cfg.ground_truth)  # a wrong folder fails now, not in a reading task
    labels = LabelOutput(cfg.labels, cfg.storage_options)
    labeling = labeling_models(labels.manifest()["labeling"], cfg.sam_checkpoint, cfg.storage_options)
    head = build_head(cfg.init, cfg.storage_options, labeling["sam"]["model"])  # what the cache holds
    check_clip_width(head.config.clip_dim, labeling["clip"]["model"])
    shards = expand_inputs(list(cfg.images), cfg.storage_options)
    labeled = labels.finished_shards(shards)
    missing = [s for s in shards if s not in labeled]
    if missing:
        log(f"[pseudo] {len(missing)} of {len(shards)} shards have no labels in {cfg.labels} "
            f"and are left out, e.g. {missing[0]}")
    if not labeled:
        raise ValueError(f"none of the {len(shards)} shards has labels in {cfg.labels}")
    sources = [LabelSource("pseudo", tuple(s for s in shards if s in labeled), cfg.labels, cfg.scores)]
    if cfg.ground_truth_images:
        sources.append(LabelSource("coco" if cfg.ground_truth else "truth", cfg.ground_truth_images,
                                   cfg.ground_truth))
    cache = child(cfg.output, "cache", cfg.storage_options)
    train = TrainConfig(cache=cache, output=cfg.output, init=cfg.init, workers=cfg.workers,
                        use_gpu=cfg.use_gpu, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                        weight_decay=cfg.weight_decay, schedule="cosine", warmup_steps=cfg.warmup_steps,
                        grad_clip=cfg.grad_clip, seed=cfg.seed,
                        storage_options=cfg.storage_options, ray_address=cfg.ray_address)
    summary = run_cache_job(CacheConfig(cache, roi_size=head.config.roi_size, clip_dim=head.config.clip_dim,
                                        backbone=head.config.backbone,
                                        mirror=cfg.mirror, turn=cfg.turn,
                                        num_gpus_per_actor=1.0 if cfg.use_gpu else 0.0, decode=cfg.decode,
                                        storage_options=cfg.storage_options, ray_address=cfg.ray_address),
                            labeling, sources, log)
    if summary["failed"]:
        raise RuntimeError(f"{len(summary['failed'])} shards could not be cached, e.g. "
                           f"{next(iter(summary['failed'].values()))}; rerun once they are fixed")
    return run_training(train, log=log)
