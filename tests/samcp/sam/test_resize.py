import pytest
import torch
import torch.nn.functional as F

from samcp.sam.build import build_sam
from samcp.sam.resize import resize_sam_weights


@pytest.fixture(scope="module")
def resized():
    torch.manual_seed(0)
    source, target = build_sam("tiny", checkpoint=None), build_sam("tiny8", checkpoint=None)
    resize_sam_weights(source, target)
    return source, target


def test_half_size_patches_see_the_image_as_the_source_sees_it_upsampled(resized):
    source, target = resized
    image = torch.randn(1, 3, 64, 64)
    upsampled = F.interpolate(image, scale_factor=2, mode="nearest")
    expected = source.image_encoder.patch_embed(upsampled)  # (1, 8, 8, D)
    got = target.image_encoder.patch_embed(image)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4)


def test_grid_free_weights_are_copied_and_grid_tensors_resized(resized):
    source, target = resized
    assert torch.equal(source.mask_decoder.iou_prediction_head.layers[0].weight,
                       target.mask_decoder.iou_prediction_head.layers[0].weight)
    assert target.image_encoder.pos_embed.shape == (1, 32, 32, 128)
    global_block = target.image_encoder.blocks[1].attn  # global attention over 32 x 32 tokens
    assert global_block.rel_pos_h.shape[0] == 63
    # the table's ends stay the source's ends (linear interpolation with aligned corners)
    source_table = source.image_encoder.blocks[1].attn.rel_pos_h
    assert torch.allclose(global_block.rel_pos_h[[0, -1]], source_table[[0, -1]])
    with torch.no_grad():
        embedding = target.image_encoder(target.preprocess(torch.rand(1, 3, 256, 256) * 255))
    assert embedding.shape == (1, 128, 32, 32)


def test_models_of_other_widths_are_refused():
    source, target = build_sam("tiny", checkpoint=None), build_sam("vit_b", checkpoint=None)
    with pytest.raises(ValueError, match="differ beyond patch size"):
        resize_sam_weights(source, target)
