"""The labeling output: one Parquet row per input sample (see shared DESIGN.md).

`key`, `shard`, `width`, `height` (the image's own size after EXIF rotation,
which every mask has), `model_width`, `model_height` (the size the model saw:
the image downscaled to `--max-side`; null on error rows), `status` (`ok` /
`error`), `error` (null when ok), `num_patches`, and `segments`: a list of structs with `id`,
`category_id`, `category`, `isthing`, `score`, `area`, `bbox` (x, y, w, h) and
`counts` (compressed COCO RLE for the image's height and width), and
`flip_iou` (null unless labeled with `--flip-agreement`: the segment's IoU with
the same-class segment found in the image mirrored left-right).
"""

from __future__ import annotations

import pyarrow as pa

SEGMENT_TYPE = pa.struct([
    ("id", pa.int32()),
    ("category_id", pa.int32()),
    ("category", pa.string()),
    ("isthing", pa.bool_()),
    ("score", pa.float32()),
    ("area", pa.int64()),
    ("bbox", pa.list_(pa.float32())),
    ("counts", pa.string()),
    ("flip_iou", pa.float32()),
])

# The version of SCHEMA, recorded in every output's manifest: bumped when a column changes, so
# that an output written with other columns is never resumed into a mix.
SCHEMA_VERSION = 2
SCHEMA = pa.schema([
    ("key", pa.string()),
    ("shard", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("model_width", pa.int32()),
    ("model_height", pa.int32()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("num_patches", pa.int32()),
    ("segments", pa.list_(SEGMENT_TYPE)),
])

# A labeling actor's rows before it writes them: SCHEMA plus the reader's bookkeeping (see
# `pipeline.reader`); `LabelOutput.write_shard` keeps only SCHEMA's columns.
TRANSIT_SCHEMA = pa.schema([*SCHEMA, ("kind", pa.string()), ("index", pa.int64()),
                            ("shard_samples", pa.int64()), ("shard_error", pa.string()),
                            ("skipped_members", pa.string())])


def ok_row(key: str, shard: str, width: int, height: int, num_patches: int, segments: list[dict],
           model_size: tuple[int, int] | None = None) -> dict:
    """A labeled sample of native size (width, height), seen by the model at `model_size` (height,
    width; default: the native size). Segments need id, category_id, category, isthing, score,
    area, bbox, rle (flip_iou optional)."""
    model_height, model_width = model_size or (height, width)
    return {
        "key": key, "shard": shard, "width": width, "height": height, "model_width": model_width,
        "model_height": model_height, "status": "ok", "error": None,
        "num_patches": num_patches,
        "segments": [{"id": s["id"], "category_id": s["category_id"], "category": s["category"],
                      "isthing": s["isthing"], "score": s["score"], "area": s["area"],
                      "bbox": [float(v) for v in s["bbox"]], "counts": s["rle"]["counts"],
                      "flip_iou": s.get("flip_iou")}
                     for s in segments],
    }


def error_row(key: str, shard: str, reason: str, width: int | None = None,
              height: int | None = None) -> dict:
    """A sample that could not be labeled, with the reason; never dropped."""
    return {"key": key, "shard": shard, "width": width, "height": height, "model_width": None,
            "model_height": None, "status": "error",
            "error": reason, "num_patches": 0, "segments": []}


def to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)
