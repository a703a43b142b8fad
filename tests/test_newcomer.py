"""A newcomer's first hour: a folder of four photos and a vocabulary of their own, through the
`samcp` commands the README shows, with nothing else prepared (no cluster: `samcp corpus` starts
its own Ray). Every command answers in a few lines and says when its labels are guesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from samcp.data.imageio import encode_image
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus

SAMCP = os.path.join(os.path.dirname(sys.executable), "samcp")
VOCABULARY = """name: my_things
classes:
  - {id: 1, name: cat, isthing: true}
  - {id: 2, name: dog, isthing: true}
  - {id: 3, name: bicycle, isthing: true}
  - {id: 4, name: tree, isthing: false}
  - {id: 5, name: road, isthing: false}
"""


def samcp(cwd, *args: str) -> tuple[int, list[str]]:
    """Run `samcp ARGS` in `cwd` as a user would; (exit code, the lines it printed, both streams)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([SAMCP, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    lines = [line for line in (done.stdout + done.stderr).split("\n") if line.strip()]
    return done.returncode, lines


@pytest.mark.xdist_group("default_ray_ports")  # its `samcp corpus` starts a Ray of its own
@pytest.mark.slow
def test_four_photos_and_a_vocabulary_of_ones_own(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=192, width=256))
    for index in range(4):
        (photos / f"IMG_{index:04d}.jpg").write_bytes(encode_image(corpus[index].image, "jpeg"))
    (tmp_path / "my_things.yaml").write_text(VOCABULARY)

    code, lines = samcp(tmp_path, "corpus", "--input", "photos", "--output", "labels",
                        "--vocab", "my_things.yaml")
    assert code == 0, "\n".join(lines)
    assert len(lines) <= 15, "\n".join(lines)
    said = "\n".join(lines)
    assert "never saw 5 of the 5 classes" in said and "near chance for 5 classes" in said
    assert any(line.startswith("[label] done: 4 images (4 ok, 0 errors)") for line in lines), said
    assert json.loads((tmp_path / "labels" / "_SUCCESS").read_text())["ok"] == 4

    code, lines = samcp(tmp_path, "export", "--labels", "labels", "--format", "coco-panoptic",
                        "--output", "coco", "--images", "coco/images")
    assert code == 0 and len(lines) <= 15, "\n".join(lines)
    exported = json.loads((tmp_path / "coco" / "panoptic.json").read_text())
    assert sorted(image["file_name"] for image in exported["images"]) == sorted(os.listdir(photos))
    for image in exported["images"]:  # the photos themselves, where the json says
        assert (tmp_path / "coco" / "images" / image["file_name"]).read_bytes() == \
            (photos / image["file_name"]).read_bytes()

    code, lines = samcp(tmp_path, "render", "--labels", "labels", "--output", "report")
    assert code == 0 and len(lines) <= 15, "\n".join(lines)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "my_things (5 classes" in page and "min_score 0.1" in page and "1 segments" not in page
    assert page.count("<a href='overlays/") == 4

    code, lines = samcp(tmp_path, "label", "photos", "--vocab", "my_things.yaml", "--out", "tried")
    assert code == 0 and len(lines) <= 15, "\n".join(lines)
    assert "near chance for 5 classes" in "\n".join(lines)
    assert sorted(os.listdir(tmp_path / "tried")) == sorted(
        f"IMG_{i:04d}.{ext}" for i in range(4) for ext in ("json", "png"))
    with Image.open(tmp_path / "tried" / "IMG_0000.png") as overlay:
        assert overlay.size == (256, 192)
