import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from segment_anything import SamAutomaticMaskGenerator

from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.eval.patch_quality import pairwise_iou
from samcp.sam.build import build_sam
from samcp.sam.patches import PatchConfig, PatchGenerator


@pytest.fixture(scope="module")
def sam():
    return build_sam("tiny")  # the shipped, trained weights: random ones make all masks alike


@pytest.fixture(scope="module")
def images():
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))
    return [corpus[i].image for i in range(2)]


# The shipped tiny SAM predicts low IoU and stability for most masks, so the agreement test
# uses lower thresholds than segment-anything's defaults (the code path is the same).
THRESHOLDS = dict(points_per_side=16, pred_iou_thresh=0.3, stability_score_thresh=0.5)


@pytest.mark.parametrize("crop_n_layers", [0, 1])  # 1: the whole image and 4 overlapping crops
def test_matches_the_official_generator(sam, images, crop_n_layers):
    settings = dict(THRESHOLDS, crop_n_layers=crop_n_layers)
    official = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **settings)
    ours = PatchGenerator(sam, PatchConfig(max_patches=None, **settings))
    for image, patches in zip(images, ours(images)):
        reference = np.stack([m["segmentation"] for m in official.generate(image)])
        mine = patches.masks.numpy()
        assert len(reference) >= 5
        assert abs(len(mine) - len(reference)) <= 0.05 * len(reference)
        iou = pairwise_iou(mine, reference)
        rows, cols = linear_sum_assignment(-iou)
        assert iou[rows, cols].mean() >= 0.98


def test_patch_set_fields_and_limits(sam, images):
    config = PatchConfig(max_patches=6, min_patch_area=40, **THRESHOLDS)
    patches = PatchGenerator(sam, config)([images[0]])[0]
    n = len(patches)
    assert 0 < n <= 6
    assert patches.masks.shape == (n, 256, 256) and patches.masks.dtype == torch.bool
    assert patches.boxes.shape == (n, 4) and patches.points.shape == (n, 2)
    assert patches.masks.flatten(1).sum(1).min() >= 40
    assert torch.all(patches.predicted_iou[:-1] >= patches.predicted_iou[1:])
    assert torch.all(patches.predicted_iou > config.pred_iou_thresh)
    assert torch.all(patches.stability_score >= config.stability_score_thresh)
    assert patches.embedding.shape == (128, 16, 16)
    ys, xs = torch.nonzero(patches.masks[0], as_tuple=True)
    assert patches.boxes[0].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]


def test_images_of_other_sizes_in_one_batch(sam, images):
    tall = np.ascontiguousarray(images[0][:, :160])  # 256 x 160
    small = images[1][::2, ::2].copy()  # 128 x 128
    tall_patches, small_patches = PatchGenerator(sam, PatchConfig(**THRESHOLDS))([tall, small])
    assert tall_patches.masks.shape[1:] == (256, 160) and tall_patches.input_size == (256, 160)
    assert small_patches.masks.shape[1:] == (128, 128) and small_patches.input_size == (256, 256)


def test_bad_images_are_refused(sam):
    generator = PatchGenerator(sam, PatchConfig(points_per_side=4))
    assert generator([]) == []
    with pytest.raises(ValueError, match="RGB"):
        generator([np.zeros((32, 32), np.uint8)])
    with pytest.raises(ValueError, match="RGB"):
        generator([np.zeros((32, 32, 3), np.float32)])


@pytest.mark.parametrize("input_size, image_size", [((256, 256), (256, 256)), ((256, 160), (256, 160)),
                                                    ((256, 256), (128, 128))])
def test_upsampling_is_sams_postprocess_masks(sam, input_size, image_size):
    low_res = torch.randn(5, 64, 64)
    generator = PatchGenerator(sam, PatchConfig(**THRESHOLDS))
    expected = sam.postprocess_masks(low_res[:, None], input_size, image_size)[:, 0]
    assert torch.equal(generator.upsample(low_res, input_size, image_size), expected)
