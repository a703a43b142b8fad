"""Frozen CLIP on image regions: embeddings (an optional head input), the classifier of
open-vocabulary inference, and its ensemble with the head.

A region (a query's merged mask) is cropped from the image by its box, the pixels outside
the mask are set to CLIP's mean colour, and the crop goes through CLIP's image tower at the
model's input size; its class probabilities are a softmax over the cosine similarities with
the vocabulary's text embeddings, scaled by CLIP's own logit scale. The head's probability p
and CLIP's q of a class are ensembled geometrically, p^(1 - kappa) * q^kappa (kappa = 0: the
head alone, 1: CLIP alone), which lets a vocabulary the head never saw still be labeled.
The same region embeddings of each SAM patch can also feed the head (`HeadConfig.clip_dim`).
"""

from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from samcp.masks import as_float, mask_boxes, nonempty
from samcp.text_encoder import TextEncoder


def masked_crops(image: torch.Tensor, masks: torch.Tensor, size: int, mean: torch.Tensor,
                 boxes: torch.Tensor | None = None) -> torch.Tensor:
    """image (3, H, W) float in 0..1, masks (Q, H, W) bool, none empty -> (Q, 3, size, size):
    each mask's box, resized to size x size, pixels outside the mask set to `mean` (3,).
    boxes: the masks' (Q, 4) xyxy pixel boxes, right and bottom inclusive, if known."""
    boxes = (mask_boxes(masks) if boxes is None else boxes).float()
    boxes[:, 2:] += 1  # pixel boxes: the right and bottom edges are inclusive
    in_image = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)  # every box on image 0
    in_own_mask = torch.cat([torch.arange(len(boxes), device=boxes.device)[:, None].float(), boxes], dim=1)
    crops = roi_align(image[None].float(), in_image, size, aligned=True, sampling_ratio=1)
    inside = roi_align(as_float(masks[:, None]), in_own_mask, size, aligned=True, sampling_ratio=1) > 0.5
    return torch.where(inside, crops, mean.view(1, 3, 1, 1).to(crops))


class RegionEncoder:
    """Normalized embeddings of image regions from a (frozen) open_clip model's image tower."""

    def __init__(self, clip_model: torch.nn.Module, dim: int):
        """dim: the model's joint embedding width (its config's `embed_dim`)."""
        self.model = clip_model.eval()
        device = next(clip_model.parameters()).device
        cfg = clip_model.visual.preprocess_cfg
        self.size = int(cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"])
        self.mean = torch.tensor(cfg["mean"], device=device)  # (3,)
        self.std = torch.tensor(cfg["std"], device=device)
        self.dim = dim

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """image (H, W, 3) uint8, masks (Q, H, W) bool -> (Q, E) unit-length embeddings (zero rows for
        empty masks). boxes: the masks' (Q, 4) xyxy boxes if known (`PatchSet.boxes`), else computed."""
        device = self.mean.device
        features = torch.zeros((len(masks), self.dim), device=device)
        present = nonempty(masks).to(device)
        if present.any():
            pixels = image.to(device).permute(2, 0, 1).float() / 255
            known = None if boxes is None else boxes.to(device)[present]
            crops = masked_crops(pixels, masks.to(device)[present], self.size, self.mean, known)
            crops = (crops - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
            features[present] = F.normalize(self.model.encode_image(crops).float(), dim=-1)
        return features


def check_clip_width(clip_dim: int, clip_model: str) -> None:
    """A head with `HeadConfig.clip_dim` > 0 reads region embeddings of that width: open_clip
    architecture `clip_model` must give them."""
    if not clip_dim:
        return
    config = open_clip.get_model_config(clip_model)
    if config is None:
        raise ValueError(f"unknown open_clip model {clip_model!r}")
    width = config["embed_dim"]
    if clip_dim != width:
        raise ValueError(f"the head reads CLIP region embeddings of width {clip_dim} "
                         f"(--clip-dim {clip_dim}), but {clip_model} gives {width}: "
                         "use the CLIP it was trained with")


def region_encoder(text_encoder: TextEncoder) -> RegionEncoder:
    """The image tower of a `TextEncoder`'s CLIP, on image regions."""
    return RegionEncoder(text_encoder.model, text_encoder.dim)


def head_region_encoder(clip_dim: int, text_encoder: TextEncoder) -> RegionEncoder | None:
    """The region encoder a head with `HeadConfig.clip_dim` reads its patch embeddings from (None
    for a head without CLIP inputs)."""
    if not clip_dim:
        return None
    check_clip_width(clip_dim, text_encoder.model_name)
    return region_encoder(text_encoder)


class RegionClassifier:
    """Class probabilities of image regions: a `RegionEncoder`'s embeddings against class texts."""

    def __init__(self, encoder: RegionEncoder, text_embeddings: torch.Tensor):
        """text_embeddings: (C, T) normalized, from the text tower of the encoder's CLIP."""
        self.encoder = encoder
        self.text = text_embeddings.to(encoder.mean.device)
        self.scale = float(encoder.model.logit_scale.detach().exp())

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """image (H, W, 3) uint8, masks (Q, H, W) bool -> (Q, C) probabilities (rows of an empty
        mask are uniform)."""
        return self.probs(self.encoder(image, masks))

    def probs(self, features: torch.Tensor) -> torch.Tensor:
        """(Q, E) embeddings of this model's `RegionEncoder` -> (Q, C) (zero rows: uniform)."""
        probs = (self.scale * features @ self.text.T).softmax(-1)
        return torch.where(features.any(-1, keepdim=True), probs, 1 / len(self.text))


def ensemble(head_probs: torch.Tensor, clip_probs: torch.Tensor, kappa: float) -> torch.Tensor:
    """p^(1 - kappa) * q^kappa, elementwise on probabilities of the same shape."""
    if kappa == 0:
        return head_probs
    return head_probs.clamp_min(1e-8) ** (1 - kappa) * clip_probs.clamp_min(1e-8) ** kappa
