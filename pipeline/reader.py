"""One WebDataset shard -> one row per sample (decoded image or error), then an end row.

A labeling actor reads its shard's rows on a thread, labels the samples and writes
the shard's output once it holds every row (`pipeline.labeling`). Every row has the
same columns:

    kind            "sample" or "end"
    key, shard      the sample's key and the shard's URI ("" key on the end row)
    index           the sample's position in the shard (on the end row: the count)
    image           (H, W, 3) uint8, at most `--max-side` a side, or (0, 0, 3) when the
                    sample is an error
    width, height   the image's own size, after EXIF rotation (0 when unknown)
    error           why the sample cannot be labeled, or "" (strings, never null: Ray
                    Data turns an all-null column into floats)
    shard_samples   on the end row: how many sample rows the shard produced (else -1)
    shard_error     on the end row: why the shard could not be read whole, or ""
    skipped_members on the end row: the members that belong to no sample (no key in
                    the name, folders, WebDataset metadata) as JSON {count, reasons,
                    examples}, or ""

Every tar member ends in a sample's row or in `skipped_members`. A member that
is not a regular file (a symbolic link, FIFO, device), larger than
`DecodeConfig.max_member_bytes` (skipped unread: the size is in its header) or a
second file of the same extension in a row makes its sample an error row with
the reason; a hard link is read from its target's bytes. Member names that are
not UTF-8 give keys with `\\xNN` escapes (`member_name`).

A shard that cannot be read to its end (missing, unreadable, truncated) ends
with `shard_error` set; its rows are then discarded and no output is written
for it, so a rerun after the fault is fixed labels it whole.

The tar is streamed with the standard library's `tarfile`, grouped by the
WebDataset naming convention (`<key>.<extension>`): importing `webdataset`
would import torch, about 500 MiB in every reading actor.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipeline.sources import is_slice, slice_samples
from samcp.data.decode import DecodeConfig, DecodeError, decode
from samcp.storage import open_uri

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp")
NO_IMAGE = np.zeros((0, 0, 3), np.uint8)
METADATA_FILE = re.compile(r"__[^/]*__($|/)")  # WebDataset's metadata entries, not samples


@dataclass(frozen=True)
class ShardReader:
    """Callable for Ray Data's `flat_map` over rows `{"shard": URI}` (a function object, or a class
    for a pool of reading actors)."""

    storage_options: dict | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    # Members besides the image that a sample row also carries, as bytes (b"" where a sample lacks
    # one), e.g. ("json", "panoptic.png") for ground truth inside the shards.
    fields: tuple[str, ...] = ()

    # Folder listings of the slices read so far (`pipeline.sources`): many slices share a folder.
    listings: dict = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, row: dict) -> Iterator[dict]:
        shard = row["shard"]
        count, shard_error = 0, ""
        skipped = SkippedMembers()
        try:
            for sample in self.samples(shard, skipped, row.get("files")):
                yield self._sample_row(shard, count, sample)
                count += 1
        except Exception as error:  # noqa: BLE001 - storage errors of any client become the shard's error
            shard_error = shard_error_text(shard, count, error)
        yield _row("end", shard, count, shard_samples=count, shard_error=shard_error,
                   skipped_members=skipped.to_json())

    def samples(self, shard: str, skipped: SkippedMembers, files: list[str] | None = None
                ) -> Iterator[TarSample]:
        """The samples of `shard` (a tar, or a slice of a manifest, table or folder) in order, their
        members as bytes (a slice's image under "bytes"); raises when the shard cannot be read."""
        if is_slice(shard):
            first_index: dict[str, int] = {}
            found = slice_samples(shard, self.storage_options, self.decode.max_member_bytes, files,
                                  self.listings)
            for index, sample in enumerate(found):
                problems = [sample.problem] if sample.problem else []
                yield TarSample(sample.key, {"bytes": sample.data}, problems,
                                duplicate_of=first_index.get(sample.key))
                first_index.setdefault(sample.key, index)
            return
        with open_uri(shard, "rb", self.storage_options) as stream:
            yield from _samples(stream, self.decode.max_member_bytes, self._reader_at(shard), skipped)

    def _reader_at(self, shard: str) -> Callable[[int, int], bytes]:
        """read_at(offset, size): bytes of the shard at an offset (hard links), from a second handle."""
        def read_at(offset: int, size: int) -> bytes:
            with open_uri(shard, "rb", self.storage_options) as f:
                f.seek(offset)
                return f.read(size)
        return read_at

    def _sample_row(self, shard: str, index: int, sample: TarSample) -> dict:
        row = _row("sample", shard, index, key=sample.key)
        fields = sample.fields
        row.update({name: fields.get(name, b"") for name in self.fields})
        if sample.duplicate_of is not None:
            row["error"] = (f"duplicate key {sample.key!r} in shard "
                            f"(first seen as sample {sample.duplicate_of})")
            return row
        if sample.problems:
            row["error"] = "; ".join(sample.problems)
            return row
        name = image_field(fields)
        if name is None:
            row["error"] = f"sample has no image (fields: {', '.join(sorted(fields)) or 'none'})"
            return row
        try:
            decoded = decode(fields[name], self.decode)
        except DecodeError as error:
            row["error"] = str(error)
            return row
        height, width = decoded.native_size
        row.update(image=decoded.pixels, height=height, width=width)
        return row


def source_images(shard: str, sizes: dict[str, tuple[int, int]], storage_options: dict | None = None,
                  decode: DecodeConfig | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The images of the keys in `sizes` (key -> labeled (height, width)) from one shard, decoded at
    up to the largest of those sizes (labels are at the images' own size), and resized to the
    labeled size when a sample decodes at another (labels of an earlier version, made at the
    model's size).

    Returns ({key: (H, W, 3) uint8}, why some could not be read or ""): samples that fail to
    decode are left out, and a shard that cannot be read whole gives what it had before the fault.
    """
    if decode is None:
        largest = max((max(size) for size in sizes.values()), default=0)
        decode = DecodeConfig(max_side=max(largest, DecodeConfig.max_side))
    images, problems = {}, []
    for row in ShardReader(storage_options, decode)({"shard": shard}):
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


def source_files(shard: str, keys: set[str], storage_options: dict | None = None
                 ) -> tuple[dict[str, tuple[str, bytes]], str]:
    """The image files of `keys` in one shard as they are stored, not decoded: {key: (extension,
    bytes)}, the extension the tar member's (`jpg`, `jpeg`, `png`, ...) or, for a slice's image, the
    one its format calls for. Returns them and why some could not be read, or ""."""
    files, problems, count = {}, [], 0
    try:
        for sample in ShardReader(storage_options).samples(shard, SkippedMembers()):
            count += 1
            if sample.key in keys and sample.duplicate_of is None and not sample.problems:
                name = image_field(sample.fields)
                if name is not None:
                    data = sample.fields[name]
                    files[sample.key] = (image_extension(data) if name == "bytes" else name, data)
    except Exception as error:  # noqa: BLE001 - as in ShardReader: the shard's fault, reported
        problems.append(shard_error_text(shard, count, error))
    missing = [key for key in keys if key not in files]
    if missing:
        problems.append(f"{len(missing)} samples not found or not readable in {shard} (e.g. {missing[0]!r})")
    return files, "; ".join(problems)


def image_field(fields: dict[str, bytes]) -> str | None:
    """Which of a sample's members is its image: a slice's "bytes", else the first image extension."""
    return next((f for f in ("bytes", *IMAGE_FIELDS) if f in fields), None)


def image_extension(data: bytes) -> str:
    """The file extension of encoded image bytes by their format (its header only), "bin" when unknown."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
    except Exception:  # noqa: BLE001 - any undecodable header
        kind = ""
    return {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp",
            "GIF": "gif"}.get(kind, "bin")


def shard_error_text(shard: str, count: int, error: Exception) -> str:
    """Why a shard could not be read whole, after `count` samples."""
    if isinstance(error, FileNotFoundError):
        return f"shard not found: {shard}"
    if isinstance(error, PermissionError):
        return f"permission denied reading {shard}: {error}"
    if isinstance(error, (tarfile.TarError, EOFError)):
        return f"shard {shard} is truncated or not a tar file after {count} samples: {error}"
    text = f"shard {shard} could not be read after {count} samples: {type(error).__name__}: {error}"
    return text.split("\n")[0]


def _row(kind: str, shard: str, index: int, **values) -> dict:
    return {"kind": kind, "key": "", "shard": shard, "index": index, "image": NO_IMAGE, "width": 0,
            "height": 0, "error": "", "shard_samples": -1, "shard_error": "", "skipped_members": "",
            **values}


@dataclass
class TarSample:
    """The members of one sample: bytes per extension, and why some could not be taken."""

    key: str
    fields: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    extensions: set[str] = field(default_factory=set)  # every extension met, read or not
    duplicate_of: int | None = None  # index of an earlier sample with the same key


class SkippedMembers:
    """Tar members that belong to no sample (no key in the name, folders, WebDataset metadata):
    counted by reason, with a few names, for the shard's report."""

    def __init__(self, examples: int = 5):
        self.reasons: Counter[str] = Counter()
        self.examples: list[str] = []
        self.max_examples = examples

    def add(self, name: str, reason: str) -> None:
        self.reasons[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(name)

    def to_json(self) -> str:
        """"" when none, else {"count", "reasons": {reason: count}, "examples": [names]}."""
        if not self.reasons:
            return ""
        return json.dumps({"count": sum(self.reasons.values()), "reasons": dict(self.reasons),
                           "examples": self.examples})


def member_name(name: str) -> str:
    """A tar member name as valid UTF-8 text: bytes that are not UTF-8 (which `tarfile` keeps as
    surrogates) are written as `\\xNN`, so `caf\\xe9.jpg` in latin-1 gives the key `caf\\xe9`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _member_kind(member: tarfile.TarInfo) -> str:
    kinds = ((member.issym, "a symbolic link"), (member.isfifo, "a FIFO"),
             (member.ischr, "a character device"), (member.isblk, "a block device"))
    return next((kind for test, kind in kinds if test()), f"of tar type {member.type!r}")


def _samples(stream, max_member_bytes: int, read_at: Callable[[int, int], bytes] | None,
             skipped: SkippedMembers) -> Iterator[TarSample]:
    """One `TarSample` per sample, in tar order; members that belong to no sample go to `skipped`.

    Files of one sample are consecutive in the tar (the WebDataset convention); a key that
    comes back after another sample is a duplicate. A member is read only if it is a regular
    file within `max_member_bytes` (its size is in its header); a hard link is served from its
    target's bytes (`read_at(offset, size)` on the uncompressed shard); anything else is a
    problem of its sample, which then becomes an error row.
    """
    first_index: dict[str, int] = {}
    regular: dict[str, tuple[int, int]] = {}  # member name -> (data offset, size), for hard links
    sample: TarSample | None = None
    index = 0
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        seekable = read_at is not None and getattr(tar.fileobj, "comptype", "tar") == "tar"
        for member in tar:
            name = member_name(member.name)
            if member.isfile():
                regular[member.name] = (member.offset_data, member.size)
            split = _key_and_extension(name)
            if METADATA_FILE.match(name):
                skipped.add(name, "WebDataset metadata")
                continue
            if member.isdir():
                skipped.add(name, "folder")
                continue
            if split is None:
                skipped.add(name, "no sample key in the name (it starts with a dot or has no extension)")
                continue
            key, extension = split
            if sample is not None and key != sample.key:
                yield sample
                first_index.setdefault(sample.key, index)
                sample, index = None, index + 1
            if sample is None:
                sample = TarSample(key, duplicate_of=first_index.get(key))
            extension = extension.lower()
            if extension in sample.extensions:
                sample.problems.append(f"member {name} appears twice in a row (a sample has one file "
                                       "per extension)")
                continue
            sample.extensions.add(extension)
            data, problem = _member_bytes(tar, member, name, max_member_bytes, regular,
                                          read_at if seekable else None)
            if problem:
                sample.problems.append(problem)
            else:
                sample.fields[extension] = data
        # tarfile takes an end of data at a header boundary for the end of the archive;
        # a whole tar has an end-of-archive block there.
        if tar.fileobj.tell() < tar.offset + tarfile.BLOCKSIZE:
            raise tarfile.ReadError("unexpected end of data: no end-of-archive block")
    if sample is not None:
        yield sample


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, max_bytes: int,
                  regular: dict[str, tuple[int, int]],
                  read_at: Callable[[int, int], bytes] | None) -> tuple[bytes, str]:
    """(bytes, "") of a regular file or a hard link to one, else (b"", why it was not read)."""
    if member.islnk():
        target = regular.get(member.linkname)
        if target is None:
            return b"", (f"member {name} is a hard link to {member_name(member.linkname)!r}, "
                         "which is not an earlier file of the shard")
        if read_at is None:
            return b"", f"member {name} is a hard link, which a compressed shard cannot follow"
        offset, size = target
        if size > max_bytes:
            return b"", _too_large(name, size, max_bytes)
        return read_at(offset, size), ""
    if not member.isfile():
        return b"", f"member {name} is {_member_kind(member)}, not a file: not read"
    if member.size > max_bytes:
        return b"", _too_large(name, member.size, max_bytes)
    return tar.extractfile(member).read(), ""


def _too_large(name: str, size: int, max_bytes: int) -> str:
    return (f"member {name} is {size / 2**20:.1f} MiB, above the limit of {max_bytes / 2**20:g} MiB "
            "(--max-member-mib): not read")


def _key_and_extension(name: str) -> tuple[str, str] | None:
    """`dir/abc.seg.png` -> (`dir/abc`, `seg.png`): the key ends at the first dot of the file name."""
    folder, _, file_name = name.rpartition("/")
    stem, dot, extension = file_name.partition(".")
    if not stem or not dot:
        return None
    return (f"{folder}/{stem}" if folder else stem), extension
