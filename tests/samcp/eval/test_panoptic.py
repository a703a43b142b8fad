import numpy as np
import pytest

from samcp.eval.panoptic import PanopticQuality

THING, STUFF = 1, 2
ISTHING = {THING: True, STUFF: False}


def evaluate(gt, gt_segments, pred, pred_segments):
    pq = PanopticQuality(ISTHING)
    pq.update(np.asarray(gt), gt_segments, np.asarray(pred), pred_segments)
    return pq.summary()


def test_perfect_prediction_scores_100():
    gt = np.array([[1, 1, 2, 2]] * 3)
    segments = [{"id": 1, "category_id": THING}, {"id": 2, "category_id": STUFF}]
    result = evaluate(gt, segments, gt * 7, [{"id": 7, "category_id": THING},
                                            {"id": 14, "category_id": STUFF}])
    assert result["All"]["pq"] == pytest.approx(100)
    assert result["Things"]["n"] == result["Stuff"]["n"] == 1


def test_ids_up_to_the_largest_coco_rgb_id_score_as_small_ids_do():
    # COCO panoptic PNGs encode ids as RGB, so a file written by another tool may use any id below 2**24.
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3]])
    gt_segments = [{"id": i, "category_id": c} for i, c in ((1, THING), (2, THING), (3, STUFF))]
    pred = gt.copy()
    pred[0, 2] = 1  # one thing pixel goes to the other thing: not a perfect score
    large = {1: 2**24 - 1, 2: 2**20, 3: 2**20 + 1}
    small = evaluate(gt, gt_segments, pred, gt_segments)
    relabel = np.vectorize(large.get)
    big = evaluate(relabel(gt), [{**s, "id": large[s["id"]]} for s in gt_segments], relabel(pred),
                   [{**s, "id": large[s["id"]]} for s in gt_segments])
    assert big == small and 0 < small["All"]["pq"] < 100


def test_partial_overlap_counts_iou_and_misses():
    # GT thing has 10 pixels; prediction covers 6 of them plus nothing else: IoU 0.6 -> TP.
    gt = np.zeros((1, 20), int)
    gt[0, :10] = 1
    gt[0, 10:] = 2
    pred = np.zeros((1, 20), int)
    pred[0, :6] = 5
    pred[0, 6:] = 6
    result = evaluate(gt, [{"id": 1, "category_id": THING}, {"id": 2, "category_id": STUFF}],
                      pred, [{"id": 5, "category_id": THING}, {"id": 6, "category_id": STUFF}])
    thing = result["per_class"][THING]
    assert (thing["tp"], thing["fp"], thing["fn"]) == (1, 0, 0)
    assert thing["pq"] == pytest.approx(60)
    stuff = result["per_class"][STUFF]  # 10 GT pixels, 14 predicted, 10 shared: IoU 10/14
    assert stuff["pq"] == pytest.approx(100 * 10 / 14)


def test_iou_at_most_half_is_a_miss_and_a_false_positive():
    gt = np.array([[1, 1, 1, 1, 0, 0, 0, 0]])
    pred = np.array([[3, 3, 0, 0, 0, 0, 0, 0]])  # IoU 2/4 = 0.5, not > 0.5
    result = evaluate(gt, [{"id": 1, "category_id": THING}], pred, [{"id": 3, "category_id": THING}])
    thing = result["per_class"][THING]
    assert (thing["tp"], thing["fp"], thing["fn"], thing["pq"]) == (0, 1, 1, 0)


def test_void_pixels_leave_the_union():
    # Prediction spills 4 pixels onto void: they do not count against it.
    gt = np.array([[1, 1, 1, 1, 0, 0, 0, 0]])
    pred = np.array([[3, 3, 3, 3, 3, 3, 3, 3]])
    result = evaluate(gt, [{"id": 1, "category_id": THING}], pred, [{"id": 3, "category_id": THING}])
    assert result["per_class"][THING]["pq"] == pytest.approx(100)


def test_predictions_on_crowd_of_their_class_are_not_false_positives():
    gt = np.array([[1, 1, 1, 9, 9, 9, 9, 9]])
    gt_segments = [{"id": 1, "category_id": THING},
                   {"id": 9, "category_id": THING, "iscrowd": 1}]
    pred = np.array([[3, 3, 3, 4, 4, 4, 4, 0]])
    pred_segments = [{"id": 3, "category_id": THING}, {"id": 4, "category_id": THING}]
    thing = evaluate(gt, gt_segments, pred, pred_segments)["per_class"][THING]
    assert (thing["tp"], thing["fp"], thing["fn"]) == (1, 0, 0)


def test_class_mismatch_is_no_match():
    gt = np.array([[1, 1]])
    pred = np.array([[3, 3]])
    result = evaluate(gt, [{"id": 1, "category_id": THING}], pred, [{"id": 3, "category_id": STUFF}])
    assert result["per_class"][THING]["fn"] == 1 and result["per_class"][STUFF]["fp"] == 1
    assert result["All"]["pq"] == 0


def test_bad_input_is_refused():
    pq = PanopticQuality(ISTHING)
    with pytest.raises(ValueError, match="differ in size"):
        pq.update(np.zeros((2, 2), int), [], np.zeros((3, 2), int), [])
    with pytest.raises(ValueError, match="not in its segment list"):
        pq.update(np.ones((2, 2), int), [], np.zeros((2, 2), int), [])
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\*\*24\)"):
        pq.update(np.full((2, 2), 2**24), [{"id": 2**24, "category_id": THING}], np.zeros((2, 2), int), [])
    with pytest.raises(ValueError, match="unknown category"):
        pq.update(np.zeros((2, 2), int), [], np.zeros((2, 2), int), [{"id": 1, "category_id": 99}])
