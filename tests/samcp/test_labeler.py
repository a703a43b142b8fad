import dataclasses

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from samcp import Labeler, LabelerConfig
from samcp.clip.text_encoder import TextEncoder
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.model.factory import shipped_head_checkpoint
from samcp.vocab import load_vocabulary


@pytest.fixture(scope="module")
def image():
    return SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))[0].image


@pytest.fixture(scope="module")
def labeler():
    return Labeler.from_config()  # the shipped tiny SAM and head, built-in synthetic vocabulary


def test_labels_one_image_with_non_overlapping_segments(labeler, image):
    result = labeler.label(image)
    assert result.num_patches > 0 and result.segments
    assert result.id_map.shape == image.shape[:2]
    names = {c.name: c for c in labeler.vocab.classes}
    covered = np.zeros(image.shape[:2], int)
    for segment in result.segments:
        mask = mask_utils.decode({"size": segment["rle"]["size"],
                                  "counts": segment["rle"]["counts"].encode()}).astype(bool)
        np.testing.assert_array_equal(mask, result.id_map == segment["id"])
        assert segment["area"] == mask.sum() > 0
        assert names[segment["category"]].id == segment["category_id"]
        assert names[segment["category"]].isthing == segment["isthing"]
        assert 0 < segment["score"] <= 1
        covered += mask
    assert covered.max() == 1  # panoptic: no pixel in two segments


def test_flip_agreement_finds_the_segments_of_a_mirror_symmetric_image_again(labeler, image):
    symmetric = np.concatenate([image[:, :128], image[:, :128][:, ::-1]], axis=1)
    checked = Labeler.from_config(LabelerConfig(flip_agreement=True)).label(symmetric)
    plain = labeler.label(symmetric)
    assert [s["id"] for s in checked.segments] == [s["id"] for s in plain.segments]
    assert "flip_iou" not in plain.segments[0]
    ious = np.array([s["flip_iou"] for s in checked.segments])
    assert len(ious) and ((0.85 < ious) & (ious <= 1)).all(), ious


def test_a_renamed_vocabulary_renames_the_labels(labeler, image):
    vocab = load_vocabulary("builtin:synthetic")
    renamed = dataclasses.replace(vocab, classes=tuple(
        dataclasses.replace(c, name=f"{c.name}-x", synonyms=()) for c in vocab.classes))
    other = Labeler(labeler.sam, labeler.head, TextEncoder("samcp-clip-tiny", "shipped"), renamed,
                    labeler.generator, labeler.postprocess, clip_trained=True)  # built from its parts
    categories = {s["category"] for s in other.label(image).segments}
    assert categories and all(c.endswith("-x") for c in categories)


def test_a_head_that_does_not_fit_the_sam_is_refused_and_none_gives_a_random_head_that_does():
    with pytest.raises(ValueError, match="128-channel SAM embeddings.*gives 256"):
        Labeler.from_config(LabelerConfig(sam_model="vit_b", sam_checkpoint=None,
                                          head_checkpoint=shipped_head_checkpoint()), device="cpu")
    with pytest.raises(ValueError, match="SAM-CP head was trained on SAM 'tiny'.*not 'tiny8'"):
        Labeler.from_config(LabelerConfig(sam_model="tiny8", head_checkpoint=shipped_head_checkpoint("tiny")),
                            device="cpu")  # same width: refused by name
    with pytest.raises(ValueError, match="no shipped head for SAM 'vit_b'.*--head-checkpoint"):
        Labeler.from_config(LabelerConfig(sam_model="vit_b", sam_checkpoint=None), device="cpu")
    labeler = Labeler.from_config(LabelerConfig(head_checkpoint=None), device="cpu")
    assert labeler.head.config.feature_dim == labeler.sam.prompt_encoder.embed_dim
    twin = Labeler.from_config(LabelerConfig(head_checkpoint=None), device="cpu")
    first, second = labeler.head.state_dict(), twin.head.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)  # fixed seed


def test_the_classes_a_head_trained_on_are_seen_and_a_kappa_needs_the_clip(tmp_path, image):
    from samcp.model.factory import build_head, save_head
    from samcp.postprocess import PostprocessConfig

    head = build_head()
    head.trained_classes = ("ball", "sky", "not in the vocabulary")
    save_head(head, str(tmp_path / "head.pt"))
    labeler = Labeler.from_config(LabelerConfig(head_checkpoint=str(tmp_path / "head.pt")), device="cpu")
    names = [c.name for c in labeler.vocab.classes]
    assert [names[i] for i in labeler.seen.nonzero()[:, 0].tolist()] == ["ball", "sky"]
    random_clip = Labeler.from_config(LabelerConfig(head_checkpoint=str(tmp_path / "head.pt"),
                                                    clip_checkpoint=None), device="cpu")
    patches = random_clip.generator([image])[0]
    outputs = random_clip.head_outputs([patches], [image])
    assert random_clip.label_outputs([patches], outputs)[0].num_patches == len(patches)  # kappas 0: no CLIP
    with pytest.raises(ValueError, match="kappa > 0 needs the CLIP"):
        random_clip.label_outputs([patches], outputs, PostprocessConfig(kappa_seen=0.1))


def test_a_batch_labels_each_image_as_it_would_alone(labeler, image):
    """The head and CLIP run once per batch (padded to its largest patch count); each image keeps
    its own labels, whatever its size."""
    second = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))[1].image
    other = np.ascontiguousarray(second[:200, :160])
    together = labeler.label_batch([image, other])
    for alone, batched in zip([labeler.label(image), labeler.label(other)], together):
        assert np.array_equal(alone.id_map, batched.id_map) and alone.num_patches == batched.num_patches
        assert [s["category"] for s in alone.segments] == [s["category"] for s in batched.segments]
        scores = [[s["score"] for s in result.segments] for result in (alone, batched)]
        np.testing.assert_allclose(*scores, atol=1e-5)
    assert together[1].id_map.shape == (200, 160) and together[0].num_patches != together[1].num_patches
