import torch

from samcp.train.assign import SegmentTargets
from samcp.train.criterion import CriterionConfig, affinity_losses, match, samcp_loss


def targets_two_things():
    return SegmentTargets(
        thing_labels=torch.tensor([0, 1]),
        thing_boxes=torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]),
        thing_membership=torch.tensor([[1, 1, 0, 0], [0, 0, 1, -1]]),
        stuff_present=torch.tensor([True]),
        stuff_membership=torch.tensor([[0, 0, 0, 1]]),
    )


def test_match_pairs_queries_with_the_things_they_claim():
    boxes = torch.tensor([[0.0, 0.0, 0.25, 0.5], [0.25, 0.0, 0.5, 0.5],
                          [0.5, 0.5, 1.0, 1.0], [0.6, 0.6, 0.9, 0.9]])
    big = 8.0
    # query 1 claims patches 0,1 and says class 0; query 2 claims patch 2 and says class 1.
    affinity = torch.full((4, 4), -big)
    affinity[1, :2] = big
    affinity[2, 2] = big
    thing_logits = torch.full((4, 2), -big)
    thing_logits[1, 0] = big
    thing_logits[2, 1] = big
    rows, cols = match(thing_logits, affinity, boxes, targets_two_things(), CriterionConfig())
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 1, 1: 2}


def test_affinity_losses_ignore_the_band_and_vanish_when_right():
    member = torch.tensor([[1, -1, 0]])
    right = torch.tensor([[20.0, 123.0, -20.0]])  # the ignored entry's value does not matter
    focal, dice = affinity_losses(right, member, CriterionConfig())
    assert focal < 1e-6 and dice < 0.01
    wrong = torch.tensor([[-20.0, 0.0, 20.0]])
    focal, dice = affinity_losses(wrong, member, CriterionConfig())
    assert focal > 1 and dice > 0.6  # dice smoothing (+1) keeps it from 1


def test_loss_falls_when_outputs_move_toward_the_targets():
    torch.manual_seed(0)
    targets = [targets_two_things()]
    boxes = torch.tensor([[[0.0, 0.0, 0.25, 0.5], [0.25, 0.0, 0.5, 0.5],
                           [0.5, 0.5, 1.0, 1.0], [0.6, 0.6, 0.9, 0.9]]])
    padding = torch.zeros((1, 4), dtype=torch.bool)
    params = {"affinity": torch.zeros((1, 5, 4), requires_grad=True),
              "stuff_logits": torch.zeros((1, 1), requires_grad=True),
              "thing_logits": torch.zeros((1, 4, 2), requires_grad=True)}
    optimizer = torch.optim.SGD(params.values(), lr=1.0)
    losses = []
    for _ in range(30):
        loss = samcp_loss([params], targets, boxes, padding, num_stuff=1, cfg=CriterionConfig())
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
        losses.append(float(loss["loss"]))
    assert losses[-1] < 0.3 * losses[0]
    assert params["stuff_logits"][0, 0] > 0  # sky is present and coverable


def test_queries_of_ignored_patches_are_not_taught_background():
    targets = targets_two_things()
    boxes = torch.tensor([[[0.0, 0.0, 0.25, 0.5], [0.25, 0.0, 0.5, 0.5],
                           [0.5, 0.5, 1.0, 1.0], [0.6, 0.6, 0.9, 0.9]]])
    padding = torch.zeros((1, 4), dtype=torch.bool)
    thing_logits = torch.full((1, 4, 2), -8.0)
    affinity = torch.full((1, 5, 4), -8.0)
    thing_logits[0, 1, 0], affinity[0, 2, :2] = 8.0, 8.0  # query 1: thing 0, patches 0-1
    thing_logits[0, 2, 1], affinity[0, 3, 2] = 8.0, 8.0  # query 2: thing 1, patch 2
    thing_logits[0, 3] = 8.0  # query 3, unmatched, is sure it is a thing
    outputs = [{"affinity": affinity, "stuff_logits": torch.zeros((1, 1)), "thing_logits": thing_logits}]
    plain = samcp_loss(outputs, [targets], boxes, padding, 1, CriterionConfig())["class"]
    targets.ignored_patches = torch.tensor([False, False, False, True])
    ignored = samcp_loss(outputs, [targets], boxes, padding, 1, CriterionConfig())["class"]
    assert ignored < plain - 1.0


def test_absent_stuff_is_a_negative_only_where_every_pixel_is_labeled():
    targets = targets_two_things()
    targets.stuff_present = torch.tensor([False])  # no sky among the labels ...
    targets.stuff_membership = torch.tensor([[0, 0, 0, 0]])
    boxes = torch.tensor([[[0.0, 0.0, 0.25, 0.5], [0.25, 0.0, 0.5, 0.5],
                           [0.5, 0.5, 1.0, 1.0], [0.6, 0.6, 0.9, 0.9]]])
    padding = torch.zeros((1, 4), dtype=torch.bool)
    outputs = [{"affinity": torch.zeros((1, 5, 4)), "stuff_logits": torch.full((1, 1), 3.0),
                "thing_logits": torch.zeros((1, 4, 2))}]
    labeled = samcp_loss(outputs, [targets], boxes, padding, 1, CriterionConfig())["stuff_class"]
    assert labeled > 0.5  # ... so a confident sky is wrong
    targets.ignored_patches = torch.tensor([False, False, False, True])  # ... or sky hides in the unlabeled
    assert float(samcp_loss(outputs, [targets], boxes, padding, 1, CriterionConfig())["stuff_class"]) == 0.0
