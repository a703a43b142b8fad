"""The SAM-CP head's training example and step, with SAM frozen (no Ray: the trainer is
`pipeline.train.trainer`).

SAM runs once per training image: its patches are reduced to what the head reads
(`PatchFeatures`) and assigned to the ground truth (`SegmentTargets`); `CachedImage`
holds both, serialized in the patch cache. `train_step` is one optimizer step on a
batch of them (bf16 autocast on GPU).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch

from samcp.model.head import SamCPHead
from samcp.model.inputs import PatchFeatures, collate, patch_features, pixel_boxes
from samcp.sam.patches import PatchSet
from samcp.train.assign import SegmentTargets, assign
from samcp.train.criterion import CriterionConfig, samcp_loss
from samcp.vocab import Vocabulary


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
                     ignore: torch.Tensor | None = None, clip: torch.Tensor | None = None,
                     pixels: torch.Tensor | None = None) -> CachedImage:
    """Features (embedding in fp16, or the (3, S, S) uint8 `pixels` for a ResNet backbone) and
    targets of one image's patches against its segments.

    segment_masks: (G, H, W) bool with category ids `segment_classes`; ignore: (H, W) bool
    pixels without labels (see `samcp.train.assign`); clip: (N, E) the patches' CLIP region embeddings.
    """
    targets = assign(patches.masks, pixel_boxes(patches), segment_masks, segment_classes,
                     [c.id for c in vocab.things], [c.id for c in vocab.stuff], ignore=ignore)
    features = patch_features(patches, img_size, roi_size, clip, pixels)
    if pixels is None:
        features.embedding = features.embedding.half()
    return CachedImage(features, targets)


def train_step(head: SamCPHead, optimizer: torch.optim.Optimizer, batch: list[CachedImage],
               stuff_text: torch.Tensor, thing_text: torch.Tensor, criterion: CriterionConfig,
               lr: float, grad_clip: float, device: torch.device) -> dict[str, float]:
    """One AdamW step on a batch (bf16 autocast on GPU); returns the loss and its parts."""
    inputs = collate([b.features for b in batch]).to(device)
    targets = [b.targets.to(device) for b in batch]
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        outputs = head(inputs, stuff_text, thing_text)
    outputs = [{k: v.float() for k, v in layer.items()} for layer in outputs]
    losses = samcp_loss(outputs, targets, inputs.boxes_xyxy, inputs.padding, len(stuff_text), criterion)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(head.parameters(), grad_clip)
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}
