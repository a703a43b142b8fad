import numpy as np

from samcp.data.categories import CATEGORY_BY_ID
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.eval.patch_quality import PatchQuality, oracle_panoptic, pairwise_iou


def test_pairwise_iou():
    a = np.zeros((2, 4, 4), bool)
    a[0, :2] = True
    a[1] = True
    b = np.zeros((1, 4, 4), bool)
    b[0, :1] = True
    np.testing.assert_allclose(pairwise_iou(a, b), [[0.5], [0.25]])


def test_ground_truth_parts_as_patches_give_a_perfect_oracle():
    sample = SyntheticCorpus(SyntheticConfig(seed=5, height=96, width=96))[0]
    stuff = [sample.panoptic == s.id for s in sample.segments
             if not CATEGORY_BY_ID[s.category_id].isthing]
    parts = [sample.part_map == p.id for p in sample.parts]
    patches = np.stack(stuff + parts)
    np.testing.assert_array_equal(oracle_panoptic(patches, sample.panoptic), sample.panoptic)
    quality = PatchQuality(CATEGORY_BY_ID)
    quality.update(patches, sample)
    summary = quality.summary()
    assert summary["oracle_pq"]["All"]["pq"] == 100
    assert summary["recall_parts"]["0.75"] == 1.0
    assert summary["recall_stuff"]["0.75"] == 1.0


def test_patches_straddling_segments_are_not_claimed():
    gt = np.zeros((4, 4), np.int32)
    gt[:, :2], gt[:, 2:] = 1, 2
    straddling = np.zeros((1, 4, 4), bool)
    straddling[0, :, 1:3] = True  # exactly half in each: owned by neither
    assert not oracle_panoptic(straddling, gt).any()


def test_no_patches_means_nothing_found():
    sample = SyntheticCorpus(SyntheticConfig(seed=5, height=64, width=64))[1]
    quality = PatchQuality(CATEGORY_BY_ID)
    quality.update(np.zeros((0, 64, 64), bool), sample)
    summary = quality.summary()
    assert summary["oracle_pq"]["All"]["pq"] == 0 and summary["recall_wholes"]["0.50"] == 0


def test_recall_by_class_counts_each_whole_under_its_class():
    sample = SyntheticCorpus(SyntheticConfig(seed=5, height=96, width=96))[0]
    stuff = [sample.panoptic == s.id for s in sample.segments if not CATEGORY_BY_ID[s.category_id].isthing]
    quality = PatchQuality(CATEGORY_BY_ID)
    quality.update(np.stack(stuff), sample)  # every stuff segment found, no thing
    by_class = quality.summary()["recall_by_class"]
    for s in sample.segments:
        category = CATEGORY_BY_ID[s.category_id]
        assert by_class[category.name]["0.75"] == (0.0 if category.isthing else 1.0)
    assert sum(r["count"] for r in by_class.values()) == len(sample.segments)
