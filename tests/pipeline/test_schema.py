import io

import numpy as np
import pyarrow.parquet as pq
from pycocotools import mask as mask_utils

from pipeline.schema import SCHEMA, error_row, ok_row, to_table
from samcp.data.coco import encode_rle
from samcp.masks import mask_bbox


def test_rows_round_trip_through_parquet_and_decode():
    mask = np.zeros((30, 40), bool)
    mask[5:10, 7:20] = True
    segment = {"id": 1, "category_id": 4, "category": "robot", "isthing": True, "score": 0.9,
               "area": int(mask.sum()), "bbox": mask_bbox(mask), "rle": encode_rle(mask)}
    rows = [ok_row("a", "shard-000000.tar", 40, 30, 12, [segment]),
            error_row("b", "shard-000000.tar", "not an image (unrecognised format)")]
    buffer = io.BytesIO()
    pq.write_table(to_table(rows), buffer)
    table = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert table.schema.equals(SCHEMA)
    ok, bad = table.to_pylist()
    assert ok["status"] == "ok" and ok["error"] is None and bad["status"] == "error"
    assert bad["error"].startswith("not an image") and bad["segments"] == []
    stored = ok["segments"][0]
    decoded = mask_utils.decode({"size": [ok["height"], ok["width"]], "counts": stored["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    assert stored["bbox"] == [7.0, 5.0, 13.0, 5.0]
