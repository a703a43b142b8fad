import json

import numpy as np
import pytest

from jobs.audit_pseudo_labels import main
from pipeline.output import LabelOutput
from pipeline.schema import error_row, ok_row
from pipeline.selftrain.audit import check_rows, precision_table
from samcp.config import LabelerConfig
from samcp.data.coco import PanopticDataset, encode_rle, export_coco
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.model_files import describe_models


def segment(segment_id: int, category_id: int, score: float, flip_iou: float | None,
            mask: np.ndarray) -> dict:
    return {"id": segment_id, "category_id": category_id, "category": "x", "isthing": True, "score": score,
            "area": int(mask.sum()), "bbox": [0, 0, 1, 1], "rle": encode_rle(mask), "flip_iou": flip_iou}


@pytest.fixture()
def audited(tmp_path):
    """Two images with ground truth: the first labeled with a right thing, a thing of the wrong class
    on a true thing's mask and a thing on background; the second failed."""
    corpus = SyntheticCorpus(SyntheticConfig(seed=4, height=96, width=128))
    images = [corpus[i] for i in range(2)]
    export_coco(images, str(tmp_path / "coco"), corpus.categories)
    truth = PanopticDataset.folder(str(tmp_path / "coco"))
    thing_ids = {c.id for c in corpus.categories if c.isthing}
    first = images[0]
    things = [s for s in first.segments if s.category_id in thing_ids]
    other_class = next(c.id for c in corpus.categories if c.isthing and c.id != things[1].category_id)
    stuff = first.panoptic == next(s.id for s in first.segments if s.category_id not in thing_ids)
    rows = {first.key: ok_row(first.key, "s.tar", 128, 96, 9, [
                segment(1, things[0].category_id, 0.9, 0.8, first.panoptic == things[0].id),
                segment(2, other_class, 0.6, 0.2, first.panoptic == things[1].id),
                segment(3, things[0].category_id, 0.4, 0.9, stuff)]),
            images[1].key: error_row(images[1].key, "s.tar", "corrupt image")}
    truth_things = sum(s.category_id in thing_ids for image in images for s in image.segments)
    return rows, truth, truth_things


def test_thing_segments_are_checked_against_the_ground_truth_things(audited):
    rows, truth, truth_things = audited
    checked, counted = check_rows(rows, truth)
    assert counted == truth_things  # the failed image's things count, uncovered
    assert [(c.right, c.right_mask) for c in checked] == [(True, True), (False, True), (False, False)]
    table = precision_table(checked, counted, [0.0, 0.5], [0.0, 0.7])
    by_filter = {(r["keep_score"], r["min_flip_iou"]): r for r in table}
    assert by_filter[0.0, 0.0]["kept"] == 3 and by_filter[0.0, 0.0]["precision"] == pytest.approx(1 / 3)
    assert by_filter[0.5, 0.0]["mask_precision"] == 1.0 and by_filter[0.5, 0.0]["precision"] == 0.5
    assert by_filter[0.0, 0.7]["kept"] == 2 and by_filter[0.5, 0.7]["precision"] == 1.0
    assert by_filter[0.5, 0.7]["coverage"] == pytest.approx(1 / truth_things)


def test_the_cli_prints_and_writes_the_table_and_refuses_flip_thresholds_without_flip_ious(
        tmp_path, audited, capsys):
    rows, truth, truth_things = audited
    labels = LabelOutput(str(tmp_path / "labels"))
    manifest = {"labeling": describe_models(LabelerConfig()), "package_version": "test", "created": ""}
    labels.prepare(manifest, overwrite=False)
    labels.write_shard("s.tar", list(rows.values()), manifest)
    argv = ["--labels", labels.uri, "--ground-truth", str(tmp_path / "coco")]
    assert main([*argv, "--min-flip-iou", "0", "0.7", "--output", str(tmp_path / "audit.json")]) == 0
    assert f"coverage of {truth_things} things" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "audit.json").read_text())["table"]) == 8
    for row in rows.values():
        for s in row["segments"]:
            s["flip_iou"] = None
    labels.write_shard("s.tar", list(rows.values()), manifest)
    assert main([*argv, "--min-flip-iou", "0.7"]) == 1
    assert "--flip-agreement" in capsys.readouterr().err
