"""Retrain the SAM-CP head on pseudo-labels with Ray Train (`TorchTrainer`, DDP), streaming the data.

Ray Data builds the training examples once (`pipeline.train.examples`) and keeps
them in the cluster's object store, split across the training workers; each
epoch every worker streams its share in a fresh local shuffle. Checkpoints go
to `OUTPUT/train/` through Ray Train's storage (any fsspec URI), one per epoch,
and a rerun with the same `--output` resumes from the latest. The finished
head is `OUTPUT/samcp_head.pt`, loadable like any head checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow.fs
import ray
import ray.train
import ray.train.torch
import torch
from fsspec.implementations.local import LocalFileSystem

from pipeline.cluster import init_ray
from pipeline.inputs import expand_inputs
from pipeline.output import LabelOutput, labeling_vocabulary
from pipeline.selftrain.selection import ScoreFilter
from pipeline.train.examples import ExampleBuilder, GroundTruthReader, PseudoLabelReader, ShardTruthReader
from samcp.checkpoint import file_sha256, load_state_dict, weights_fingerprint
from samcp.clip.region import check_clip_width
from samcp.clip.text_encoder import TextEncoder
from samcp.data.coco import PanopticDataset
from samcp.data.decode import DecodeConfig
from samcp.flags import add_config_arguments, config_from_args
from samcp.model.factory import build_head, check_head_fits, save_head
from samcp.model.head import HeadConfig
from samcp.shipped import checkpoint_file
from samcp.storage import absolute, absolute_reference, join, resolve
from samcp.train.criterion import CriterionConfig
from samcp.train.head import CachedImage, train_step
from samcp.train.loop import warmup_cosine

RUN_NAME = "train"
STATE = "state.pt"


# The retraining settings that self-training shares with a single retraining run: one flag group
# (`add_retraining_arguments`).
RETRAINING_FIELDS = ("ground_truth_images", "ground_truth", "workers", "use_gpu", "epochs", "mirror", "turn",
                     "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip", "seed")


@dataclass(frozen=True)
class PseudoTrainConfig:
    labels: str  # output URI of jobs/label_corpus.py
    images: tuple[str, ...]  # the shards that were labeled (URIs, globs, brace patterns)
    output: str  # run URI: checkpoints, metrics, the final head
    init: str = "shipped"  # head checkpoint to start from
    # The SAM that made the labels, when the manifest's no longer is (e.g. "shipped" was updated since).
    sam_checkpoint: str | None = None
    scores: ScoreFilter = field(default_factory=ScoreFilter)
    ground_truth_images: tuple[str, ...] = field(default=(), metadata={
        "help": "shards of images with real labels, trained on too (they keep classes alive that the "
                "pseudo-labels miss): the labels inside each sample (make_shards.py synthetic or coco), "
                "or those of --ground-truth", "repeat": True})
    ground_truth: str | None = field(default=None, metadata={
        "help": "a COCO panoptic folder that labels the --ground-truth-images (PNGs named by sample key)"})
    workers: int = field(default=2, metadata={"help": "Ray Train workers (DDP)"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker"})
    epochs: int = 10
    mirror: bool = field(default=False, metadata={
        "help": "every training image also enters mirrored left-right (one more example each)"})
    turn: bool = field(default=False, metadata={
        "help": "every training image also enters turned by 90, 180 or 270 degrees, picked by its key "
                "(one more example each)"})
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


def build_examples(cfg: PseudoTrainConfig, manifest: dict, head: HeadConfig, log: Callable[[str], None]):
    """The materialized dataset of serialized training examples (one row per usable image)."""
    shards = expand_inputs(list(cfg.images), cfg.storage_options)
    labeled = LabelOutput(cfg.labels, cfg.storage_options).finished_shards(shards)
    missing = [s for s in shards if s not in labeled]
    if missing:
        log(f"[pseudo] {len(missing)} of {len(shards)} shards have no labels in {cfg.labels} "
            f"and are left out, e.g. {missing[0]}")
    if not labeled:
        raise ValueError(f"none of the {len(shards)} shards has labels in {cfg.labels}")
    cpus = max(1.0, ray.cluster_resources().get("CPU", 1.0) - 0.25)
    ds = ray.data.from_items([{"shard": s} for s in shards if s in labeled], override_num_blocks=len(labeled))
    reader = PseudoLabelReader(cfg.labels, cfg.scores, cfg.storage_options, cfg.decode)
    ds = ds.flat_map(reader, num_cpus=0.25)
    if cfg.ground_truth_images:
        truth = expand_inputs(list(cfg.ground_truth_images), cfg.storage_options)
        log(f"[pseudo] with {len(truth)} shards labeled "
            f"{'in ' + cfg.ground_truth if cfg.ground_truth else 'inside their samples'}")
        reader = (GroundTruthReader(cfg.ground_truth, cfg.storage_options, cfg.decode) if cfg.ground_truth
                  else ShardTruthReader(cfg.storage_options, cfg.decode))
        ds = ds.union(ray.data.from_items([{"shard": s} for s in truth], override_num_blocks=len(truth))
                      .flat_map(reader, num_cpus=0.25))
    ds = ds.map_batches(ExampleBuilder, batch_size=4, batch_format="numpy",
                        fn_constructor_kwargs={"manifest": manifest, "roi_size": head.roi_size,
                                               "clip_dim": head.clip_dim,
                                               "storage_options": cfg.storage_options,
                                               "torch_threads": max(1, round(cpus)),
                                               "mirror": cfg.mirror, "turn": cfg.turn},
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=cpus,
                        num_gpus=1 if cfg.use_gpu else None)
    return ds.materialize()


def train_worker(config: dict) -> None:
    """Ray Train's per-worker loop: DDP over the head, one checkpoint per epoch (rank 0 writes it)."""
    cfg: PseudoTrainConfig = config["cfg"]
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)
    head = build_head(cfg.init, cfg.storage_options).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    vocab = config["vocab"]
    clip = config["clip"]
    text = TextEncoder(clip["model"], clip["checkpoint"], cfg.storage_options).embed(vocab).to(device)
    stuff_text, thing_text = vocab.split(text)
    start_epoch, step, history = 0, 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = torch.load(os.path.join(folder, STATE), map_location="cpu", weights_only=True)
        head.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = state["epoch"], state["step"], json.loads(state["history"])
    model = ray.train.torch.prepare_model(head)
    steps_per_epoch = config["steps_per_epoch"]
    total_steps = steps_per_epoch * cfg.epochs
    shard = ray.train.get_dataset_shard("train")
    criterion = CriterionConfig()
    rank = ray.train.get_context().get_world_rank()
    for epoch in range(start_epoch, cfg.epochs):
        losses = []
        batches = shard.iter_batches(batch_size=cfg.batch_size, batch_format="numpy",
                                     local_shuffle_buffer_size=4 * cfg.batch_size,
                                     local_shuffle_seed=cfg.seed * 1000 + epoch)
        for _, batch in zip(range(steps_per_epoch), batches):  # equal steps on every worker (DDP)
            examples = [CachedImage.from_bytes(data) for data in batch["example"]]
            lr = warmup_cosine(cfg.lr, cfg.warmup_steps, total_steps, step)
            losses.append(train_step(model, optimizer, examples, stuff_text, thing_text, criterion, lr,
                                     cfg.grad_clip, device))
            step += 1
        metrics = {"epoch": epoch + 1, "step": step,
                   **{k: float(np.mean([loss[k] for loss in losses])) for k in losses[0]}}
        history.append(metrics)
        with tempfile.TemporaryDirectory() as folder:
            reported = None
            if rank == 0:
                torch.save({"model": head.state_dict(), "optimizer": optimizer.state_dict(),
                            "epoch": epoch + 1, "step": step, "history": json.dumps(history)},
                           os.path.join(folder, STATE))
                reported = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=reported)


