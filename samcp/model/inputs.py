"""From `PatchSet`s to the padded tensors the SAM-CP head reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_convert

from samcp.model.patch_encoder import mask_roi_grid
from samcp.patches import PatchSet


@dataclass
class HeadInputs:
    """A batch of B images with up to N patches each.

    features: (B, C, h, w) SAM image embeddings. feature_boxes: (B, N, 4) xyxy in
    feature-map cells. roi_masks: (B, N, S, S) each patch mask inside its box.
    boxes_xyxy, boxes_cxcywh: (B, N, 4) normalized by the image size.
    padding: (B, N) bool, True where there is no patch.
    """

    features: torch.Tensor
    feature_boxes: torch.Tensor
    roi_masks: torch.Tensor
    boxes_xyxy: torch.Tensor
    boxes_cxcywh: torch.Tensor
    padding: torch.Tensor

    def to(self, device: torch.device | str) -> HeadInputs:
        return HeadInputs(**{k: v.to(device) for k, v in vars(self).items()})


def pixel_boxes(patches: PatchSet) -> torch.Tensor:
    """Patch boxes as continuous pixel extents (N, 4): SAM's boxes hold inclusive last indices."""
    return patches.boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], device=patches.boxes.device)


def head_inputs(patch_sets: list[PatchSet], encoder_image_size: int, roi_size: int) -> HeadInputs:
    """Pad and stack the patches of several images (each with at least one patch)."""
    if any(len(p) == 0 for p in patch_sets):
        raise ValueError("head_inputs needs at least one patch per image")
    b, n = len(patch_sets), max(len(p) for p in patch_sets)
    first = patch_sets[0]
    device = first.embedding.device
    feature_cells = first.embedding.shape[-1] / encoder_image_size
    feature_boxes = torch.zeros((b, n, 4), device=device)
    roi_masks = torch.zeros((b, n, roi_size, roi_size), device=device)
    boxes_xyxy = torch.zeros((b, n, 4), device=device)
    boxes_xyxy[..., 2:] = 1.0  # padded patches get the whole frame: finite encodings
    padding = torch.ones((b, n), dtype=torch.bool, device=device)
    for i, patches in enumerate(patch_sets):
        k = len(patches)
        boxes = pixel_boxes(patches)
        h, w = patches.image_size
        input_scale = patches.input_size[0] / h  # ResizeLongestSide keeps the aspect ratio
        feature_boxes[i, :k] = boxes * input_scale * feature_cells
        roi_masks[i, :k] = mask_roi_grid(patches.masks, boxes, roi_size)
        boxes_xyxy[i, :k] = boxes / torch.tensor([w, h, w, h], device=device)
        padding[i, :k] = False
    return HeadInputs(
        features=torch.stack([p.embedding for p in patch_sets]).float(),
        feature_boxes=feature_boxes,
        roi_masks=roi_masks,
        boxes_xyxy=boxes_xyxy,
        boxes_cxcywh=box_convert(boxes_xyxy, "xyxy", "cxcywh"),
        padding=padding,
    )
