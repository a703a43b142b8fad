"""End to end: `ray job submit ... jobs/label_corpus.py` on a real Ray head, data on a real S3 server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from PIL import Image

from pipeline.labels import row_id_map
from pipeline.output import MANIFEST, METADATA_KEY, SUCCESS, LabelOutput
from pipeline.shards import synthetic_sample, write_shards
from samcp.data.coco import id_to_rgb
from samcp.data.imageio import encode_image
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.vocab import load_vocabulary

REPO = str(Path(__file__).resolve().parents[3])
JOB = os.path.join("jobs", "label_corpus.py")
VOCAB = load_vocabulary("builtin:synthetic")


def ray_cli() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


def submit(dashboard: str, *args: str, submission_id: str | None = None, wait: bool = True,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """`ray job submit --working-dir <repo> -- python jobs/label_corpus.py ARGS`."""
    command = [ray_cli(), "job", "submit", "--address", dashboard, "--working-dir", REPO]
    if submission_id:
        command += ["--submission-id", submission_id]
    if not wait:
        command.append("--no-wait")
    command += ["--", sys.executable, JOB, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def make_corpus(uri: str, num_images: int, shard_size: int, broken: bool = False) -> list[str]:
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=128, width=160))
    samples = [synthetic_sample(corpus[i]) for i in range(num_images)]
    if broken:
        samples.insert(1, {"__key__": "broken-jpeg", "jpg": b"\xff\xd8 not really a jpeg"})
    return write_shards(samples, uri, shard_size, progress=False)


@pytest.mark.slow
def test_ray_job_submit_labels_s3_shards(ray_cluster, s3_bucket):
    shards = make_corpus(f"s3://{s3_bucket}/corpus", num_images=5, shard_size=2, broken=True)
    output = f"s3://{s3_bucket}/labels/run-1"
    done = submit(ray_cluster.dashboard, "--input", f"s3://{s3_bucket}/corpus/shard-{{000000..000002}}.tar",
                  "--output", output, "--batch-size", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = LabelOutput(output).read_table().to_pylist()
    assert len(rows) == 6 and len({r["key"] for r in rows}) == 6 and len(shards) == 3
    broken = next(r for r in rows if r["key"] == "broken-jpeg")
    assert broken["status"] == "error" and "not an image" in broken["error"] and broken["segments"] == []
    names = {c.id: c.name for c in VOCAB.classes}
    for row in (r for r in rows if r["status"] == "ok"):
        assert (row["height"], row["width"]) == (128, 160) and row["segments"]
        id_map = row_id_map(row)  # raises on a wrong size, a wrong area or overlapping segments
        assert (id_map > 0).sum() == sum(s["area"] for s in row["segments"])
        assert all(names[s["category_id"]] == s["category"] for s in row["segments"])

    fs = s3fs.S3FileSystem()
    summary = json.loads(fs.cat_file(f"{output}/{SUCCESS}"))
    assert (summary["samples"], summary["ok"], summary["error"], summary["shards"]) == (6, 5, 1, 3)
    assert summary["models"]["sam"]["sha256"] and summary["vocabulary"]["name"] == "synthetic"
    assert summary["actor_seconds_per_image"] > 0 and summary["gpu_seconds_per_image"] is None  # CPU actors
    with fs.open(LabelOutput(output).parquet_files()[0]) as f:
        metadata = json.loads(pq.ParquetFile(f).schema_arrow.metadata[METADATA_KEY])
    assert metadata["labeling"]["head"]["sha256"] == summary["models"]["head"]["sha256"]
    assert metadata["created"] and metadata["package_version"]


@pytest.mark.slow
def test_rerun_with_python_skips_finished_shards_and_refuses_other_settings(ray_cluster, s3_bucket):
    make_corpus(f"s3://{s3_bucket}/corpus", num_images=2, shard_size=2)
    output = f"s3://{s3_bucket}/labels"
    args = ["--input", f"s3://{s3_bucket}/corpus/*.tar", "--output", output, "--points-per-side", "8",
            "--ray-address", ray_cluster.address]

    def label(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, JOB, *args, *extra], capture_output=True, text=True,
                              timeout=300, cwd=REPO)

    first = label()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = LabelOutput(output).read_table()
    again = label()
    assert again.returncode == 0 and "1 already labeled, 0 to label" in again.stdout
    assert LabelOutput(output).read_table().equals(before)

    refused = label("--min-score", "0.9")
    assert refused.returncode == 2
    assert "other postprocess" in refused.stderr and "--overwrite" in refused.stderr
    assert label("--min-score", "0.9", "--overwrite").returncode == 0
    manifest = LabelOutput(output).read_json(MANIFEST)
    assert manifest["labeling"]["postprocess"]["min_score"] == 0.9


@pytest.mark.slow
def test_killed_job_then_rerun_gives_one_row_per_sample(ray_cluster, s3_bucket):
    make_corpus(f"s3://{s3_bucket}/corpus", num_images=16, shard_size=2)
    output = f"s3://{s3_bucket}/labels"
    args = ["--input", f"s3://{s3_bucket}/corpus/*.tar", "--output", output, "--batch-size", "1"]
    job_id = f"kill-{uuid.uuid4().hex[:8]}"
    started = submit(ray_cluster.dashboard, *args, submission_id=job_id, wait=False)
    assert started.returncode == 0, started.stderr
    labels = LabelOutput(output)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (labels.fs.exists(labels.root) and labels.parquet_files()):
        time.sleep(0.5)
        labels.fs.invalidate_cache()
    stopped = subprocess.run([ray_cli(), "job", "stop", "--address", ray_cluster.dashboard, job_id],
                             capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    partial = len(labels.parquet_files())
    assert 1 <= partial < 8, f"{partial} of 8 shards were done when the job was stopped"
    assert not labels.fs.exists(labels.path(SUCCESS))

    done = submit(ray_cluster.dashboard, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{partial} already labeled, {8 - partial} to label" in done.stdout
    rows = labels.read_table().to_pylist()
    assert sorted(r["key"] for r in rows) == sorted(f"synthetic-s3-{i:08d}" for i in range(16))
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.slow
def test_pipeline_labels_score_the_same_pq_as_the_labeler(ray_cluster, tmp_path):
    num = 6
    run = [sys.executable, os.path.join(REPO, "jobs", "make_shards.py"), "synthetic",
           "--num-images", str(num), "--seed", str(SPLIT_SEEDS["val"]), "--shard-size", "4",
           "--image-format", "png",
           "--output", str(tmp_path / "shards"), "--coco-dir", str(tmp_path / "gt"), "--no-progress"]
    subprocess.run(run, check=True, capture_output=True, cwd=REPO)
    done = submit(ray_cluster.dashboard, "--input", str(tmp_path / "shards" / "*.tar"), "--output",
                  str(tmp_path / "labels"), "--batch-size", "3")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def evaluate(*args: str) -> dict:
        out = tmp_path / f"summary-{uuid.uuid4().hex}.json"
        script = os.path.join(REPO, "jobs", "evaluate.py")
        subprocess.run([sys.executable, script, *args, "--output", str(out)], check=True, capture_output=True,
                       cwd=REPO)
        summary = json.loads(out.read_text())
        assert summary.pop("provenance")["command"]
        return summary

    from_pipeline = evaluate("--ground-truth", str(tmp_path / "gt"), "--labels", str(tmp_path / "labels"))
    from_labeler = evaluate("--synthetic-val", str(num))
    assert from_pipeline["pq"]["All"]["n"] == 13
    assert from_pipeline == from_labeler


def test_a_corrupt_checkpoint_stops_the_job_before_anything_is_written(tmp_path):
    make_corpus(str(tmp_path / "corpus"), num_images=1, shard_size=1)
    head = tmp_path / "head.pt"
    head.write_bytes(b"PK\x03\x04 not a checkpoint")
    done = subprocess.run([sys.executable, JOB, "--input", str(tmp_path / "corpus" / "*.tar"),
                           "--output", str(tmp_path / "labels"), "--head-checkpoint", str(head)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: corrupt checkpoint {head}")
    assert not (tmp_path / "labels").exists()


@pytest.mark.slow
def test_large_images_are_labeled_at_their_own_size(ray_cluster, tmp_path):
    """A 4000x3000 JPEG and a 12000x9000 PNG (synthetic images upscaled): masks at those sizes, not
    overlapping; the COCO panoptic export scores against the ground truth at that size."""
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], height=192, width=256))
    sizes = {"photo": ("jpg", 4000, 3000), "scan": ("png", 12000, 9000)}
    categories = [c.to_coco() for c in corpus.categories]
    samples, truth = [], {"images": [], "annotations": [], "categories": categories}
    os.makedirs(tmp_path / "gt" / "panoptic")
    for index, (key, (ext, width, height)) in enumerate(sizes.items()):
        sample = corpus[index]
        image = Image.fromarray(sample.image).resize((width, height), Image.BILINEAR)
        encoded = io.BytesIO()  # PNG at zlib level 1: the 12000x9000 file in a third of the time
        image.save(encoded, format="JPEG" if ext == "jpg" else "PNG", compress_level=1, quality=95)
        samples.append({"__key__": key, ext: encoded.getvalue()})
        ids = Image.fromarray(sample.panoptic.astype(np.int32)).resize((width, height), Image.NEAREST)
        Image.fromarray(id_to_rgb(np.asarray(ids))).save(tmp_path / "gt" / "panoptic" / f"{key}.png",
                                                         compress_level=1)
        truth["images"].append({"id": index + 1, "file_name": f"{key}.{ext}", "width": width,
                                "height": height})
        truth["annotations"].append({"image_id": index + 1, "file_name": f"{key}.png",
                                     "segments_info": sample.metadata()["segments_info"]})
        del image, ids  # hundreds of MB each: this process holds none of them while the job runs
    (tmp_path / "gt" / "panoptic.json").write_text(json.dumps(truth))
    write_shards(samples, str(tmp_path / "shards"), 2, progress=False)
    done = subprocess.run([sys.executable, JOB, "--input", str(tmp_path / "shards" / "*.tar"), "--output",
                           str(tmp_path / "labels"), "--max-side", "512",
                           "--ray-address", ray_cluster.address],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r["key"]: r for r in LabelOutput(str(tmp_path / "labels")).read_table().to_pylist()}
    for key, (_, width, height) in sizes.items():
        row = rows[key]
        assert row["status"] == "ok" and row["segments"], row["error"]
        assert (row["width"], row["height"]) == (width, height)
        assert max(row["model_width"], row["model_height"]) == 512  # --max-side: what the model saw
        ids = row_id_map(row)  # decodes every RLE at (height, width); raises if segments overlap
        assert ids.shape == (height, width)
        assert sum(s["area"] for s in row["segments"]) == (ids > 0).sum() <= width * height
        del ids
    export = subprocess.run([sys.executable, os.path.join(REPO, "jobs", "export.py"), "--labels",
                             str(tmp_path / "labels"), "--format", "coco-panoptic", "--output",
                             str(tmp_path / "export")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert export.returncode == 0, export.stderr[-3000:]
    exported = json.loads((tmp_path / "export" / "panoptic.json").read_text())
    assert sorted((i["width"], i["height"]) for i in exported["images"]) == [(4000, 3000), (12000, 9000)]
    scored = subprocess.run([sys.executable, os.path.join(REPO, "jobs", "evaluate.py"), "--ground-truth",
                             str(tmp_path / "gt"), "--predictions", str(tmp_path / "export"), "--output",
                             str(tmp_path / "scores.json")],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert json.loads((tmp_path / "scores.json").read_text())["pq"]["All"]["pq"] > 30


@pytest.mark.slow
def test_manifests_tables_and_folders_in_s3_are_labeled_one_row_per_sample(ray_cluster, s3_bucket):
    """A Parquet manifest of s3:// URIs (one object missing), a prefix of images and a Hugging Face
    style table with the images inside: one row per sample, the missing object an error row."""
    fs = s3fs.S3FileSystem()
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=96, width=128))
    pictures = [encode_image(corpus[i].image, "png") for i in range(5)]
    for i, data in enumerate(pictures[:3]):
        fs.pipe(f"{s3_bucket}/objects/{i}.png", data)
        fs.pipe(f"{s3_bucket}/photos/{'sub/' if i == 2 else ''}p{i}.png", data)
    uris = [f"s3://{s3_bucket}/objects/{i}.png" for i in range(4)]  # objects/3.png does not exist
    with fs.open(f"{s3_bucket}/manifest.parquet", "wb") as f:
        pq.write_table(pa.table({"url": uris, "id": [f"m{i}" for i in range(4)]}), f)
    with fs.open(f"{s3_bucket}/table/train-00000.parquet", "wb") as f:
        images = [{"bytes": d, "path": f"{i}.png"} for i, d in enumerate(pictures)]
        pq.write_table(pa.table({"image": images}), f)
    first = subprocess.run([sys.executable, JOB, "--input", f"s3://{s3_bucket}/manifest.parquet",
                            "--uri-column", "url", "--key-column", "id", "--input", f"s3://{s3_bucket}/photos/",
                            "--slice-size", "2", "--output", f"s3://{s3_bucket}/labels",
                            "--points-per-side", "8", "--ray-address", ray_cluster.address],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = subprocess.run([sys.executable, JOB, "--input", f"s3://{s3_bucket}/table/*.parquet",
                             "--image-column", "image", "--output", f"s3://{s3_bucket}/table-labels",
                             "--points-per-side", "8", "--ray-address", ray_cluster.address],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    rows = LabelOutput(f"s3://{s3_bucket}/labels").read_table().to_pylist()
    assert sorted(r["key"] for r in rows) == ["m0", "m1", "m2", "m3", "p0", "p1", "sub/p2"]
    by_key = {r["key"]: r for r in rows}
    assert by_key["m3"]["status"] == "error" and "object not found" in by_key["m3"]["error"]
    assert all(r["status"] == "ok" and r["segments"] for k, r in by_key.items() if k != "m3")
    assert len(LabelOutput(f"s3://{s3_bucket}/labels").census().done) == 4  # 2 + 2 slices of 2
    table_rows = LabelOutput(f"s3://{s3_bucket}/table-labels").read_table().to_pylist()
    assert sorted(r["key"] for r in table_rows) == [f"train-00000/{i:08d}" for i in range(5)]
    assert all(r["status"] == "ok" for r in table_rows)
