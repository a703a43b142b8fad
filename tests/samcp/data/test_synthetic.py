import colorsys

import numpy as np
import pytest

from samcp.data.categories import (
    CATEGORY_BY_ID,
    STUFF_CATEGORIES,
    SYNTHETIC_CATEGORIES,
    THING_CATEGORIES,
)
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.masks import mask_bbox


@pytest.fixture(scope="module")
def corpus():
    return SyntheticCorpus(SyntheticConfig(seed=3))


@pytest.fixture(scope="module")
def images(corpus):
    return [corpus[i] for i in range(40)]


def test_category_table():
    assert len(THING_CATEGORIES) >= 8 and len(STUFF_CATEGORIES) >= 4
    assert len({c.id for c in SYNTHETIC_CATEGORIES}) == len(SYNTHETIC_CATEGORIES)
    assert len({c.name for c in SYNTHETIC_CATEGORIES}) == len(SYNTHETIC_CATEGORIES)
    assert all(c.name.isalpha() and c.name.islower() for c in SYNTHETIC_CATEGORIES)
    assert sum(len(c.parts) >= 2 for c in THING_CATEGORIES) >= 3


def test_deterministic_by_seed_and_index(corpus):
    a, b = corpus[7], SyntheticCorpus(SyntheticConfig(seed=3))[7]
    assert a.key == b.key
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.panoptic, b.panoptic)
    other = SyntheticCorpus(SyntheticConfig(seed=4))[7]
    assert other.key != a.key and not np.array_equal(other.image, a.image)


def test_any_image_size():
    sample = SyntheticCorpus(SyntheticConfig(height=96, width=160))[0]
    assert sample.image.shape == (96, 160, 3) and sample.image.dtype == np.uint8
    assert sample.panoptic.shape == sample.part_map.shape == (96, 160)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="at least 32"):
        SyntheticConfig(height=8)
    with pytest.raises(ValueError, match="min_things"):
        SyntheticConfig(min_things=5, max_things=2)
    with pytest.raises(ValueError, match="thing_hues"):
        SyntheticConfig(thing_hues=(0.6, 0.2))
    with pytest.raises(ValueError, match="upright_tilt"):
        SyntheticConfig(upright_tilt=4.0)


def test_upright_tilt_turns_the_upright_classes():
    def lying_share(tilt: float) -> float:
        """Share of bottles and flowers (tall when upright) whose box is wider than tall."""
        corpus = SyntheticCorpus(SyntheticConfig(seed=3, height=128, width=128, upright_tilt=tilt))
        lying = [s.bbox[2] > s.bbox[3] for i in range(40) for s in corpus[i].segments
                 if CATEGORY_BY_ID[s.category_id].name in ("bottle", "flower")]
        assert len(lying) > 30
        return float(np.mean(lying))

    assert lying_share(0.4) < 0.1  # the default: upright, give or take 23 degrees
    assert lying_share(np.pi) > 0.3  # any angle


@pytest.mark.parametrize("hues", [(0.0, 0.4), (0.55, 0.9)])
def test_thing_colours_keep_to_the_hue_interval(hues):
    corpus = SyntheticCorpus(SyntheticConfig(seed=3, thing_hues=hues))
    checked = 0
    for sample in (corpus[i] for i in range(8)):
        for part in sample.parts:
            pixels = sample.image[sample.part_map == part.id]
            if part.name == "wheel" or len(pixels) < 50:
                continue
            hue = colorsys.rgb_to_hsv(*np.median(pixels, axis=0) / 255)[0]
            assert hues[0] - 0.03 <= hue <= hues[1] + 0.03, (sample.key, part.name, hue)
            checked += 1
    assert checked > 20


def test_segments_match_the_id_map(images):
    for sample in images:
        ids = [s.id for s in sample.segments]
        assert len(ids) == len(set(ids)) and 0 not in ids
        assert set(np.unique(sample.panoptic)) == set(ids)  # stuff fills every pixel: no void
        for segment in sample.segments:
            mask = sample.panoptic == segment.id
            assert segment.area == mask.sum() > 0
            assert segment.bbox == mask_bbox(mask)
        stuff_classes = [s.category_id for s in sample.segments
                         if not CATEGORY_BY_ID[s.category_id].isthing]
        assert len(stuff_classes) == len(set(stuff_classes)) >= 1


def test_parts_tile_their_things(images):
    for sample in images:
        thing_ids = {s.id for s in sample.segments if CATEGORY_BY_ID[s.category_id].isthing}
        thing_pixels = np.isin(sample.panoptic, list(thing_ids))
        np.testing.assert_array_equal(sample.part_map > 0, thing_pixels)
        for part in sample.parts:
            mask = sample.part_map == part.id
            assert part.area == mask.sum() > 0
            assert np.all(sample.panoptic[mask] == part.segment_id)


def test_corpus_has_parts_repeats_contact_and_occlusion(images):
    multipart_instances = repeated_class_images = touching_pairs = occluded = 0
    for sample in images:
        things = [s for s in sample.segments if CATEGORY_BY_ID[s.category_id].isthing]
        classes = [s.category_id for s in things]
        repeated_class_images += len(classes) > len(set(classes))
        for segment in things:
            parts = [p for p in sample.parts if p.segment_id == segment.id]
            if len({p.name for p in parts}) >= 2:
                multipart_instances += 1
                means = [sample.image[sample.part_map == p.id].mean(axis=0) for p in parts]
                assert max(np.abs(means[0] - m).max() for m in means[1:]) > 20
        # Two thing segments sharing a boundary: touching or occluding.
        right = sample.panoptic[:, 1:], sample.panoptic[:, :-1]
        thing_ids = [s.id for s in things]
        pairs = np.isin(right[0], thing_ids) & np.isin(right[1], thing_ids) & (right[0] != right[1])
        touching_pairs += int(pairs.any())
        # A thing whose box holds pixels of a later thing is occluded by it.
        for segment in things:
            x, y, w, h = segment.bbox
            box = sample.panoptic[y:y + h, x:x + w]
            occluded += int(np.any(np.isin(box, [t for t in thing_ids if t > segment.id])))
    assert multipart_instances >= 20
    assert repeated_class_images >= 10
    assert touching_pairs >= 10
    assert occluded >= 10


def test_stuff_is_textured_not_flat(images):
    for sample in images[:10]:
        for segment in sample.segments:
            if CATEGORY_BY_ID[segment.category_id].isthing or segment.area < 500:
                continue
            pixels = sample.image[sample.panoptic == segment.id].astype(float)
            assert pixels.std(axis=0).max() > 6, CATEGORY_BY_ID[segment.category_id].name
