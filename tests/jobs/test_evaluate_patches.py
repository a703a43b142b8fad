"""jobs/evaluate_patches.py: oracle PQ and recall of a SAM's patches, with the model's tuned settings."""

import json

from jobs import evaluate_patches
from samcp.patches import PatchConfig


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
