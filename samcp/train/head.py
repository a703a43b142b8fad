"""Train the SAM-CP head on the synthetic corpus with SAM frozen.

SAM runs once per training image: its patches are reduced to what the head
reads (`PatchFeatures`) and assigned to the ground truth (`SegmentTargets`),
and both are cached on disk in parts of `cache_part_size` images, so a rerun
reuses them. Training then samples batches from the cache: AdamW, warm-up +
cosine schedule, bf16 autocast on GPU, resumable from `last.pt`.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from samcp.checkpoint import load_state_dict, weights_fingerprint
from samcp.clip.region import RegionEncoder, head_region_encoder
from samcp.clip.text_encoder import TextEncoder
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.model.head import HeadConfig, SamCPHead
from samcp.model.inputs import PatchFeatures, collate, patch_features, pixel_boxes
from samcp.sam.build import build_sam
from samcp.sam.patches import PatchConfig, PatchGenerator, PatchSet
from samcp.shipped import checkpoint_file
from samcp.train.assign import SegmentTargets, assign
from samcp.train.criterion import CriterionConfig, samcp_loss
from samcp.train.loop import MetricsLog, resume_state, save_state, warmup_cosine
from samcp.vocab import Vocabulary, load_vocabulary


@dataclass(frozen=True)
class HeadTrainConfig:
    sam_model: str = "tiny"
    sam_checkpoint: str = "shipped"
    clip_model: str = "samcp-clip-tiny"
    clip_checkpoint: str | None = "shipped"  # the text embeddings the head learns; None: random CLIP
    vocab: str = "builtin:synthetic"  # segments of classes outside it are ignored, not background
    attributes: tuple[str, ...] = ()  # compositional corpus (`SyntheticConfig.attributes`)
    thing_hues: tuple[float, float] = (0.0, 1.0)  # colour-shifted corpus (`SyntheticConfig.thing_hues`)
    upright_tilt: float = SyntheticConfig.upright_tilt  # rotation-shifted corpus (the same field)
    train_images: int = 1000
    data_seed: int = SPLIT_SEEDS["train"]
    image_size: int = 256
    points_per_side: int | None = None  # None: the setting tuned for `sam_model`
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    max_patches: int = 128
    cache_part_size: int = 50
    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200


@dataclass
class CachedImage:
    """One training image as the head sees it: its patches' features and their targets."""

    features: PatchFeatures
    targets: SegmentTargets

    def to_dict(self) -> dict:
        return {"features": self.features.to_dict(), "targets": vars(self.targets)}

    @classmethod
    def from_dict(cls, row: dict) -> CachedImage:
        return cls(PatchFeatures(**row["features"]), SegmentTargets(**row["targets"]))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.to_dict(), buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedImage:
        return cls.from_dict(torch.load(io.BytesIO(data), weights_only=True))


def training_example(patches: PatchSet, segment_masks: torch.Tensor, segment_classes: list[int],
                     vocab: Vocabulary, img_size: int, roi_size: int,
                     ignore: torch.Tensor | None = None, clip: torch.Tensor | None = None) -> CachedImage:
    """Features (embedding in fp16) and targets of one image's patches against its segments.

    segment_masks: (G, H, W) bool with category ids `segment_classes`; ignore: (H, W) bool
    pixels without labels (see `samcp.train.assign`); clip: (N, E) the patches' CLIP region embeddings.
    """
    targets = assign(patches.masks, pixel_boxes(patches), segment_masks, segment_classes,
                     [c.id for c in vocab.things], [c.id for c in vocab.stuff], ignore=ignore)
    features = patch_features(patches, img_size, roi_size, clip)
    features.embedding = features.embedding.half()
    return CachedImage(features, targets)


def train_step(head: SamCPHead, optimizer: torch.optim.Optimizer, batch: list[CachedImage],
               stuff_text: torch.Tensor, thing_text: torch.Tensor, criterion: CriterionConfig,
               lr: float, grad_clip: float, device: torch.device) -> dict[str, float]:
    """One AdamW step on a batch (bf16 autocast on GPU); returns the loss and its parts."""
    inputs = collate([b.features for b in batch]).to(device)
    targets = [b.targets.to(device) for b in batch]
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        outputs = head(inputs, stuff_text, thing_text)
    outputs = [{k: v.float() for k, v in layer.items()} for layer in outputs]
    losses = samcp_loss(outputs, targets, inputs.boxes_xyxy, inputs.padding, len(stuff_text), criterion)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(head.parameters(), grad_clip)
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def patch_config(cfg: HeadTrainConfig) -> PatchConfig:
    overrides = {"points_per_side": cfg.points_per_side, "pred_iou_thresh": cfg.pred_iou_thresh,
                 "stability_score_thresh": cfg.stability_score_thresh, "max_patches": cfg.max_patches}
    return PatchConfig.for_model(cfg.sam_model, **{k: v for k, v in overrides.items() if v is not None})


