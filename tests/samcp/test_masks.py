import torch
from torchvision.ops import masks_to_boxes

from samcp.masks import as_float, mask_boxes, nonempty


def random_masks(seed: int) -> torch.Tensor:
    """(12, 13, 17) masks of every density, the first two empty, the third one pixel."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(12, 13, 17, generator=g) < torch.rand(12, 1, 1, generator=g)
    masks[:3] = False
    masks[2, 12, 0] = True
    return masks


def test_helpers_agree_with_the_plain_torch_and_torchvision_ops():
    for seed in range(20):
        masks = random_masks(seed)
        present = masks.flatten(1).any(-1)
        assert torch.equal(nonempty(masks), present)
        assert not present[:2].any() and present[2:].all()
        assert torch.equal(mask_boxes(masks)[present], masks_to_boxes(masks[present]))
        assert torch.equal(mask_boxes(masks)[~present], torch.zeros(2, 4))
        assert torch.equal(as_float(masks), masks.float())
        assert torch.equal(mask_boxes(masks)[2], torch.tensor([0.0, 12.0, 0.0, 12.0]))


def test_helpers_take_views():
    masks = random_masks(0)
    view = masks[:, 2:9, 3:]  # not contiguous
    assert torch.equal(mask_boxes(view), mask_boxes(view.contiguous()))
    assert torch.equal(nonempty(view), view.flatten(1).any(-1))
