"""The labeling output directory: one Parquet file per input shard, a manifest, a summary.

    OUTPUT/_manifest.json                 what made these labels: models (+ sha256), vocabulary, settings
    OUTPUT/<shard>-<URI hash>.parquet     one row per sample of that shard
    OUTPUT/_SUCCESS                       JSON summary, written last, once every shard is done

Each shard file is published atomically, so a shard's file exists only when the
shard is complete: resuming means labeling the shards that have no file. The
manifest guards the directory: labeling it again with other models, another
vocabulary or other settings is refused unless the caller overwrites it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import SCHEMA
from pipeline.storage import atomic_write, join, resolve
from samcp.vocab import VocabClass, Vocabulary

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
METADATA_KEY = b"samcp"


class OutputConflict(RuntimeError):
    """The output directory holds labels made differently from what was asked."""


def shard_file_name(shard: str) -> str:
    """`shard-000001-<8 hex of the URI>.parquet`: stable, and unique for shards that share a name."""
    base = os.path.basename(shard.rstrip("/"))
    stem = base[:-len(".tar")] if base.endswith(".tar") else base
    return f"{stem}-{hashlib.sha1(shard.encode()).hexdigest()[:8]}.parquet"


class LabelOutput:
    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri
        self.fs, self.root = resolve(uri, storage_options)

    def path(self, name: str) -> str:
        return join(self.fs, self.root, name)

    def finished_shards(self, shards: list[str]) -> set[str]:
        """The shards among `shards` whose output file exists."""
        existing = set(self.parquet_files()) if self.fs.exists(self.root) else set()
        return {s for s in shards if self.path(shard_file_name(s)) in existing}

    def parquet_files(self) -> list[str]:
        self.fs.invalidate_cache()  # other processes write here: never trust a cached listing
        return sorted(p for p in self.fs.find(self.root) if p.endswith(".parquet"))

    def prepare(self, manifest: dict, overwrite: bool) -> None:
        """Claim the directory for `manifest` (created if new).

        Raises OutputConflict when it holds labels of another manifest (or
        Parquet files with no manifest), unless `overwrite`, which deletes them.
        """
        self.fs.makedirs(self.root, exist_ok=True)
        existing = self.read_json(MANIFEST)
        stale = self.parquet_files()
        if overwrite:
            for path in [*stale, self.path(SUCCESS), self.path(MANIFEST)]:
                if self.fs.exists(path):
                    self.fs.rm(path)
        elif existing is not None and existing["labeling"] != manifest["labeling"]:
            changed = sorted(k for k in {**existing["labeling"], **manifest["labeling"]}
                             if existing["labeling"].get(k) != manifest["labeling"].get(k))
            raise OutputConflict(
                f"{self.uri} holds labels made with other {', '.join(changed)} "
                f"(see {MANIFEST}); use another --output, or --overwrite to delete them and start over")
        elif existing is None and stale:
            raise OutputConflict(f"{self.uri} holds {len(stale)} Parquet files but no {MANIFEST}; "
                                 "use another --output, or --overwrite to delete them")
        if overwrite or existing is None:
            self.write_json(MANIFEST, manifest)

    def write_shard(self, shard: str, rows: list[dict], manifest: dict) -> dict:
        """Publish the rows of one shard atomically; returns its counts."""
        counts = {"samples": len(rows), "ok": sum(r["status"] == "ok" for r in rows)}
        counts["error"] = counts["samples"] - counts["ok"]
        metadata = {METADATA_KEY: json.dumps({**manifest, "shard": shard, "counts": counts}).encode()}
        table = pa.Table.from_pylist(rows, schema=SCHEMA.with_metadata(metadata))
        with atomic_write(self.fs, self.path(shard_file_name(shard))) as f:
            pq.write_table(table, f, compression="zstd")
        return counts

    def shard_counts(self, shard: str) -> dict:
        """Counts recorded in a finished shard's file metadata (reads the footer only)."""
        with self.fs.open(self.path(shard_file_name(shard)), "rb") as f:
            metadata = pq.ParquetFile(f).schema_arrow.metadata
        return json.loads(metadata[METADATA_KEY])["counts"]

    def shard_tables(self) -> Iterator[pa.Table]:
        """The rows of each shard file in turn (any output size)."""
        for path in self.parquet_files():
            with self.fs.open(path, "rb") as f:
                yield pq.read_table(io.BytesIO(f.read())).replace_schema_metadata(None)

    def read_table(self) -> pa.Table:
        """Every row of the output (small outputs, evaluation, tests)."""
        tables = list(self.shard_tables())
        return pa.concat_tables(tables) if tables else SCHEMA.empty_table()

    def read_json(self, name: str) -> dict | None:
        path = self.path(name)
        self.fs.invalidate_cache()
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as f:
            return json.load(f)

    def manifest(self) -> dict:
        """The `_manifest.json` of a labeling output: which models, patches and vocabulary made it."""
        manifest = self.read_json(MANIFEST)
        if manifest is None:
            raise FileNotFoundError(f"{self.uri} has no {MANIFEST}: not the output of jobs/label_corpus.py")
        return manifest

    def vocabulary(self) -> Vocabulary:
        """The classes the labels were made with, as recorded in the manifest."""
        vocabulary = self.manifest()["labeling"]["vocabulary"]
        return Vocabulary(vocabulary["name"], tuple(VocabClass(c["id"], c["name"], c["isthing"])
                                                    for c in vocabulary["classes"]))

    def write_json(self, name: str, content: dict) -> None:
        with atomic_write(self.fs, self.path(name)) as f:
            f.write(json.dumps(content, indent=1).encode())
