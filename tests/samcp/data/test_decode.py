import io

import numpy as np
import pytest
from PIL import Image

from samcp.data.decode import DecodeConfig, DecodeError, decode, decode_image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))


@pytest.mark.parametrize("image, fmt", [
    (RGB, "JPEG"), (RGB, "PNG"), (RGB, "WEBP"),
    (RGB.convert("L"), "PNG"), (RGB.convert("RGBA"), "PNG"), (RGB.convert("P"), "PNG"),
    (RGB.convert("CMYK"), "JPEG"), (RGB.convert("I;16"), "PNG"),
])
def test_every_mode_becomes_rgb(image, fmt):
    out = decode_image(encode(image, fmt))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8


def test_sixteen_bit_keeps_its_range():
    values = (np.linspace(0, 65535, 40 * 60).reshape(40, 60)).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I")
    out = decode_image(encode(image, "PNG"))
    assert out.max() == 255 and out.min() == 0


def test_exif_rotation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = decode_image(encode(RGB, "JPEG", exif=exif.tobytes()))
    assert out.shape == (60, 40, 3)
    big = Image.new("RGB", (3000, 1500), (10, 200, 30))
    decoded = decode(encode(big, "JPEG", exif=exif.tobytes()), DecodeConfig(max_side=512))
    assert decoded.native_size == (3000, 1500)  # upright: the labels' size
    assert decoded.pixels.shape[0] == 512 and decoded.pixels.shape[1] < 512


def test_large_images_are_downscaled():
    big = Image.new("RGB", (3000, 1500), (10, 200, 30))
    out = decode(encode(big, "JPEG"), DecodeConfig(max_side=512))
    assert max(out.pixels.shape[:2]) <= 512 and out.pixels.shape[1] > out.pixels.shape[0]
    assert out.native_size == (1500, 3000)


@pytest.mark.parametrize("data, message", [
    (b"", "empty image"),
    (b"hello, this is text", "not an image"),
    (encode(RGB, "JPEG")[:200], "corrupt image"),
    (encode(Image.new("RGB", (1, 1)), "PNG"), "too small"),
])
def test_bad_bytes_give_clear_errors(data, message):
    with pytest.raises(DecodeError, match=message):
        decode_image(data)


def test_decompression_bomb_is_refused():
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")  # tiny file, 400 M pixels
    assert len(bomb) < 200_000
    with pytest.raises(DecodeError, match="too large|decompression bomb"):
        decode_image(bomb)
