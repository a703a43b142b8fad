"""Hostile labeling outputs read back: sample keys that are paths, class names that are markup,
files that are not labels, readers of someone else's json. No file is read or written outside the
job's own inputs and output, and each output holds only what its last writer meant."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from pipeline.export import export
from pipeline.labeling import LabelActor
from pipeline.labels import rows_by_key
from pipeline.output import MANIFEST, LabelOutput, OutputConflict
from pipeline.report import render_report
from pipeline.schema import SCHEMA_VERSION
from pipeline.shards import synthetic_sample
from samcp.config import LabelerConfig
from samcp.data.coco import PanopticDataset, export_coco
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.labeler import Labeler
from samcp.model_files import describe_models
from samcp.storage import safe_name

KEYS = ["../../escape", "/tmp/samcp-hostile-abs", "a/../../b", "..", ".", "a//b", "new\nline", "x" * 300,
        "ok/nested/key", "back\\slash", "tab\tkey", "caf\\xe9", "-dash", "plain"]
VOCABULARY = """name: "odd <b>names</b> | here"
classes:
  - {id: 1, name: "ball | <script>alert(1)</script>", isthing: true}
  - {id: 2, name: "box `code` *star*", isthing: true}
  - {id: 3, name: "[link](http://x)", isthing: false}
