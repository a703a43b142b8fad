import json
import os

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from samcp.data.categories import SYNTHETIC_CATEGORIES
from samcp.data.coco import decode_id_png, export_coco, id_to_rgb, rgb_to_id
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