def storage(cfg: PseudoTrainConfig) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """(storage_path, filesystem) for Ray Train: the fsspec filesystem of `cfg.output`, wrapped."""
    fs, path = resolve(cfg.output, cfg.storage_options)
    if isinstance(fs, LocalFileSystem):
        return os.path.abspath(path), None
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def run_pseudo_training(cfg: PseudoTrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train; returns the per-epoch metrics and the path of the final head."""
    cfg = dataclasses.replace(cfg, labels=absolute(cfg.labels), output=absolute(cfg.output),
                              init=absolute_reference(cfg.init),
                              sam_checkpoint=absolute_reference(cfg.sam_checkpoint),
                              ground_truth=cfg.ground_truth and absolute(cfg.ground_truth))
    if cfg.ground_truth and not cfg.ground_truth_images:
        raise ValueError("--ground-truth labels the shards of --ground-truth-images: name them")
    if cfg.ground_truth:
        PanopticDataset.folder(cfg.ground_truth)  # a wrong folder fails now, not in a reading task
    manifest = LabelOutput(cfg.labels, cfg.storage_options).manifest()
    labeling = labeling_models(manifest["labeling"], cfg.sam_checkpoint, cfg.storage_options)
    manifest = {**manifest, "labeling": labeling}
    vocab = labeling_vocabulary(labeling)  # as recorded: the file may have changed since labeling
    head = build_head(cfg.init, cfg.storage_options)  # checks --init early; takes the result at the end
    check_clip_width(head.config.clip_dim, labeling["clip"]["model"])
    sam_file = checkpoint_file("sam", labeling["sam"]["model"], labeling["sam"]["checkpoint"])
    sam_weights = None if sam_file is None else weights_fingerprint(
        load_state_dict(sam_file, cfg.storage_options))
    check_head_fits(head, labeling["sam"]["model"], sam_weights)
    init_ray(cfg.ray_address)
    examples = build_examples(cfg, manifest, head.config, log)
    count = examples.count()
    steps_per_epoch = count // (cfg.workers * cfg.batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"{count} usable pseudo-labeled images are too few for {cfg.workers} workers "
                         f"x batch {cfg.batch_size}; lower --keep-score or label more images")
    log(f"[pseudo] {count} training images, {steps_per_epoch} steps per epoch on {cfg.workers} workers")
    storage_path, filesystem = storage(cfg)
    # CPU workers leave half a CPU to Ray Data, which streams the examples to them.
    cpus = 1.0 if cfg.use_gpu else min(1.0, (ray.cluster_resources().get("CPU", 1.0) - 0.5) / cfg.workers)
    trainer = ray.train.torch.TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg, "vocab": vocab,
                           "clip": {"model": labeling["clip"]["model"],
                                    "checkpoint": labeling["clip"]["checkpoint"]},
                           "steps_per_epoch": steps_per_epoch},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={"CPU": cpus}),
        run_config=ray.train.RunConfig(name=RUN_NAME, storage_path=storage_path,
                                       storage_filesystem=filesystem,
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        datasets={"train": examples})
    result = trainer.fit()
    with result.checkpoint.as_directory() as folder:
        state = torch.load(os.path.join(folder, STATE), map_location="cpu", weights_only=True)
    head.load_state_dict(state["model"])
    pseudo_classes = tuple(c.name for c in vocab.classes)
    head.trained_classes = tuple(dict.fromkeys(head.trained_classes + pseudo_classes))
    # The examples' patches and embeddings came from this SAM.
    head.sam_model, head.sam_weights = labeling["sam"]["model"], sam_weights or ""
    fs, root = resolve(cfg.output, cfg.storage_options)
    head_path = join(fs, root, "samcp_head.pt")
    if not isinstance(fs, LocalFileSystem):
        head_path = fs.unstrip_protocol(head_path)
    save_head(head, head_path, storage_options=cfg.storage_options)
    history = json.loads(state["history"])
    with fs.open(join(fs, root, "metrics.json"), "w") as f:
        json.dump({"history": history, "images": count, "config": _describe(cfg)}, f, indent=1)
    return {"history": history, "images": count, "head": head_path}


def _describe(cfg: PseudoTrainConfig) -> dict:
    described = dataclasses.asdict(cfg)
    described.pop("storage_options")  # may hold credentials
    return described
