"""Train a small open_clip model contrastively on image/caption pairs of the synthetic corpus.

Two kinds of pairs come from each training image of the compositional corpus
(`SyntheticConfig.attributes`): the whole image with its caption ("striped ball, dotted
kite, sky, grass"), and each segment as a masked region crop (`samcp.clip.region.masked_crops`,
as the region classifier sees regions at inference) with a prompt of its class from the
vocabulary's templates ("a photo of a striped ball."). Many regions in a batch share a
text, so the loss is a multi-positive InfoNCE: each image's target is its own text, and each
distinct text's target is spread evenly over the images it describes. The model is made by
open_clip's own factory, so its state dict loads like any open_clip checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from tqdm import tqdm

from samcp.clip.region import masked_crops
from samcp.clip.text_encoder import TextEncoder
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.train.loop import MetricsLog, resume_state, save_state, warmup_cosine
from samcp.vocab import load_vocabulary


@dataclass(frozen=True)
class ClipTrainConfig:
    model: str = "samcp-clip-tiny"
    vocab: str = "builtin:synthetic_attributes"  # region prompts: its classes and templates
    attributes: tuple[str, ...] = ("plain", "striped", "dotted")
    train_images: int = 2000
    data_seed: int = SPLIT_SEEDS["train"]
    image_size: int = 256
    regions_per_batch: int = 224
    captions_per_batch: int = 32
    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    seed: int = 0
    checkpoint_every: int = 250


@dataclass
class PairSet:
    """Training pairs: images (P, 3, S, S) uint8 and the index of each one's text in `texts`;
    `is_region` (P,) tells region crops (whose text is a class name, put into a random template
    at each step) from whole images (whose text is their caption)."""

    images: torch.Tensor
    text_index: torch.Tensor
    is_region: torch.Tensor
    texts: list[str]
    class_names: set[str]


def build_pairs(cfg: ClipTrainConfig, size: int, mean: torch.Tensor, log=print) -> PairSet:
    """Region crops and whole images of the first `train_images` images, with their texts."""
    corpus = SyntheticCorpus(SyntheticConfig(seed=cfg.data_seed, height=cfg.image_size, width=cfg.image_size,
                                             attributes=cfg.attributes))
    names = {c.id: c.name for c in corpus.categories}
    texts: dict[str, int] = {}
    images, text_index, is_region = [], [], []
    for index in tqdm(range(cfg.train_images), desc="pairs", unit="img"):
        sample = corpus[index]
        pixels = torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255
        masks = torch.stack([torch.from_numpy(sample.panoptic == s.id) for s in sample.segments])
        crops = masked_crops(pixels, masks, size, mean)
        whole = F.interpolate(pixels[None], size=(size, size), mode="bilinear", antialias=True)
        for crop, segment in zip(crops, sample.segments):
            images.append(crop)
            text_index.append(texts.setdefault(names[segment.category_id], len(texts)))
            is_region.append(True)
        images.append(whole[0])
        text_index.append(texts.setdefault(f"a picture of {sample.caption}.", len(texts)))
        is_region.append(False)
    pairs = PairSet((torch.stack(images) * 255).round().to(torch.uint8), torch.tensor(text_index),
                    torch.tensor(is_region), list(texts), set(names.values()))
    log(f"{len(pairs.images)} pairs ({int(pairs.is_region.sum())} regions) with {len(texts)} texts")
    return pairs


def multi_positive_loss(image_features: torch.Tensor, text_features: torch.Tensor, text_index: torch.Tensor,
                        scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where several images may share one text. image_features (B, D) and
    text_features (U, D) normalized; text_index (B,) in 0..U-1, every text used at least once."""
    logits = scale * image_features @ text_features.T  # (B, U)
    image_loss = F.cross_entropy(logits, text_index)
    positives = F.one_hot(text_index, len(text_features)).float().T  # (U, B)
    text_loss = -(positives / positives.sum(1, keepdim=True) * logits.T.log_softmax(-1)).sum(1).mean()
    return (image_loss + text_loss) / 2


def train_clip(cfg: ClipTrainConfig, output_dir: str, log=print) -> torch.nn.Module:
    """Train from open_clip's initialisation or resume from `output_dir/last.pt`."""
    os.makedirs(output_dir, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab = load_vocabulary(cfg.vocab)
    templates = vocab.templates
    torch.manual_seed(cfg.seed)
    model = TextEncoder(cfg.model, cache_dir=None, device=device).model.train()
    tokenizer = open_clip.get_tokenizer(cfg.model)
    preprocess = model.visual.preprocess_cfg
    size = int(preprocess["size"][0] if isinstance(preprocess["size"], (tuple, list)) else preprocess["size"])
    mean, std = torch.tensor(preprocess["mean"]).view(3, 1, 1), torch.tensor(preprocess["std"]).view(3, 1, 1)
    pairs = build_pairs(cfg, size, mean.flatten(), log)
    regions = pairs.is_region.nonzero()[:, 0]
    wholes = (~pairs.is_region).nonzero()[:, 0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    last = os.path.join(output_dir, "last.pt")
    start = resume_state(last, model, optimizer, device)
    if start:
        log(f"resumed from {last} at step {start}")
    metrics = MetricsLog(os.path.join(output_dir, "metrics.jsonl"), cfg.steps, start, log=log)
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, step])
        chosen = torch.cat([regions[torch.from_numpy(rng.integers(0, len(regions), cfg.regions_per_batch))],
                            wholes[torch.from_numpy(rng.integers(0, len(wholes), cfg.captions_per_batch))]])
        images = pairs.images[chosen].float() / 255
        flip = torch.from_numpy(rng.random(len(chosen)) < 0.5)
        images[flip] = images[flip].flip(-1)
        images = ((images - mean) / std).to(device)
        used, text_index = pairs.text_index[chosen].unique(return_inverse=True)
        texts = [pairs.texts[int(i)] for i in used]
        texts = [templates[int(rng.integers(len(templates)))].format(t) if t in pairs.class_names else t
                 for t in texts]
        lr = warmup_cosine(cfg.lr, cfg.warmup_steps, cfg.steps, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(tokenizer(texts).to(device)), dim=-1)
        loss = multi_positive_loss(image_features, text_features, text_index.to(device),
                                   model.logit_scale.exp().clamp(max=100))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scale = float(model.logit_scale.detach().exp())
        metrics.add(step, {"loss": float(loss.detach()), "scale": scale}, lr)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_state(last, model, optimizer, step + 1, {"train": asdict(cfg)})
    return model.eval()
