"""One WebDataset shard -> one row per sample (decoded image or error), then an end row.

Rows flow through Ray Data from here to the labeling actors and on to the
driver, which writes a shard's output once it holds every sample of that shard.
Every row has the same columns:

    kind            "sample" or "end"
    key, shard      the sample's key and the shard's URI ("" key on the end row)
    index           the sample's position in the shard (on the end row: the count)
    image           (H, W, 3) uint8, or (0, 0, 3) when the sample is an error
    width, height   of the decoded image (0 when unknown)
    error           why the sample cannot be labeled, or "" (strings, never null: Ray
                    Data turns an all-null column into floats)
    shard_samples   on the end row: how many sample rows the shard produced (else -1)
    shard_error     on the end row: why the shard could not be read whole, or ""

A shard that cannot be read to its end (missing, unreadable, truncated) ends
with `shard_error` set; its rows are then discarded and no output is written
for it, so a rerun after the fault is fixed labels it whole.

The tar is streamed with the standard library's `tarfile`, grouped by the
WebDataset naming convention (`<key>.<extension>`): importing `webdataset`
would import torch, about 500 MiB in every reading actor.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import fsspec
import numpy as np
from PIL import Image

from pipeline.decode import DecodeConfig, DecodeError, decode_image

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp")
NO_IMAGE = np.zeros((0, 0, 3), np.uint8)
METADATA_FILE = re.compile(r"__[^/]*__($|/)")  # WebDataset's metadata entries, not samples


@dataclass(frozen=True)
class ShardReader:
    """Callable for Ray Data's `flat_map` over rows `{"shard": URI}` (a function object, or a class
    for a pool of reading actors)."""

    storage_options: dict | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __call__(self, row: dict) -> Iterator[dict]:
        shard = row["shard"]
        count, shard_error = 0, ""
        try:
            with fsspec.open(shard, "rb", **(self.storage_options or {})) as stream:
                for key, fields, duplicate_of in _samples(stream):
                    yield self._sample_row(shard, count, key, fields, duplicate_of)
                    count += 1
        except FileNotFoundError:
            shard_error = f"shard not found: {shard}"
        except PermissionError as error:
            shard_error = f"permission denied reading {shard}: {error}"
        except (tarfile.TarError, EOFError) as error:
            shard_error = f"shard {shard} is truncated or not a tar file after {count} samples: {error}"
        except Exception as error:  # noqa: BLE001 - storage errors of any client become the shard's error
            shard_error = (f"shard {shard} could not be read after {count} samples: "
                           f"{type(error).__name__}: {error}").split("\n")[0]
        yield _row("end", shard, count, shard_samples=count, shard_error=shard_error)

    def _sample_row(self, shard: str, index: int, key: str, fields: dict[str, bytes],
                    duplicate_of: int | None) -> dict:
        row = _row("sample", shard, index, key=key)
        if duplicate_of is not None:
            row["error"] = f"duplicate key {key!r} in shard (first seen as sample {duplicate_of})"
            return row
        name = next((f for f in IMAGE_FIELDS if f in fields), None)
        if name is None:
            row["error"] = f"sample has no image (fields: {', '.join(sorted(fields)) or 'none'})"
            return row
        try:
            image = decode_image(fields[name], self.decode)
        except DecodeError as error:
            row["error"] = str(error)
            return row
        row.update(image=image, height=image.shape[0], width=image.shape[1])
        return row


def source_images(shard: str, sizes: dict[str, tuple[int, int]], storage_options: dict | None = None,
                  decode: DecodeConfig | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The images of the keys in `sizes` (key -> labeled (height, width)) from one shard, resized to
    that size when the shard decodes them at another (labels made with another `--max-side`).

    Returns ({key: (H, W, 3) uint8}, why some could not be read or ""): samples that fail to
    decode are left out, and a shard that cannot be read whole gives what it had before the fault.
    """
    images, problems = {}, []
    for row in ShardReader(storage_options, decode or DecodeConfig())({"shard": shard}):
        if row["kind"] == "end":
            problems.append(row["shard_error"])
        elif row["key"] in sizes and not row["error"]:
            height, width = sizes[row["key"]]
            image = row["image"]
            if image.shape[:2] != (height, width):
                image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
            images[row["key"]] = image
    missing = [key for key in sizes if key not in images]
    if missing:
        problems.append(f"{len(missing)} samples not found or not decodable in {shard} (e.g. {missing[0]!r})")
    return images, "; ".join(p for p in problems if p)


def _row(kind: str, shard: str, index: int, **values) -> dict:
    return {"kind": kind, "key": "", "shard": shard, "index": index, "image": NO_IMAGE, "width": 0,
            "height": 0, "error": "", "shard_samples": -1, "shard_error": "", **values}


def _samples(stream) -> Iterator[tuple[str, dict[str, bytes], int | None]]:
    """(key, {extension: bytes}, index of an earlier sample with the same key or None) per sample.

    Files of one sample are consecutive in the tar (the WebDataset convention);
    a key that comes back after another sample is a duplicate, reported as such.
    """
    first_index: dict[str, int] = {}
    key, fields, index = None, {}, 0
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            split = _key_and_extension(member.name)
            if not member.isfile() or split is None or METADATA_FILE.match(member.name):
                continue
            base, extension = split
            if base != key and key is not None:
                yield key, fields, first_index.get(key)
                first_index.setdefault(key, index)
                key, fields, index = None, {}, index + 1
            key = base
            fields[extension.lower()] = tar.extractfile(member).read()
        # tarfile takes an end of data at a header boundary for the end of the archive;
        # a whole tar has an end-of-archive block there.
        if tar.fileobj.tell() < tar.offset + tarfile.BLOCKSIZE:
            raise tarfile.ReadError("unexpected end of data: no end-of-archive block")
    if key is not None:
        yield key, fields, first_index.get(key)


def _key_and_extension(name: str) -> tuple[str, str] | None:
    """`dir/abc.seg.png` -> (`dir/abc`, `seg.png`): the key ends at the first dot of the file name."""
    folder, _, file_name = name.rpartition("/")
    stem, dot, extension = file_name.partition(".")
    if not stem or not dot:
        return None
    return (f"{folder}/{stem}" if folder else stem), extension
