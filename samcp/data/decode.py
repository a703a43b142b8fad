"""Image bytes -> RGB uint8 array, or a clear reason why not.

Every failure is a `DecodeError` with a message fit for an output row's
`error` column; nothing here raises anything else for bad bytes. Images are
EXIF-rotated, converted to RGB from any mode (grayscale, palette, RGBA,
16-bit, CMYK), and images larger than `max_side` are downscaled while they
decode (JPEG draft mode), so a huge image never needs its full-size buffer;
the image's own size (after EXIF rotation, as viewers show it) is kept beside
the pixels, for labels at that size. Images above `max_pixels` are refused
before decoding (decompression bombs).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class DecodeError(ValueError):
    """The bytes of a sample are not a usable image."""


@dataclass(frozen=True)
class DecodeConfig:
    """What the reader accepts and how it decodes; recorded in the labeling manifest, since it
    changes the labels (their size) and which samples are errors."""

    # Longer side of what the model sees (larger images are downscaled while they decode; labels stay
    # at the image's own size): SAM's input is 1024 px, so more only costs the patch generator time.
    max_side: int = 1024
    max_pixels: int = 150_000_000  # width x height above which an image is refused (12000^2 passes)
    min_side: int = 8  # images smaller than this on either side are refused
    max_member_bytes: int = 256 * 2**20  # tar members above this are not read: their sample is an error

    def __post_init__(self):
        for name in ("max_side", "max_pixels", "min_side", "max_member_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{FLAGS[name]} must be a positive whole number, got {value!r}")
        if self.max_side < self.min_side:
            raise ValueError(f"--max-side must be at least {self.min_side} (the smallest image side "
                             f"accepted), got {self.max_side}")


ORIENTATION = 0x0112  # the EXIF tag

FLAGS = {"max_side": "--max-side", "max_pixels": "max_pixels", "min_side": "min_side",
         "max_member_bytes": "--max-member-mib"}


# EXIF orientations that swap width and height (a transpose or a quarter turn).
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


@dataclass(frozen=True)
class DecodedImage:
    """pixels: (h, w, 3) uint8 RGB, at most `max_side` a side; native_size: the (height, width) of
    the image itself after EXIF rotation."""

    pixels: np.ndarray
    native_size: tuple[int, int]


def decode_image(data: bytes, cfg: DecodeConfig | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB from encoded image bytes; raises DecodeError with the reason."""
    return decode(data, cfg).pixels


def decode(data: bytes, cfg: DecodeConfig | None = None) -> DecodedImage:
    """The pixels and native size of encoded image bytes; raises DecodeError with the reason."""
    cfg = cfg or DecodeConfig()
    if not data:
        raise DecodeError("empty image (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # `max_pixels` decides
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > cfg.max_pixels:
                raise DecodeError(f"image too large: {width}x{height} pixels exceeds the limit of "
                                  f"{cfg.max_pixels} (possible decompression bomb)")
            if min(width, height) < cfg.min_side:
                raise DecodeError(f"image too small: {width}x{height}, "
                                  f"need at least {cfg.min_side} px a side")
            swapped = image.getexif().get(ORIENTATION) in SWAPPING_ORIENTATIONS
            native_size = (width, height) if swapped else (height, width)
            if max(width, height) > cfg.max_side and image.format == "JPEG":
                image.draft("RGB", (cfg.max_side, cfg.max_side))  # decode at reduced scale
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
            if max(image.size) > cfg.max_side:
                image.thumbnail((cfg.max_side, cfg.max_side), Image.Resampling.BILINEAR)
            return DecodedImage(np.asarray(image, dtype=np.uint8).copy(), native_size)
    except DecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise DecodeError(f"image refused as a decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise DecodeError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DecodeError(f"corrupt image: {error}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits
        values = np.asarray(image, dtype=np.float64)
        peak = values.max() if values.size and values.max() > 255 else 255.0
        return Image.fromarray((values * (255.0 / peak)).clip(0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
