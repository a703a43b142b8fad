"""The frozen CLIP classifier of open-vocabulary inference, and its ensemble with the head.

A region (a query's merged mask) is cropped from the image by its box, the pixels outside
the mask are set to CLIP's mean colour, and the crop goes through CLIP's image tower at the
model's input size; its class probabilities are a softmax over the cosine similarities with
the vocabulary's text embeddings, scaled by CLIP's own logit scale. The head's probability p
and CLIP's q of a class are ensembled geometrically, p^(1 - kappa) * q^kappa (kappa = 0: the
head alone, 1: CLIP alone), which lets a vocabulary the head never saw still be labeled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes, roi_align


def masked_crops(image: torch.Tensor, masks: torch.Tensor, size: int, mean: torch.Tensor) -> torch.Tensor:
    """image (3, H, W) float in 0..1, masks (Q, H, W) bool, none empty -> (Q, 3, size, size):
    each mask's box, resized to size x size, pixels outside the mask set to `mean` (3,)."""
    boxes = masks_to_boxes(masks).float()
    boxes[:, 2:] += 1  # pixel boxes: the right and bottom edges are inclusive
    in_image = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)  # every box on image 0
    in_own_mask = torch.cat([torch.arange(len(boxes), device=boxes.device)[:, None].float(), boxes], dim=1)
    crops = roi_align(image[None].float(), in_image, size, aligned=True)
    inside = roi_align(masks[:, None].float(), in_own_mask, size, aligned=True) > 0.5
    return torch.where(inside, crops, mean.view(1, 3, 1, 1).to(crops))


class RegionClassifier:
    """Class probabilities of image regions from a (frozen) open_clip model's image tower."""

    def __init__(self, clip_model: torch.nn.Module, text_embeddings: torch.Tensor):
        """text_embeddings: (C, T) normalized, from the same model's text tower."""
        self.model = clip_model.eval()
        cfg = clip_model.visual.preprocess_cfg
        self.size = int(cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"])
        self.text = text_embeddings
        self.mean = torch.tensor(cfg["mean"], device=text_embeddings.device)  # (3,)
        self.std = torch.tensor(cfg["std"], device=text_embeddings.device)
        self.scale = float(clip_model.logit_scale.detach().exp())

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """image (H, W, 3) uint8, masks (Q, H, W) bool -> (Q, C) probabilities (rows of an empty
        mask are uniform)."""
        device = self.text.device
        probs = torch.full((len(masks), len(self.text)), 1 / len(self.text), device=device)
        present = masks.flatten(1).any(-1)
        if present.any():
            pixels = image.to(device).permute(2, 0, 1).float() / 255
            crops = masked_crops(pixels, masks[present].to(device), self.size, self.mean)
            crops = (crops - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
            features = F.normalize(self.model.encode_image(crops).float(), dim=-1)
            probs[present] = (self.scale * features @ self.text.T).softmax(-1)
        return probs


def ensemble(head_probs: torch.Tensor, clip_probs: torch.Tensor, kappa: float) -> torch.Tensor:
    """p^(1 - kappa) * q^kappa, elementwise on probabilities of the same shape."""
    if kappa == 0:
        return head_probs
    return head_probs.clamp_min(1e-8) ** (1 - kappa) * clip_probs.clamp_min(1e-8) ** kappa
