"""Carry a SAM's weights to a SAM of another patch size (FlexiViT-style resizing).

A patch-size-p/2 encoder on an image equals a patch-size-p encoder on the same
image upsampled 2x by nearest neighbour when its patch-embedding kernel is the
2x2 sum-pool of the larger kernel; the absolute position embedding (1, h, w, D)
and the relative-position tables (2 s - 1, head_dim) are interpolated to the new
token grid. Every other weight (neck, prompt encoder, mask decoder) does not
depend on the grid and is copied as is. The result is a starting point for
fine-tuning, not a finished model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam


def _resize_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """(D, 3, k, k) patch-embedding kernel -> (D, 3, size, size), same response to an
    image upsampled by k / size (sum-pooling when size divides k)."""
    k = weight.shape[-1]
    if k % size:
        raise ValueError(f"cannot resize a {k} px patch kernel to {size} px: {size} must divide {k}")
    return F.avg_pool2d(weight, k // size) * (k // size) ** 2


def _resize_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """(L, C) relative-position table -> (length, C), linear interpolation."""
    return F.interpolate(table.T[None], size=length, mode="linear", align_corners=True)[0].T


def resize_sam_weights(source: Sam, target: Sam) -> None:
    """Load `source`'s weights into `target`, a SAM of the same widths and depths whose
    patch size divides `source`'s; the grid-dependent tensors are resized (module doc)."""
    wanted = target.state_dict()
    carried = {}
    for name, value in source.state_dict().items():
        if name not in wanted:
            raise ValueError(f"SAMs differ beyond patch size and grid: target has no {name!r}")
        shape = wanted[name].shape
        if value.shape == shape:
            carried[name] = value
        elif name == "image_encoder.patch_embed.proj.weight":
            carried[name] = _resize_kernel(value, shape[-1])
        elif name == "image_encoder.pos_embed":
            grid = F.interpolate(value.permute(0, 3, 1, 2), size=shape[1:3], mode="bicubic",
                                 align_corners=False)
            carried[name] = grid.permute(0, 2, 3, 1)
        elif name.endswith((".rel_pos_h", ".rel_pos_w")) and value.shape[1:] == shape[1:]:
            carried[name] = _resize_table(value, shape[0])
        else:
            raise ValueError(f"SAMs differ beyond patch size and grid: {name} is "
                             f"{tuple(value.shape)} in the source, {tuple(shape)} in the target")
    missing = sorted(set(wanted) - set(carried))
    if missing:
        raise ValueError(f"SAMs differ beyond patch size and grid: source lacks {missing[:3]}")
    target.load_state_dict(carried)
