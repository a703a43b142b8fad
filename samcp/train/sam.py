"""Train a small SAM on the synthetic corpus with SAM's recipe.

Prompts are single points or noisy boxes on ground-truth wholes (thing and
stuff segments) and parts (pieces of multi-part things). A point is ambiguous,
so it gets SAM's three multimask outputs and only the best one is trained; a
box gets the single-mask output. Loss = 20 focal + 1 dice on the masks + MSE
between predicted and true IoU for every output, as in the SAM paper.

Two options, on by default, depart from the paper (`--no-nested-targets
--no-low-res-loss` gives the paper's recipe). `nested_targets`: a point trains
one multimask output per ground-truth mask that contains it (a wheel and its car), matched by least
loss, and every output's IoU target is its best IoU with any of them, so the
IoU head ranks a good whole as high as a good part. `low_res_loss`: the losses
compare SAM's low-res (4h, 4w) mask logits with area-averaged targets instead
of upsampling the logits (about twice as fast on a CPU).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from segment_anything.modeling import Sam
from torchvision.ops import sigmoid_focal_loss

from samcp.data.categories import CATEGORY_BY_ID
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus, SyntheticImage
from samcp.sam.build import build_sam
from samcp.sam.resize import resize_sam_weights
from samcp.train.loop import MetricsLog, resume_state, save_state, warmup_cosine


@dataclass(frozen=True)
class SamTrainConfig:
    sam_model: str = "tiny"
    init: str | None = None  # weights to start from (path or URI) instead of random ones
    init_sam_model: str | None = None  # `init` is a SAM of this patch size: resize its weights
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
    data_workers: int = 0  # > 0: generate every training image up front in this many processes
    nested_targets: bool = True
    low_res_loss: bool = True


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


def make_example(corpus: SyntheticCorpus, min_part_area: int, index: int) -> Example:
    sample = corpus[index]
    return Example(sample.image, targets_of(sample, min_part_area))


class ExampleCache:
    """Synthetic training examples generated on first use and kept in memory."""

    def __init__(self, corpus: SyntheticCorpus, size: int, min_part_area: int):
        self.corpus, self.size, self.min_part_area = corpus, size, min_part_area
        self._examples: dict[int, Example] = {}

    def __getitem__(self, index: int) -> Example:
        index %= self.size
        if index not in self._examples:
            self._examples[index] = make_example(self.corpus, self.min_part_area, index)
        return self._examples[index]

    def fill(self, workers: int) -> None:
        """Generate all `size` examples now, in `workers` processes (a GPU would otherwise
        wait on one CPU core for each image the first time it is drawn)."""
        todo = [i for i in range(self.size) if i not in self._examples]
        # The task pickles only the corpus (its config), never the growing cache.
        make = partial(make_example, self.corpus, self.min_part_area)
        with ProcessPoolExecutor(workers) as pool:
            self._examples.update(zip(todo, pool.map(make, todo, chunksize=32)))


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
    """Focal, dice and true IoU of every output against every candidate target.

    logits (K, M, H, W); target (K, C, H, W) in [0, 1] (area-averaged targets are
    soft; IoU counts their pixels above 0.5). Returns three (K, M, C) tensors.
    """
    logits, target = torch.broadcast_tensors(logits[:, :, None], target[:, None])
    focal = sigmoid_focal_loss(logits, target, alpha=focal_alpha, reduction="none").mean(dim=(-2, -1))
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum((-2, -1)) + 1) / (prob.sum((-2, -1)) + target.sum((-2, -1)) + 1)
    hard, truth = logits > 0, target > 0.5
    inter = (hard & truth).sum((-2, -1))
    union = (hard | truth).sum((-2, -1))
    return focal, dice, inter / union.clamp(min=1)


def candidate_targets(targets: np.ndarray, chosen: np.ndarray, points: np.ndarray, nested: bool
                      ) -> np.ndarray:
    """Target indices each prompt may be trained towards, (K, C) with -1 padding.

    Column 0 is the sampled target; with `nested`, a point also gets every
    other target whose mask contains it (the whole of a part, the part under a
    point on a whole).
    """
    rows = [[t] for t in chosen]
    if nested:
        for k, (x, y) in enumerate(points):
            if not np.isnan(x):
                inside = np.flatnonzero(targets[:, int(y), int(x)])
                rows[k] += [t for t in inside if t != chosen[k]]
    width = max(len(r) for r in rows)
    return np.array([r + [-1] * (width - len(r)) for r in rows])


def assign_outputs(total: np.ndarray, candidates: np.ndarray, is_box: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-loss matching of mask outputs to candidate targets.

    total (K, 4, C) losses; candidates (K, C) with -1 padding; a box trains
    output 0 on its target, a point matches outputs 1..3 one-to-one with its
    candidates. Returns prompt, output and candidate-column indices of the pairs.
    """
    pairs = []
    for k in range(len(total)):
        if is_box[k]:
            pairs.append((k, 0, 0))
            continue
        columns = np.flatnonzero(candidates[k] >= 0)
        outputs, matched = linear_sum_assignment(total[k, 1:][:, columns])
        pairs += [(k, o + 1, columns[c]) for o, c in zip(outputs, matched)]
    return tuple(np.array(column) for column in zip(*pairs))


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
        candidates = candidate_targets(ex.targets, chosen, points, cfg.nested_targets)
        padding = torch.as_tensor(candidates < 0, device=device)  # (K, C)
        target = torch.as_tensor(ex.targets[candidates], device=device).float()
        target[padding] = 0
        if cfg.low_res_loss:
            target = F.adaptive_avg_pool2d(target, logits.shape[-2:])
        else:
            logits = F.interpolate(logits, size=ex.image.shape[:2], mode="bilinear", align_corners=False)
        focal, dice, iou = mask_losses(logits.float(), target, cfg.focal_alpha)
        total = cfg.focal_weight * focal + cfg.dice_weight * dice
        is_box = ~np.isnan(boxes[:, 0])
        rows, outputs, columns = assign_outputs(total.detach().cpu().numpy(), candidates, is_box)
        # Each output's IoU is scored against its best-matching candidate (the sampled target alone
        # without nested targets); boxes score the single-mask output, points the three others.
        true_iou = iou.masked_fill(padding[:, None, :], 0).amax(dim=2)
        valid_outputs = torch.ones_like(true_iou, dtype=torch.bool)
        valid_outputs[is_box, 1:] = False
        valid_outputs[~is_box, 0] = False
        losses["focal"] = losses["focal"] + focal[rows, outputs, columns].mean() / len(batch)
        losses["dice"] = losses["dice"] + dice[rows, outputs, columns].mean() / len(batch)
        losses["iou"] = losses["iou"] + F.mse_loss(iou_pred.float()[valid_outputs],
                                                   true_iou.detach()[valid_outputs]) / len(batch)
        losses["miou"] = losses["miou"] + iou[rows, outputs, columns].mean().detach() / len(batch)
    losses["loss"] = (cfg.focal_weight * losses["focal"] + cfg.dice_weight * losses["dice"]
                      + cfg.iou_weight * losses["iou"])
    return losses


