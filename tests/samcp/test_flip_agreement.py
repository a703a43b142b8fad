import numpy as np

from samcp.flip_agreement import flip_ious


def test_a_segment_found_again_in_the_mirror_image_scores_its_iou_and_other_classes_do_not_count():
    ids = np.zeros((4, 6), np.int32)
    ids[:, :2] = 1  # class 5, left columns 0-1
    ids[:, 2:] = 2  # class 9, the rest
    mirrored = np.zeros((4, 6), np.int32)
    mirrored[:, 4:] = 7  # class 5 at mirrored columns 4-5 = columns 0-1 back: the same mask
    mirrored[:, 1:4] = 8  # class 9 at mirrored columns 1-3 = columns 2-4 back: 3 of its 4 columns
    mirrored[:, 0] = 3  # class 2 at column 5 back: a class the first labeling does not have
    ious = flip_ious(ids, {1: 5, 2: 9}, mirrored, {7: 5, 8: 9, 3: 2})
    assert ious == {1: 1.0, 2: 0.75}
    assert flip_ious(ids, {1: 5, 2: 9}, mirrored, {7: 9, 8: 9, 3: 2}) == {1: 0.0, 2: 0.75}
