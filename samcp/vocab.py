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
import string
from dataclasses import asdict, dataclass
from importlib import resources

import yaml

DEFAULT_TEMPLATES = ("a photo of a {}.",)
TOP_KEYS = ("name", "templates", "classes")


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used, with the place of the problem."""


MAX_ID = 2**31 - 1  # category ids are int32 in the labels (Parquet, COCO exports)


@dataclass(frozen=True)
class VocabClass:
    id: int
    name: str
    isthing: bool
    synonyms: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.id, bool) or not isinstance(self.id, int) or not 0 <= self.id <= MAX_ID:
            raise VocabularyError(f"class id must be a whole number from 0 to {MAX_ID}, got {self.id!r}")
        for text in (self.name, *self.synonyms):
            if not isinstance(text, str) or not text.strip() or not text.isprintable():
                raise VocabularyError(f"class names and synonyms must be one line of printable text, "
                                      f"got {text!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


@dataclass(frozen=True)
class Vocabulary:
    name: str
    classes: tuple[VocabClass, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES

    def __post_init__(self):
        for template in self.templates:
            check_template(template)

    @property
    def things(self) -> tuple[VocabClass, ...]:
        return tuple(c for c in self.classes if c.isthing)

    @property
    def stuff(self) -> tuple[VocabClass, ...]:
        return tuple(c for c in self.classes if not c.isthing)

    @property
    def stuff_index(self) -> list[int]:
        """Positions of the stuff classes in `classes`, in order."""
        return [i for i, c in enumerate(self.classes) if not c.isthing]

    @property
    def thing_index(self) -> list[int]:
        """Positions of the thing classes in `classes`, in order."""
        return [i for i, c in enumerate(self.classes) if c.isthing]

    def split(self, rows):
        """(C, ...) rows in class order (text embeddings, say) -> (stuff rows, thing rows), the
        order the head reads them in."""
        return rows[self.stuff_index], rows[self.thing_index]

    def ids_for(self, categories) -> dict[int, int]:
        """{dataset category id: this vocabulary's class id} for a dataset's categories (anything with
        `id`, `name`, `isthing`, such as COCO panoptic's), matched by name: a class's own name first,
        then its synonyms, case and spacing aside, a thing only to a thing and stuff only to stuff;
        a name listing synonyms ("windowpane, window", as ADE20K's do) is tried whole, then name by
        name. VocabularyError naming every category that finds no class, or more than one."""
        def norm(text: str) -> str:
            return " ".join(text.lower().split())

        ids, lacking = {}, []
        for category in categories:
            isthing = bool(category.isthing)
            kind = [c for c in self.classes if c.isthing == isthing]
            found = []
            for name in dict.fromkeys([norm(category.name), *map(norm, category.name.split(","))]):
                found = [c for c in kind if norm(c.name) == name] or \
                    [c for c in kind if name in map(norm, c.synonyms)]
                if found:
                    break
            if len(found) == 1:
                ids[category.id] = found[0].id
            else:
                what = "thing" if isthing else "stuff"
                lacking.append(f"{category.name!r} ({what}, id {category.id}"
                               f"{': ' + str(len(found)) + ' classes match' if found else ''})")
        if lacking:
            raise VocabularyError(f"vocabulary {self.name!r} has no single class for {len(lacking)} of the "
                                  f"dataset's categories: {', '.join(lacking[:20])}"
                                  f"{' ...' if len(lacking) > 20 else ''} (add them, or their names as "
                                  "synonyms, to a vocabulary file)")
        return ids

    def fingerprint(self) -> str:
        """sha256 of the content: names, synonyms, flags, templates (the file's name aside)."""
        content = json.dumps({"classes": [asdict(c) for c in self.classes],
                              "templates": list(self.templates)}, sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()

    def prompts(self, cls: VocabClass) -> list[str]:
        return [t.format(n) for t in self.templates for n in cls.names]

    def record(self, source: str) -> dict:
        """Everything that makes the vocabulary, as JSON-ready data (the labeling manifest's
        `vocabulary`), with where it came from; `from_record` rebuilds it."""
        return {"source": source, "name": self.name, "fingerprint": self.fingerprint(),
                "templates": list(self.templates),
                "classes": [{"id": c.id, "name": c.name, "isthing": c.isthing, "synonyms": list(c.synonyms)}
                            for c in self.classes]}

    @classmethod
    def from_record(cls, record: dict) -> Vocabulary:
        """The vocabulary of a `record`; raises VocabularyError if it does not rebuild the
        vocabulary its fingerprint names."""
        vocab = cls(str(record["name"]), tuple(VocabClass(c["id"], c["name"], c["isthing"],
                                                          tuple(c.get("synonyms", ())))
                                               for c in record["classes"]),
                    tuple(record["templates"]))
        if vocab.fingerprint() != record["fingerprint"]:
            raise VocabularyError(f"the recorded vocabulary {record['name']!r} does not match "
                                  "its fingerprint")
        return vocab


def check_template(template: object) -> None:
    """A prompt template: text with exactly one `{}` and no other replacement field."""
    if not isinstance(template, str):
        raise VocabularyError(f"template {template!r} must be text")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as error:
        raise VocabularyError(f"template {template!r} is not a valid format string ({error})") from None
    if fields != [("", "", None)]:
        raise VocabularyError(f"template {template!r} must contain '{{}}' once and no other {{...}} field")


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
    except IsADirectoryError:
        raise VocabularyError(f"vocabulary {spec} is a folder, not a vocabulary file (YAML)") from None
    return parse_vocabulary(text, source=spec)


def parse_vocabulary(text: str, source: str = "<string>") -> Vocabulary:
    """Parse and check a vocabulary; errors name the file and line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(error, "problem", None) or error
        raise VocabularyError(f"{where}: not valid YAML ({problem})") from None
    if root is None or not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise VocabularyError(f"{source}: expected a mapping with 'name' and 'classes'")
    top = {}
    for key, node in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.value not in TOP_KEYS:
            raise VocabularyError(f"{source}:{key.start_mark.line + 1}: unknown key "
                                  f"{getattr(key, 'value', key)!r}; a vocabulary has {', '.join(TOP_KEYS)}")
        top[key.value] = node
    if "classes" not in top or not isinstance(top["classes"], yaml.SequenceNode) \
            or not top["classes"].value:
        raise VocabularyError(f"{source}:{root.start_mark.line + 1}: 'classes' must be a non-empty list")
    templates = data.get("templates") or DEFAULT_TEMPLATES
    if "templates" in top:
        where = f"{source}:{top['templates'].start_mark.line + 1}"
        if not isinstance(templates, list | tuple):
            raise VocabularyError(f"{where}: 'templates' must be a list of texts, got {templates!r}")
        for template in templates:
            try:
                check_template(template)
            except VocabularyError as error:
                raise VocabularyError(f"{where}: {error}") from None
    name = data.get("name") or source
    if not isinstance(name, str | int | float):
        raise VocabularyError(f"{source}: 'name' must be text, got {name!r}")
    classes: list[VocabClass] = []
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    for node, entry in zip(top["classes"].value, data["classes"]):
        where = f"{source}:{node.start_mark.line + 1}"
        if not isinstance(entry, dict):
            raise VocabularyError(f"{where}: a class must be a mapping with id, name, isthing")
        unknown = set(map(repr, entry)) - {"'id'", "'name'", "'isthing'", "'synonyms'"}
        if unknown:
            raise VocabularyError(f"{where}: unknown keys {sorted(unknown)}")
        for key, kind in (("id", int), ("name", str), ("isthing", bool)):
            if not isinstance(entry.get(key), kind) or (kind is int and isinstance(entry[key], bool)):
                raise VocabularyError(f"{where}: '{key}' must be {kind.__name__}, got {entry.get(key)!r}")
        class_name = entry["name"].strip()
        synonyms = entry.get("synonyms") or []
        if not class_name or not isinstance(synonyms, list) \
                or not all(isinstance(s, str) and s for s in synonyms):
            raise VocabularyError(f"{where}: a class needs a non-empty name and a list of synonyms")
        if entry["id"] in seen_ids or class_name in seen_names:
            raise VocabularyError(f"{where}: duplicate class id {entry['id']} or name {class_name!r}")
        seen_ids.add(entry["id"])
        seen_names.add(class_name)
        try:
            classes.append(VocabClass(entry["id"], class_name, entry["isthing"], tuple(synonyms)))
        except VocabularyError as error:
            raise VocabularyError(f"{where}: {error}") from None
    return Vocabulary(str(name), tuple(classes), tuple(templates))

