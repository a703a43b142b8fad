import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from samcp.data.categories import SYNTHETIC_CATEGORIES
from samcp.data.coco import PanopticDataset, decode_id_png, export_coco, id_to_rgb, rgb_to_id
from samcp.data.imageio import encode_image
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus


def test_id_rgb_round_trip():
    ids = np.random.default_rng(0).integers(0, 256**3, (17, 23)).astype(np.int32)
    np.testing.assert_array_equal(rgb_to_id(id_to_rgb(ids)), ids)
    np.testing.assert_array_equal(decode_id_png(encode_image(id_to_rgb(ids))), ids)


def test_export_loads_back_with_pycocotools(tmp_path):
    corpus = SyntheticCorpus(SyntheticConfig(seed=1, height=128, width=160))
    samples = [corpus[i] for i in range(5)]
    paths = export_coco(samples, str(tmp_path), SYNTHETIC_CATEGORIES)

    panoptic = json.load(open(paths["panoptic"]))
    assert [c["id"] for c in panoptic["categories"]] == [c.id for c in SYNTHETIC_CATEGORIES]
    for sample, entry in zip(samples, panoptic["annotations"]):
        png = np.asarray(Image.open(os.path.join(tmp_path, "panoptic", entry["file_name"])))
        np.testing.assert_array_equal(rgb_to_id(png), sample.panoptic)
        assert {s["id"] for s in entry["segments_info"]} == set(np.unique(sample.panoptic))

    instances = COCO(paths["instances"])
    things = {c.id for c in SYNTHETIC_CATEGORIES if c.isthing}
    for image_id, sample in enumerate(samples, start=1):
        anns = instances.loadAnns(instances.getAnnIds(imgIds=[image_id]))
        expected = [s for s in sample.segments if s.category_id in things]
        assert len(anns) == len(expected)
        for ann, segment in zip(anns, expected):
            mask = instances.annToMask(ann).astype(bool)
            np.testing.assert_array_equal(mask, sample.panoptic == segment.id)
            assert ann["area"] == segment.area


def test_a_panoptic_dataset_reads_from_any_uri_and_keeps_to_its_folders(tmp_path):
    import fsspec

    corpus = SyntheticCorpus(SyntheticConfig(seed=2, height=64, width=80))
    export_coco([corpus[0], corpus[1]], str(tmp_path), SYNTHETIC_CATEGORIES)
    local = PanopticDataset.folder(str(tmp_path))
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path) + "/", "/coco/", recursive=True)
    # COCO's own layout: the PNG folder is the json's path without .json.
    fs.mv("/coco/panoptic.json", "/coco/annotations/panoptic_val.json")
    fs.mv("/coco/panoptic", "/coco/annotations/panoptic_val", recursive=True)
    remote = PanopticDataset("memory://coco/annotations/panoptic_val.json", image_root="memory://coco/images")
    assert remote.categories == local.categories and list(remote.annotations) == list(local.annotations)
    for name, annotation in remote.annotations.items():
        np.testing.assert_array_equal(remote.ids(name), local.ids(name))
        assert remote.image(annotation) == local.image(annotation)
        entry, image = remote.image(annotation)
        assert entry == remote.images[annotation["image_id"]]
        assert image == (tmp_path / "images" / entry["file_name"]).read_bytes()
    # File names come from someone else's json: none may lead out of its folder.
    for bad in ("../panoptic_val.json", "/etc/passwd", "a/../../x.png", ""):
        with pytest.raises(ValueError, match="refusing file name"):
            remote.ids(bad)
    with pytest.raises(ValueError, match="refusing file name"):
        local.ids("../panoptic.json")
    with pytest.raises(FileNotFoundError, match="no COCO panoptic json at"):
        PanopticDataset("memory://coco/nothing.json")
    fs.pipe("/coco/bad.json", b'{"images": []}')
    with pytest.raises(ValueError, match="not a COCO panoptic json: no annotations or categories"):
        PanopticDataset("memory://coco/bad.json")
