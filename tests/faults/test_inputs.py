"""Broken images and broken shards, end to end through `jobs/label_corpus.py` on the real Ray head.

The job labels what it can read (one row per sample, a bad sample an error row with
its reason), lists the shards it could not read whole and exits 1 without writing
them; a rerun after they are mended completes the output without duplicates.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter

import numpy as np
from PIL import Image

from pipeline.output import SUCCESS, LabelOutput
from samcp.data.imageio import encode_image
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_SIDE = 384


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_tar(path: str, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def odd_images() -> dict[str, tuple[str, bytes, str | None]]:
    """key -> (extension, bytes, expected error or None when it must be labeled)."""
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=96, width=128))
    photo = Image.fromarray(corpus[0].image)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    return {
        "truncated-jpeg": ("jpg", encode(photo, "JPEG")[:300], "corrupt image"),
        "zero-bytes": ("jpg", b"", "empty image"),
        "not-an-image": ("png", b"<html>404 not found</html>", "not an image"),
        "one-pixel": ("png", encode(Image.new("RGB", (1, 1)), "PNG"), "too small"),
        "bomb": ("png", encode(Image.new("1", (20000, 20000)), "PNG"), "decompression bomb"),
        "grayscale": ("png", encode(photo.convert("L"), "PNG"), None),
        "rgba": ("png", encode(photo.convert("RGBA"), "PNG"), None),
        "palette": ("png", encode(photo.convert("P"), "PNG"), None),
        "sixteen-bit": ("png", encode(Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257),
                                      "PNG"), None),
        "cmyk": ("jpg", encode(photo.convert("CMYK"), "JPEG"), None),
        "exif-rotated": ("jpg", encode(photo, "JPEG", exif=exif.tobytes()), None),
        "huge": ("jpg", encode(Image.new("RGB", (12000, 12000), (90, 140, 200)), "JPEG"), None),
    }


def label(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO, "jobs", "label_corpus.py"), *args, "--json"],
                          capture_output=True, text=True, timeout=600)


def test_broken_images_and_shards_then_a_rerun_completes(ray_cluster, tmp_path):
    good = [encode_image(SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=96, width=128))[i]
                         .image, "png") for i in range(1, 7)]
    odd = odd_images()
    shards = tmp_path / "shards"
    shards.mkdir()
    odd_members = [(f"{key}.{ext}", data) for key, (ext, data, _) in odd.items()]
    odd_members += [("good-0.png", good[0]), ("no-image.json", b"{}"), ("good-1.png", good[1]),
                    ("good-0.png", good[2])]  # the key good-0 comes back: a duplicate within the shard
    write_tar(str(shards / "a-odd.tar"), odd_members)
    write_tar(str(shards / "b-empty.tar"), [])
    write_tar(str(shards / "c-other.tar"), [("good-1.png", good[3]), ("good-9.png", good[4])])  # good-1 again
    whole = [(f"cut-{i}.png", good[i]) for i in range(4)]
    write_tar(str(shards / "d-cut.tar"), whole)
    with open(shards / "d-cut.tar", "r+b") as f:
        f.truncate(os.path.getsize(shards / "d-cut.tar") // 2)
    missing = str(shards / "e-missing.tar")
    out = str(tmp_path / "labels")
    args = ["--input", f"{shards}/[a-d]-*.tar", "--input", missing, "--output", out, "--points-per-side", "8",
            "--max-side", str(MAX_SIDE), "--ray-address", ray_cluster.address]

    first = label(*args)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads(first.stdout[first.stdout.index("{\n"):])
    assert set(summary["failed_shards"]) == {str(shards / "d-cut.tar"), missing}
    assert "truncated" in summary["failed_shards"][str(shards / "d-cut.tar")]
    assert "not found" in summary["failed_shards"][missing]
    assert summary["duplicate_keys"]["count"] == 1
    assert summary["duplicate_keys"]["examples"][0]["key"] == "good-1"
    assert "good-1" in first.stdout and "also in" in first.stdout
    output = LabelOutput(out)
    assert output.read_json(SUCCESS) is None  # not finished: two shards are missing
    rows = output.read_table().to_pylist()
    by_key = {}
    for row in rows:
        by_key.setdefault((row["shard"].rsplit("/", 1)[-1], row["key"]), []).append(row)
    odd_rows = {key: found for (shard, key), found in by_key.items() if shard == "a-odd.tar"}
    assert len(odd_rows) == len(odd) + 3 and len(odd_rows["good-0"]) == 2  # one row per sample
    for key, (_, _, error) in odd.items():
        row, = odd_rows[key]
        if error is None:
            assert row["status"] == "ok", (key, row["error"])
        else:
            assert row["status"] == "error" and error in row["error"], (key, row["error"])
    assert "no image" in odd_rows["no-image"][0]["error"]
    assert [r["status"] for r in odd_rows["good-0"]] == ["ok", "error"]
    assert "duplicate key" in odd_rows["good-0"][1]["error"]
    assert (odd_rows["exif-rotated"][0]["width"], odd_rows["exif-rotated"][0]["height"]) == (96, 128)
    huge = odd_rows["huge"][0]  # labeled at its own size; the model saw it at --max-side
    assert (huge["width"], huge["height"], huge["model_width"], huge["model_height"]) == (
        12000, 12000, MAX_SIDE, MAX_SIDE)
    assert all(s["counts"] and 0 < s["area"] <= 12000 * 12000 for s in huge["segments"])
    assert not any(shard == "b-empty.tar" for shard, _ in by_key)  # an empty shard: a file with no rows...
    assert output.finished_shards([str(shards / "b-empty.tar")])  # ...so a rerun skips it

    # Mend the broken shard and restore the missing one: the rerun labels just those two.
    write_tar(str(shards / "d-cut.tar"), whole)
    write_tar(missing, [("late-0.png", good[5])])
    second = label(*args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    summary = json.loads(second.stdout[second.stdout.index("{\n"):])
    assert summary["shards_skipped"] == 3 and summary["shards_labeled"] == 2 and not summary["failed_shards"]
    rows = output.read_table().to_pylist()
    per_shard = Counter(r["shard"].rsplit("/", 1)[-1] for r in rows)
    assert per_shard == {"a-odd.tar": len(odd_members), "c-other.tar": 2, "d-cut.tar": 4, "e-missing.tar": 1}
    assert output.read_json(SUCCESS)["samples"] == len(rows)