def initial_sam(cfg: SamTrainConfig) -> Sam:
    """The model training starts from: `cfg.init`'s weights (random without), carried over
    from a SAM of `cfg.init_sam_model` (another patch size) when that is set."""
    if cfg.init_sam_model is None or cfg.init_sam_model == cfg.sam_model:
        return build_sam(cfg.sam_model, checkpoint=cfg.init)
    if cfg.init is None:
        raise ValueError("init_sam_model needs init, the weights to resize")
    sam = build_sam(cfg.sam_model, checkpoint=None)
    resize_sam_weights(build_sam(cfg.init_sam_model, checkpoint=cfg.init), sam)
    return sam


def train_sam(cfg: SamTrainConfig, output_dir: str, log=print) -> Sam:
    """Train from scratch, or resume from `output_dir/last.pt`; returns the trained model.

    Each step draws its data from a generator seeded by (seed, step), so a
    resumed run follows the same path as an uninterrupted one.
    """
    os.makedirs(output_dir, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    sam = initial_sam(cfg).to(device).train()
    optimizer = torch.optim.AdamW(sam.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    last = os.path.join(output_dir, "last.pt")
    start = resume_state(last, sam, optimizer, device)
    if start:
        log(f"resumed from {last} at step {start}")
    image_size = sam.image_encoder.img_size
    corpus = SyntheticCorpus(SyntheticConfig(seed=cfg.data_seed, height=image_size, width=image_size))
    examples = ExampleCache(corpus, cfg.train_images, cfg.min_part_area)
    if cfg.data_workers > 0:
        examples.fill(cfg.data_workers)
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
