"""The SAM-CP head's trainer: Ray Train (`TorchTrainer`, DDP) over a patch cache streamed from storage.

Every training job of the project ends here (`jobs/train_samcp.py` on ground truth,
`jobs/train_on_pseudo_labels.py` and self-training on pseudo-labels): the examples of a
patch cache (`pipeline.train.cache`, any fsspec URI) are read by Ray Data each epoch, in
a fresh block order and local shuffle, and split across the workers as they stream;
never held whole in the object store or in one process. AdamW with warm-up and cosine
decay, bf16 autocast on GPU, the losses of `samcp.train.criterion`. Every
`--checkpoint-every` steps and at each epoch's end the state goes to `OUTPUT/train/`
through Ray Train's storage (any fsspec URI); a rerun with the same `--output` resumes
from the latest, also after a killed run. With `--val` shards (ground truth inside),
rank 0 labels their first `--val-images` images after every epoch and the metrics log
gets their PQ. The finished head is `OUTPUT/samcp_head.pt`, `OUTPUT/metrics.json`
holds the metrics.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import open_clip
import pyarrow.fs
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from fsspec.implementations.local import LocalFileSystem

from pipeline.cluster import init_ray
from pipeline.output import labeling_vocabulary
from pipeline.train.cache import CacheFolder
from pipeline.train.validation import Validator
from samcp.checkpoint import load_state_dict, weights_fingerprint
from samcp.clip.region import check_clip_width
from samcp.clip.text_encoder import TextEncoder
from samcp.model.factory import build_head, check_head_fits, save_head
from samcp.model.head import HeadConfig, SamCPHead
from samcp.sam.build import build_sam
from samcp.shipped import checkpoint_file
from samcp.storage import absolute, absolute_reference, child, join, open_uri, resolve
from samcp.train.criterion import CriterionConfig
from samcp.train.head import CachedImage, train_step
from samcp.train.loop import SCHEDULES

RUN_NAME = "train"
STATE = "state.pt"


@dataclass(frozen=True)
class TrainConfig:
    """One training run of the head on a patch cache. Each field is the flag of the same name."""

    cache: str = field(metadata={"help": "the patch cache to train on (folder URI)"})
    output: str = field(metadata={"help": "run URI: checkpoints, metrics.json, samcp_head.pt"})
    init: str | None = field(default=None, metadata={
        "help": "head checkpoint to start from (default: a new head of the architecture flags)"})
    backbone_checkpoint: str | None = field(default=None, metadata={
        "help": "torchvision ResNet-50 weights (path or URI) for a new head with --backbone resnet50 "
                "(default: random weights)"})
    val: tuple[str, ...] = field(default=(), metadata={
        "help": "shards with ground truth inside (make_shards.py synthetic or coco): PQ of their first "
                "--val-images images after every epoch, in the metrics", "repeat": True})
    val_images: int = field(default=16, metadata={"help": "images of --val scored after every epoch"})
    workers: int = field(default=2, metadata={"help": "Ray Train workers (DDP)"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker (bf16 autocast)"})
    epochs: int = field(default=12, metadata={"help": "passes over the cache (unless --steps)"})
    steps: int | None = field(default=None, metadata={
        "help": "optimizer steps in all (default: --epochs passes over the cache)"})
    batch_size: int = field(default=8, metadata={"help": "images per worker and step"})
    lr: float = 2e-4
    weight_decay: float = 1e-4
    schedule: str = field(default="step", metadata={
        "help": "learning rate after warm-up: step (x0.1 at 8/12 and 11/12 of the run) or cosine",
        "choices": sorted(SCHEDULES)})
    warmup_steps: int = 100
    grad_clip: float = field(default=0.1, metadata={"help": "gradient norm clip"})
    seed: int = 0
    checkpoint_every: int = field(default=200, metadata={"help": "steps between checkpoints"})
    object_store_mib: int = field(default=128, metadata={
        "help": "Ray Data's object store budget for reading the cache ahead of the workers, in MiB"})
    criterion: CriterionConfig = field(default_factory=CriterionConfig)
    storage_options: dict | None = None
    ray_address: str | None = None


@dataclass(frozen=True)
class Plan:
    """The step counts of a run, the same on every worker (DDP steps together)."""

    examples: int
    steps_per_epoch: int
    total_steps: int

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)


def plan(cfg: TrainConfig, examples: int) -> Plan:
    steps_per_epoch = examples // (cfg.workers * cfg.batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"the cache's {examples} examples are too few for {cfg.workers} workers x batch "
                         f"{cfg.batch_size}: cache more images, or lower --workers or --batch-size")
    return Plan(examples, steps_per_epoch, cfg.steps or cfg.epochs * steps_per_epoch)


def train_worker(config: dict) -> None:
    """Ray Train's per-worker loop: DDP over the head; rank 0 writes the checkpoints and scores --val."""
    cfg: TrainConfig = config["cfg"]
    steps: Plan = config["plan"]
    labeling = config["labeling"]
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)
    head = config["head"].to(device).train()
    optimizer = torch.optim.AdamW(head.parameter_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    vocab = labeling_vocabulary(labeling)
    text = TextEncoder(labeling["clip"]["model"], labeling["clip"]["checkpoint"], cfg.storage_options,
                       device=device)
    stuff_text, thing_text = vocab.split(text.embed(vocab).to(device))
    step, history, resumed_at = 0, [], []
    state = restored_state(config["saved"], cfg.storage_options)
    if state is not None:
        head.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], json.loads(state["history"])
        resumed_at = json.loads(state["resumed_at"]) + [step]
    model = ray.train.torch.prepare_model(head)
    rank = ray.train.get_context().get_world_rank()
    validator = Validator(labeling, cfg.val, cfg.val_images, cfg.storage_options, device) \
        if cfg.val and rank == 0 else None
    shard = ray.train.get_dataset_shard("train")
    losses: list[dict[str, float]] = []
    while step < steps.total_steps:
        epoch, done_in_epoch = divmod(step, steps.steps_per_epoch)
        batches = shard.iter_batches(batch_size=cfg.batch_size, batch_format="numpy",
                                     local_shuffle_buffer_size=4 * cfg.batch_size,
                                     local_shuffle_seed=cfg.seed * 1000 + epoch)
        # Equal steps on every worker (DDP); a resumed epoch passes over the batches it trained on.
        for index, batch in zip(range(steps.steps_per_epoch), batches):
            if index < done_in_epoch:
                continue
            examples = [CachedImage.from_bytes(data) for data in batch["example"]]
            lr = SCHEDULES[cfg.schedule](cfg.lr, cfg.warmup_steps, steps.total_steps, step)
            losses.append(train_step(model, optimizer, examples, stuff_text, thing_text, cfg.criterion, lr,
                                     cfg.grad_clip, device))
            step += 1
            epoch_end = index + 1 == steps.steps_per_epoch or step == steps.total_steps
            if step % cfg.checkpoint_every == 0 or epoch_end:
                metrics = {"epoch": epoch + 1, "step": step, "lr": lr, **mean_over_workers(losses, device)}
                if epoch_end and validator is not None:
                    metrics["val_pq"] = validator.pq(head.eval())
                    head.train()
                losses = []
                history.append(metrics)
                report(metrics, rank, head, optimizer, step, history, resumed_at)
            if step == steps.total_steps:
                break


