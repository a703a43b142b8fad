"""The labeling actor: models loaded once per actor; whole shards in, their labels written where they
are made, a few small rows out.

Each call takes one shard (a row `{"shard", "files"}` of the job's plan). A thread reads and
decodes its samples (`pipeline.reader`) while the models label the batch before; samples are
labeled `batch_size` at a time (a batch that fails, an out-of-memory say, is retried image by
image, so one bad image fails alone), and the shard's rows are published as one Parquet file,
atomically, retrying with backoff while the store fails (`publish`). Per shard, the actor yields
a `progress` row per batch and one `done` row: the shard's counts or why it failed, its keys (for
the driver's duplicate check), the labeling time and the messages of any write retries. No decoded
image and no label crosses the object store or reaches the driver, and a slow store holds up only
the actor that writes to it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import torch

from pipeline.output import LabelOutput, OutputConflict
from pipeline.reader import ShardReader, member_name
from pipeline.schema import TRANSIT_SCHEMA, error_row, ok_row
from samcp.config import LabelerConfig
from samcp.data.decode import DecodeConfig
from samcp.labeler import LabeledImage, Labeler

# What a labeling actor yields: `progress` after each batch (`samples` labeled), and `done` once per
# shard (its `counts` as JSON, or `shard_error`; or `conflict`: the output was taken over).
RESULT_SCHEMA = pa.schema([("kind", pa.string()), ("shard", pa.string()), ("samples", pa.int64()),
                           ("counts", pa.string()), ("shard_error", pa.string()), ("keys", pa.string()),
                           ("label_seconds", pa.float64()), ("log", pa.string())])
PREFETCH = 2  # batches of decoded samples a reading thread holds ahead of the models


class LabelActor:
    """Callable class for Ray Data's `map_batches` over the job's shards (one instance per actor);
    `labeler` and `_output` label rows of `pipeline.reader` without a shard (tests, tools)."""

    def __init__(self, labeler: LabelerConfig, storage_options: dict | None = None,
                 torch_threads: int | None = None, output: str | None = None, manifest: dict | None = None,
                 decode: DecodeConfig | None = None, batch_size: int = 4, write_attempts: int = 5):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.labeler = self.build_labeler(labeler, storage_options)
        self.reader = ShardReader(storage_options, decode or DecodeConfig())
        self.output = None if output is None else LabelOutput(output, storage_options)
        self.manifest, self.batch_size, self.write_attempts = manifest, batch_size, write_attempts

    @staticmethod
    def build_labeler(labeler: LabelerConfig, storage_options: dict | None) -> Labeler:
        return Labeler.from_config(labeler, storage_options)

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[pa.Table]:
        for shard, files in zip(batch["shard"], batch["files"]):
            yield from self.label_shard(str(shard), files)

    def label_shard(self, shard: str, files) -> Iterator[pa.Table]:
        rows, end, seconds = [], None, 0.0
        for chunk in prefetched(self.reader({"shard": shard, "files": files}), self.batch_size):
            samples = [r for r in chunk if r["kind"] == "sample"]
            end = next((r for r in chunk if r["kind"] == "end"), end)
            if samples:
                labeled, spent = self.label_rows(samples)
                rows += labeled
                seconds += spent
                yield result("progress", shard, samples=len(samples))
        if end["shard_error"]:
            yield result("done", shard, shard_error=end["shard_error"])
            return
        rows = transit_table(rows).to_pylist()  # a row that does not fit the schema: its error row
        skipped = json.loads(end["skipped_members"]) if end["skipped_members"] else None
        lines: list[str] = []
        try:
            counts = publish(self.output, shard, rows, self.manifest, self.write_attempts, lines.append,
                             skipped)
        except OutputConflict as error:
            yield result("conflict", shard, shard_error=str(error), log=lines)
            return
        except OSError as error:
            yield result("done", shard, shard_error=f"labels of {shard} could not be written: {error}",
                         log=lines)
            return
        yield result("done", shard, samples=len(rows), counts=counts, keys=[r["key"] for r in rows],
                     seconds=seconds, log=lines)

    def label_rows(self, samples: list[dict]) -> tuple[list[dict], float]:
        """Reader rows -> output rows (labeled, or error rows with the reason), and the seconds the
        labeling took (the GPU's too: synchronized)."""
        todo = [r for r in samples if not r["error"]]
        started = time.perf_counter()
        labeled = self._label([r["image"] for r in todo], [(int(r["height"]), int(r["width"])) for r in todo])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        results = dict(zip((id(r) for r in todo), labeled))
        return [self._output(r, results.get(id(r))) for r in samples], time.perf_counter() - started

    def _label(self, images: list[np.ndarray], native_sizes: list[tuple[int, int]]
               ) -> list[LabeledImage | Exception]:
        """Labels at each image's native size (height, width)."""
        if not images:
            return []
        try:
            return self.labeler.label_batch(images, native_sizes)
        except Exception as error:  # noqa: BLE001 - any failure becomes the sample's error row
            if len(images) == 1:
                return [error]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return [result for image, size in zip(images, native_sizes)
                    for result in self._label([image], [size])]

    @staticmethod
    def _output(row: dict, result: LabeledImage | Exception | None) -> dict:
        transit = {"kind": str(row["kind"]), "index": int(row["index"]),
                   "shard_samples": int(row["shard_samples"]), "shard_error": str(row["shard_error"]) or None,
                   "skipped_members": str(row["skipped_members"]) or None}
        key, shard = str(row["key"]), str(row["shard"])
        width, height = int(row["width"]) or None, int(row["height"]) or None
        if row["kind"] != "sample":
            return {**error_row(key, shard, "", width, height), **transit}
        if row["error"]:
            return {**error_row(key, shard, str(row["error"]), width, height), **transit}
        if isinstance(result, Exception):
            reason = f"labeling failed: {type(result).__name__}: {result}".split("\n")[0]
            return {**error_row(key, shard, reason, width, height), **transit}
        return {**ok_row(key, shard, width, height, result.num_patches, result.segments, result.model_size),
                **transit}


def result(kind: str, shard: str, samples: int = 0, counts: dict | None = None, shard_error: str = "",
           keys: list[str] | None = None, seconds: float = 0.0, log: list[str] | None = None) -> pa.Table:
    return pa.Table.from_pylist([{"kind": kind, "shard": shard, "samples": samples,
                                  "counts": json.dumps(counts or {}), "shard_error": shard_error,
                                  "keys": json.dumps(keys or []), "label_seconds": seconds,
                                  "log": json.dumps(log or [])}], schema=RESULT_SCHEMA)


def prefetched(rows: Iterator[dict], batch_size: int) -> Iterator[list[dict]]:
    """`rows` in lists of up to `batch_size` samples (an end row ends its list), read on a thread up
    to `PREFETCH` lists ahead; an error of the thread is raised here."""
    lists: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def offer(item) -> None:
        while not stop.is_set():
            try:
                lists.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def read() -> None:
        chunk: list[dict] = []
        try:
            for row in rows:
                chunk.append(row)
                if row["kind"] == "end" or sum(r["kind"] == "sample" for r in chunk) == batch_size:
                    offer(chunk)
                    chunk = []
            if chunk:
                offer(chunk)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            offer(error)
        offer(None)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        while (item := lists.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def publish(output: LabelOutput, shard: str, rows: list[dict], manifest: dict, attempts: int,
            log: Callable[[str], None], skipped_members: dict | None = None) -> dict:
    """Write one shard's labels, retrying with backoff (1, 2, 4... s) while the store fails."""
    for attempt in range(1, attempts):
        try:
            return output.write_shard(shard, rows, manifest, skipped_members)
        except OSError as error:
            log(f"[label] writing the labels of {shard} failed ({error}); "
                f"retry {attempt}/{attempts - 1} in {2 ** (attempt - 1)}s")
            time.sleep(2 ** (attempt - 1))
    return output.write_shard(shard, rows, manifest, skipped_members)  # the last try: its error fails it


def transit_table(rows: list[dict]) -> pa.Table:
    """The rows as a `TRANSIT_SCHEMA` table. A row that does not fit the schema (text that is not
    UTF-8, a number out of its column's range) becomes its sample's error row with the reason,
    instead of failing the shard."""
    if not rows:
        return TRANSIT_SCHEMA.empty_table()
    try:
        return pa.Table.from_pylist(rows, schema=TRANSIT_SCHEMA)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return pa.concat_tables([_transit_row(row) for row in rows])


def _transit_row(row: dict) -> pa.Table:
    try:
        return pa.Table.from_pylist([row], schema=TRANSIT_SCHEMA)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as error:
        key, shard = (member_name(row[name]) for name in ("key", "shard"))
        reason = f"labels could not be stored: {type(error).__name__}: {error}".split("\n")[0]
        transit = {name: row[name] for name in ("kind", "index", "shard_samples")}
        text = {name: row[name] and member_name(row[name]) for name in ("shard_error", "skipped_members")}
        return pa.Table.from_pylist([{**error_row(key, shard, member_name(reason)), **transit, **text}],
                                    schema=TRANSIT_SCHEMA)
