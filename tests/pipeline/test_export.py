import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO

from jobs.evaluate import evaluate_folders, evaluate_labels
from pipeline.config import ModelConfig
from pipeline.export import export
from pipeline.labeling import LabelActor
from pipeline.labels import segment_mask
from pipeline.output import LabelOutput
from pipeline.schema import error_row
from samcp.data.coco import export_coco
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """Labels of 4 held-out synthetic images (written as the job writes them), an error row, and
    the images' ground truth as a COCO panoptic folder."""
    root = tmp_path_factory.mktemp("export")
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))
    images = [corpus[i] for i in range(4)]
    export_coco(images, str(root / "truth"), corpus.categories)
    model = ModelConfig(points_per_side=8)
    labeler = LabelActor(model, torch_threads=2).labeler
    output = LabelOutput(str(root / "labels"))
    manifest = {"labeling": model.describe(), "package_version": "test", "created": ""}
    output.prepare(manifest, overwrite=False)
    for shard, part in (("a.tar", images[:2]), ("b.tar", images[2:])):
        rows = [LabelActor._output({"kind": "sample", "key": im.key, "shard": shard, "index": i,
                                    "width": im.width, "height": im.height, "error": "", "shard_samples": -1,
                                    "shard_error": ""}, result)
                for i, (im, result) in enumerate(zip(part, labeler.label_batch([im.image for im in part])))]
        rows = [{k: v for k, v in r.items() if k not in ("kind", "index", "shard_samples", "shard_error")}
                for r in rows]
        if shard == "b.tar":
            rows.append(error_row("broken", shard, "corrupt image: cut"))
        output.write_shard(shard, rows, manifest)
    return root, images


def test_coco_panoptic_export_scores_the_same_as_the_parquet(labeled):
    root, images = labeled
    counts = export(str(root / "labels"), str(root / "pan"), "coco-panoptic", progress=False)
    assert counts == {"images": 4, "annotations": 4, "skipped": 1}
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
    things = [(image["file_name"], s) for image in coco.dataset["images"]
              for s in rows[image["file_name"]]["segments"] if s["isthing"]]
    assert len(coco.getAnnIds()) == len(things) > 0
    for ann, (key, segment) in zip(coco.loadAnns(coco.getAnnIds()), things):
        row = rows[key]
        np.testing.assert_array_equal(coco.annToMask(ann), segment_mask(segment["counts"], row["height"],
                                                                        row["width"]))
        assert ann["score"] == segment["score"] and coco.cats[ann["category_id"]]["isthing"] == 1
