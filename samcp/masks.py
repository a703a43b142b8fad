"""Small helpers on binary masks.

The torch helpers read bool masks through a uint8 view: on CPU, torch's reductions and
float conversion of bool tensors are 3-15x slower than the same on uint8 (same bytes).
"""

from __future__ import annotations

import numpy as np
import torch


def mask_bbox(mask: np.ndarray) -> list[int]:
    """COCO (x, y, w, h) of the True pixels of a (H, W) mask; zeros for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def id_map_ious(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of every segment of one (H, W) id map with every segment of another (0 = void).

    Returns (first.max() + 1, second.max() + 1) float: entry [i, j] is the IoU of
    the pixels with id i in `first` and id j in `second`.
    """
    first, second = first.astype(np.int64), second.astype(np.int64)
    width = int(second.max()) + 1
    inter = np.bincount((first * width + second).ravel(),
                        minlength=(int(first.max()) + 1) * width).reshape(-1, width)
    union = inter.sum(1)[:, None] + inter.sum(0)[None, :] - inter
    return inter / np.maximum(union, 1)


def as_float(masks: torch.Tensor) -> torch.Tensor:
    """Bool masks of any shape -> float32 in {0, 1}."""
    return masks.view(torch.uint8).float()


def nonempty(masks: torch.Tensor) -> torch.Tensor:
    """(Q, H, W) bool -> (Q,) bool: the masks with at least one pixel."""
    return masks.flatten(1).view(torch.uint8).amax(-1).bool()


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(Q, H, W) bool -> (Q, 4) float xyxy of the first and last True row and column (inclusive,
    as torchvision's `masks_to_boxes`); zeros for an empty mask."""
    rows = masks.view(torch.uint8).amax(2)  # (Q, H): rows with a pixel
    cols = masks.view(torch.uint8).amax(1)  # (Q, W)
    h, w = rows.shape[-1], cols.shape[-1]
    boxes = torch.stack([cols.argmax(-1), rows.argmax(-1),  # argmax: the first maximum
                         w - 1 - cols.flip(-1).argmax(-1), h - 1 - rows.flip(-1).argmax(-1)], dim=-1)
    return torch.where(rows.amax(-1, keepdim=True).bool(), boxes, 0).float()
