import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from samcp.data.coco import rgb_to_id

ROOT = Path(__file__).resolve().parents[3]


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "make_shards.py"), *args],
                          capture_output=True, text=True, timeout=600)


def test_synthetic_200_images_in_4_shards(tmp_path):
    out = tmp_path / "shards"
    done = run_job("synthetic", "--num-images", "200", "--shard-size", "50", "--output", str(out),
                   "--no-progress", "--coco-dir", str(tmp_path / "coco"),
                   "--preview", str(tmp_path / "preview.png"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.tar")) == [f"shard-00000{i}.tar" for i in range(4)]
    manifest = json.loads((out / "_corpus.json").read_text())
    assert manifest["num_samples"] == 200 and manifest["num_shards"] == 4
    rows = list(wds.WebDataset(manifest["pattern"], shardshuffle=False).decode("rgb8"))
    assert len({r["__key__"] for r in rows}) == 200
    for row in rows:
        meta = row["json"]
        assert row["jpg"].shape == (meta["height"], meta["width"], 3)
        ids = rgb_to_id(row["panoptic.png"])
        assert ids.shape == row["jpg"].shape[:2]
        segment_ids = [s["id"] for s in meta["segments_info"]]
        assert len(segment_ids) == len(set(segment_ids))
        assert set(np.unique(ids)) == set(segment_ids)
    panoptic = json.loads((tmp_path / "coco" / "panoptic.json").read_text())
    assert len(panoptic["annotations"]) == 200
    assert Image.open(tmp_path / "preview.png").size[0] > 4 * 256


def test_compositional_synthetic_shards_carry_pattern_classes_and_captions(tmp_path):
    done = run_job("synthetic", "--num-images", "6", "--shard-size", "6", "--output", str(tmp_path / "s"),
                   "--no-progress", "--attributes", "plain", "striped", "dotted",
                   "--coco-dir", str(tmp_path / "coco"), "--preview", str(tmp_path / "preview.png"))
    assert done.returncode == 0, done.stderr
    categories = json.loads((tmp_path / "coco" / "panoptic.json").read_text())["categories"]
    assert len(categories) == 29
    assert {"striped kite", "dotted house", "sky"} <= {c["name"] for c in categories}
    rows = list(wds.WebDataset(str(tmp_path / "s" / "shard-000000.tar"), shardshuffle=False).decode())
    names = {c["id"]: c["name"] for c in categories}
    for row in rows:
        shown = [names[s["category_id"]] for s in row["json"]["segments_info"]]
        assert row["json"]["caption"] == ", ".join(dict.fromkeys(shown))
    assert run_job("synthetic", "--num-images", "1", "--output", str(tmp_path / "t"),
                   "--attributes", "wavy").returncode == 2  # not a pattern: refused by the parser


def test_folder_of_images(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(photos / f"p{i}.png")
    done = run_job("folder", "--images", str(photos), "--shard-size", "2",
                   "--output", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 0, done.stderr
    rows = list(wds.WebDataset(str(tmp_path / "out" / "shard-{000000..000001}.tar"),
                               shardshuffle=False))
    assert sorted(r["__key__"] for r in rows) == ["p0", "p1", "p2"]
    assert Image.open(io.BytesIO(rows[0]["png"])).size == (30, 20)


def test_folder_packing_leaves_out_unreadable_files(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(photos / "good.png")
    (photos / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # broken
    (photos / "sub" / "loop.png").symlink_to(photos / "sub" / "loop.png")  # a link to itself
    done = run_job("folder", "--images", str(photos), "--output", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "left out gone.jpg" in done.stderr and "left out sub/loop.png" in done.stderr
    assert "2 unreadable files left out" in done.stdout
    corpus = json.loads((tmp_path / "out" / "_corpus.json").read_text())
    assert corpus["num_samples"] == 1
    assert {s["path"] for s in corpus["skipped"]} == {"gone.jpg", "sub/loop.png"}
    rows = list(wds.WebDataset(str(tmp_path / "out" / "shard-000000.tar"), shardshuffle=False))
    assert [r["__key__"] for r in rows] == ["good"]


def test_bad_arguments_fail_clearly(tmp_path):
    done = run_job("folder", "--images", str(tmp_path / "missing"), "--output", str(tmp_path))
    assert done.returncode != 0 and "image folder not found" in done.stderr
    done = run_job("synthetic", "--num-images", "0", "--output", str(tmp_path))
    assert done.returncode != 0 and "--num-images must be >= 1" in done.stderr


def coco_layout_on_s3(tmp_path: Path, bucket: str, num_images: int) -> dict:
    """`num_images` synthetic images exported as COCO panoptic, uploaded in COCO 2017's layout
    (annotations/panoptic_val2017.json, annotations/panoptic_val2017/, val2017/); the json names
    the ball category by its synonym "sphere". Returns the exported json."""
    import s3fs

    from samcp.data.coco import export_coco
    from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus

    corpus = SyntheticCorpus(SyntheticConfig(seed=5, height=96, width=128))
    export_coco((corpus[i] for i in range(num_images)), str(tmp_path / "coco"), corpus.categories)
    panoptic = json.loads((tmp_path / "coco" / "panoptic.json").read_text())
    for category in panoptic["categories"]:
        category["name"] = "sphere" if category["name"] == "ball" else category["name"]
    fs = s3fs.S3FileSystem()
    fs.pipe(f"{bucket}/coco/annotations/panoptic_val2017.json", json.dumps(panoptic).encode())
    fs.put(str(tmp_path / "coco" / "panoptic") + "/", f"{bucket}/coco/annotations/panoptic_val2017/",
           recursive=True)
    fs.put(str(tmp_path / "coco" / "images") + "/", f"{bucket}/coco/val2017/", recursive=True)
    return panoptic


def test_a_coco_panoptic_dataset_on_s3_packs_losslessly_with_ids_of_the_vocabulary(tmp_path, s3_bucket):
    import s3fs

    panoptic = coco_layout_on_s3(tmp_path, s3_bucket, 5)
    # The vocabulary numbers the classes otherwise: the shards carry its ids.
    vocab = tmp_path / "vocab.yaml"
    classes = [{"id": 100 + c["id"], "name": "ball" if c["name"] == "sphere" else c["name"],
                "isthing": bool(c["isthing"]), "synonyms": ["sphere"] if c["name"] == "sphere" else []}
               for c in panoptic["categories"]]
    vocab.write_text(json.dumps({"name": "renumbered", "classes": classes}))
    fs = s3fs.S3FileSystem()
    fs.rm(f"{s3_bucket}/coco/val2017/{panoptic['images'][3]['file_name']}")  # one image is missing
    root = f"s3://{s3_bucket}/coco"
    done = run_job("coco", "--panoptic-json", f"{root}/annotations/panoptic_val2017.json",
                   "--images", f"{root}/val2017", "--vocab", str(vocab), "--shard-size", "2",
                   "--output", f"s3://{s3_bucket}/shards", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "wrote 4 samples in 2 shards" in done.stdout and "1 unreadable files left out" in done.stdout
    manifest = json.loads(fs.cat(f"{s3_bucket}/shards/_corpus.json"))
    missing = panoptic["annotations"][3]["file_name"]
    assert [s["path"] for s in manifest["skipped"]] == [missing]
    assert manifest["vocabulary"]["name"] == "renumbered" and manifest["category_ids"]["1"] == 101

    fs.get(f"{s3_bucket}/shards/", str(tmp_path / "shards") + "/", recursive=True)
    shards = sorted(str(p) for p in (tmp_path / "shards").glob("*.tar"))
    rows = list(wds.WebDataset(shards, shardshuffle=False))
    by_png = {a["file_name"]: a for a in panoptic["annotations"]}
    assert [r["__key__"] for r in rows] == [a["file_name"][:-4] for a in panoptic["annotations"]
                                            if a["file_name"] != missing]
    for row in rows:
        meta = json.loads(row["json"])
        source = by_png[meta["panoptic_file_name"]]
        exported = tmp_path / "coco"
        assert row["png"] == (exported / "images" / meta["file_name"]).read_bytes()
        assert row["panoptic.png"] == (exported / "panoptic" / meta["panoptic_file_name"]).read_bytes()
        assert meta["segments_info"] == [{**s, "category_id": 100 + s["category_id"]}
                                         for s in source["segments_info"]]
        assert (meta["height"], meta["width"]) == (96, 128)


def test_coco_categories_the_vocabulary_lacks_stop_before_anything_is_written(tmp_path, s3_bucket):
    coco_layout_on_s3(tmp_path, s3_bucket, 1)
    root = f"s3://{s3_bucket}/coco"
    # The default vocabulary, builtin:coco_panoptic, has no robot.
    done = run_job("coco", "--panoptic-json", f"{root}/annotations/panoptic_val2017.json",
                   "--images", f"{root}/val2017", "--output", str(tmp_path / "shards"))
    assert done.returncode == 2 and "has no single class for" in done.stderr
    assert "'robot' (thing" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "shards").exists()
    done = run_job("coco", "--panoptic-json", f"{root}/annotations/missing.json",
                   "--images", f"{root}/val2017", "--output", str(tmp_path / "shards"))
    assert done.returncode == 2 and "no COCO panoptic json at" in done.stderr
