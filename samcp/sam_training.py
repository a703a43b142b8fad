"""Train a small SAM on the synthetic corpus with SAM's recipe.

Prompts are single points or noisy boxes on ground-truth wholes (thing and
stuff segments) and parts (pieces of multi-part things). A point is ambiguous,
so it gets SAM's three multimask outputs and only the best one is trained; a
box gets the single-mask output. Loss = 20 focal + 1 dice on the masks + MSE
between predicted and true IoU for every output, as in the SAM paper.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torchvision.ops import sigmoid_focal_loss

from samcp.data.categories import CATEGORY_BY_ID
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus, SyntheticImage
from samcp.sam import build_sam
from samcp.train_loop import MetricsLog, resume_state, save_state, warmup_cosine


@dataclass(frozen=True)
class SamTrainConfig:
    architecture: str = "tiny"
    init: str | None = None  # weights to start from (path or URI) instead of random ones
    steps: int = 4000
    batch_size: int = 8
    prompts_per_image: int = 16
    lr: float = 8e-4
    weight_decay: float = 0.1
    warmup_steps: int = 200
    train_images: int = 3000
    data_seed: int = SPLIT_SEEDS["train"]
    seed: int = 0
    box_prob: float = 0.4
    min_part_area: int = 16
    focal_weight: float = 20.0
    focal_alpha: float = -1.0  # < 0: no class weighting (torchvision's convention)
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    checkpoint_every: int = 250


@dataclass
class Example:
    """A training image and its target masks (K, H, W) bool: wholes first, then parts."""

    image: np.ndarray
    targets: np.ndarray


def targets_of(sample: SyntheticImage, min_part_area: int) -> np.ndarray:
    """Every segment as a whole, plus each part of every thing made of several parts."""
    masks = [sample.panoptic == s.id for s in sample.segments]
    for segment in sample.segments:
        if len(CATEGORY_BY_ID[segment.category_id].parts) < 2:
            continue
        masks += [sample.part_map == p.id for p in sample.parts
                  if p.segment_id == segment.id and p.area >= min_part_area]
    return np.stack(masks)


class ExampleCache:
    """Synthetic training examples generated on first use and kept in memory."""

    def __init__(self, corpus: SyntheticCorpus, size: int, min_part_area: int):
        self.corpus, self.size, self.min_part_area = corpus, size, min_part_area
        self._examples: dict[int, Example] = {}

    def __getitem__(self, index: int) -> Example:
        if index not in self._examples:
            sample = self.corpus[index % self.size]
            self._examples[index] = Example(sample.image, targets_of(sample, self.min_part_area))
        return self._examples[index]


def sample_prompts(rng: np.random.Generator, targets: np.ndarray, count: int, box_prob: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick `count` targets and a prompt for each.

    Returns target indices (K,), points (K, 2) xy or NaN, boxes (K, 4) xyxy or
    NaN; exactly one of point and box is set per prompt.
    """
    chosen = rng.integers(0, len(targets), count)
    points = np.full((count, 2), np.nan)
    boxes = np.full((count, 4), np.nan)
    for k, t in enumerate(chosen):
        ys, xs = np.nonzero(targets[t])
        if rng.random() < box_prob:
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            noise = rng.normal(0, 0.1, 4) * np.array([x1 - x0, y1 - y0] * 2)
            boxes[k] = np.array([x0, y0, x1, y1]) + np.clip(noise, -20, 20)
        else:
            i = rng.integers(len(xs))
            points[k] = (xs[i] + 0.5, ys[i] + 0.5)
    return chosen, points, boxes


