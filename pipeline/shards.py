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

from samcp.data.coco import PanopticDataset, id_to_rgb
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
        self.relative = [p[len(base):].lstrip("/") for p in self.paths]
        self.keys = sample_keys(self.relative)
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


def sample_keys(relative: list[str]) -> list[str]:
    """A unique, stable sample key per relative file path: the path without its extension, with
    characters other than letters, digits, `_`, `-` and `/` made `_`; paths that would share a key
    all get a hash of their relative path appended."""
    plain = [re.sub(r"[^A-Za-z0-9_/-]", "_", r.rsplit(".", 1)[0]) for r in relative]
    counts = Counter(plain)
    return [f"{key}_{hashlib.sha1(rel.encode()).hexdigest()[:10]}" if counts[key] > 1 else key
            for rel, key in zip(relative, plain)]


class PanopticSamples:
    """The images of a COCO panoptic dataset with their ground truth, as samples in the form
    `synthetic_sample` writes: the image file's bytes as they are, `panoptic.png` (the dataset's
    own PNG, so segment ids are kept) and `json` (key, size, `segments_info` with each
    `category_id` mapped onto the vocabulary's class id by `category_ids`, and the dataset's
    names for the image and its PNG). Keys come from the PNG names (`sample_keys`).

    An image or PNG that cannot be read, or an annotation whose image the json lacks, is left
    out and listed in `skipped` (PNG name, reason) as the iteration meets it.
    """

    def __init__(self, dataset: PanopticDataset, category_ids: dict[int, int]):
        self.dataset, self.category_ids = dataset, category_ids
        self.names = list(dataset.annotations)
        self.keys = sample_keys(self.names)
        self.skipped: list[dict] = []

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[dict]:
        for name, key in zip(self.names, self.keys):
            annotation = self.dataset.annotations[name]
            segments_info = annotation.get("segments_info", [])
            unknown = sorted(map(str, {s.get("category_id") for s in segments_info} - set(self.category_ids)))
            try:
                if unknown:
                    raise ValueError(f"segments of categories the json does not list: {unknown}")
                entry, image = self.dataset.image(annotation)
                png = self.dataset.png(name)
            except (OSError, ValueError) as error:
                self.skipped.append({"path": name, "reason": f"{type(error).__name__}: "
                                                            f"{getattr(error, 'strerror', None) or error}"})
                continue
            segments = [{**s, "category_id": self.category_ids[s["category_id"]]}
                        for s in segments_info]
            meta = {"key": key, "width": entry.get("width"), "height": entry.get("height"),
                    "file_name": entry["file_name"], "panoptic_file_name": name,
                    "image_id": annotation["image_id"], "segments_info": segments}
            ext = "jpg" if _extension(entry["file_name"]) == "jpeg" else _extension(entry["file_name"])
            yield {"__key__": key, ext: image, "panoptic.png": png, "json": json.dumps(meta).encode()}


def _extension(path: str) -> str:
    return path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
