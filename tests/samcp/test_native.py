import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from samcp import Labeler, LabelerConfig
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.native import NativePatches, native_id_map, resize_window, segment_rles
from samcp.postprocess import PanopticFusion


@pytest.mark.parametrize("in_size, out_size", [((7, 9), (30, 41)), ((64, 48), (256, 192)),
                                               ((50, 50), (20, 35)), ((5, 6), (5, 6))])
def test_a_window_of_the_resize_is_that_part_of_the_whole_resize(in_size, out_size):
    logits = torch.randn(in_size)
    whole = F.interpolate(logits[None, None], out_size, mode="bilinear", align_corners=False)[0, 0]
    for rows, cols in [((0, out_size[0]), (0, out_size[1])), ((1, out_size[0] // 2), (2, out_size[1] - 1)),
                       ((out_size[0] - 1, out_size[0]), (0, 1))]:
        window = resize_window(logits, out_size, rows, cols)
        torch.testing.assert_close(window, whole[rows[0]:rows[1], cols[0]:cols[1]], atol=1e-5, rtol=1e-5)


def test_segment_rles_match_pycocotools_per_segment():
    rng = np.random.default_rng(0)
    id_map = np.zeros((37, 23), np.uint8)
    id_map[3:20, 4:9] = 1
    id_map[10:30, 15:22] = 2
    id_map[rng.random(id_map.shape) < 0.05] = 7
    drawn = segment_rles(id_map)
    assert sorted(drawn) == [1, 2, 7]
    for segment_id, found in drawn.items():
        mask = id_map == segment_id
        expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert found["rle"]["counts"] == expected["counts"].decode()
        assert found["rle"]["size"] == [37, 23]
        assert found["area"] == mask.sum()
        ys, xs = np.nonzero(mask)
        assert found["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


@pytest.fixture(scope="module")
def labeler():
    # The head alone (no CLIP ensemble), so that the fusion below is the labeler's own.
    cfg = dataclasses.replace(LabelerConfig(), kappa=0.0, kappa_seen=0.0)
    return Labeler.from_config(cfg)


@pytest.fixture(scope="module")
def images():
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))
    return [corpus[i].image for i in range(3)]


def fused(labeler, image):
    patches, = labeler.generator([image])
    out, = labeler.head_outputs([patches], [image])
    fusion = PanopticFusion(out.affinity, out.stuff_logits, out.thing_logits, patches.masks,
                            labeler.stuff_index, labeler.thing_index, labeler.postprocess)
    return patches, fusion.result()


def test_drawn_at_the_model_size_the_native_path_gives_the_same_segments(labeler, images):
    for image in images:
        patches, result = fused(labeler, image)
        model = labeler.labeled_image(patches, result)
        native = labeler.native_image(patches, result, patches.image_size)
        np.testing.assert_array_equal(native.id_map, model.id_map)
        assert native.segments == model.segments


def test_native_masks_downscaled_agree_with_the_model_size_ones(labeler, images):
    """Labeled at 4x the size the model saw: every segment's native mask, downscaled to the model's
    size, has IoU >= 0.95 with the segment labeled at that size; segments never overlap."""
    for image in images:
        h, w = image.shape[:2]
        model = labeler.label(image)
        native = labeler.label(image, native_size=(4 * h, 4 * w))
        assert native.id_map.shape == (4 * h, 4 * w)
        assert [s["id"] for s in native.segments] == [s["id"] for s in model.segments]
        assert sum(s["area"] for s in native.segments) <= 16 * h * w
        for ours, theirs in zip(native.segments, model.segments):
            mask = mask_utils.decode({**ours["rle"], "counts": ours["rle"]["counts"].encode()}).astype(bool)
            assert mask.shape == (4 * h, 4 * w) and mask.sum() == ours["area"]
            np.testing.assert_array_equal(mask, native.id_map == ours["id"])
            small = mask.reshape(h, 4, w, 4).mean(axis=(1, 3)) >= 0.5
            reference = model.id_map == theirs["id"]
            iou = (small & reference).sum() / (small | reference).sum()
            assert iou >= 0.95, (ours["category"], iou)
            assert ours["category"] == theirs["category"] and ours["score"] == theirs["score"]


def test_a_candidate_dropped_by_the_fusion_leaves_its_pixels_void(labeler, images):
    patches, result = fused(labeler, images[0])
    native = NativePatches(patches, patches.image_size, labeler.sam.image_encoder.img_size)
    first_patches, _ = result.candidates[0]
    id_map = native_id_map(native, [(first_patches, 0)] + result.candidates)
    assert not id_map[patches.masks[first_patches].any(0).numpy()].any()
