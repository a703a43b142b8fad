"""Input shard lists: URIs, brace patterns and globs -> an ordered list of shard URIs.

    expand_inputs(["s3://bucket/corpus/shard-{000000..000099}.tar", "data/extra/*.tar"])

Brace patterns expand without listing the store (a missing shard is found when
it is read); glob patterns (`*`, `?`, `[...]`) are listed and must match at
least one file. Every URI is put in its one canonical spelling (`samcp.storage.canonical`:
local paths real and absolute, symlinks resolved, `file://` dropped), which is the
shard's identity for resuming; the result keeps the order given, without repeats.
"""

from __future__ import annotations

import braceexpand

from samcp.storage import canonical, resolve

GLOB_CHARACTERS = "*?["


class InputError(ValueError):
    """An input pattern that names no shard, or a store that cannot be listed."""


def expand_inputs(patterns: list[str], storage_options: dict | None = None) -> list[str]:
    """Every shard URI named by `patterns`, in order, each once, in canonical form."""
    if not patterns:
        raise InputError("no --input given")
    urls: list[str] = []
    for pattern in patterns:
        for uri in braceexpand.braceexpand(pattern):
            found = _glob(uri, storage_options) if any(c in uri for c in GLOB_CHARACTERS) else [uri]
            try:
                for u in found:
                    u.encode("utf-8")  # a local name in another encoding (Python keeps it as surrogates)
                urls += [canonical(u, storage_options) for u in found]
            except UnicodeEncodeError:
                raise InputError(f"--input {uri}: a shard's name is not valid UTF-8; rename it") from None
            except (ValueError, ImportError) as error:  # an unknown protocol, a malformed URI
                raise InputError(f"--input {uri}: {error}") from None
    return list(dict.fromkeys(urls))


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
