"""The frozen CLIP classifier of open-vocabulary inference: region crops, probabilities, ensemble."""

import pytest
import torch
from torchvision.ops import roi_align

from samcp.clip.region import RegionClassifier, ensemble, masked_crops, region_encoder
from samcp.clip.text_encoder import TextEncoder
from samcp.vocab import load_vocabulary


def test_masked_crops_take_the_box_and_blank_what_is_outside_the_mask():
    image = torch.zeros(3, 32, 32)
    image[0, 8:24, 8:16] = 1.0  # a red left half ...
    image[2, 8:24, 16:24] = 1.0  # ... and a blue right half of a square
    left = torch.zeros(2, 32, 32, dtype=torch.bool)
    left[0, 8:24, 8:16] = True  # the red half alone
    left[1, 8:24, 8:24] = True  # the whole square
    mean = torch.tensor([0.5, 0.5, 0.5])
    crops = masked_crops(image, left, 16, mean)
    assert crops.shape == (2, 3, 16, 16)
    # (bilinear sampling blends the outermost crop pixels with the image around the box)
    assert torch.allclose(crops[0, 0, :, 1:-1], torch.ones(16, 14), atol=1e-5)  # red fills its crop
    assert crops[1, 0, :, 1:7].min() > 0.99 and crops[1, 2, :, 9:-1].min() > 0.99  # red | blue
    ring = torch.zeros(1, 32, 32, dtype=torch.bool)
    ring[0, 8:24, 8:24] = True
    ring[0, 12:20, 12:20] = False
    hole = masked_crops(image, ring, 16, mean)[0, :, 6:10, 6:10]
    assert torch.allclose(hole, mean.view(3, 1, 1).expand(3, 4, 4))  # outside the mask: the mean colour
    known = torch.tensor([[8.0, 8.0, 15.0, 23.0], [8.0, 8.0, 23.0, 23.0]])  # PatchSet boxes: inclusive
    assert torch.equal(masked_crops(image, left, 16, mean, known), crops)
    assert known[0, 2] == 15  # the caller's boxes are left as they were


def test_masked_crops_sample_where_roi_align_does():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 48, 40, generator=g)
    masks = torch.rand(6, 48, 40, generator=g) > 0.4
    boxes = torch.tensor([[0, 0, 39, 47], [3, 5, 20, 30], [10, 2, 11, 3], [0, 40, 39, 47],
                          [7, 7, 7, 7], [25, 1, 38, 44]], dtype=torch.float)
    mean = torch.tensor([0.1, 0.2, 0.3])
    edges = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0])
    rois = torch.cat([torch.zeros(6, 1), edges], dim=1)
    own = torch.cat([torch.arange(6.0)[:, None], edges], dim=1)
    crops = roi_align(image[None], rois, 16, aligned=True, sampling_ratio=1)
    inside = roi_align(masks[:, None].float(), own, 16, aligned=True, sampling_ratio=1) > 0.5
    expected = torch.where(inside, crops, mean.view(1, 3, 1, 1))
    torch.testing.assert_close(masked_crops(image, masks, 16, mean, boxes), expected, atol=1e-5, rtol=0)


def test_ensemble_is_geometric_and_kappa_picks_the_side():
    head, clip = torch.tensor([0.9, 0.1]), torch.tensor([0.2, 0.8])
    assert torch.equal(ensemble(head, clip, 0.0), head)
    assert torch.allclose(ensemble(head, clip, 1.0), clip)
    assert torch.allclose(ensemble(head, clip, 0.5), (head * clip).sqrt())


def test_region_classifier_gives_a_distribution_per_region():
    encoder = TextEncoder(cache_dir=None)
    vocab = load_vocabulary("builtin:synthetic")
    classifier = RegionClassifier(region_encoder(encoder), encoder.embed(vocab))
    image = torch.randint(0, 255, (48, 40, 3), dtype=torch.uint8)
    masks = torch.zeros(3, 48, 40, dtype=torch.bool)
    masks[0, 5:20, 5:30] = True
    masks[2, 30:, :] = True  # masks[1] is empty
    probs = classifier(image, masks)
    assert probs.shape == (3, len(vocab.classes))
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    assert torch.allclose(probs[1], torch.full((len(vocab.classes),), 1 / len(vocab.classes)))
    assert not torch.allclose(probs[0], probs[2])


@pytest.mark.parametrize("kappas,expected", [((None, None), (0.4, 0.2)), ((0.0, None), (0.0, 0.2)),
                                             ((0.0, 0.0), (0.0, 0.0)), ((1.0, 0.0), (1.0, 0.0))])
def test_labeler_uses_the_clip_classifier_with_a_checkpoint(tmp_path, kappas, expected):
    from samcp.checkpoint import save_weights
    from samcp.config import LabelerConfig
    from samcp.labeler import Labeler

    clip = tmp_path / "clip.pt"
    save_weights(TextEncoder(cache_dir=None).model, str(clip))
    cfg = LabelerConfig(clip_checkpoint=str(clip), kappa=kappas[0], kappa_seen=kappas[1])
    labeler = Labeler.from_config(cfg, device="cpu")
    assert (labeler.postprocess.kappa, labeler.postprocess.kappa_seen) == expected
    assert (labeler.region_classifier is not None) == any(expected)
    random_clip = Labeler.from_config(LabelerConfig(clip_checkpoint=None), device="cpu")
    assert random_clip.region_classifier is None  # random CLIP: no ensemble


def test_the_shipped_clip_names_pattern_and_object_of_ground_truth_regions():
    """The package's trained samcp-clip-tiny, through the region classifier, on held-out images."""
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus

    encoder = TextEncoder("samcp-clip-tiny", "shipped", cache_dir=None)
    vocab = load_vocabulary("builtin:synthetic_attributes")
    classifier = RegionClassifier(region_encoder(encoder), encoder.embed(vocab))
    attributes = ("plain", "striped", "dotted")
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], attributes=attributes))
    names = {c.id: c.name for c in corpus.categories}
    right = total = 0
    for index in range(12):
        sample = corpus[index]
        masks = torch.stack([torch.from_numpy(sample.panoptic == s.id) for s in sample.segments])
        guesses = classifier(torch.from_numpy(sample.image), masks).argmax(-1).tolist()
        right += sum(names[s.category_id] == vocab.classes[g].name for s, g in zip(sample.segments, guesses))
        total += len(sample.segments)
    assert right / total > 0.6  # 29 classes: chance is 0.03 (measured: 0.78 on 100 images)
