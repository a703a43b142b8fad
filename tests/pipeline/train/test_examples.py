import json

import numpy as np
import pytest
import torch

from pipeline.labels import segment_mask
from pipeline.output import LabelOutput
from pipeline.schema import error_row, ok_row
from pipeline.selftrain.selection import ScoreFilter
from pipeline.shards import synthetic_sample, write_shards
from pipeline.train.examples import ExampleBuilder, GroundTruthReader, PseudoLabelReader, ShardTruthReader
from pipeline.train.pseudo import PseudoTrainConfig, run_pseudo_training
from samcp.config import LabelerConfig
from samcp.data.coco import encode_rle, export_coco
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.model.factory import save_head
from samcp.model.head import HeadConfig, SamCPHead
from samcp.model_files import describe_models
from samcp.train.head import CachedImage


def segment(segment_id: int, category: str, category_id: int, score: float, mask: np.ndarray) -> dict:
    return {"id": segment_id, "category_id": category_id, "category": category, "isthing": category_id < 9,
            "score": score, "area": int(mask.sum()), "bbox": [0, 0, 1, 1], "rle": encode_rle(mask)}


def usable(rows) -> list[dict]:
    return [r for r in rows if "skip" not in r]


def labeled_corpus(tmp_path):
    corpus = SyntheticCorpus(SyntheticConfig(seed=4, height=96, width=128))
    images = [corpus[i] for i in range(3)]
    shard, = write_shards([synthetic_sample(image) for image in images], str(tmp_path / "shards"), 3,
                          progress=False)
    top, bottom = np.zeros((96, 128), bool), np.zeros((96, 128), bool)
    top[:48], bottom[48:] = True, True
    rows = [ok_row(images[0].key, shard, 128, 96, 5, [segment(1, "sky", 9, 0.9, top),
                                                      segment(2, "car", 5, 0.4, bottom)]),
            error_row(images[1].key, shard, "corrupt image"),
            ok_row(images[2].key, shard, 128, 96, 5, [segment(1, "car", 5, 0.45, bottom)])]
    labels = LabelOutput(str(tmp_path / "labels"))
    manifest = {"labeling": describe_models(LabelerConfig(points_per_side=8)), "package_version": "test",
                "created": ""}
    labels.prepare(manifest, overwrite=False)
    labels.write_shard(shard, rows, manifest)
    return shard, labels, manifest, images


def test_reader_joins_labels_by_key_and_keeps_confident_segments(tmp_path):
    shard, labels, _, images = labeled_corpus(tmp_path)
    read = list(PseudoLabelReader(labels.uri, ScoreFilter(0.5))({"shard": shard}))
    rows = usable(read)
    assert [r["key"] for r in rows] == [images[0].key]  # error row and all-dropped image skipped, with why
    assert [(r["key"], r.get("skip")) for r in read[1:]] == [(images[1].key, "labeled as an error"),
                                                            (images[2].key, "no segment kept")]
    assert [s["category_id"] for s in json.loads(rows[0]["segments"])] == [9]
    assert rows[0]["image"].shape == (96, 128, 3)
    per_class = usable(PseudoLabelReader(labels.uri, ScoreFilter(0.5, {"car": 0.42}))({"shard": shard}))
    assert [r["key"] for r in per_class] == [images[0].key, images[2].key]


def test_the_flip_filter_keeps_segments_found_again_and_needs_labels_that_carry_flip_iou():
    top = np.zeros((4, 4), bool)
    top[:2] = True
    found_again = {**segment(1, "car", 5, 0.9, top), "flip_iou": 0.8}
    lost = {**segment(2, "car", 5, 0.9, ~top), "flip_iou": 0.3}
    flips = ScoreFilter(0.5, min_flip_iou=0.7)
    assert flips.keep(found_again) and not flips.keep(lost)
    assert ScoreFilter(0.5).keep(lost)
    assert not flips.keep({**lost, "score": 0.1})  # the score threshold still applies
    with pytest.raises(ValueError, match="--flip-agreement"):
        flips.keep(segment(3, "car", 5, 0.9, top))


def test_examples_ignore_what_the_kept_labels_do_not_cover(tmp_path):
    shard, labels, manifest, _ = labeled_corpus(tmp_path)
    rows = usable(PseudoLabelReader(labels.uri, ScoreFilter(0.5))({"shard": shard}))
    builder = ExampleBuilder(manifest["labeling"], roi_size=7, torch_threads=1)
    example = CachedImage.from_bytes(builder.build(rows)[0]["example"])
    ignored = example.targets.ignored_patches
    assert ignored is not None and ignored.any() and not ignored.all()  # the unlabeled bottom half
    assert example.targets.stuff_present.tolist()[0] and len(example.targets.thing_labels) == 0
    assert (example.targets.stuff_membership[:, ignored] == -1).all()


