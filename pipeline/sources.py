"""Inputs besides WebDataset shards: manifests of image URIs, tables of images, folders of images.

Each is cut into slices of `slice_size` samples, the resume unit that a tar shard is
elsewhere: a slice has an output file of its own, error rows for its samples and a
shard error when it cannot be read. A slice is named by a URI with a fragment that
says how to read it, so that any reader can read it from its name alone:

    s3://b/manifest.parquet#slice:kind=manifest&uri=url&key=id&rows=0-1000
    s3://b/images.parquet#slice:kind=table&image=image&rows=1000-2000
    s3://b/photos/#slice:kind=folder&files=0-1000&list=1f3a9c0e

- a manifest (Parquet or CSV, img2dataset style) holds one image URI per row in
  `--uri-column`; the key is `--key-column`, else the URI. A missing object is its
  sample's error row. Manifests are the way to billions of objects: the driver
  reads only their row counts (a Parquet footer; a CSV is streamed once).
- a table (a Hugging Face datasets Parquet) holds the image bytes in `--image-column`
  (a struct with `bytes`, or binary); the key is `--key-column`, else
  `<file name>/<row>`.
- a folder or prefix of image files is listed on the driver, so it is for corpora
  small enough to list; the key is the file's path below the folder, without its
  extension. A slice records a fingerprint of its file names: when the folder's
  listing changed since, the slice fails with the reason instead of labeling other
  files under its name.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from samcp.storage import open_uri, resolve

MARK = "#slice:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
TABLE_EXTENSIONS = (".parquet", ".csv")


class SourceError(ValueError):
    """An input that cannot be cut into slices (a missing column, an unreadable manifest)."""


@dataclass(frozen=True)
class Columns:
    """How to read tables: `uri` (a manifest's image URIs), `image` (a table's image bytes), `key`."""

    uri: str | None = None
    image: str | None = None
    key: str | None = None


def is_slice(unit: str) -> bool:
    return MARK in unit


def is_folder_slice(unit: str) -> bool:
    return MARK + "kind=folder" in unit


def slice_units(uri: str, columns: Columns, slice_size: int,
                storage_options: dict | None = None) -> list[str]:
    """The slices of one manifest, table or folder `uri`; [] when `uri` is none of them."""
    if uri.lower().endswith(TABLE_EXTENSIONS):
        return _table_units(uri, columns, slice_size, storage_options)
    fs, path = resolve(uri, storage_options)
    if uri.endswith("/") or fs.isdir(path):
        names = list_images(uri, storage_options)
        return [_name(uri.rstrip("/") + "/", kind="folder", files=f"{start}-{start + len(part)}",
                      list=_fingerprint(part))
                for start in range(0, len(names), slice_size)
                for part in [names[start:start + slice_size]]]
    return []


def _table_units(uri: str, columns: Columns, slice_size: int, storage_options: dict | None) -> list[str]:
    if columns.uri and columns.image:
        raise SourceError("give --uri-column (a manifest of image URIs) or --image-column (images inside "
                          "the table), not both")
    if not (columns.uri or columns.image):
        raise SourceError(f"--input {uri}: a Parquet or CSV input needs --uri-column (a manifest of image "
                          "URIs) or --image-column (a table with the images inside)")
    try:
        names, rows = _table_shape(uri, storage_options)
    except FileNotFoundError:
        raise SourceError(f"--input {uri}: not found") from None
    except (OSError, pa.ArrowException) as error:
        raise SourceError(f"--input {uri}: not a readable table: {error}".split("\n")[0]) from None
    wanted = [c for c in (columns.uri, columns.image, columns.key) if c]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise SourceError(f"--input {uri} has no column {missing[0]!r} (its columns: {', '.join(names)})")
    kind = "manifest" if columns.uri else "table"
    given = {k: v for k, v in {"uri": columns.uri, "image": columns.image, "key": columns.key}.items() if v}
    return [_name(uri, kind=kind, **given, rows=f"{start}-{min(rows, start + slice_size)}")
            for start in range(0, rows, slice_size)]


def _table_shape(uri: str, storage_options: dict | None) -> tuple[list[str], int]:
    """(column names, row count): a Parquet footer, or a CSV streamed once."""
    with open_uri(uri, "rb", storage_options) as f:
        if uri.lower().endswith(".parquet"):
            meta = pq.ParquetFile(f)
            return meta.schema_arrow.names, meta.metadata.num_rows
        reader = pacsv.open_csv(f)
        return reader.schema.names, sum(batch.num_rows for batch in reader)


def list_images(folder: str, storage_options: dict | None = None) -> list[str]:
    """The image files below `folder`, as paths relative to it, sorted."""
    fs, path = resolve(folder, storage_options)
    root = path.rstrip("/")
    found = fs.find(root)
    return sorted(p[len(root) + 1:] for p in found if p.lower().endswith(IMAGE_EXTENSIONS))


def _fingerprint(names: list[str]) -> str:
    return hashlib.sha1("\n".join(names).encode()).hexdigest()[:8]


def _name(location: str, **fields: str) -> str:
    return location + MARK + urllib.parse.urlencode(fields)


def parse(unit: str) -> tuple[str, dict[str, str], int, int]:
    """(URI, fields, first, stop) of a slice's name."""
    uri, _, fragment = unit.partition(MARK)
    fields = dict(urllib.parse.parse_qsl(fragment))
    first, stop = (int(v) for v in fields.get("rows", fields.get("files", "0-0")).split("-"))
    return uri, fields, first, stop


