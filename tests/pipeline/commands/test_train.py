"""jobs/train_samcp.py end to end: labeled shards -> patch cache in S3 (moto) -> 2 Ray Train workers on a
real local Ray cluster, killed mid-run and resumed, -> a head that labels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import s3fs
import torch
from torchvision.models import resnet50

from samcp.config import LabelerConfig
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.labeler import Labeler

REPO = str(Path(__file__).resolve().parents[3])


def job(script: str, *args: str) -> list[str]:
    return [sys.executable, os.path.join(REPO, "jobs", script), *args]


@pytest.mark.slow
def test_killed_training_resumes_to_the_planned_steps_and_the_head_labels(ray_cluster, s3_bucket, tmp_path):
    fs = s3fs.S3FileSystem()
    root = f"s3://{s3_bucket}"
    for name, seed, count in (("train", "train", 8), ("val", "val", 2)):
        subprocess.run(job("make_shards.py", "synthetic", "--num-images", str(count), "--shard-size", "4",
                           "--seed", str(SPLIT_SEEDS[seed]), "--image-format", "png", "--output",
                           f"{root}/{name}", "--no-progress"), check=True, capture_output=True, timeout=300)
    command = job("train_samcp.py", "--images", f"{root}/train/*.tar", "--output", f"{root}/run",
                  "--cache", f"{root}/cache", "--points-per-side", "8", "--clip-dim", "64",
                  "--workers", "2", "--batch-size", "1", "--epochs", "3", "--checkpoint-every", "2",
                  "--lr", "3e-4", "--warmup-steps", "4", "--val", f"{root}/val/*.tar", "--val-images", "1",
                  "--ray-address", ray_cluster.address)
    # 8 images / (2 workers x 1) = 4 steps per epoch, 12 steps; killed once a checkpoint is written.
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    deadline = time.time() + 400
    while time.time() < deadline and first.poll() is None:
        fs.invalidate_cache()
        if fs.glob(f"{root}/run/train/checkpoint_*/state.pt"):
            break
        time.sleep(0.5)
    assert first.poll() is None, first.communicate()[0][-3000:]  # still training: kill it
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert fs.glob(f"{root}/cache/*.parquet") and not fs.exists(f"{root}/run/samcp_head.pt")

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[cache] 2 shards, 2 already cached" in done.stdout  # the cache is not made again
    fs.invalidate_cache()
    metrics = json.loads(fs.cat_file(f"{root}/run/metrics.json"))
    steps = [entry["step"] for entry in metrics["history"]]
    assert steps[-1] == 12 == metrics["config"]["plan"]["total_steps"]
    assert steps == sorted(set(steps))  # each report once: resumed, not trained again
    resumed, = metrics["resumed_at"]
    assert 0 < resumed < 12 and resumed % 2 == 0
    epoch_ends = [entry for entry in metrics["history"] if entry["step"] % 4 == 0]
    assert all("val_pq" in entry for entry in epoch_ends) and len(epoch_ends) == 3
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]

    head = tmp_path / "head.pt"
    head.write_bytes(fs.cat_file(f"{root}/run/samcp_head.pt"))
    labeler = Labeler.from_config(LabelerConfig(head_checkpoint=str(head), points_per_side=8, min_score=0.0,
                                                affinity_thresh=0.0, overlap_thresh=0.0))
    image = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))[0].image
    assert labeler.label(image).segments  # the head labels (a few steps: low scores, none dropped)


@pytest.mark.slow
def test_a_vit_b_sam_with_random_weights_caches_trains_and_labels(ray_cluster, tmp_path):
    """A real segment-anything ViT-B (random weights: patch thresholds at 0 keep its top patches)."""
    subprocess.run(job("make_shards.py", "synthetic", "--num-images", "1", "--image-size", "128",
                       "--image-format", "png", "--output", str(tmp_path / "shards"), "--no-progress"),
                   check=True, capture_output=True, timeout=300)
    patches = ["--sam-model", "vit_b", "--sam-checkpoint", "none", "--points-per-side", "8",
               "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--max-patches", "8"]
    done = subprocess.run(job("train_samcp.py", "--images", str(tmp_path / "shards" / "*.tar"),
                              "--output", str(tmp_path / "run"), *patches, "--workers", "1",
                              "--batch-size", "1", "--steps", "2", "--ray-address", ray_cluster.address),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[cache] 1 examples" in done.stdout
    labeler = Labeler.from_config(LabelerConfig(
        sam_model="vit_b", sam_checkpoint=None, head_checkpoint=str(tmp_path / "run" / "samcp_head.pt"),
        points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, max_patches=8, min_score=0.0,
        affinity_thresh=0.0, overlap_thresh=0.0))  # random weights: keep whatever the head makes
    assert labeler.head.config.feature_dim == 256  # the new head took ViT-B's width
    image = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], height=128, width=128))[0].image
    labeled = labeler.label(image)
    assert labeled.num_patches > 0 and labeled.segments


@pytest.mark.slow
def test_a_resnet50_backbone_caches_images_trains_from_torchvision_weights_and_labels(ray_cluster, tmp_path):
    subprocess.run(job("make_shards.py", "synthetic", "--num-images", "2", "--image-size", "128",
                       "--image-format", "png", "--output", str(tmp_path / "shards"), "--no-progress"),
                   check=True, capture_output=True, timeout=300)
    torch.save(resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    done = subprocess.run(job("train_samcp.py", "--images", str(tmp_path / "shards" / "*.tar"),
                              "--output", str(tmp_path / "run"), "--points-per-side", "8",
                              "--backbone", "resnet50", "--backbone-checkpoint", str(tmp_path / "r50.pth"),
                              "--workers", "1", "--batch-size", "2", "--steps", "2",
                              "--ray-address", ray_cluster.address),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    labeler = Labeler.from_config(LabelerConfig(head_checkpoint=str(tmp_path / "run" / "samcp_head.pt"),
                                                points_per_side=8, min_score=0.0, affinity_thresh=0.0,
                                                overlap_thresh=0.0))
    assert labeler.head.config.backbone == "resnet50" and labeler.head.backbone is not None
    image = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], height=128, width=128))[0].image
    assert labeler.label(image).segments
