"""`samcp label`: the console script labels images into overlays and JSON; another vocabulary
file changes the labels' names without retraining anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from samcp.data.imageio import encode_image
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.vocab import load_vocabulary

SAMCP = os.path.join(os.path.dirname(sys.executable), "samcp")  # installed with the package


def samcp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SAMCP, *args], capture_output=True, text=True, timeout=300)


def test_label_writes_overlays_and_json_and_the_vocabulary_file_renames_the_labels(tmp_path):
    image = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))[0].image
    (tmp_path / "scene.png").write_bytes(encode_image(image, "png"))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    done = samcp("label", str(tmp_path / "scene.png"), str(tmp_path / "broken.jpg"),
                 "--out", str(tmp_path / "a"))
    assert done.returncode == 1 and "broken.jpg: error: not an image" in done.stderr
    first = json.loads((tmp_path / "a" / "scene.json").read_text())
    assert (tmp_path / "a" / "scene.png").stat().st_size > 1000 and first["segments"]
    assert (first["height"], first["width"]) == image.shape[:2]

    # The same classes under other names (a YAML vocabulary): the labels follow the file.
    builtin = load_vocabulary("builtin:synthetic")
    lines = ["name: renamed", "classes:"] + [
        f"  - {{id: {c.id}, name: {c.name}-renamed, isthing: {str(c.isthing).lower()}}}"
        for c in builtin.classes]
    (tmp_path / "renamed.yaml").write_text("\n".join(lines) + "\n")
    done = samcp("label", str(tmp_path / "scene.png"), "--out", str(tmp_path / "b"),
                 "--vocab", str(tmp_path / "renamed.yaml"))
    assert done.returncode == 0, done.stderr
    second = json.loads((tmp_path / "b" / "scene.json").read_text())
    assert second["vocabulary"] == "renamed"
    assert all(s["category"].endswith("-renamed") for s in second["segments"])
    assert {s["category"] for s in second["segments"]} != {s["category"] for s in first["segments"]}


def test_a_bad_vocabulary_is_a_clear_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("classes:\n  - {id: 1, name: a, isthing: maybe}\n")
    (tmp_path / "x.png").write_bytes(b"")  # the images are checked first: this one exists
    done = samcp("label", str(tmp_path / "x.png"), "--vocab", str(tmp_path / "bad.yaml"))
    assert done.returncode == 2 and "bad.yaml:2" in done.stderr and "Traceback" not in done.stderr
