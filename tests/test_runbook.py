"""docs/train-on-coco.md runs: its commands, in order, on a COCO panoptic dataset in S3 (moto) and a
real Ray cluster, with the small models standing in for the real ones.

The documented commands run with only these changes: `s3://bucket` is the test's bucket; the model
files the commands name hold the shipped tiny SAM and CLIP (their architecture flags say so); the
dataset is 8 + 2 synthetic images in COCO panoptic form under the documented keys, labeled with the
synthetic vocabulary; the cluster's sizes shrink to this machine (1 actor, 2 CPU workers, no GPU),
and the training to one epoch of small batches on a small point grid.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import s3fs

from samcp.data.coco import export_coco
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.shipped import shipped_file

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = ROOT / "docs" / "train-on-coco.md"
SMALL = {"--sam-model": "tiny", "--clip-model": "samcp-clip-tiny", "--clip-dim": "64",
         "--vocab": "builtin:synthetic", "--actors": "1", "--num-gpus-per-actor": "0", "--workers": "2",
         "--shard-size": "4"}
DROPPED = {"--use-gpu"}
ADDED = {"jobs/train_samcp.py": ["--batch-size", "2", "--epochs", "1", "--points-per-side", "8",
                                 "--val-images", "2"],
         "jobs/label_corpus.py": ["--points-per-side", "8"]}


def runbook_commands() -> list[list[str]]:
    """The runbook's commands (outside its R50 aside), continuations joined."""
    text = RUNBOOK.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)\n```", text, re.S):
        commands += [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return commands


def small(command: list[str], bucket: str) -> list[str]:
    """The command as it runs here (module doc)."""
    if command[:2] == ["ray", "job"]:
        command = command[command.index("--") + 1:]
    assert command[0] == "python", command
    args, out = [a.replace("s3://bucket/", f"s3://{bucket}/") for a in command[2:]], []
    for index, arg in enumerate(args):
        if arg in DROPPED:
            continue
        previous = args[index - 1] if index else ""
        out.append(SMALL[previous] if previous in SMALL else arg)
    return [sys.executable, str(ROOT / command[1]), *out, *ADDED.get(command[1], [])]


def put_coco(fs: s3fs.S3FileSystem, folder: Path, bucket: str, split: str, corpus_split: str, count: int):
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS[corpus_split], height=128, width=128))
    local = folder / f"coco_{split}"
    export_coco([corpus[i] for i in range(count)], str(local), corpus.categories)
    fs.put(str(local / "panoptic.json"), f"{bucket}/coco/annotations/panoptic_{split}2017.json")
    fs.put(str(local / "panoptic") + "/", f"{bucket}/coco/panoptic_{split}2017/", recursive=True)
    fs.put(str(local / "images") + "/", f"{bucket}/coco/{split}2017/", recursive=True)
    return local


@pytest.mark.slow
def test_the_coco_runbook_runs_with_the_small_models(ray_cluster, s3_bucket, tmp_path):
    fs = s3fs.S3FileSystem()
    put_coco(fs, tmp_path, s3_bucket, "train", "train", 8)
    truth = put_coco(fs, tmp_path, s3_bucket, "val", "val", 2)
    os.rename(truth, tmp_path / "coco_val_truth")  # the runbook's local ground truth folder
    fs.put(shipped_file("sam", "tiny"), f"{s3_bucket}/models/sam_vit_h_4b8939.pth")
    fs.put(shipped_file("clip", "samcp-clip-tiny"), f"{s3_bucket}/models/open_clip_vit_b_16.bin")
    commands = runbook_commands()
    scripts = [c[1] if c[0] == "python" else c[c.index("--") + 2] for c in commands]
    assert scripts == ["jobs/make_shards.py", "jobs/make_shards.py", "jobs/train_samcp.py",
                       "jobs/label_corpus.py", "jobs/export.py", "jobs/evaluate.py"]
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address}
    for command in commands:
        done = subprocess.run(small(command, s3_bucket), cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert fs.exists(f"{s3_bucket}/models/samcp_vit_h/samcp_head.pt")
    assert re.search(r"^All +\d+\.\d", done.stdout, re.M)  # the PQ table of COCO val