"""


def tree(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A labeling output (written as the job writes it) whose samples carry hostile keys, in a shard
    whose tar holds the same keys, labeled with a vocabulary of markup-like class names."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "vocab.yaml").write_text(VOCABULARY)
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=64, width=80))
    samples = [{**synthetic_sample(corpus[i % 3]), "__key__": key} for i, key in enumerate(KEYS)]
    for sample in samples:
        del sample["panoptic.png"], sample["parts.png"]
    shards = [str(root / "shards" / "shard-000000.tar")]  # by hand: write_shards refuses such keys
    os.makedirs(root / "shards")
    with tarfile.open(shards[0], "w") as tar:
        for sample in samples:
            info = tarfile.TarInfo(f"{sample['__key__']}.jpg")
            info.size = len(sample["jpg"])
            tar.addfile(info, io.BytesIO(sample["jpg"]))
    model = LabelerConfig(points_per_side=8, vocab=str(root / "vocab.yaml"))
    labeler = LabelActor(model, torch_threads=2).labeler
    results = labeler.label_batch([corpus[i % 3].image for i in range(len(KEYS))])
    manifest = {"labeling": describe_models(model), "schema_version": SCHEMA_VERSION,
                "package_version": "test", "created": ""}
    output = LabelOutput(str(root / "labels"))
    output.prepare(manifest, overwrite=False)
    rows = [LabelActor._output({"kind": "sample", "key": key, "shard": shards[0], "index": i, "width": 80,
                                "height": 64, "error": "", "shard_samples": -1, "shard_error": "",
                                "skipped_members": ""}, result)
            for i, (key, result) in enumerate(zip(KEYS, results))]
    output.write_shard(shards[0], rows, manifest)
    return root, manifest


def test_safe_names_stay_inside_and_keep_plain_keys():
    for key in KEYS + ["", "/", "a/", "x/" * 20, "\udce9"]:
        name = safe_name(key)
        assert not os.path.isabs(name) and ".." not in name.split("/") and name
        assert os.path.realpath(os.path.join("/base", name)).startswith("/base/")
    assert safe_name("plain") == "plain" and safe_name("ok/nested/key") == "ok/nested/key"
    assert len({safe_name(k) for k in KEYS}) == len(KEYS)


def test_exports_and_the_report_write_only_inside_their_folder(hostile):
    root, _ = hostile
    before = tree(root.parent)
    counts = {}
    for fmt in ("coco-panoptic", "coco-instances", "hf-parquet"):
        counts[fmt] = export(str(root / "labels"), str(root / fmt), fmt, progress=False)
    shown = render_report(str(root / "labels"), str(root / "report"), keys=KEYS, log=lambda _: None)
    new = tree(root.parent) - before
    allowed = [str(root / d) for d in ("coco-panoptic", "coco-instances", "hf-parquet", "report")]
    assert new and all(any(p == a or p.startswith(a + "/") for a in allowed) for p in new), sorted(new)
    assert not any(Path("/tmp").glob("samcp-hostile-abs*")) and not (root.parent / "escape.png").exists()
    # "." and ".." name no sample in a tar ("..jpg" has no key): their images cannot be read back,
    # so hf-parquet leaves them out and COCO names them by their key alone.
    unreadable = {".", ".."}
    assert shown["shown"] == len(KEYS) - 2 and set(shown["not_shown"]) == unreadable
    assert counts["hf-parquet"]["images"] == len(KEYS) - 2
    assert counts["coco-panoptic"]["images"] == len(KEYS) and counts["coco-panoptic"]["unnamed"] == 2
    panoptic = json.load(open(root / "coco-panoptic" / "panoptic.json"))
    assert [image["key"] for image in panoptic["images"]] == KEYS  # the mapping, recorded
    for image, annotation in zip(panoptic["images"], panoptic["annotations"]):
        extension = "" if image["key"] in unreadable else ".jpg"
        assert image["file_name"] == f"{safe_name(image['key'])}{extension}"
        assert annotation["file_name"] == f"{safe_name(image['key'])}.png"
        assert (root / "coco-panoptic" / "panoptic" / annotation["file_name"]).is_file()
    card = (root / "hf-parquet" / "README.md").read_text()
    assert "<script>" not in card and "<b>" not in card and "ball \\| &lt;script&gt;" in card
    assert len([line for line in card.splitlines() if line.startswith("| ")]) == 4  # header + 3 classes


def test_a_second_export_into_the_same_folder_leaves_nothing_of_the_first(hostile):
    import datasets

    root, _ = hostile
    out = root / "twice"
    export(str(root / "labels"), str(out / "hf"), "hf-parquet", progress=False)
    (out / "hf" / "data" / "train-00007.parquet").write_bytes((out / "hf" / "data" / "train-00000.parquet")
                                                               .read_bytes())  # an earlier, larger export
    export(str(root / "labels"), str(out / "pan"), "coco-panoptic", progress=False)
    stale = out / "pan" / "panoptic" / "stale.png"
    stale.write_bytes(b"x")
    listed = json.load(open(out / "pan" / "panoptic.json"))
    listed["annotations"].append({"file_name": "stale.png"})
    listed["annotations"].append({"file_name": "../../../outside.png"})  # never followed
    (out / "pan" / "panoptic.json").write_text(json.dumps(listed))
    (root / "outside.png").write_bytes(b"keep me")
    export(str(root / "labels"), str(out / "hf"), "hf-parquet", progress=False)
    export(str(root / "labels"), str(out / "pan"), "coco-panoptic", progress=False)
    loaded = datasets.load_dataset(str(out / "hf"), split="train", cache_dir=str(out / "cache"))
    assert sorted(loaded["key"]) == sorted(k for k in KEYS if k not in (".", ".."))
    assert not stale.exists() and (root / "outside.png").read_bytes() == b"keep me"


def test_only_shard_files_at_the_top_are_labels(hostile):
    root, manifest = hostile
    labels = LabelOutput(str(root / "labels"))
    before = len(labels.read_table())
    export(str(root / "labels"), str(root / "labels" / "exported"), "hf-parquet", progress=False)  # nested
    (root / "labels" / "notes.parquet").write_bytes(b"not ours")
    nested = root / "labels" / "run-2"
    nested.mkdir()
    (nested / "shard-000000-0123abcd.parquet").write_bytes(b"another run's")
    assert len(labels.read_table()) == before and len(rows_by_key(str(root / "labels"))) == before
    assert render_report(str(root / "labels"), str(root / "report2"), log=lambda _: None)["rows"] == before
    assert labels.parquet_files() == [labels.path(p.name) for p in (root / "labels").glob("shard-*.parquet")]
    copy = root / "copy"
    shutil.copytree(root / "labels", copy)
    LabelOutput(str(copy)).prepare(manifest, overwrite=True)
    assert (copy / "notes.parquet").exists() and (copy / "run-2" / "shard-000000-0123abcd.parquet").exists()
    assert (copy / "exported" / "README.md").exists() and not list(copy.glob("shard-*.parquet"))


def test_a_run_that_lost_its_output_to_another_stops(hostile, tmp_path):
    root, manifest = hostile
    output = LabelOutput(str(tmp_path / "out"))
    output.prepare(manifest, overwrite=False)
    other = {**manifest, "labeling": {**manifest["labeling"], "decode": {"max_side": 512}}}
    LabelOutput(str(tmp_path / "out")).prepare(other, overwrite=True)  # a second run takes over
    with pytest.raises(OutputConflict, match="taken over by another run"):
        output.write_shard("s.tar", [], manifest)
    assert output.parquet_files() == []
    for damage in ("{", "[]", '{"labeling": 3}'):  # whatever the manifest became, publishing stops
        (tmp_path / "out" / MANIFEST).write_text(damage)
        with pytest.raises(OutputConflict):
            output.write_shard("s.tar", [], manifest)
    # A file of the other settings that landed anyway is not counted as done.
    (tmp_path / "out" / MANIFEST).write_text(json.dumps(manifest))
    LabelOutput(str(tmp_path / "out")).write_shard("t.tar", [], manifest)
    census = LabelOutput(str(tmp_path / "out")).census(other["labeling"])
    assert not census.done and "other settings" in next(iter(census.invalid.values()))


def test_ground_truth_file_names_cannot_lead_outside_the_folder(tmp_path):
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=64, width=80))
    export_coco([corpus[0]], str(tmp_path / "truth"), corpus.categories)
    truth = PanopticDataset.folder(str(tmp_path / "truth"))
    good = next(iter(truth.annotations))
    assert truth.ids(good).shape == (64, 80)
    (tmp_path / "secret.png").write_bytes((tmp_path / "truth" / "panoptic" / good).read_bytes())
    os.symlink(tmp_path / "secret.png", tmp_path / "truth" / "panoptic" / "link.png")
    for name in ("../../secret.png", str(tmp_path / "secret.png"), "link.png", "a/../../../secret.png"):
        with pytest.raises(ValueError, match="leads outside"):
            truth.ids(name)


def test_labels_with_a_stuff_only_or_thing_only_vocabulary(tmp_path):
    image = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=64, width=80))[0].image
    for kinds in ((False, False), (True, True), (True, False)):
        classes = "".join(f"  - {{id: {i + 1}, name: c{i}, isthing: {str(thing).lower()}}}\n"
                          for i, thing in enumerate(kinds))
        (tmp_path / "v.yaml").write_text(f"name: v\nclasses:\n{classes}")
        for min_score in (None, 0.0):
            labeler = Labeler.from_config(LabelerConfig(vocab=str(tmp_path / "v.yaml"), points_per_side=8,
                                                        min_score=min_score))
            for result in labeler.label_batch([image, image[:40, :50]]):
                assert all(s["category"] in {"c0", "c1"} for s in result.segments)
                assert all(s["isthing"] == kinds[int(s["category"][1])] for s in result.segments)
