"""fsspec URIs: resolve a filesystem, name a file once, and publish files atomically.

A local path, file://, s3://, gs://, or any fsspec URI works; s3fs reads the standard
AWS environment variables (AWS_ENDPOINT_URL, credentials, region) itself. S3 clients
get connect and read timeouts and bounded retries by default (`S3_DEFAULTS`), so a
store that accepts connections but never answers fails in about a minute with the
endpoint's name instead of hanging; `--storage-options '{"config_kwargs": {...}}'`
overrides them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

# The S3 client's settings unless the caller sets them: a request that gets no answer gives up
# after `read_timeout` seconds; botocore tries each request twice (with backoff, which also
# paces throttling), and s3fs retries the whole call once more: about a minute at most.
S3_DEFAULTS = {"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 2, "mode": "standard"}}
S3_CALL_RETRIES = 2  # s3fs's own retries of a call (its default, 5, multiplies botocore's)
S3_PROTOCOLS = ("s3", "s3a")


class StorageError(OSError):
    """A store that cannot be used as asked (missing bucket, a file where a folder is needed, ...)."""


def storage_options_for(uri: str, storage_options: dict | None = None) -> dict:
    """`storage_options` with the S3 client defaults (`S3_DEFAULTS`) added for s3:// URIs."""
    options = dict(storage_options or {})
    if fsspec.utils.get_protocol(uri) in S3_PROTOCOLS:
        options["config_kwargs"] = {**S3_DEFAULTS, **options.get("config_kwargs", {})}
    return options