def restored_state(saved: list[str], storage_options: dict | None) -> dict | None:
    """The training state to resume from: Ray Train's restored checkpoint, else the newest readable
    of `saved` (state files of this run's checkpoints, newest first: a killed driver leaves Ray Train
    nothing to restore), else None."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            return torch.load(os.path.join(folder, STATE), map_location="cpu", weights_only=True)
    for uri in saved:
        try:
            with open_uri(uri, "rb", storage_options) as f:
                return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a state cut by the kill: the one before it
            continue
    return None


def saved_states(output: str, storage_options: dict | None) -> list[str]:
    """The URIs of the state files of the checkpoints in `output`/train/, newest first."""
    fs, root = resolve(output, storage_options)
    fs.invalidate_cache()
    found = sorted(fs.glob(join(fs, root, RUN_NAME, "checkpoint_*", STATE)), reverse=True)
    return [p if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(p) for p in found]


def mean_over_workers(losses: list[dict[str, float]], device: torch.device) -> dict[str, float]:
    """Each loss averaged over the steps since the last report and over every worker."""
    names = sorted(losses[0])
    values = torch.tensor([float(np.mean([loss[k] for loss in losses])) for k in names], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return dict(zip(names, values.tolist()))


def report(metrics: dict, rank: int, head: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
           history: list[dict], resumed_at: list[int]) -> None:
    """Report the metrics from every worker, and the checkpoint from rank 0 (`resumed_at`: the steps
    at which this run was resumed)."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            torch.save({"model": head.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                        "history": json.dumps(history), "resumed_at": json.dumps(resumed_at)},
                       os.path.join(folder, STATE))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)


def read_ahead(object_store_mib: int) -> ray.train.DataConfig:
    """Ray Train's data config with Ray Data's object store budget set: reading outruns training,
    and would otherwise buffer as much of the cache as the object store holds."""
    options = ray.train.DataConfig.default_ingest_options()
    options.resource_limits = options.resource_limits.copy(object_store_memory=object_store_mib * 2**20)
    return ray.train.DataConfig(execution_options=options)


