import numpy as np
import torch

from samcp.views import mirror, quarters_for, turn


def test_a_view_moves_the_masks_with_the_image():
    image = np.zeros((4, 6, 3), np.uint8)
    image[0, 1] = 255
    masks = torch.from_numpy(image[None, :, :, 0] > 0)
    mirrored, mirrored_masks = mirror(image, masks)
    assert mirrored[0, 4, 0] == 255 and mirrored_masks[0, 0, 4] and mirrored.flags["C_CONTIGUOUS"]
    turned, turned_masks = turn(image, masks, 1)  # counterclockwise: column 1 of 6 -> row 4
    assert turned.shape == (6, 4, 3) and turned[4, 0, 0] == 255 and turned_masks[0, 4, 0]
    assert mirror(image)[1] is None


def test_the_turn_of_a_key_is_fixed_and_never_zero():
    turns = [quarters_for(f"key{i}") for i in range(30)]
    assert set(turns) == {1, 2, 3} and turns == [quarters_for(f"key{i}") for i in range(30)]
