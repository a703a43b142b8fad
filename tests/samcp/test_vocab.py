import dataclasses

import pytest
import torch

from samcp.clip.text_encoder import TextEncoder, unknown_words
from samcp.data.categories import SYNTHETIC_CATEGORIES, Category
from samcp.vocab import VocabularyError, builtin_names, load_vocabulary, parse_vocabulary


def test_builtin_synthetic_matches_the_category_table():
    vocab = load_vocabulary("builtin:synthetic")
    assert "synthetic" in builtin_names()
    assert [(c.id, c.name, c.isthing) for c in vocab.classes] == [
        (c.id, c.name, c.isthing) for c in SYNTHETIC_CATEGORIES]
    assert vocab.prompts(vocab.classes[0])[:2] == ["a photo of a ball.", "a photo of a sphere."]


@pytest.mark.parametrize("text, message", [
    ("name: x\nclasses: [\n", r"<string>:\d+: not valid YAML"),
    ("name: x\n", "'classes' must be a non-empty list"),
    ("classes:\n  - {id: 1, name: a, isthing: true}\n  - {id: 1, name: b, isthing: true}\n",
     "<string>:3: duplicate class id 1"),
    ("classes:\n  - {id: 1, name: a, isthing: yes-please}\n", "<string>:2: 'isthing' must be bool"),
    ("classes:\n  - {id: 1, name: a, isthing: true, colour: red}\n", "unknown keys"),
    ("templates: ['no slot']\nclasses:\n  - {id: 1, name: a, isthing: true}\n", "<string>:1: template"),
])
def test_bad_vocabularies_name_the_line(text, message):
    with pytest.raises(VocabularyError, match=message):
        parse_vocabulary(text)


def test_unknown_builtin_and_missing_file(tmp_path):
    with pytest.raises(VocabularyError, match="unknown built-in"):
        load_vocabulary("builtin:nope")
    with pytest.raises(VocabularyError, match="not found"):
        load_vocabulary(str(tmp_path / "absent.yaml"))


def test_text_embeddings_follow_the_vocabulary_and_are_cached(tmp_path):
    encoder = TextEncoder("samcp-clip-tiny", cache_dir=str(tmp_path))
    vocab = load_vocabulary("builtin:synthetic")
    first = encoder.embed(vocab)
    assert first.shape == (13, encoder.dim)
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(13))
    assert len(list(tmp_path.iterdir())) == 1
    torch.testing.assert_close(encoder.embed(vocab), first)
    swapped = dataclasses.replace(vocab, classes=vocab.classes[::-1])
    torch.testing.assert_close(encoder.embed(swapped), first.flip(0), atol=1e-5, rtol=1e-5)
    assert len(list(tmp_path.iterdir())) == 2


def test_builtin_coco_panoptic_has_the_official_133_categories():
    vocab = load_vocabulary("builtin:coco_panoptic")
    assert {"coco_panoptic", "ade20k", "synthetic"} <= set(builtin_names())
    assert vocab.name == "coco_panoptic"
    assert (len(vocab.classes), len(vocab.things), len(vocab.stuff)) == (133, 80, 53)
    ids = [c.id for c in vocab.classes]
    assert len(set(ids)) == 133 and min(ids) == 1 and max(ids) == 200
    assert all(c.id <= 90 for c in vocab.things) and all(c.id >= 92 for c in vocab.stuff)
    by_id = {c.id: c for c in vocab.classes}
    for cid, name, isthing in [(1, "person", True), (13, "stop sign", True), (72, "tv", True),
                               (90, "toothbrush", True), (92, "banner", False),
                               (184, "tree-merged", False), (199, "wall-other-merged", False),
                               (200, "rug-merged", False)]:
        assert (by_id[cid].name, by_id[cid].isthing) == (name, isthing)
    assert 12 not in by_id and 26 not in by_id and 91 not in by_id
    assert by_id[184].synonyms == ("tree",)
    assert "a photo of a wall." in vocab.prompts(by_id[199])
    assert all(c.synonyms for c in vocab.classes if "-" in c.name)


def test_builtin_ade20k_has_the_150_classes_with_the_panoptic_split():
    vocab = load_vocabulary("builtin:ade20k")
    assert vocab.name == "ade20k"
    assert (len(vocab.classes), len(vocab.things), len(vocab.stuff)) == (150, 100, 50)
    assert [c.id for c in vocab.classes] == list(range(1, 151))
    by_id = {c.id: c for c in vocab.classes}
    for cid, name, isthing in [(1, "wall", False), (2, "building", False), (3, "sky", False),
                               (5, "tree", False), (8, "bed", True), (9, "window", True),
                               (13, "person", True), (21, "car", True), (150, "flag", True)]:
        assert (by_id[cid].name, by_id[cid].isthing) == (name, isthing)
    assert by_id[7].synonyms == ("route",)
    assert by_id[45].name == "chest of drawers"
    assert by_id[45].synonyms == ("chest", "bureau", "dresser")
    assert all("," not in n and n == n.strip() for c in vocab.classes for n in c.names)


def test_a_word_the_tokenizer_does_not_know_is_warned_about():
    vocab = parse_vocabulary("name: odd\nclasses:\n  - {id: 1, name: qwzxv thing, isthing: true}\n"
                             "  - {id: 2, name: ball, isthing: true}\n")
    encoder = TextEncoder(cache_dir=None)
    assert unknown_words(vocab, encoder.tokenizer) == {"qwzxv thing": ["qwzxv"]}
    assert unknown_words(load_vocabulary("builtin:coco_panoptic"), encoder.tokenizer) == {}
    with pytest.warns(UserWarning, match="'qwzxv'"):
        encoder.embed(vocab)


def test_a_datasets_categories_map_by_name_onto_the_vocabulary_ids():
    vocab = load_vocabulary("builtin:ade20k")
    # ADE20K as Mask2Former prepares it numbers the classes from 0 and may list synonyms in a name.
    dataset = [Category(0, "wall", False, (0, 0, 0)), Category(8, "Windowpane,  window", True, (0, 0, 0)),
               Category(44, "chest of drawers, chest, bureau, dresser", True, (0, 0, 0)),
               Category(6, "route", False, (0, 0, 0))]
    assert vocab.ids_for(dataset) == {0: 1, 8: 9, 44: 45, 6: 7}
    coco = load_vocabulary("builtin:coco_panoptic")
    # "door" is the stuff class door-stuff's synonym: a door thing finds no class, and no robot.
    with pytest.raises(VocabularyError, match=r"no single class for 2 .*'door' \(thing, id 3\), 'robot'"):
        coco.ids_for([Category(3, "door", True, (0, 0, 0)), Category(4, "robot", True, (0, 0, 0)),
                      Category(5, "door", False, (0, 0, 0))])
    assert coco.ids_for([Category(5, "door", False, (0, 0, 0))]) == {5: 112}
    twice = parse_vocabulary("name: t\nclasses:\n  - {id: 1, name: a, isthing: true, synonyms: [x]}\n"
                             "  - {id: 2, name: b, isthing: true, synonyms: [x]}\n")
    with pytest.raises(VocabularyError, match="2 classes match"):
        twice.ids_for([Category(7, "x", True, (0, 0, 0))])
