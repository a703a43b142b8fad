"""fsspec URIs: resolve a filesystem, and publish files atomically.

A local path, s3://, gs://, or any fsspec URI works; s3fs reads the standard
AWS environment variables (AWS_ENDPOINT_URL, credentials, region) itself.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem


def resolve(uri: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without scheme) for `uri`."""
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return fs, path.rstrip("/")


def absolute(uri: str) -> str:
    """`uri` with a relative local path made absolute (the workers of a Ray cluster run in other
    folders than the driver); URIs with a scheme are returned as they are."""
    return uri if "://" in uri else os.path.abspath(uri)


def absolute_reference(value: str | None) -> str | None:
    """A checkpoint or vocabulary reference with a local path made absolute (`absolute`); None and
    the names "shipped" and "builtin:..." are kept as they are."""
    return value if value in (None, "shipped") or value.startswith("builtin:") else absolute(value)


def join(fs: fsspec.AbstractFileSystem, *parts: str) -> str:
    """Join path parts with the filesystem's separator."""
    return fs.sep.join(p.rstrip(fs.sep) for p in parts)


@contextmanager
def atomic_write(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[BinaryIO]:
    """Yield a binary file; `path` appears only if the block finishes without an exception.

    Local files go to a temporary name beside `path` and are renamed; object
    stores get a single put of a finished local file, which they publish whole.
    """
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        staging = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with open(staging, "wb") as f:
                yield f
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.remove(staging)
        return
    with tempfile.NamedTemporaryFile(suffix=".part") as f:
        yield f
        f.flush()
        fs.put_file(f.name, path)