@dataclass
class Sample:
    """One sample of a slice: its key and image bytes, or why it could not be read."""

    key: str
    data: bytes = b""
    problem: str = ""


def slice_files(unit: str, storage_options: dict | None = None,
                listings: dict[str, list[str]] | None = None) -> list[str]:
    """The file names of a folder's slice, listed again (`listings` caches a folder's listing for
    its other slices); ValueError when the folder's files changed since the slice was made."""
    uri, fields, first, stop = parse(unit)
    names = listings.get(uri) if listings is not None else None
    if names is None:
        names = list_images(uri, storage_options)
        if listings is not None:
            listings[uri] = names
    part = names[first:stop]
    if _fingerprint(part) != fields.get("list"):
        raise ValueError(f"the files of {uri} changed since this slice was made (files {first}-{stop}); "
                         "label the folder into a new --output")
    return part


def slice_samples(unit: str, storage_options: dict | None, max_bytes: int, files: list[str] | None = None,
                  listings: dict[str, list[str]] | None = None) -> Iterator[Sample]:
    """The samples of a slice in order; raises (OSError, ValueError) when the slice cannot be read.
    files: a folder slice's file names as the driver listed them (default: listed again, see
    `slice_files`), so that a file gone since is its sample's error row."""
    uri, fields, first, stop = parse(unit)
    kind = fields.get("kind")
    if kind == "folder":
        names = [str(f) for f in files] if files is not None and len(files) else None  # Ray: an array
        for name in names or slice_files(unit, storage_options, listings):
            yield _read(os.path.splitext(name)[0], uri + name, storage_options, max_bytes)
        return
    if kind not in ("manifest", "table"):
        raise ValueError(f"unknown slice kind {kind!r} in {unit}")
    value_column = fields["uri"] if kind == "manifest" else fields["image"]
    key_column = fields.get("key")
    stem = os.path.basename(uri).rsplit(".", 1)[0]
    for index, (value, key) in enumerate(_table_rows(uri, [value_column, key_column], first, stop,
                                                     storage_options), start=first):
        if kind == "manifest":
            key = str(key) if key is not None else str(value)
            if not isinstance(value, str) or not value:
                yield Sample(key, problem=f"no image URI in column {value_column!r}")
            else:
                yield _read(key, value, storage_options, max_bytes)
            continue
        key = str(key) if key is not None else f"{stem}/{index:08d}"
        data = value.get("bytes") if isinstance(value, dict) else value
        if not data:
            yield Sample(key, problem=f"no image bytes in column {value_column!r}")
        elif len(data) > max_bytes:
            yield Sample(key, problem=_too_large(len(data), max_bytes))
        else:
            yield Sample(key, bytes(data))


def _table_rows(uri: str, columns: list[str | None], first: int, stop: int, storage_options: dict | None
                ) -> Iterator[tuple]:
    """(value, key or None) of rows [first, stop) of a Parquet or CSV table."""
    names = [c for c in dict.fromkeys(columns) if c]
    with open_uri(uri, "rb", storage_options) as f:
        if uri.lower().endswith(".parquet"):
            table = _parquet_rows(pq.ParquetFile(f), names, first, stop)
        else:
            batches, seen = [], 0
            for batch in pacsv.open_csv(f, convert_options=pacsv.ConvertOptions(include_columns=names)):
                if seen + batch.num_rows > first and seen < stop:
                    batches.append(batch.slice(max(0, first - seen), stop - max(first, seen)))
                seen += batch.num_rows
                if seen >= stop:
                    break
            table = pa.Table.from_batches(batches) if batches else None
    if table is None:
        return
    values = table.column(columns[0]).to_pylist()
    keys = table.column(columns[1]).to_pylist() if columns[1] else [None] * len(values)
    yield from zip(values, keys)


def _parquet_rows(parquet: pq.ParquetFile, names: list[str], first: int, stop: int) -> pa.Table | None:
    """Rows [first, stop) of `names`, reading only the row groups that hold them."""
    groups, start = [], 0
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if start < stop and start + rows > first:
            groups.append((group, start))
        start += rows
    if not groups:
        return None
    table = parquet.read_row_groups([g for g, _ in groups], columns=names)
    offset = first - groups[0][1]
    return table.slice(offset, stop - first)


def _read(key: str, uri: str, storage_options: dict | None, max_bytes: int) -> Sample:
    """A sample of an object at `uri`; a missing or unreadable object is that sample's problem."""
    try:
        with open_uri(uri, "rb", storage_options) as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return Sample(key, problem=f"object not found: {uri}")
    except IsADirectoryError:
        return Sample(key, problem=f"{uri} is a folder, not an image")
    except Exception as error:  # noqa: BLE001 - any client's error is this sample's, not the job's
        return Sample(key, problem=f"could not read {uri}: {type(error).__name__}: {error}".split("\n")[0])
    if len(data) > max_bytes:
        return Sample(key, problem=_too_large(None, max_bytes, uri))
    return Sample(key, data)


def _too_large(size: int | None, max_bytes: int, uri: str = "the image") -> str:
    said = f" ({size / 2**20:.1f} MiB)" if size is not None else ""
    return (f"{uri}{said} is above the limit of {max_bytes / 2**20:g} MiB (--max-member-mib): not read")
