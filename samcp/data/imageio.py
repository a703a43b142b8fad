"""Image arrays -> encoded bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# File extension -> PIL format name, for every format the corpus tools write or read.
IMAGE_FORMATS: dict[str, str] = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


def encode_image(array: np.ndarray, image_format: str = "png", quality: int = 95) -> bytes:
    """(H, W, 3) or (H, W) uint8 -> bytes in `image_format` (jpg, jpeg, png or webp)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {image_format!r}; choose one of {sorted(IMAGE_FORMATS)}")
    pil_format = IMAGE_FORMATS[image_format]
    buffer = io.BytesIO()
    options = {} if pil_format == "PNG" else {"quality": quality}
    Image.fromarray(array).save(buffer, format=pil_format, **options)
    return buffer.getvalue()
