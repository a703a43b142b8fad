import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO

from pipeline.commands.evaluate import evaluate_folders, evaluate_labels
from pipeline.export import export
from pipeline.labels import row_id_map, segment_mask
from pipeline.output import LabelOutput
from samcp.data.coco import rgb_to_id


def test_coco_panoptic_export_scores_the_same_as_the_parquet(labeled):
    root, images = labeled
    counts = export(str(root / "labels"), str(root / "pan"), "coco-panoptic", progress=False)
    assert counts == {"images": 4, "annotations": 4, "unnamed": 0, "skipped": 1}
    assert json.load(open(root / "pan" / "errors.json"))[0]["reason"] == "corrupt image: cut"
    from_export = evaluate_folders(str(root / "truth"), str(root / "pan"))
    from_parquet = evaluate_labels(str(root / "truth"), str(root / "labels"), None)
    assert from_export["pq"]["All"]["pq"] > 0 and from_export["pq"]["All"]["n"] > 5
    assert from_export == from_parquet


def test_coco_instances_export_loads_in_pycocotools_with_the_same_masks(labeled):
    root, _ = labeled
    export(str(root / "labels"), str(root / "inst"), "coco-instances", progress=False)
    coco = COCO(os.path.join(root, "inst", "instances.json"))
    rows = {r["key"]: r for r in LabelOutput(str(root / "labels")).read_table().to_pylist()}
    assert all(image["file_name"] == f"{image['key']}.jpg" for image in coco.dataset["images"])
    things = [(image["key"], s) for image in coco.dataset["images"]
              for s in rows[image["key"]]["segments"] if s["isthing"]]
    assert len(coco.getAnnIds()) == len(things) > 0
    for ann, (key, segment) in zip(coco.loadAnns(coco.getAnnIds()), things):
        row = rows[key]
        np.testing.assert_array_equal(coco.annToMask(ann), segment_mask(segment["counts"], row["height"],
                                                                        row["width"]))
        assert ann["score"] == segment["score"] and coco.cats[ann["category_id"]]["isthing"] == 1


def test_hf_parquet_export_round_trips_through_datasets(labeled):
    import datasets

    root, images = labeled
    counts = export(str(root / "labels"), str(root / "hf"), "hf-parquet", progress=False)
    assert counts == {"images": 4, "files": 2, "skipped": 1}
    rows = {r["key"]: r for r in LabelOutput(str(root / "labels")).read_table().to_pylist()}
    # A cache of its own: datasets' shared one can serve a stale copy when pytest reuses a folder name.
    cache = str(root / "hf_cache")
    for loaded in (datasets.load_dataset("parquet", data_files=str(root / "hf" / "data" / "*.parquet"),
                                         split="train", cache_dir=cache),
                   datasets.load_dataset(str(root / "hf"), split="train", cache_dir=cache)):  # the card
        assert sorted(loaded["key"]) == sorted(im.key for im in images)
        for sample in loaded:
            row, truth = rows[sample["key"]], next(im for im in images if im.key == sample["key"])
            assert sample["image"].size == (row["width"], row["height"])  # decoded as PIL images
            # the source image (stored as JPEG in its shard), not some other picture
            assert np.abs(np.asarray(sample["image"], float) - truth.image).mean() < 8
            np.testing.assert_array_equal(rgb_to_id(np.asarray(sample["panoptic"])), row_id_map(row))
            categories = [s["category"] for s in row["segments"]]
            assert [s["category"] for s in sample["segments_info"]] == categories
            assert [s["score"] for s in sample["segments_info"]] == pytest.approx(
                [s["score"] for s in row["segments"]])


def source_bytes(root) -> dict[str, tuple[str, bytes]]:
    """{key: (member name, bytes)} of the image members of the labeled shards."""
    import tarfile

    found = {}
    for shard in sorted((root / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".jpg"):
                    found[member.name[:-4]] = (member.name, tar.extractfile(member).read())
    return found


def test_coco_export_with_images_joins_an_image_root_to_the_original_files(labeled, tmp_path):
    """detectron2's load_coco_json joins image_root and file_name: those are the source files, byte
    for byte (JPEG stays JPEG), and the sizes in the json are theirs."""
    from PIL import Image

    root, _ = labeled
    sources = source_bytes(root)
    for fmt, name in (("coco-panoptic", "panoptic.json"), ("coco-instances", "instances.json")):
        out, image_root = tmp_path / fmt, tmp_path / fmt / "images"
        export(str(root / "labels"), str(out), fmt, progress=False, images_dir=str(image_root))
        coco = json.loads((out / name).read_text())
        assert len(coco["images"]) == 4
        for image in coco["images"]:  # detectron2: os.path.join(image_root, img_dict["file_name"])
            path = os.path.join(image_root, image["file_name"])
            assert (image["file_name"], open(path, "rb").read()) == sources[image["key"]]
            with Image.open(path) as opened:
                assert opened.format == "JPEG" and opened.size == (image["width"], image["height"])


def test_hf_parquet_export_holds_the_source_files_bytes(labeled):
    import pyarrow.parquet as pq

    root, _ = labeled
    export(str(root / "labels"), str(root / "hf_bytes"), "hf-parquet", progress=False)
    table = pq.read_table(root / "hf_bytes" / "data").to_pylist()
    sources = source_bytes(root)
    assert len(table) == 4
    for row in table:
        assert (row["image"]["path"], row["image"]["bytes"]) == sources[row["key"]]


def test_hf_parquet_export_without_images_and_with_a_missing_shard(labeled, tmp_path):
    import shutil

    root, _ = labeled
    counts = export(str(root / "labels"), str(tmp_path / "no_images"), "hf-parquet", images=False,
                    progress=False)
    assert counts == {"images": 4, "files": 2, "skipped": 1}
    moved = tmp_path / "moved"
    shutil.copytree(root / "shards", moved)
    (root / "shards" / "shard-000000.tar").unlink()  # the source of the first two labeled images is gone
    try:
        counts = export(str(root / "labels"), str(tmp_path / "partial"), "hf-parquet", progress=False)
    finally:
        shutil.copy(moved / "shard-000000.tar", root / "shards" / "shard-000000.tar")
    assert counts == {"images": 2, "files": 1, "skipped": 3}
    reasons = [e["reason"] for e in json.load(open(tmp_path / "partial" / "errors.json"))]
    assert sum("image not exported: shard not found" in r for r in reasons) == 2


def test_an_image_file_with_an_exif_rotation_goes_to_hf_parquet_upright():
    """`datasets` decodes without EXIF handling: a rotated JPEG is stored turned, as PNG; a plain
    one as it is."""
    import io

    from PIL import Image

    from pipeline.export import upright_file

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # a white band on the left, to see the turn
    plain, rotated = io.BytesIO(), io.BytesIO()
    Image.fromarray(pixels).save(plain, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: 20 wide, 40 high
    Image.fromarray(pixels).save(rotated, "JPEG", exif=exif)
    assert upright_file("jpg", plain.getvalue(), 40, 20) == ("jpg", plain.getvalue())
    extension, data = upright_file("jpg", rotated.getvalue(), 20, 40)
    with Image.open(io.BytesIO(data)) as image:
        assert extension == "png" and image.format == "PNG" and image.size == (20, 40)
        assert np.asarray(image)[:10].mean() > 200 and np.asarray(image)[-10:].mean() < 50  # band on top
