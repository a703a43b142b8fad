"""jobs/evaluate_patches.py: oracle PQ and recall of a SAM's patches, with the model's tuned settings."""

import json

import numpy as np

from jobs import evaluate_patches
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.eval.patch_quality import pairwise_iou
from samcp.sam.build import build_sam
from samcp.sam.patches import PatchConfig, PatchGenerator


def test_scores_the_shipped_sam_with_its_own_patch_settings(tmp_path):
    out = tmp_path / "patches.json"
    assert evaluate_patches.main(["--num-images", "2", "--batch-size", "2", "--output", str(out)]) == 0
    summary = json.loads(out.read_text())
    tuned = PatchConfig.for_model("tiny")
    assert tuned.pred_iou_thresh != PatchConfig().pred_iou_thresh
    assert summary["patch_config"]["pred_iou_thresh"] == tuned.pred_iou_thresh
    assert summary["patch_config"]["points_per_side"] == tuned.points_per_side
    assert summary["patches_per_image"] > 5  # segment-anything's 0.88 / 0.95 would keep almost none
    assert 0 < summary["oracle_pq"]["All"]["pq"] <= 100

    explicit = tmp_path / "explicit.json"
    evaluate_patches.main(["--num-images", "1", "--pred-iou-thresh", "0.5", "--output", str(explicit)])
    assert json.loads(explicit.read_text())["patch_config"]["pred_iou_thresh"] == 0.5


def test_resolution_ceiling_scores_the_ground_truth_at_sams_mask_grid(tmp_path):
    out = tmp_path / "ceiling.json"
    assert evaluate_patches.main(["--num-images", "2", "--resolution-ceiling", "--output", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["recall_wholes"]["0.50"] == 1.0 and summary["recall_wholes"]["0.75"] >= 0.95
    assert 90 < summary["oracle_pq"]["All"]["pq"] < 100  # 64 x 64 cells blur the outlines a little

    generator = PatchGenerator(build_sam("tiny"))
    sample = SyntheticCorpus(SyntheticConfig(seed=2, height=96, width=128))[0]  # resized and padded by SAM
    masks = evaluate_patches.ground_truth_at_mask_resolution(generator, sample)
    truth = np.stack([sample.panoptic == s.id for s in sample.segments])
    assert masks.shape[1:] == (96, 128)
    assert np.all(pairwise_iou(masks[:len(truth)], truth).diagonal() > 0.7)


def test_the_shipped_8px_sam_cuts_wholes_and_parts(tmp_path):
    out = tmp_path / "tiny8.json"
    assert evaluate_patches.main(["--sam-model", "tiny8", "--sam-checkpoint", "shipped", "--num-images", "2",
                                  "--output", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["recall_wholes"]["0.50"] >= 0.8  # 0.975 on 200 val images; random weights score ~0
    assert summary["oracle_pq"]["All"]["pq"] > 60
