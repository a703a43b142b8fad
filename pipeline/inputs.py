"""Input shard lists: URIs, brace patterns and globs -> an ordered list of shards.

    expand_inputs(["s3://bucket/corpus/shard-{000000..000099}.tar", "data/extra/*.tar"])

A shard is the unit of resuming: a WebDataset tar, or a slice of a manifest, a
table of images or a folder of images (`pipeline.sources`).

Brace patterns expand without listing the store (a missing shard is found when
it is read); glob patterns (`*`, `?`, `[...]`) are listed and must match at
least one file. Every URI is put in its one canonical spelling (`samcp.storage.canonical`:
local paths real and absolute, symlinks resolved, `file://` dropped), which is the
shard's identity for resuming; the result keeps the order given, without repeats.
"""

from __future__ import annotations

import braceexpand

from pipeline.sources import Columns, SourceError, slice_units
from samcp.storage import canonical, resolve

GLOB_CHARACTERS = "*?["
SHARD_EXTENSIONS = (".tar", ".tar.gz", ".tgz")


class InputError(ValueError):
    """An input pattern that names no shard, or a store that cannot be listed."""


def expand_inputs(patterns: list[str], storage_options: dict | None = None, columns: Columns | None = None,
                  slice_size: int = 1000) -> list[str]:
    """Every shard named by `patterns`, in order, each once, in canonical form: the tar shards, and
    the slices of `slice_size` samples of the manifests, tables and folders (`pipeline.sources`,
    read with `columns`)."""
    if not patterns:
        raise InputError("no --input given")
    if slice_size < 1:
        raise InputError(f"--slice-size must be >= 1, got {slice_size}")
    urls: list[str] = []
    for pattern in patterns:
        for uri in braceexpand.braceexpand(pattern):
            found = _glob(uri, storage_options) if any(c in uri for c in GLOB_CHARACTERS) else [uri]
            try:
                for u in found:
                    u.encode("utf-8")  # a local name in another encoding (Python keeps it as surrogates)
                for u in found:
                    urls += _units(canonical(u, storage_options) + ("/" if u.endswith("/") else ""),
                                   columns or Columns(), slice_size, storage_options)
            except UnicodeEncodeError:
                raise InputError(f"--input {uri}: a shard's name is not valid UTF-8; rename it") from None
            except (ValueError, ImportError) as error:  # an unknown protocol, a malformed URI, a bad table
                raise InputError(f"--input {uri}: {error}" if not isinstance(error, SourceError)
                                 else str(error)) from None
    return list(dict.fromkeys(urls))


def _units(uri: str, columns: Columns, slice_size: int, storage_options: dict | None) -> list[str]:
    """A tar shard as itself (not looked up: a missing one is found when read), anything else as its
    slices; a name that is neither a table nor a folder is a shard."""
    if uri.lower().endswith(SHARD_EXTENSIONS):
        return [uri]
    try:
        return slice_units(uri, columns, slice_size, storage_options) or [uri.rstrip("/")]
    except SourceError:
        raise
    except OSError as error:
        raise InputError(f"cannot read {uri}: {type(error).__name__}: {error}".split("\n")[0]) from None


def _glob(uri: str, storage_options: dict | None) -> list[str]:
    try:
        fs, path = resolve(uri, storage_options)
        matches = sorted(fs.glob(path))
    except (ValueError, ImportError) as error:
        raise InputError(f"--input {uri}: {error}") from None
    except Exception as error:  # noqa: BLE001 - any client error: the store cannot be listed
        raise InputError(f"cannot list {uri}: {type(error).__name__}: {error}".split("\n")[0]) from None
    if not matches:
        raise InputError(f"no shards match {uri}")
    return [fs.unstrip_protocol(m) if "://" in uri else m for m in matches]
