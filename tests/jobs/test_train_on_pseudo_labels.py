"""Ray Train on pseudo-labels: a CPU worker on a real local Ray cluster, checkpoints in S3 (moto),
resumed, and the head labels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import s3fs

from samcp.config import LabelerConfig
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.labeler import Labeler
from samcp.model.factory import shipped_head_checkpoint
from samcp.shipped import shipped_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(script: str, *args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, os.path.join(REPO, "jobs", script), *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_train_resume_and_the_head_labels(ray_cluster, s3_bucket, tmp_path):
    shards, labels, out = tmp_path / "shards", tmp_path / "labels", f"s3://{s3_bucket}/run"
    fs = s3fs.S3FileSystem()
    run("make_shards.py", "synthetic", "--num-images", "8", "--shard-size", "4", "--seed",
        str(SPLIT_SEEDS["train"]), "--output", str(shards), "--no-progress")
    # 4 images with real labels inside their samples train alongside the 8 pseudo-labeled ones.
    run("make_shards.py", "synthetic", "--num-images", "4", "--shard-size", "4", "--seed",
        str(SPLIT_SEEDS["train"]), "--start-index", "100", "--output", str(tmp_path / "truth"),
        "--no-progress")
    run("label_corpus.py", "--input", f"{shards}/*.tar", "--output", str(labels), "--points-per-side", "8",
        "--ray-address", ray_cluster.address)
    shutil.copy(shipped_head_checkpoint(), tmp_path / "start.pt")
    shutil.copy(shipped_file("sam", "tiny"), tmp_path / "sam.pt")  # the labeling SAM, named explicitly
    # Relative paths, as a user in that folder would give them (Ray Train runs workers elsewhere).
    common = ["--labels", "labels", "--images", "shards/*.tar", "--output", out, "--init", "start.pt",
              "--sam-checkpoint", "sam.pt",
              "--keep-score", "0.3", "--ground-truth-images", "truth/*.tar",
              "--workers", "1", "--batch-size", "4", "--lr", "3e-4",
              "--ray-address", ray_cluster.address]
    run("train_on_pseudo_labels.py", *common, "--epochs", "2", cwd=str(tmp_path))
    first = json.loads(fs.cat_file(f"{out}/metrics.json"))["history"]
    assert [e["epoch"] for e in first] == [1, 2]
    assert first[-1]["loss"] < first[0]["loss"]

    # A rerun with more epochs resumes from the last checkpoint: epochs 1-2 are not trained again.
    run("train_on_pseudo_labels.py", *common, "--epochs", "3", cwd=str(tmp_path))
    fs.invalidate_cache()
    metrics = json.loads(fs.cat_file(f"{out}/metrics.json"))
    assert metrics["history"][:2] == first and metrics["history"][2]["epoch"] == 3
    assert metrics["images"] == 12 and "storage_options" not in metrics["config"]

    image = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))[0].image
    assert fs.ls(f"{out}/train")  # Ray Train's checkpoints, in the bucket
    labeler = Labeler.from_config(LabelerConfig(head_checkpoint=f"{out}/samcp_head.pt"))
    result = labeler.label(image)
    assert result.segments and result.id_map.shape == image.shape[:2]
    assert labeler.seen.all()  # the pseudo-labels' vocabulary is recorded as trained
    assert labeler.head.sam_model == "tiny"  # and the SAM that cut the examples' patches
