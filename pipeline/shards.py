"""WebDataset shards: samples in, zero-padded `shard-000000.tar` files out.

A sample is a dict with `__key__` and one bytes value per field (`jpg`, `json`,
`panoptic.png`, ...). Shards go to a local path or any fsspec URI, each
published atomically, so a reader never sees a half-written shard.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice

import webdataset as wds
from tqdm import tqdm

from samcp.data.coco import id_to_rgb
from samcp.data.imageio import IMAGE_FORMATS, encode_image
from samcp.data.synthetic import SyntheticImage
from samcp.storage import atomic_write, ensure_directory, join, resolve

SHARD_NAME = "shard-{:06d}.tar"


def shard_pattern(output: str, num_shards: int) -> str:
    """Brace pattern that names all `num_shards` shards under `output`."""
    last = SHARD_NAME.format(num_shards - 1)[len("shard-"):-len(".tar")]
    return f"{output.rstrip('/')}/shard-{{{'0' * len(last)}..{last}}}.tar"


def write_shards(samples: Iterable[dict], output: str, shard_size: int, *,
                 storage_options: dict | None = None, total: int | None = None,
                 progress: bool = True) -> list[str]:
    """Write samples into shards of `shard_size` under the directory URI `output`.

    Returns the shard URIs. Raises ValueError on a sample without `__key__`, a
    key with a dot (WebDataset splits fields at the first dot) or a key seen before.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    fs, root = resolve(output, storage_options)
    ensure_directory(fs, root, output)
    seen: set[str] = set()
    urls: list[str] = []
    stream = iter(tqdm(samples, total=total, unit="img", desc="shards", disable=not progress))
    while chunk := list(islice(stream, shard_size)):
        for sample in chunk:
            _check_key(sample, seen)
        path = join(fs, root, SHARD_NAME.format(len(urls)))
        with atomic_write(fs, path) as f:
            writer = wds.TarWriter(f, encoder=False)
            for sample in chunk:
                writer.write(sample)
            writer.close()
        urls.append(fs.unstrip_protocol(path))
    return urls


def _check_key(sample: dict, seen: set[str]) -> None:
    key = sample.get("__key__")
    if not key:
        raise ValueError(f"sample without __key__ (fields: {sorted(sample)})")
    if "." in key.rsplit("/", 1)[-1]:
        raise ValueError(f"sample key {key!r} contains a dot; WebDataset would split it")
    if key in seen:
        raise ValueError(f"duplicate sample key {key!r}")
    seen.add(key)


def synthetic_sample(image: SyntheticImage, image_format: str = "jpg") -> dict:
    """A synthetic image with its ground truth as a WebDataset sample."""
    return {
        "__key__": image.key,
        image_format: encode_image(image.image, image_format),
        "json": json.dumps(image.metadata()).encode(),
        "panoptic.png": encode_image(id_to_rgb(image.panoptic)),
        "parts.png": encode_image(id_to_rgb(image.part_map)),
    }


class ImageFolder:
    """Every jpg/jpeg/png/webp file under `root` (recursive) as a sample, in path order.

    Keys are the relative paths without extension, with characters other than
    letters, digits, `_`, `-` and `/` replaced by `_`; paths that would share a
    key all get a hash of their relative path appended, so keys are unique and
    stable. Files are packed as they are: undecodable images fail later, as
    error rows, not here. A file that cannot be read at all (a broken symbolic
    link, no permission) cannot be packed: it is left out and listed in `skipped`
    (relative path, reason) as the iteration meets it.
    """

    def __init__(self, root: str, storage_options: dict | None = None):
        self.fs, base = resolve(root, storage_options)
        if not self.fs.isdir(base):
            raise FileNotFoundError(f"image folder not found: {root}")
        self.paths = sorted(p for p in self.fs.find(base) if _extension(p) in IMAGE_FORMATS)
        relative = [p[len(base):].lstrip("/") for p in self.paths]
        plain = [re.sub(r"[^A-Za-z0-9_/-]", "_", r.rsplit(".", 1)[0]) for r in relative]
        counts = Counter(plain)
        self.keys = [
            f"{key}_{hashlib.sha1(rel.encode()).hexdigest()[:10]}" if counts[key] > 1 else key
            for rel, key in zip(relative, plain)
        ]
        self.relative = relative
        self.skipped: list[dict] = []

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[dict]:
        for path, rel, key in zip(self.paths, self.relative, self.keys):
            ext = "jpg" if _extension(path) == "jpeg" else _extension(path)
            try:
                data = self.fs.cat_file(path)
            except OSError as error:
                self.skipped.append({"path": rel, "reason": f"{type(error).__name__}: "
                                                            f"{error.strerror or error}"})
                continue
            yield {"__key__": key, ext: data, "json": json.dumps({"key": key, "source": rel}).encode()}


def _extension(path: str) -> str:
    return path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
