"""The labeling actor: models loaded once per actor, batches of reader rows in, output rows out."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import torch

from pipeline.reader import member_name
from pipeline.schema import TRANSIT_SCHEMA, error_row, ok_row
from samcp.config import LabelerConfig
from samcp.labeler import LabeledImage, Labeler


class LabelActor:
    """Callable class for Ray Data's `map_batches` (one instance per actor).

    Takes batches of `pipeline.reader` rows (numpy format) and returns them as
    output rows (`pipeline.schema.TRANSIT_SCHEMA`): samples labeled or turned
    into error rows, end rows passed through. A batch that fails (an
    out-of-memory, say) is retried image by image, so one bad image fails alone.
    """

    def __init__(self, labeler: LabelerConfig, storage_options: dict | None = None,
                 torch_threads: int | None = None):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.labeler = Labeler.from_config(labeler, storage_options)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        todo = [r for r in rows if r["kind"] == "sample" and not r["error"]]
        started = time.perf_counter()
        labeled = self._label([r["image"] for r in todo], [(int(r["height"]), int(r["width"])) for r in todo])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        share = (time.perf_counter() - started) / max(1, len(todo))
        results = dict(zip((id(r) for r in todo), labeled))
        return transit_table([{**self._output(r, results.get(id(r))),
                               "label_seconds": share if id(r) in results else 0.0} for r in rows])

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


def transit_table(rows: list[dict]) -> pa.Table:
    """The rows as a `TRANSIT_SCHEMA` table. A row that does not fit the schema (text that is not
    UTF-8, a number out of its column's range) becomes its sample's error row with the reason,
    instead of failing the batch, and with it the job."""
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
