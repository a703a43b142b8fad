"""From `PatchSet`s to the padded tensors the SAM-CP head reads.

`patch_features` keeps what the head needs of one image's patches (small: the
full-resolution masks are dropped), so training can cache it once per image;
`collate` pads several images into one `HeadInputs` batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_convert

from samcp.model.backbone import STRIDE as BACKBONE_STRIDE
from samcp.model.patch_encoder import mask_roi_grid
from samcp.sam.patches import PatchSet


@dataclass
class PatchFeatures:
    """One image's N patches as the head sees them.

    embedding: (C, h, w) SAM's embedding, or (3, S, S) uint8 the image in SAM's input
    frame for a head with a ResNet backbone (`samcp.model.backbone`).
    feature_boxes: (N, 4) xyxy in feature-map cells.
    roi_masks: (N, S, S) each patch mask inside its box. boxes: (N, 4) xyxy normalized by image size.
    clip: (N, E) CLIP embedding of each patch's region (`samcp.clip.region.RegionEncoder`), or None.
    """

    embedding: torch.Tensor
    feature_boxes: torch.Tensor
    roi_masks: torch.Tensor
    boxes: torch.Tensor
    clip: torch.Tensor | None = None

    def to_dict(self) -> dict[str, torch.Tensor]:
        return dict(vars(self))


@dataclass
class HeadInputs:
    """B images padded to N patches: features (B, C, h, w), feature_boxes (B, N, 4),
    roi_masks (B, N, S, S), boxes_xyxy and boxes_cxcywh (B, N, 4) normalized, padding (B, N)
    bool (True where there is no patch), clip (B, N, E) patch region embeddings or None."""

    features: torch.Tensor
    feature_boxes: torch.Tensor
    roi_masks: torch.Tensor
    boxes_xyxy: torch.Tensor
    boxes_cxcywh: torch.Tensor
    padding: torch.Tensor
    clip: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> HeadInputs:
        return HeadInputs(**{k: None if v is None else v.to(device) for k, v in vars(self).items()})


def pixel_boxes(patches: PatchSet) -> torch.Tensor:
    """Patch boxes as continuous pixel extents (N, 4): SAM's boxes hold inclusive last indices."""
    return patches.boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], device=patches.boxes.device)


def patch_features(patches: PatchSet, encoder_image_size: int, roi_size: int,
                   clip: torch.Tensor | None = None, pixels: torch.Tensor | None = None) -> PatchFeatures:
    """clip: (N, E) the patches' CLIP region embeddings, for a head that reads them; pixels: (3, S, S)
    the image in SAM's input frame, for a head with a ResNet backbone (it replaces the embedding)."""
    boxes = pixel_boxes(patches)
    h, w = patches.image_size
    input_scale = patches.input_size[0] / h  # ResizeLongestSide keeps the aspect ratio
    feature_cells = (patches.embedding.shape[-1] / encoder_image_size if pixels is None
                     else 1 / BACKBONE_STRIDE)
    return PatchFeatures(
        embedding=patches.embedding if pixels is None else pixels,
        feature_boxes=boxes * input_scale * feature_cells,
        roi_masks=mask_roi_grid(patches.masks, boxes, roi_size),
        boxes=boxes / torch.tensor([w, h, w, h], dtype=torch.float, device=boxes.device),
        clip=clip,
    )


def collate(images: list[PatchFeatures]) -> HeadInputs:
    """Pad and stack the patches of several images (each with at least one patch)."""
    if any(len(p.boxes) == 0 for p in images):
        raise ValueError("collate needs at least one patch per image")
    if len({p.clip is None for p in images}) > 1:
        raise ValueError("collate needs CLIP region embeddings for every image or for none")
    b, n = len(images), max(len(p.boxes) for p in images)
    first = images[0]
    device, size = first.embedding.device, first.roi_masks.shape[-1]
    feature_boxes = torch.zeros((b, n, 4), device=device)
    roi_masks = torch.zeros((b, n, size, size), device=device)
    boxes = torch.zeros((b, n, 4), device=device)
    boxes[..., 2:] = 1.0  # padded patches get the whole frame: finite encodings
    padding = torch.ones((b, n), dtype=torch.bool, device=device)
    clip = None if first.clip is None else torch.zeros((b, n, first.clip.shape[-1]), device=device)
    for i, p in enumerate(images):
        k = len(p.boxes)
        feature_boxes[i, :k] = p.feature_boxes
        roi_masks[i, :k] = p.roi_masks.float()
        boxes[i, :k] = p.boxes
        padding[i, :k] = False
        if clip is not None:
            clip[i, :k] = p.clip.float()
    return HeadInputs(
        features=torch.stack([p.embedding for p in images]).float(),
        feature_boxes=feature_boxes,
        roi_masks=roi_masks,
        boxes_xyxy=boxes,
        boxes_cxcywh=box_convert(boxes, "xyxy", "cxcywh"),
        padding=padding,
        clip=clip,
    )


def head_inputs(patch_sets: list[PatchSet], encoder_image_size: int, roi_size: int,
                clip: list[torch.Tensor] | None = None,
                pixels: list[torch.Tensor] | None = None) -> HeadInputs:
    """clip: per image, its patches' (N, E) CLIP region embeddings (for a head that reads them);
    pixels: per image, its (3, S, S) pixels in SAM's input frame (for a ResNet backbone)."""
    clip = clip or [None] * len(patch_sets)
    pixels = pixels or [None] * len(patch_sets)
    return collate([patch_features(p, encoder_image_size, roi_size, c, x)
                    for p, c, x in zip(patch_sets, clip, pixels)])
