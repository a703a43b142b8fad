"""Other views of an image with its masks: mirrored left-right, turned by quarter turns.

    image (H, W, 3) uint8; masks (S, H, W) bool tensor (None: the image alone)
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def mirror(image: np.ndarray, masks: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor | None]:
    """The image and its masks mirrored left-right (a contiguous copy of the image)."""
    return np.ascontiguousarray(image[:, ::-1]), None if masks is None else masks.flip(-1)


def turn(image: np.ndarray, masks: torch.Tensor | None,
         quarters: int) -> tuple[np.ndarray, torch.Tensor | None]:
    """The image and its masks turned counterclockwise by `quarters` x 90 degrees."""
    turned = np.ascontiguousarray(np.rot90(image, quarters))
    return turned, None if masks is None else torch.rot90(masks, quarters, (1, 2))


def quarters_for(key: str) -> int:
    """1, 2 or 3 quarter turns, fixed by a sample's key (so every run turns an image the same way)."""
    return 1 + zlib.crc32(key.encode()) % 3