def build_cache(cfg: HeadTrainConfig, vocab: Vocabulary, cache_dir: str, roi_size: int,
                device: torch.device, region_encoder: RegionEncoder | None = None,
                log=print) -> list[CachedImage]:
    """Patches and targets of the first `train_images` images, from disk where already cached;
    with `region_encoder`, each patch's CLIP region embedding too."""
    os.makedirs(cache_dir, exist_ok=True)
    corpus = SyntheticCorpus(SyntheticConfig(seed=cfg.data_seed, height=cfg.image_size,
                                             width=cfg.image_size, attributes=cfg.attributes,
                                             thing_hues=cfg.thing_hues, upright_tilt=cfg.upright_tilt))
    known = {c.id for c in vocab.classes}
    sam = None
    cached: list[CachedImage] = []
    skipped = 0
    parts = range(0, cfg.train_images, cfg.cache_part_size)
    for first in tqdm(parts, desc="patch cache", unit="part"):
        path = os.path.join(cache_dir, f"part-{first // cfg.cache_part_size:05d}.pt")
        if not os.path.exists(path):
            if sam is None:
                sam = build_sam(cfg.sam_model, cfg.sam_checkpoint).to(device)
                generator = PatchGenerator(sam, patch_config(cfg))
            rows = []
            for index in range(first, min(first + cfg.cache_part_size, cfg.train_images)):
                sample = corpus[index]
                patches = generator([sample.image])[0].to("cpu")
                if len(patches) == 0:
                    skipped += 1
                    continue
                segments = [s for s in sample.segments if s.category_id in known]
                unknown = [s.id for s in sample.segments if s.category_id not in known]
                segment_masks = torch.stack([torch.from_numpy(sample.panoptic == s.id) for s in segments])
                ignore = torch.from_numpy(np.isin(sample.panoptic, unknown)) if unknown else None
                clip = None
                if region_encoder is not None:
                    image = torch.from_numpy(sample.image)
                    clip = region_encoder(image, patches.masks, patches.boxes).cpu().half()
                example = training_example(patches, segment_masks, [s.category_id for s in segments],
                                           vocab, sam.image_encoder.img_size, roi_size, ignore=ignore,
                                           clip=clip)
                rows.append(example.to_dict())
            tmp = f"{path}.tmp"
            torch.save(rows, tmp)
            os.replace(tmp, path)
        part = [CachedImage.from_dict(row) for row in torch.load(path, weights_only=True)]
        if part and region_encoder is not None and part[0].features.clip is None:
            raise ValueError(f"{path} was cached without the CLIP region embeddings this head reads: "
                             "train into a new --output")
        cached += part
    if skipped:
        log(f"{skipped} training images had no patch and were left out")
    return cached


def train_head(cfg: HeadTrainConfig, head_config: HeadConfig, output_dir: str,
               criterion: CriterionConfig | None = None, log=print) -> SamCPHead:
    """Train from scratch or resume from `output_dir/last.pt`; returns the trained head."""
    criterion = criterion or CriterionConfig()
    os.makedirs(output_dir, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab = load_vocabulary(cfg.vocab)
    encoder = TextEncoder(cfg.clip_model, cfg.clip_checkpoint, device=device)
    text = encoder.embed(vocab).to(device)
    stuff_text, thing_text = vocab.split(text)
    cache = build_cache(cfg, vocab, os.path.join(output_dir, "cache"), head_config.roi_size, device,
                        head_region_encoder(head_config.clip_dim, encoder), log)

    torch.manual_seed(cfg.seed)
    sam_file = checkpoint_file("sam", cfg.sam_model, cfg.sam_checkpoint)
    sam_weights = "" if sam_file is None else weights_fingerprint(load_state_dict(sam_file))
    head = SamCPHead(head_config, tuple(c.name for c in vocab.classes), cfg.sam_model,
                     sam_weights).to(device).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    last = os.path.join(output_dir, "last.pt")
    start = resume_state(last, head, optimizer, device)
    if start:
        log(f"resumed from {last} at step {start}")
    metrics = MetricsLog(os.path.join(output_dir, "metrics.jsonl"), cfg.steps, start, log=log)
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, step])
        batch = [cache[int(i)] for i in rng.integers(0, len(cache), cfg.batch_size)]
        lr = warmup_cosine(cfg.lr, cfg.warmup_steps, cfg.steps, step)
        metrics.add(step, train_step(head, optimizer, batch, stuff_text, thing_text, criterion, lr,
                                     cfg.grad_clip, device), lr)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_state(last, head, optimizer, step + 1,
                       {"train": asdict(cfg), "head": asdict(head_config)})
    return head.eval()
