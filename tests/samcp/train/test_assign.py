import torch

from samcp.train.assign import AssignConfig, assign, intersection_over_patch, thing_membership


def rect(h, w, x0, y0, x1, y1):
    m = torch.zeros((h, w), dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def box(x0, y0, x1, y1):
    return torch.tensor([x0, y0, x1, y1], dtype=torch.float)


def test_intersection_over_patch_takes_the_smaller_of_box_and_mask():
    thing = rect(20, 20, 0, 0, 10, 10)[None]
    patches = torch.stack([rect(20, 20, 2, 2, 6, 6),     # fully inside: 1
                           rect(20, 20, 5, 0, 15, 10),   # half inside: 0.5
                           rect(20, 20, 12, 12, 16, 16)])  # outside: 0
    boxes = torch.stack([box(2, 2, 6, 6), box(5, 0, 15, 10), box(12, 12, 16, 16)])
    iop = intersection_over_patch(patches, boxes, thing, box(0, 0, 10, 10)[None])
    torch.testing.assert_close(iop, torch.tensor([[1.0, 0.5, 0.0]]))


def test_membership_bands_whole_object_and_low_quality():
    cfg = AssignConfig()
    overlap = torch.tensor([[0.9, 0.6, 0.3, 0.95],
                            [0.1, 0.2, 0.4, 0.0]])
    box_ious = torch.tensor([[0.2, 0.1, 0.0, 0.7],   # patch 3: whole object, better than any part
                             [0.0, 0.6, 0.3, 0.0]])  # nothing inside: best box IoU 0.6 > 0.5 rescues it
    member = thing_membership(overlap, box_ious, cfg)
    assert member.tolist() == [[1, -1, 0, 1], [0, 1, 0, 0]]


def test_low_quality_needs_half_box_iou():
    member = thing_membership(torch.tensor([[0.1, 0.2]]), torch.tensor([[0.3, 0.4]]), AssignConfig())
    assert member.tolist() == [[0, 0]]


def test_assign_things_parts_and_stuff():
    h = w = 32
    robot_head, robot_body = rect(h, w, 4, 4, 12, 10), rect(h, w, 4, 10, 12, 20)
    robot = robot_head | robot_body
    sky = ~robot
    patches = torch.stack([robot_head, robot_body, sky, rect(h, w, 4, 4, 20, 20)])
    boxes = torch.stack([box(4, 4, 12, 10), box(4, 10, 12, 20), box(0, 0, 32, 32), box(4, 4, 20, 20)])
    targets = assign(patches, boxes, torch.stack([robot, sky]), [4, 9], thing_ids=[1, 4], stuff_ids=[9, 10])
    assert targets.thing_labels.tolist() == [1]
    torch.testing.assert_close(targets.thing_boxes, torch.tensor([[4 / 32, 4 / 32, 12 / 32, 20 / 32]]))
    # The straddling patch is half robot: IoP 0.5 lies in the ignore band.
    assert targets.thing_membership.tolist() == [[1, 1, 0, -1]]
    assert targets.stuff_present.tolist() == [True, False]
    # The sky patch's box is the whole frame, so its box IoP against the sky box is 1 and its
    # mask lies wholly in the sky; the straddling patch is only half sky.
    assert targets.stuff_membership.tolist() == [[0, 0, 1, 0], [0, 0, 0, 0]]


def test_patches_in_unlabeled_pixels_are_ignored_not_background():
    # A labeled thing on the left; the right half has no label (pseudo-labels below threshold).
    thing = rect(20, 20, 0, 0, 8, 20)[None]
    patches = torch.stack([rect(20, 20, 1, 1, 7, 19),     # inside the thing
                           rect(20, 20, 12, 2, 18, 18),   # in the unlabeled half
                           rect(20, 20, 6, 0, 13, 20)])   # mostly labeled background
    boxes = torch.stack([box(1, 1, 7, 19), box(12, 2, 18, 18), box(6, 0, 13, 20)])
    ignore = torch.zeros((20, 20), dtype=torch.bool)
    ignore[:, 12:] = True
    targets = assign(patches, boxes, thing, [1], thing_ids=[1], stuff_ids=[9], ignore=ignore)
    assert targets.ignored_patches.tolist() == [False, True, False]
    assert targets.thing_membership.tolist() == [[1, -1, 0]]
    assert targets.stuff_membership.tolist() == [[0, -1, 0]]
    assert assign(patches, boxes, thing, [1], [1], [9]).ignored_patches is None
