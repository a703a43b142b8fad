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

from samcp.clip.text_encoder import TextEncoder
from samcp.masks import as_float, mask_boxes, nonempty


def box_sample_grid(boxes: torch.Tensor, size: int, image_size: tuple[int, int]) -> torch.Tensor:
    """(Q, 4) xyxy pixel-edge boxes -> (Q, size, size, 2) `grid_sample` coordinates of the
    centres of a size x size grid of bins inside each box: the points RoIAlign (aligned, one
    sample per bin) reads."""
    h, w = image_size
    centres = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5) / size  # (size,)
    xs = boxes[:, 0:1] + centres * (boxes[:, 2:3] - boxes[:, 0:1])  # (Q, size) pixel edges
    ys = boxes[:, 1:2] + centres * (boxes[:, 3:4] - boxes[:, 1:2])
    return torch.stack(torch.broadcast_tensors(xs[:, None, :] * (2 / w) - 1,
                                               ys[:, :, None] * (2 / h) - 1), dim=-1)


def masked_crops(image: torch.Tensor, masks: torch.Tensor, size: int, mean: torch.Tensor,
                 boxes: torch.Tensor | None = None) -> torch.Tensor:
    """image (3, H, W) float in 0..1, masks (Q, H, W) bool, none empty -> (Q, 3, size, size):
    each mask's box, resized to size x size, pixels outside the mask set to `mean` (3,).
    boxes: the masks' (Q, 4) xyxy pixel boxes, right and bottom inclusive, if known.

    Bilinear samples at the bin centres, as torchvision's `roi_align(aligned=True,
    sampling_ratio=1)` takes them, through `grid_sample` (about 2x faster on CPU)."""
    boxes = (mask_boxes(masks) if boxes is None else boxes).float()
    boxes = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device)  # inclusive -> edges
    grid = box_sample_grid(boxes, size, image.shape[-2:])  # (Q, size, size, 2)
    q = len(boxes)
    crops = F.grid_sample(image[None].float(), grid.reshape(1, q * size, size, 2),
                          align_corners=False, padding_mode="border")  # (1, 3, Q * size, size)
    crops = crops.reshape(3, q, size, size).transpose(0, 1)
    inside = F.grid_sample(as_float(masks[:, None]), grid, align_corners=False, padding_mode="border") > 0.5
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
        return self.embed_many([(image, masks, boxes)])[0]

    @torch.no_grad()
    def embed_many(self, regions: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
                   ) -> list[torch.Tensor]:
        """`self(image, masks, boxes)` for several images, their crops through the image tower in
        one pass."""
        device = self.mean.device
        crops, present = [], []
        for image, masks, boxes in regions:
            present.append(nonempty(masks).to(device))
            if present[-1].any():
                pixels = image.to(device).permute(2, 0, 1).float() / 255
                known = None if boxes is None else boxes.to(device)[present[-1]]
                crops.append(masked_crops(pixels, masks.to(device)[present[-1]], self.size, self.mean, known))
        features = [torch.zeros((len(p), self.dim), device=device) for p in present]
        if crops:
            crops = (torch.cat(crops) - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
            embeddings = F.normalize(self.model.encode_image(crops).float(), dim=-1)
            for f, p, e in zip(features, present, embeddings.split([int(p.sum()) for p in present])):
                f[p] = e
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

    @torch.no_grad()
    def probs_many(self, regions: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """`self(image, masks)` for several (image, masks) pairs, through CLIP in one pass."""
        return [self.probs(f) for f in self.encoder.embed_many([(i, m, None) for i, m in regions])]

    def probs(self, features: torch.Tensor) -> torch.Tensor:
        """(Q, E) embeddings of this model's `RegionEncoder` -> (Q, C) (zero rows: uniform)."""
        probs = (self.scale * features @ self.text.T).softmax(-1)
        return torch.where(features.any(-1, keepdim=True), probs, 1 / len(self.text))


def ensemble(head_probs: torch.Tensor, clip_probs: torch.Tensor,
             kappa: float | torch.Tensor) -> torch.Tensor:
    """p^(1 - kappa) * q^kappa, elementwise on probabilities of the same shape; `kappa` a number
    or a tensor that broadcasts against them, e.g. (C,) one weight per class (p where it is 0)."""
    kappa = torch.as_tensor(kappa, dtype=head_probs.dtype, device=head_probs.device)
    mixed = head_probs.clamp_min(1e-8) ** (1 - kappa) * clip_probs.clamp_min(1e-8) ** kappa
    return torch.where(kappa == 0, head_probs, mixed)
