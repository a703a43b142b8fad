"""Self-training rounds end to end on a real local Ray cluster: label -> filter -> retrain (mirrored and
turned examples) -> evaluate, the table of rounds, and a rerun that resumes instead of redoing."""

from __future__ import annotations

import json

import pytest

from samcp.data.synthetic import SPLIT_SEEDS
from samcp.model.factory import build_head
from tests.jobs.test_train_on_pseudo_labels import run  # the retraining job, run as a script


@pytest.mark.slow
def test_one_round_trains_on_mirrored_and_turned_labels_scores_both_heads_and_resumes(ray_cluster, tmp_path):
    run("make_shards.py", "synthetic", "--num-images", "6", "--shard-size", "3", "--seed",
        str(SPLIT_SEEDS["train"]), "--start-index", "200", "--output", str(tmp_path / "target"),
        "--no-progress")
    run("make_shards.py", "synthetic", "--num-images", "3", "--shard-size", "3", "--seed",
        str(SPLIT_SEEDS["val"]), "--output", str(tmp_path / "val"), "--coco-dir", str(tmp_path / "val_coco"),
        "--no-progress")
    command = ["--unlabeled", f"{tmp_path}/target/*.tar", "--eval-images", f"{tmp_path}/val/*.tar",
               "--eval-ground-truth", str(tmp_path / "val_coco"), "--output", str(tmp_path / "rounds"),
               "--rounds", "1", "--keep-score", "0.3", "--points-per-side", "8", "--epochs", "1", "--mirror",
               "--turn", "--workers", "1", "--batch-size", "4", "--ray-address", ray_cluster.address]
    first = run("self_train.py", *command).stdout

    table = json.loads((tmp_path / "rounds" / "self_training.json").read_text())
    rows = table["rows"]
    assert [r["round"] for r in rows] == [0, 1] and table["config"]["retraining"]["mirror"] is True
    assert table["config"]["retraining"]["turn"] is True
    assert rows[0]["head"] == "shipped" and rows[1]["head"].endswith("round-1/train/samcp_head.pt")
    assert all(0 <= r["pq"] <= 100 for r in rows) and rows[1]["training_images"] > 0
    assert "| 1 |" in first and "over round 0" in first
    trained = json.loads((tmp_path / "rounds" / "round-1" / "train" / "metrics.json").read_text())
    views = trained["config"]["cache"]["examples"]  # the patch cache made the views
    assert views["mirror"] is True and views["turn"] is True
    # A mirrored and a turned copy triple the pseudo-labeled images that kept a segment.
    assert trained["images"] == rows[1]["training_images"] and trained["images"] % 3 == 0
    assert build_head(rows[1]["head"]).sam_model == "tiny"

    again = run("self_train.py", *command).stdout
    assert "0 to label" in again and json.loads(
        (tmp_path / "rounds" / "self_training.json").read_text())["rows"] == rows
