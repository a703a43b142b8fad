import numpy as np
import pytest
import torch

from samcp.checkpoint import save_weights
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.sam.build import build_sam
from samcp.train.sam import (
    ExampleCache,
    SamTrainConfig,
    assign_outputs,
    candidate_targets,
    initial_sam,
    mask_losses,
)


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


def test_a_run_can_start_from_a_sam_of_another_patch_size(tmp_path):
    torch.manual_seed(0)
    source = build_sam("tiny", checkpoint=None)
    save_weights(source, str(tmp_path / "tiny.pt"))
    sam = initial_sam(SamTrainConfig(sam_model="tiny8", init=str(tmp_path / "tiny.pt"),
                                     init_sam_model="tiny"))
    assert sam.image_encoder.patch_embed.proj.kernel_size == (8, 8)
    assert torch.equal(sam.mask_decoder.mask_tokens.weight, source.mask_decoder.mask_tokens.weight)
    with pytest.raises(ValueError, match="needs init"):
        initial_sam(SamTrainConfig(sam_model="tiny8", init_sam_model="tiny"))


def test_examples_made_in_worker_processes_equal_those_made_on_demand():
    corpus = SyntheticCorpus(SyntheticConfig(seed=3, height=64, width=64))
    filled, lazy = ExampleCache(corpus, 5, 4), ExampleCache(corpus, 5, 4)
    filled.fill(2)
    for index in (0, 4, 7):  # 7 wraps around to 2
        assert np.array_equal(filled[index].image, lazy[index].image)
        assert np.array_equal(filled[index].targets, lazy[index].targets)
