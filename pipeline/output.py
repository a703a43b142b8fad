"""The labeling output directory: one Parquet file per input shard, a manifest, a summary.

    OUTPUT/_manifest.json                 what made these labels: models (+ sha256), vocabulary, settings
    OUTPUT/<shard>-<URI hash>.parquet     one row per sample of that shard
    OUTPUT/_pending.json                  shards some run asked for that have no file yet
    OUTPUT/_SUCCESS                       JSON summary, written last, once every shard asked for is done

Each shard file is published atomically, so a shard's file exists only when the
shard is complete, and it carries the manifest and its counts in its footer. A
shard counts as done only when its file is whole and records this directory's
settings and its own shard (`census`); anything else named like a shard file
(zero bytes, cut, foreign, made with other settings) is named and labeled again.
Only files at the top of the directory named like shard files are labels: folders
and other files inside it (an export, another run) are never read or deleted.
The manifest guards the directory: labeling it again with other models, another
vocabulary or other settings is refused unless the caller overwrites it, and each
shard's publication checks it again, so a run whose directory was taken over by
another stops instead of mixing two configurations.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import SCHEMA, SCHEMA_VERSION
from samcp.storage import Folder, atomic_write, ensure_directory
from samcp.vocab import Vocabulary, VocabularyError, load_vocabulary

MANIFEST = "_manifest.json"
MANIFEST_VERSION = 2  # see `current_labeling` for what earlier versions wrote
SUCCESS = "_SUCCESS"
PENDING = "_pending.json"
METADATA_KEY = b"samcp"
SHARD_FILE = re.compile(r"-[0-9a-f]{8}\.parquet$")


class OutputConflict(ValueError):
    """The output directory holds labels made differently from what was asked."""


def shard_file_name(shard: str) -> str:
    """`shard-000001-<8 hex of the URI>.parquet`: stable, and unique for shards that share a name."""
    base = os.path.basename(shard.rstrip("/"))
    stem = (base[:-len(".tar")] if base.endswith(".tar") else base)[:100]
    return f"{stem}-{hashlib.sha1(shard.encode()).hexdigest()[:8]}.parquet"


@dataclass
class Census:
    """The shard files of an output: `done` maps each valid file's shard to its counts;
    `invalid` maps the path of every other file named like a shard file to why it is not."""

    done: dict[str, dict] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)


class LabelOutput(Folder):
    def parquet_files(self) -> list[str]:
        """The shard files: Parquet files at the top of the directory named like one
        (`shard_file_name`); nothing in folders below it."""
        return sorted(p for p in self._top_files() if SHARD_FILE.search(p.rsplit("/", 1)[-1]))

    def _top_files(self) -> list[str]:
        """The files (not folders) at the top of the directory; none when it does not exist yet
        (an object store has no empty folders)."""
        self.fs.invalidate_cache()  # other processes write here: never trust a cached listing
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return []
        return [e["name"] for e in entries if e.get("type") == "file"]

    def census(self, labeling: dict | None = None) -> Census:
        """Every shard file, checked from its footer: readable Parquet with this package's
        metadata, made with `labeling` (default: the manifest's), of the shard its name says,
        with as many rows as its counts."""
        labeling = labeling if labeling is not None else self.manifest()["labeling"]
        census = Census()
        for path in self.parquet_files():
            try:
                shard, counts = self._footer(path, labeling)
            except ValueError as error:
                census.invalid[path] = str(error)
            else:
                census.done[shard] = counts
        return census

    def _footer(self, path: str, labeling: dict) -> tuple[str, dict]:
        try:
            with self.fs.open(path, "rb") as f:
                parquet = pq.ParquetFile(f)
                rows, metadata = parquet.metadata.num_rows, parquet.schema_arrow.metadata or {}
        except Exception as error:  # noqa: BLE001 - pyarrow raises several types for damaged files
            raise ValueError(f"not a whole Parquet file ({type(error).__name__}: {error})".split("\n")[0]) \
                from None
        if METADATA_KEY not in metadata:
            raise ValueError("not a labeling shard file (no samcp metadata)")
        try:
            record = json.loads(metadata[METADATA_KEY])
            shard, counts = record["shard"], record["counts"]
        except (ValueError, KeyError, TypeError):
            raise ValueError("its samcp metadata is damaged") from None
        if os.path.basename(path) != shard_file_name(shard):
            raise ValueError(f"it holds the labels of another shard ({shard})")
        if _differences(record, labeling):
            raise ValueError("it was made with other settings than this output's manifest")
        if counts.get("samples") != rows:
            raise ValueError(f"it has {rows} rows but its counts say {counts.get('samples')}")
        return shard, counts

    def finished_shards(self, shards: list[str]) -> set[str]:
        """The shards among `shards` that have a valid file (see `census`)."""
        manifest = self.read_json(MANIFEST)
        done = self.census(current_labeling(manifest)).done if manifest is not None else {}
        return {s for s in shards if s in done}

    def prepare(self, manifest: dict, overwrite: bool) -> None:
        """Claim the directory for `manifest` (created if new; an object store's bucket must exist).

        Raises OutputConflict when it holds labels of another manifest, a damaged manifest or
        shard files with no manifest, unless `overwrite`, which deletes them (shard files at
        its top only) without reading them. Raises StorageError when it cannot be written.
        The manifest records the version of the rows this package writes (`SCHEMA_VERSION`).
        """
        manifest = {**manifest, "schema_version": SCHEMA_VERSION}
        ensure_directory(self.fs, self.root, self.uri)
        if overwrite:
            for path in self.parquet_files():
                self.fs.rm(path)
            for name in (SUCCESS, PENDING, MANIFEST):
                self.remove(name)
            self.write_json(MANIFEST, manifest)
            return
        existing = self._existing_manifest()
        changed = [] if existing is None else _differences(existing, current_labeling(manifest))
        if changed:
            raise OutputConflict(f"{self.uri} holds labels made with other {', '.join(changed)} "
                                 f"(see {MANIFEST}); use another --output, or --overwrite to delete them "
                                 "and start over")
        if existing is not None and existing.get("version") != MANIFEST_VERSION:
            # Written by an earlier version, with what makes today's labels: resumed in today's form.
            created = existing.get("created", manifest.get("created"))
            self.write_json(MANIFEST, {**manifest, "created": created})
        if existing is None:
            stale = [p for p in self._top_files() if p.endswith(".parquet")]
            if stale:
                raise OutputConflict(f"{self.uri} holds {len(stale)} Parquet files but no {MANIFEST}: not a "
                                     "labeling output; use another --output (--overwrite deletes only the "
                                     "files named like shard files)")
            self.write_json(MANIFEST, manifest)

    def _existing_manifest(self) -> dict | None:
        try:
            existing = self.read_json(MANIFEST)
        except ValueError:
            raise OutputConflict(f"{self.uri}/{MANIFEST} is damaged (not JSON); --overwrite deletes the "
                                 "output and starts over") from None
        labeling = existing.get("labeling") if isinstance(existing, dict) else None
        if existing is not None and not isinstance(labeling, dict):
            raise OutputConflict(f"{self.uri}/{MANIFEST} is not a labeling manifest; use another --output, "
                                 "or --overwrite to delete it and start over")
        return existing

    def check_claim(self, manifest: dict) -> None:
        """Raise OutputConflict unless the directory's manifest is still `manifest`'s settings
        (another run may have taken it over with --overwrite and other settings)."""
        try:
            current = self.read_json(MANIFEST)
        except ValueError:
            current = None
        if not isinstance(current, dict) or not isinstance(current.get("labeling"), dict) \
                or _differences(current, current_labeling(manifest)):
            raise OutputConflict(f"{self.uri} was taken over by another run with other settings while this "
                                 "one ran (--overwrite elsewhere?); this run stopped without writing more")

    def write_shard(self, shard: str, rows: list[dict], manifest: dict,
                    skipped_members: dict | None = None) -> dict:
        """Publish the rows of one shard atomically, after checking that the directory is still
        claimed for `manifest`; returns its counts (`skipped_members`: the tar members that
        belong to no sample, see `pipeline.reader`, recorded with them)."""
        self.check_claim(manifest)
        counts = {"samples": len(rows), "ok": sum(r["status"] == "ok" for r in rows)}
        counts["error"] = counts["samples"] - counts["ok"]
        scores = [s["score"] for r in rows for s in r["segments"]]
        counts["segments"], counts["score_sum"] = len(scores), round(float(sum(scores)), 4)
        counts["max_score"] = round(float(max(scores)), 4) if scores else None
        if skipped_members:
            counts["skipped_members"] = skipped_members
        metadata = {METADATA_KEY: json.dumps({**manifest, "schema_version": SCHEMA_VERSION, "shard": shard,
                                              "counts": counts}).encode()}
        table = pa.Table.from_pylist(rows, schema=SCHEMA.with_metadata(metadata))
        with atomic_write(self.fs, self.path(shard_file_name(shard))) as f:
            pq.write_table(table, f, compression="zstd")
        return counts

    def shard_tables(self) -> Iterator[pa.Table]:
        """The rows of each shard file in turn (any output size). Raises OutputConflict, naming
        the file, for a file named like a shard file that is not a valid one (see `census`)."""
        census = self.census()
        if census.invalid:
            path, reason = next(iter(census.invalid.items()))
            raise OutputConflict(f"{path} is not a valid shard file of {self.uri}: {reason} "
                                 f"({len(census.invalid)} such files); rerun samcp corpus with the "
                                 "same arguments to label those shards again, or remove them")
        for shard in sorted(census.done, key=shard_file_name):
            with self.fs.open(self.path(shard_file_name(shard)), "rb") as f:
                yield pq.read_table(io.BytesIO(f.read())).replace_schema_metadata(None)

    def read_table(self) -> pa.Table:
        """Every row of the output (small outputs, evaluation, tests)."""
        tables = list(self.shard_tables())
        return pa.concat_tables(tables) if tables else SCHEMA.empty_table()

    def manifest(self) -> dict:
        """The `_manifest.json` of a labeling output: which models, patches and vocabulary made it."""
        manifest = self.read_json(MANIFEST)
        if isinstance(manifest, dict) and isinstance(manifest.get("labeling"), dict):
            return {**manifest, "labeling": current_labeling(manifest)}
        if manifest is None:
            raise FileNotFoundError(f"{self.uri} has no {MANIFEST}: not the output of samcp corpus")
        return manifest

    def vocabulary(self) -> Vocabulary:
        """The vocabulary the labels were made with (see `labeling_vocabulary`)."""
        try:
            return labeling_vocabulary(self.manifest()["labeling"])
        except (KeyError, TypeError, ValueError) as error:
            raise VocabularyError(f"{self.uri}/{MANIFEST}: {error}") from None


def labeling_vocabulary(labeling: dict) -> Vocabulary:
    """The vocabulary of a labeling manifest, as recorded there, never re-read from the file it
    came from, which may have changed since. Manifests that recorded only the classes name a
    file whose content must still be what made the labels (its fingerprint)."""
    record = labeling["vocabulary"]
    if "templates" in record:
        return Vocabulary.from_record(record)
    vocab = load_vocabulary(record["source"])
    if vocab.fingerprint() != record["fingerprint"]:
        raise VocabularyError(f"the vocabulary {record['source']} has changed since these labels were made "
                              "(its fingerprint differs); restore it, or label again")
    return vocab


def current_labeling(record: dict) -> dict:
    """The labeling settings of a manifest or shard footer `record`, in this version's names.
    Version 1 (no "version": outputs written before manifests had one) named the head
    "samcp_head" and the post-processing score threshold "score_thresh"."""
    labeling = dict(record["labeling"])
    if record.get("version", 1) < 2:
        if "samcp_head" in labeling:
            labeling["head"] = labeling.pop("samcp_head")
        post = labeling.get("postprocess")
        if isinstance(post, dict):
            labeling["postprocess"] = {("min_score" if k == "score_thresh" else k): v
                                       for k, v in post.items()}
    return labeling


def _differences(record: dict, labeling: dict) -> list[str]:
    """What `record` (a manifest or footer, any version) was made with that differs from `labeling`
    (this run's settings): the names of the settings, and the row schema if that changed."""
    old = current_labeling(record)
    changed = []
    for key in sorted(k for k in {**old, **labeling} if old.get(k) != labeling.get(k)):
        was, now = old.get(key), labeling.get(key)
        inner = sorted(k for k in {**was, **now} if was.get(k) != now.get(k)) \
            if isinstance(was, dict) and isinstance(now, dict) else []
        changed.append(f"{key} ({', '.join(inner)})" if inner else key)
    if record.get("schema_version", 1) != SCHEMA_VERSION:
        changed.append(f"row schema (version {record.get('schema_version', 1)}, "
                       f"this package writes {SCHEMA_VERSION})")
    return changed