def resolve(uri: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without scheme) for `uri`, with the defaults of `storage_options_for`."""
    fs, path = fsspec.core.url_to_fs(uri, **storage_options_for(uri, storage_options))
    if fsspec.utils.get_protocol(uri) in S3_PROTOCOLS:
        fs.retries = S3_CALL_RETRIES  # not a constructor option of s3fs; fsspec caches the instance
    return fs, path.rstrip("/") or path


def open_uri(uri: str, mode: str = "rb", storage_options: dict | None = None):
    """The file at `uri`, opened on the filesystem of `resolve` (a context manager)."""
    fs, path = resolve(uri, storage_options)
    return fs.open(path, mode)


def canonical(uri: str, storage_options: dict | None = None) -> str:
    """One spelling per file, so that a file is the same input however it was named: a local
    path (or file:// URI) becomes its real absolute path (symlinks resolved), any other URI
    its filesystem's own form (`s3://bucket/key`, repeated slashes collapsed)."""
    if "://" not in uri or uri.startswith("file://"):
        return os.path.realpath(uri[len("file://"):] if uri.startswith("file://") else uri)
    fs, path = fsspec.core.url_to_fs(uri, **storage_options_for(uri, storage_options))
    return fs.unstrip_protocol("/".join(part for part in path.split("/") if part))


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


def child(uri: str, name: str, storage_options: dict | None = None) -> str:
    """The URI of `name` inside the folder `uri` (local paths stay paths)."""
    fs, path = resolve(uri, storage_options)
    inner = join(fs, path, name)
    return inner if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(inner)


def ensure_directory(fs: fsspec.AbstractFileSystem, path: str, uri: str) -> None:
    """Make the folder `path` (`uri` as the user gave it, for messages) ready to write into.

    Local folders are created. On an object store only the bucket must exist: it is never
    created, so a misspelt bucket fails here instead of appearing. Raises StorageError.
    """
    if isinstance(fs, LocalFileSystem):
        if os.path.exists(path) and not os.path.isdir(path):
            raise StorageError(f"{uri} is a file, not a folder")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create the folder {uri}: {error.strerror or error}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise StorageError(f"cannot write into {uri}: permission denied")
        return
    bucket = path.split("/", 1)[0]
    try:
        fs.ls(bucket, detail=False)  # raises, unlike `exists`, which takes any failure for "absent"
        is_file = fs.isfile(path)
    except FileNotFoundError:
        raise StorageError(f"the bucket of {uri} does not exist: create {bucket!r} first (it is never "
                           "created for you, so that a misspelt name fails)") from None
    except Exception as error:  # noqa: BLE001 - any client error: the store is unusable as given
        raise StorageError(f"cannot reach the store of {uri}: {type(error).__name__}: {error}"
                           .split("\n")[0]) from None
    if is_file:
        raise StorageError(f"{uri} is a file, not a folder")


@contextmanager
def atomic_write(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[BinaryIO]:
    """Yield a binary file; `path` appears only if the block finishes without an exception.

    Local files go to a temporary name beside `path`, are flushed to disk (fsync), renamed,
    and the rename is flushed too, so a crash never leaves a cut file under the final name;
    object stores get a single put of a finished local file, which they publish whole.
    """
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        staging = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with open(staging, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(staging, path)
            directory = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        finally:
            if os.path.exists(staging):
                os.remove(staging)
        return
    with tempfile.NamedTemporaryFile(suffix=".part") as f:
        yield f
        f.flush()
        fs.put_file(f.name, path)


class Folder:
    """A folder at any URI that a job keeps its files in: named members, JSON members written
    atomically."""

    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri
        self.fs, self.root = resolve(uri, storage_options)

    def path(self, name: str) -> str:
        return join(self.fs, self.root, name)

    def read_json(self, name: str) -> dict | None:
        """The JSON member `name`, None if absent; ValueError if it is not JSON."""
        path = self.path(name)
        self.fs.invalidate_cache()
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as f:
            return json.load(f)

    def write_json(self, name: str, content: dict) -> None:
        with atomic_write(self.fs, self.path(name)) as f:
            f.write(json.dumps(content, indent=1).encode())

    def remove(self, name: str) -> None:
        path = self.path(name)
        if self.fs.exists(path):
            self.fs.rm(path)


def parse_storage_options(text: str) -> dict:
    """The `--storage-options` flag: a JSON object. The error never repeats the text, which may
    hold credentials (argparse would echo it for any other exception)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "the value is not shown, as it may hold credentials") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object of fsspec options, got a JSON {type(value).__name__}")
    return value


def add_storage_options_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--storage-options JSON` for every job that reads or writes URIs."""
    parser.add_argument("--storage-options", type=parse_storage_options, default=None, metavar="JSON",
                        help='fsspec options as a JSON object, e.g. \'{"anon": false}\' (prefer the AWS '
                             "environment variables for credentials: a command line is visible in ps)")


SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def safe_name(key: str) -> str:
    """A relative file name for a sample key, which is data from strangers: the key itself when
    every `/`-separated part is plain (letters, digits, `_`, `.`, `-`, not starting with a dot,
    at most 128 characters) and there are at most 8 parts; otherwise the key with every other
    character made `_`, cut short, plus 10 hex of its sha1, so it stays unique. Never absolute,
    never `..`, so `os.path.join(folder, safe_name(key))` stays inside `folder`."""
    parts = key.split("/")
    if len(parts) <= 8 and all(SAFE_COMPONENT.fullmatch(p) for p in parts):
        return key
    flat = re.sub(r"[^A-Za-z0-9_-]+", "_", key).strip("_")[:100] or "key"
    return f"{flat}-{hashlib.sha1(key.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def inside(folder: str, name: str) -> str:
    """`folder/name`, or ValueError when `name` (from a file someone else wrote) would lead outside
    `folder`: absolute, with `..`, or through a symbolic link."""
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.isabs(name) or os.path.commonpath([root, path]) != root:
        raise ValueError(f"refusing file name {name!r}: it leads outside {folder}")
    return path


def member(root: str, name: str) -> str:
    """`root/name` for a local folder or a URI, or ValueError when `name` (from a file someone else
    wrote) would lead outside `root`: absolute, with `..`, or (locally) through a symbolic link."""
    if "://" not in root:
        return inside(root, name)
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"refusing file name {name!r}: it leads outside {root}")
    return f"{root.rstrip('/')}/{name}"

