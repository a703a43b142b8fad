import json
import shutil
import subprocess
import sys
from pathlib import Path

from samcp.data.categories import SYNTHETIC_CATEGORIES
from samcp.data.coco import export_coco
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus

ROOT = Path(__file__).resolve().parents[3]


def evaluate(gt: Path, pred: Path, out: Path) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "jobs" / "evaluate.py"), "--ground-truth", str(gt),
                           "--predictions", str(pred), "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_ground_truth_scored_against_itself_is_perfect(tmp_path):
    corpus = SyntheticCorpus(SyntheticConfig(seed=7, height=96, width=96))
    export_coco([corpus[i] for i in range(4)], str(tmp_path / "gt"), SYNTHETIC_CATEGORIES)
    shutil.copytree(tmp_path / "gt", tmp_path / "pred")
    # Call one predicted thing a star-or-ball by mistake: a false positive and a miss.
    data = json.loads((tmp_path / "pred" / "panoptic.json").read_text())
    first = data["annotations"][0]["segments_info"][0]
    first["category_id"] = 8 if first["category_id"] != 8 else 1
    (tmp_path / "pred" / "panoptic.json").write_text(json.dumps(data))
    summary = evaluate(tmp_path / "gt", tmp_path / "gt", tmp_path / "summary.json")
    assert summary["pq"]["All"]["pq"] == 100 and summary["miou"] == 100
    assert summary["mask_ap"]["ap"] == 100
    assert evaluate(tmp_path / "gt", tmp_path / "pred", tmp_path / "summary.json")["pq"]["All"]["pq"] < 100