def decode_prompts(sam: Sam, embedding: torch.Tensor, points: torch.Tensor, boxes: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """All four mask outputs for a mix of point and box prompts on one image.

    embedding: (1, C, h, w); points (K, 2) and boxes (K, 4) with NaN rows unused.
    Returns logits (K, 4, 4h, 4w) (output 0 = single mask, 1..3 = multimask) and IoU (K, 4).
    """
    is_box = ~torch.isnan(boxes[:, 0])
    sparse = []
    if (~is_box).any():
        coords = points[~is_box][:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
        sparse.append(sam.prompt_encoder._embed_points(coords, labels, pad=True))
    if is_box.any():
        sparse.append(sam.prompt_encoder._embed_boxes(boxes[is_box]))
    order = torch.cat([torch.nonzero(~is_box)[:, 0], torch.nonzero(is_box)[:, 0]])
    sparse_embeddings = torch.cat(sparse)[torch.argsort(order)]
    dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
        len(order), -1, *embedding.shape[-2:])
    return sam.mask_decoder.predict_masks(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse_embeddings,
        dense_prompt_embeddings=dense,
    )


def mask_losses(logits: torch.Tensor, target: torch.Tensor, focal_alpha: float = -1
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-mask focal, dice and true IoU. logits (K, M, H, W), target (K, 1, H, W) float."""
    target = target.expand_as(logits)
    focal = sigmoid_focal_loss(logits, target, alpha=focal_alpha, reduction="none").mean(dim=(-2, -1))
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum((-2, -1)) + 1) / (prob.sum((-2, -1)) + target.sum((-2, -1)) + 1)
    hard = (logits > 0).float()
    inter = (hard * target).sum((-2, -1))
    union = ((hard + target) > 0).float().sum((-2, -1))
    return focal, dice, inter / union.clamp(min=1)


def training_step(sam: Sam, batch: list[Example], rng: np.random.Generator, cfg: SamTrainConfig,
                  device: torch.device) -> dict[str, torch.Tensor]:
    images = torch.stack([torch.from_numpy(ex.image).permute(2, 0, 1) for ex in batch]).to(device)
    embeddings = sam.image_encoder(sam.preprocess(images.float()))
    losses = {"focal": 0.0, "dice": 0.0, "iou": 0.0, "miou": 0.0}
    for b, ex in enumerate(batch):
        chosen, points, boxes = sample_prompts(rng, ex.targets, cfg.prompts_per_image, cfg.box_prob)
        logits, iou_pred = decode_prompts(
            sam, embeddings[b:b + 1],
            torch.as_tensor(points, dtype=torch.float, device=device),
            torch.as_tensor(boxes, dtype=torch.float, device=device))
        logits = F.interpolate(logits, size=ex.image.shape[:2], mode="bilinear", align_corners=False)
        target = torch.as_tensor(ex.targets[chosen], device=device)[:, None].float()
        focal, dice, iou = mask_losses(logits.float(), target, cfg.focal_alpha)
        total = cfg.focal_weight * focal + cfg.dice_weight * dice
        is_box = torch.as_tensor(~np.isnan(boxes[:, 0]), device=device)
        # Boxes train the single-mask output; points train the best of the three multimask outputs.
        multimask_best = total[:, 1:].argmin(dim=1) + 1
        pick = torch.where(is_box, torch.zeros_like(multimask_best), multimask_best)
        rows = torch.arange(len(pick), device=device)
        valid_outputs = torch.ones_like(total, dtype=torch.bool)
        valid_outputs[is_box, 1:] = False
        valid_outputs[~is_box, 0] = False
        losses["focal"] = losses["focal"] + focal[rows, pick].mean() / len(batch)
        losses["dice"] = losses["dice"] + dice[rows, pick].mean() / len(batch)
        losses["iou"] = losses["iou"] + F.mse_loss(iou_pred.float()[valid_outputs],
                                                   iou.detach()[valid_outputs]) / len(batch)
        losses["miou"] = losses["miou"] + iou[rows, pick].mean().detach() / len(batch)
    losses["loss"] = (cfg.focal_weight * losses["focal"] + cfg.dice_weight * losses["dice"]
                      + cfg.iou_weight * losses["iou"])
    return losses


def train_sam(cfg: SamTrainConfig, output_dir: str, log=print) -> Sam:
    """Train from scratch, or resume from `output_dir/last.pt`; returns the trained model.

    Each step draws its data from a generator seeded by (seed, step), so a
    resumed run follows the same path as an uninterrupted one.
    """
    os.makedirs(output_dir, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    sam = build_sam(cfg.architecture, checkpoint=cfg.init).to(device).train()
    optimizer = torch.optim.AdamW(sam.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    last = os.path.join(output_dir, "last.pt")
    start = resume_state(last, sam, optimizer, device)
    if start:
        log(f"resumed from {last} at step {start}")
    image_size = sam.image_encoder.img_size
    corpus = SyntheticCorpus(SyntheticConfig(seed=cfg.data_seed, height=image_size, width=image_size))
    examples = ExampleCache(corpus, cfg.train_images, cfg.min_part_area)
    metrics = MetricsLog(os.path.join(output_dir, "metrics.jsonl"), cfg.steps, start, log=log)
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        batch = [examples[int(i)] for i in rng.integers(0, cfg.train_images, cfg.batch_size)]
        if rng.random() < 0.5:
            batch = [Example(ex.image[:, ::-1].copy(), ex.targets[:, :, ::-1].copy()) for ex in batch]
        lr = warmup_cosine(cfg.lr, cfg.warmup_steps, cfg.steps, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            losses = training_step(sam, batch, rng, cfg, device)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
        optimizer.step()
        metrics.add(step, {k: float(v.detach()) for k, v in losses.items()}, lr)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_state(last, sam, optimizer, step + 1, asdict(cfg))
    return sam.eval()
