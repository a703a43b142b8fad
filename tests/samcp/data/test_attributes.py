"""The compositional corpus: things whose class is a surface pattern plus an object."""

import numpy as np
import pytest

from samcp.data.attributes import apply_pattern, compositional_categories
from samcp.data.categories import STUFF_CATEGORIES, THING_CATEGORIES
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.vocab import load_vocabulary

ATTRIBUTES = ("plain", "striped", "dotted")


def test_one_thing_class_per_attribute_and_object_plus_the_stuff():
    categories = compositional_categories(ATTRIBUTES)
    things = [c for c in categories if c.isthing]
    assert len(things) == 3 * len(THING_CATEGORIES) and len({c.id for c in categories}) == len(categories)
    assert {c.name for c in things} >= {"plain ball", "striped kite", "dotted house"}
    assert next(c for c in things if c.name == "striped robot").id == 204
    assert next(c for c in things if c.name == "striped robot").parts == ("head", "torso", "wheel")
    assert [c for c in categories if not c.isthing] == list(STUFF_CATEGORIES)
    full = load_vocabulary("builtin:synthetic_attributes")  # the vocabulary file matches the table
    table = {(c.id, c.name, c.isthing) for c in categories}
    assert {(c.id, c.name, c.isthing) for c in full.classes} == table
    seen = load_vocabulary("builtin:synthetic_attributes_seen")
    held_out = {c.name for c in full.things} - {c.name for c in seen.things}
    assert len(held_out) == 8 and {name.split()[1] for name in held_out} == {c.name for c in THING_CATEGORIES}
    with pytest.raises(ValueError, match="unknown attributes"):
        compositional_categories(("wavy",))
    with pytest.raises(ValueError, match="attributes"):
        SyntheticConfig(attributes=("plain", "plain"))


@pytest.mark.parametrize("pattern", ["striped", "dotted", "checkered"])
def test_patterns_mark_only_the_masked_pixels(pattern):
    image = np.full((40, 40, 3), 120.0)
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    apply_pattern(np.random.default_rng(0), image, mask, pattern)
    assert (image[~mask] == 120).all()
    changed = (image[mask] != 120).any(-1).mean()
    assert 0.1 < changed < 0.9  # marks on part of the surface, not all of it
    plain = np.full((40, 40, 3), 120.0)
    apply_pattern(np.random.default_rng(0), plain, mask, "plain")
    assert (plain == 120).all()


def test_compositional_images_label_things_with_their_pattern_and_caption_them():
    corpus = SyntheticCorpus(SyntheticConfig(seed=5, attributes=ATTRIBUTES))
    names = {c.id: c.name for c in corpus.categories}
    used = set()
    for index in range(12):
        image = corpus[index]
        shown = [names[s.category_id] for s in image.segments]
        assert image.caption == ", ".join(dict.fromkeys(shown))
        assert image.metadata()["caption"] == image.caption
        used |= {name.split()[0] for name in shown if " " in name}
    assert used == set(ATTRIBUTES)
    plain_corpus = SyntheticCorpus(SyntheticConfig(seed=5))
    assert all(s.category_id <= 13 for s in plain_corpus[0].segments)  # no attributes: the 13 classes


def test_texture_only_paints_the_same_images_with_the_plain_classes():
    compositional = SyntheticCorpus(SyntheticConfig(seed=5, attributes=ATTRIBUTES))
    textured = SyntheticCorpus(SyntheticConfig(seed=5, attributes=ATTRIBUTES, texture_only=True))
    plain_ids = {c.id for c in SyntheticCorpus(SyntheticConfig(seed=5)).categories}
    assert {c.id for c in textured.categories} == plain_ids
    for index in range(3):
        a, b = compositional[index], textured[index]
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.panoptic, b.panoptic)
        assert [s.category_id % 100 for s in a.segments] == [s.category_id for s in b.segments]
    with pytest.raises(ValueError, match="texture_only needs attributes"):
        SyntheticConfig(texture_only=True)
