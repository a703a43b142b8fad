import numpy as np
import torch

from samcp.sam_training import assign_outputs, candidate_targets, mask_losses


def nested_targets() -> np.ndarray:
    """A car (whole, index 0), its wheel (part, index 1) and the sky around it (index 2)."""
    targets = np.zeros((3, 8, 8), dtype=bool)
    targets[0, 2:6, 1:7] = True
    targets[1, 4:6, 1:3] = True
    targets[2] = ~targets[0]
    return targets


def test_candidates_of_a_point_are_every_mask_that_contains_it():
    targets = nested_targets()
    chosen = np.array([1, 0, 2, 0])
    points = np.array([[1.5, 4.5], [1.5, 5.5], [0.5, 0.5], [np.nan, np.nan]])  # xy; the last is a box
    nested = candidate_targets(targets, chosen, points, nested=True)
    assert nested.tolist() == [[1, 0], [0, 1], [2, -1], [0, -1]]
    assert candidate_targets(targets, chosen, points, nested=False).tolist() == [[1], [0], [2], [0]]


def test_outputs_are_matched_one_to_one_by_least_loss():
    total = np.full((2, 4, 2), 5.0)
    total[0, 3, 0], total[0, 1, 1] = 0.1, 0.2  # point: output 3 fits candidate 0, output 1 candidate 1
    total[0, 3, 1] = 0.0  # ... and candidate 1 even better, but output 3 can serve only one
    candidates = np.array([[4, 7], [2, -1]])
    rows, outputs, columns = assign_outputs(total, candidates, is_box=np.array([False, True]))
    assert sorted(zip(rows, outputs, columns)) == [(0, 1, 1), (0, 3, 0), (1, 0, 0)]


def test_mask_losses_score_every_output_against_every_candidate():
    target = torch.zeros(1, 2, 4, 4)
    target[0, 0, :2] = 1  # top half
    target[0, 1] = 1  # everything
    logits = torch.full((1, 3, 4, 4), -10.0)
    logits[0, 0, :2] = 10  # predicts the top half
    logits[0, 1] = 10  # predicts everything
    focal, dice, iou = mask_losses(logits, target)
    assert focal.shape == dice.shape == iou.shape == (1, 3, 2)
    assert iou[0, 0].tolist() == [1.0, 0.5] and iou[0, 1].tolist() == [0.5, 1.0] and iou[0, 2, 0] == 0
    assert dice[0, 0, 0] < 0.01 and dice[0, 0, 1] > 0.3