def storage(output: str, storage_options: dict | None) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """(storage_path, filesystem) for Ray Train and Ray Data: an fsspec filesystem, wrapped."""
    fs, path = resolve(output, storage_options)
    if isinstance(fs, LocalFileSystem):
        return os.path.abspath(path), None
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def starting_head(cfg: TrainConfig, head_config: HeadConfig, labeling: dict, examples: dict) -> SamCPHead:
    """The head to train: `cfg.init`'s, or a new one of `head_config` with the SAM's and CLIP's widths;
    refused when it does not read what the cache holds (SAM, RoI size, CLIP region embeddings)."""
    sam, clip = labeling["sam"], labeling["clip"]
    sam_file = checkpoint_file("sam", sam["model"], sam["checkpoint"])
    sam_weights = "" if sam_file is None else weights_fingerprint(
        load_state_dict(sam_file, cfg.storage_options))
    if cfg.init:
        head = build_head(cfg.init, cfg.storage_options, sam["model"])
    else:
        text_dim = open_clip.get_model_config(clip["model"])["embed_dim"]
        if head_config.reads_sam_embedding:
            with torch.device("meta"):
                width = build_sam(sam["model"], None).prompt_encoder.embed_dim
            head_config = dataclasses.replace(head_config, feature_dim=width, text_dim=text_dim)
        else:
            head_config = dataclasses.replace(head_config, text_dim=text_dim)
        head = SamCPHead(head_config)
        if cfg.backbone_checkpoint:
            if head.backbone is None:
                raise ValueError("--backbone-checkpoint is for a head with --backbone resnet50")
            head.backbone.load_torchvision(cfg.backbone_checkpoint, cfg.storage_options)
    check_clip_width(head.config.clip_dim, clip["model"])
    check_head_fits(head, sam["model"], sam_weights or None)
    for name in ("roi_size", "clip_dim", "backbone"):
        if getattr(head.config, name) != examples[name]:
            raise ValueError(f"the head reads {name} {getattr(head.config, name)}, the cache holds "
                             f"{examples[name]}: build a cache for this head (--{name.replace('_', '-')})")
    classes = tuple(c.name for c in labeling_vocabulary(labeling).classes)
    head.trained_classes = tuple(dict.fromkeys(head.trained_classes + classes))
    head.sam_model, head.sam_weights = sam["model"], sam_weights  # the examples' embeddings came from it
    return head


def run_training(cfg: TrainConfig, head_config: HeadConfig | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Train (or resume) on `cfg.cache`; returns the metrics, the plan and the path of the final head."""
    cfg = dataclasses.replace(cfg, cache=absolute(cfg.cache), output=absolute(cfg.output),
                              init=absolute_reference(cfg.init), val=tuple(absolute(v) for v in cfg.val),
                              backbone_checkpoint=absolute_reference(cfg.backbone_checkpoint))
    folder = CacheFolder(cfg.cache, cfg.storage_options)
    manifest = folder.manifest()
    finished = folder.finished()
    labeling = manifest["labeling"]
    head = starting_head(cfg, head_config or HeadConfig(), labeling, manifest["examples"])
    examples = finished["examples"]
    steps = plan(cfg, examples)
    log(f"[train] {examples} cached examples, {steps.steps_per_epoch} steps per epoch on {cfg.workers} "
        f"workers, {steps.total_steps} steps ({steps.epochs} epochs)")
    init_ray(cfg.ray_address)
    _, cache_fs = storage(cfg.cache, cfg.storage_options)
    paths = [folder.path(name) for name in finished["files"]]
    # One reading task per training worker at a time: each task's process keeps its memory while idle,
    # so more concurrent reads (as many as the CPUs allow, by default) would grow with the cache's files.
    dataset = ray.data.read_parquet(paths, filesystem=cache_fs, columns=["example"], num_cpus=0.25,
                                    concurrency=cfg.workers).randomize_block_order()
    storage_path, filesystem = storage(cfg.output, cfg.storage_options)
    # CPU workers leave a CPU to Ray Data, which lists the cache files and streams the examples to them.
    cpus = 1.0 if cfg.use_gpu else min(1.0, (ray.cluster_resources().get("CPU", 2.0) - 1.0) / cfg.workers)
    trainer = ray.train.torch.TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg, "plan": steps, "labeling": labeling, "head": head,
                           "saved": saved_states(cfg.output, cfg.storage_options)},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={"CPU": cpus}),
        run_config=ray.train.RunConfig(name=RUN_NAME, storage_path=storage_path,
                                       storage_filesystem=filesystem,
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        datasets={"train": dataset}, dataset_config=read_ahead(cfg.object_store_mib))
    result = trainer.fit()
    with result.checkpoint.as_directory() as checkpoint:
        state = torch.load(os.path.join(checkpoint, STATE), map_location="cpu", weights_only=True)
    head.load_state_dict(state["model"])
    fs, root = resolve(cfg.output, cfg.storage_options)
    head_path = child(cfg.output, "samcp_head.pt", cfg.storage_options)
    save_head(head, head_path, storage_options=cfg.storage_options)
    history = json.loads(state["history"])
    described = {"train": describe(cfg), "head": dataclasses.asdict(head.config),
                 "plan": dataclasses.asdict(steps),
                 "cache": {k: manifest[k] for k in ("examples", "sources")}}
    with fs.open(join(fs, root, "metrics.json"), "w") as f:
        json.dump({"history": history, "images": examples, "resumed_at": json.loads(state["resumed_at"]),
                   "config": described}, f, indent=1)
    return {"history": history, "images": examples, "head": head_path, "plan": steps}


def describe(cfg) -> dict:
    """A config as JSON, without its storage options (they may hold credentials)."""
    described = dataclasses.asdict(cfg)
    described.pop("storage_options")
    return described
