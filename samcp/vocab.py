"""Vocabularies: the class names a labeling run may use, and their text embeddings.

A vocabulary is a YAML file (or a built-in, `builtin:NAME`, shipped under
`samcp/vocabularies/`):

    name: my-vocab
    templates: ["a photo of a {}."]        # optional; "{}" is replaced by each name
    classes:
      - {id: 1, name: ball, isthing: true, synonyms: [sphere]}
      - {id: 9, name: sky, isthing: false}

Each class's embedding is the normalized mean of the text embeddings of every
(template, name or synonym) pair, from an open_clip model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import resources

import yaml

DEFAULT_TEMPLATES = ("a photo of a {}.",)


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used, with the place of the problem."""


@dataclass(frozen=True)
class VocabClass:
    id: int
    name: str
    isthing: bool
    synonyms: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


@dataclass(frozen=True)
class Vocabulary:
    name: str
    classes: tuple[VocabClass, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES

    @property
    def things(self) -> tuple[VocabClass, ...]:
        return tuple(c for c in self.classes if c.isthing)

    @property
    def stuff(self) -> tuple[VocabClass, ...]:
        return tuple(c for c in self.classes if not c.isthing)

    def fingerprint(self) -> str:
        """sha256 of the content: names, synonyms, flags, templates (the file's name aside)."""
        content = json.dumps({"classes": [asdict(c) for c in self.classes],
                              "templates": list(self.templates)}, sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()

    def prompts(self, cls: VocabClass) -> list[str]:
        return [t.format(n) for t in self.templates for n in cls.names]


def builtin_names() -> list[str]:
    files = resources.files("samcp.vocabularies").iterdir()
    return sorted(f.name[:-len(".yaml")] for f in files if f.name.endswith(".yaml"))


def load_vocabulary(spec: str) -> Vocabulary:
    """`builtin:NAME` or a path to a YAML file."""
    if spec.startswith("builtin:"):
        name = spec[len("builtin:"):]
        if name not in builtin_names():
            raise VocabularyError(f"unknown built-in vocabulary {name!r}; built-ins: {builtin_names()}")
        text = (resources.files("samcp.vocabularies") / f"{name}.yaml").read_text()
        return parse_vocabulary(text, source=spec)
    try:
        with open(spec) as f:
            text = f.read()
    except FileNotFoundError:
        raise VocabularyError(f"vocabulary file not found: {spec}") from None
    return parse_vocabulary(text, source=spec)


def parse_vocabulary(text: str, source: str = "<string>") -> Vocabulary:
    """Parse and check a vocabulary; errors name the file and line."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise VocabularyError(f"{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise VocabularyError(f"{source}: expected a mapping with 'name' and 'classes'")
    top = {key.value: node for key, node in root.value}
    if "classes" not in top or not isinstance(top["classes"], yaml.SequenceNode) \
            or not top["classes"].value:
        raise VocabularyError(f"{source}:{root.start_mark.line + 1}: 'classes' must be a non-empty list")
    data = yaml.safe_load(text)
    templates = tuple(data.get("templates") or DEFAULT_TEMPLATES)
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            line = top["templates"].start_mark.line + 1
            raise VocabularyError(f"{source}:{line}: template {template!r} must contain '{{}}' once")
    classes: list[VocabClass] = []
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    for node, entry in zip(top["classes"].value, data["classes"]):
        where = f"{source}:{node.start_mark.line + 1}"
        if not isinstance(entry, dict):
            raise VocabularyError(f"{where}: a class must be a mapping with id, name, isthing")
        unknown = set(entry) - {"id", "name", "isthing", "synonyms"}
        if unknown:
            raise VocabularyError(f"{where}: unknown keys {sorted(unknown)}")
        for key, kind in (("id", int), ("name", str), ("isthing", bool)):
            if not isinstance(entry.get(key), kind) or (kind is int and isinstance(entry[key], bool)):
                raise VocabularyError(f"{where}: '{key}' must be {kind.__name__}, got {entry.get(key)!r}")
        name = entry["name"].strip()
        synonyms = entry.get("synonyms") or []
        if not name or not isinstance(synonyms, list) or not all(isinstance(s, str) and s for s in synonyms):
            raise VocabularyError(f"{where}: a class needs a non-empty name and a list of synonyms")
        if entry["id"] in seen_ids or name in seen_names:
            raise VocabularyError(f"{where}: duplicate class id {entry['id']} or name {name!r}")
        seen_ids.add(entry["id"])
        seen_names.add(name)
        classes.append(VocabClass(entry["id"], name, entry["isthing"], tuple(synonyms)))
    return Vocabulary(str(data.get("name") or source), tuple(classes), templates)
