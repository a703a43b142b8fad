"""Input shard lists: URIs, brace patterns and globs -> an ordered list of shard URIs.

    expand_inputs(["s3://bucket/corpus/shard-{000000..000099}.tar", "data/extra/*.tar"])

Brace patterns expand without listing the store (a missing shard is found when
it is read); glob patterns (`*`, `?`, `[...]`) are listed and must match at
least one file. The result keeps the order given, without repeats.
"""

from __future__ import annotations

import braceexpand
import fsspec

from pipeline.storage import absolute

GLOB_CHARACTERS = "*?["


class InputError(ValueError):
    """An input pattern that names no shard."""


def expand_inputs(patterns: list[str], storage_options: dict | None = None) -> list[str]:
    """Every shard URI named by `patterns`, in order, each once; local paths made absolute."""
    if not patterns:
        raise InputError("no --input given")
    urls: list[str] = []
    for pattern in patterns:
        for uri in braceexpand.braceexpand(pattern):
            urls += _glob(uri, storage_options) if any(c in uri for c in GLOB_CHARACTERS) else [absolute(uri)]
    return list(dict.fromkeys(urls))


def _glob(uri: str, storage_options: dict | None) -> list[str]:
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    matches = sorted(fs.glob(path))
    if not matches:
        raise InputError(f"no shards match {uri}")
    return [fs.unstrip_protocol(m) if "://" in uri else absolute(m) for m in matches]
