import dataclasses

import pytest
import torch

from samcp.data.categories import SYNTHETIC_CATEGORIES
from samcp.text_encoder import TextEncoder
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
