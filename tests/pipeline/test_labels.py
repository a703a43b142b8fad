import numpy as np
import pytest

from pipeline.labels import LabelRowError, prediction, row_id_map
from pipeline.schema import error_row, ok_row
from samcp.data.coco import encode_rle


def segment(segment_id: int, mask: np.ndarray) -> dict:
    return {"id": segment_id, "category_id": 1, "category": "ball", "isthing": True, "score": 0.5,
            "area": int(mask.sum()), "bbox": [0, 0, 1, 1], "rle": encode_rle(mask)}


def test_rle_segments_decode_to_an_id_map():
    left, right = np.zeros((4, 6), bool), np.zeros((4, 6), bool)
    left[:, :2], right[:, 4:] = True, True
    row = ok_row("k", "s", 6, 4, 2, [segment(3, left), segment(7, right)])
    id_map = row_id_map(row)
    assert id_map.shape == (4, 6) and (id_map[:, :2] == 3).all() and (id_map[:, 4:] == 7).all()
    assert (id_map[:, 2:4] == 0).all()
    assert prediction(row)[1] == row["segments"] and prediction(error_row("k", "s", "x")) is None


def test_overlapping_or_inconsistent_segments_are_rejected():
    mask = np.zeros((4, 6), bool)
    mask[1:3, 1:3] = True
    with pytest.raises(LabelRowError, match="overlaps"):
        row_id_map(ok_row("k", "s", 6, 4, 2, [segment(1, mask), segment(2, mask)]))
    wrong_area = segment(1, mask)
    wrong_area["area"] = 5
    with pytest.raises(LabelRowError, match="area 5"):
        row_id_map(ok_row("k", "s", 6, 4, 1, [wrong_area]))