def test_mirror_adds_each_image_mirrored_with_its_mirrored_labels(tmp_path):
    shard, labels, manifest, _ = labeled_corpus(tmp_path)
    rows = usable(PseudoLabelReader(labels.uri, ScoreFilter(0.5))({"shard": shard}))[:1]
    builder = ExampleBuilder(manifest["labeling"], roi_size=7, torch_threads=1, mirror=True)
    plain_view, mirror_view = builder.views(rows)
    key, image, masks, classes = plain_view
    mirror_key, mirror_image, mirror_masks, mirror_classes = mirror_view
    assert mirror_key == f"{key}:mirror" and mirror_classes == classes
    np.testing.assert_array_equal(mirror_image, image[:, ::-1])
    assert torch.equal(mirror_masks, masks.flip(-1))
    out = builder.build(rows)
    assert [r["key"] for r in out] == [key, mirror_key]
    plain, mirrored = (CachedImage.from_bytes(r["example"]) for r in out)
    assert mirrored.targets.stuff_present.tolist() == plain.targets.stuff_present.tolist()
    assert mirrored.targets.ignored_patches.any() and not mirrored.targets.ignored_patches.all()


def test_ground_truth_readers_take_every_segment_of_a_folder_or_of_the_samples_themselves(tmp_path):
    corpus = SyntheticCorpus(SyntheticConfig(seed=4, height=96, width=128))
    images = [corpus[i] for i in range(3)]
    shard, = write_shards([synthetic_sample(image) for image in images], str(tmp_path / "shards"), 3,
                          progress=False)
    export_coco(images[:2], str(tmp_path / "coco"), corpus.categories)  # the third has no labels
    read = list(GroundTruthReader(str(tmp_path / "coco"))({"shard": shard}))
    rows = usable(read)
    assert [r["key"] for r in rows] == [images[0].key, images[1].key]
    assert read[2] == {"key": images[2].key, "skip": "no ground truth"}
    for row, image in zip(rows, images):
        segments = json.loads(row["segments"])
        assert [s["category_id"] for s in segments] == [s.category_id for s in image.segments]
        for segment, truth in zip(segments, image.segments):
            mask = segment_mask(segment["counts"], 96, 128)
            np.testing.assert_array_equal(mask, image.panoptic == truth.id)
    # The same labels read from inside the shard's samples: all three images carry theirs.
    inside = usable(ShardTruthReader()({"shard": shard}))
    assert [r["key"] for r in inside] == [image.key for image in images]
    assert [r["segments"] for r in inside[:2]] == [r["segments"] for r in rows]
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(inside, rows))
    unlabeled, = write_shards([{"__key__": "x", "png": synthetic_sample(images[0], "png")["png"]}],
                              str(tmp_path / "plain"), 1, progress=False)
    # a sample without labels teaches nothing
    assert list(ShardTruthReader()({"shard": unlabeled})) == [{"key": "x", "skip": "no ground truth"}]


def test_examples_carry_clip_region_embeddings_for_a_head_that_reads_them(tmp_path):
    shard, labels, manifest, _ = labeled_corpus(tmp_path)
    rows = usable(PseudoLabelReader(labels.uri, ScoreFilter(0.5))({"shard": shard}))
    builder = ExampleBuilder(manifest["labeling"], roi_size=7, clip_dim=64, torch_threads=1)
    features = CachedImage.from_bytes(builder.build(rows)[0]["example"]).features
    assert features.clip is not None and features.clip.shape == (len(features.boxes), 64)
    assert features.clip.float().norm(dim=-1).gt(0.99).all()  # normalized embeddings, no empty rows


def test_a_head_reading_clip_embeddings_of_another_width_or_a_lone_truth_folder_is_refused_before_ray_starts(
        tmp_path):
    shard, labels, _, _ = labeled_corpus(tmp_path)
    head = tmp_path / "clip_head.pt"
    save_head(SamCPHead(HeadConfig(clip_dim=32)), str(head))  # the labeling CLIP gives 64
    cfg = PseudoTrainConfig(labels=labels.uri, images=(shard,), output=str(tmp_path / "run"), init=str(head))
    with pytest.raises(ValueError, match="width 32"):
        run_pseudo_training(cfg)
    folder_alone = PseudoTrainConfig(labels=labels.uri, images=(shard,), output=str(tmp_path / "run"),
                                     ground_truth=str(tmp_path))
    with pytest.raises(ValueError, match="--ground-truth labels the shards of --ground-truth-images"):
        run_pseudo_training(folder_alone)


def test_turn_adds_each_image_turned_by_its_key_with_its_turned_labels(tmp_path):
    shard, labels, manifest, _ = labeled_corpus(tmp_path)
    rows = usable(PseudoLabelReader(labels.uri, ScoreFilter(0.5))({"shard": shard}))
    views = ExampleBuilder(manifest["labeling"], roi_size=7, torch_threads=1, turn=True).views(rows)
    assert len(views) == 2 * len(rows)
    for plain, turned_view in zip(views[::2], views[1::2]):
        (key, image, masks, classes), (turn_key, turned, turned_masks, turn_classes) = plain, turned_view
        degrees = int(turn_key.removeprefix(f"{key}:turn"))
        assert degrees in (90, 180, 270) and turn_classes == classes
        turned_back = np.rot90(turned, -degrees // 90)
        np.testing.assert_array_equal(turned_back, image)
        # Each mask still covers the same pixels of the turned image as of the image.
        for mask, turned_mask in zip(masks, turned_masks):
            assert torch.equal(torch.from_numpy(np.rot90(turned_mask.numpy(), -degrees // 90).copy()), mask)
    assert ExampleBuilder(manifest["labeling"], roi_size=7, torch_threads=1, turn=True).views(rows)[1][0] \
        == views[1][0]
