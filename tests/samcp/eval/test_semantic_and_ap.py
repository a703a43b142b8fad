import numpy as np
import pytest

from samcp.eval.instances import MaskAP
from samcp.eval.semantic import SemanticIoU


def scene():
    gt = np.zeros((10, 10), int)
    gt[:, :5] = 1  # a thing (category 1)
    gt[:, 5:] = 2  # stuff (category 9)
    return gt, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 9}]


def test_miou_perfect_and_shifted():
    gt, segments = scene()
    miou = SemanticIoU([1, 9])
    miou.update(gt, segments, gt, segments)
    assert miou.summary()["miou"] == pytest.approx(100)
    shifted = np.zeros_like(gt)
    shifted[:, :6], shifted[:, 6:] = 1, 2  # one column of stuff called thing
    miou = SemanticIoU([1, 9])
    miou.update(gt, segments, shifted, segments)
    per_class = miou.summary()["per_class"]
    assert per_class[1] == pytest.approx(100 * 50 / 60) and per_class[9] == pytest.approx(100 * 40 / 50)


def test_void_ground_truth_is_ignored():
    gt, segments = scene()
    gt[0] = 0  # void row
    miou = SemanticIoU([1, 9])
    pred = np.where(gt == 0, 1, gt)
    miou.update(gt, segments, pred, segments)
    assert miou.summary()["miou"] == pytest.approx(100)


def test_mask_ap_perfect_and_wrong_class():
    gt, segments = scene()
    ap = MaskAP([1])
    ap.update(gt, segments, gt, [{"id": 1, "category_id": 1, "score": 0.9}])
    assert ap.summary()["ap"] == pytest.approx(100)
    ap = MaskAP([1, 3])
    ap.update(gt, segments, gt, [{"id": 1, "category_id": 3, "score": 0.9}])
    assert ap.summary()["ap"] == pytest.approx(0)
