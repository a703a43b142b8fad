import json
import subprocess
import sys
from pathlib import Path

import torch

from samcp.sam.build import build_sam

ROOT = Path(__file__).resolve().parents[2]


def run(out: Path, steps: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train_sam.py"), "--output", str(out), "--steps", str(steps),
         "--warmup-steps", "1", "--train-images", "3", "--batch-size", "2", "--prompts-per-image", "4",
         "--checkpoint-every", "2"],
        capture_output=True, text=True, timeout=600)


def test_train_resume_and_load(tmp_path):
    first = run(tmp_path, 2)
    assert first.returncode == 0, first.stderr
    second = run(tmp_path, 3)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "at step 2" in second.stdout
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 3]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    weights = tmp_path / "sam_tiny.pt"
    assert weights.stat().st_size < 5e6
    assert build_sam("tiny", str(weights)).image_encoder.img_size == 256
