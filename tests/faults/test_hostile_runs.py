"""Runs against one output in an odd order, on the real Ray head: `_SUCCESS` says the whole
output is complete or is absent, a run whose output is taken over stops, and training on the
labels uses the vocabulary they were made with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pipeline.output import MANIFEST, PENDING, SUCCESS, LabelOutput, labeling_vocabulary
from pipeline.shards import synthetic_sample, write_shards
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.vocab import VocabularyError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=64, width=80))


def shards(folder: str, count: int, size: int = 1, first: int = 0) -> list[str]:
    return write_shards([synthetic_sample(CORPUS[first + i]) for i in range(count)], folder, size,
                        progress=False)


def label(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO, "jobs", "label_corpus.py"), *args,
                           "--points-per-side", "8", "--json"], capture_output=True, text=True, timeout=600)


def test_success_covers_the_whole_output_or_is_absent(ray_cluster, tmp_path):
    a, b = shards(str(tmp_path / "a"), 2)
    missing = str(tmp_path / "later" / "c.tar")
    out = str(tmp_path / "labels")
    output = LabelOutput(out)
    run = ["--output", out, "--ray-address", ray_cluster.address]

    first = label("--input", a, "--input", b, *run)
    assert first.returncode == 0 and output.read_json(SUCCESS)["samples"] == 2, first.stderr[-2000:]
    failing = label("--input", a, "--input", b, "--input", missing, *run)  # a later run fails...
    assert failing.returncode == 1 and "not found" in failing.stderr
    assert output.read_json(SUCCESS) is None  # ...so the output is no longer a success
    assert output.read_json(PENDING) == [missing]
    subset = label("--input", a, *run)  # a subset: done, but the missing shard is still asked for
    assert subset.returncode == 0 and "asked for by an earlier run are still unlabeled" in subset.stdout
    summary = json.loads(subset.stdout[subset.stdout.index("{\n"):])
    assert (summary["samples"], summary["shards"], summary["inputs"]) == (2, 2, 1)  # the whole output
    assert summary["unlabeled_from_earlier_runs"] == 1 and output.read_json(SUCCESS) is None
    shards(str(tmp_path / "later"), 1, first=5)
    os.rename(str(tmp_path / "later" / "shard-000000.tar"), missing)
    last = label("--input", missing, *run)  # only the missing shard: now the output is whole
    assert last.returncode == 0, last.stderr[-2000:]
    success = output.read_json(SUCCESS)
    assert (success["samples"], success["shards"]) == (3, 3) and output.read_json(PENDING) is None
    assert len(output.read_table()) == 3


@pytest.mark.slow
def test_a_run_whose_output_is_taken_over_stops_and_the_output_holds_one_configuration(ray_cluster,
                                                                                       tmp_path):
    inputs = shards(str(tmp_path / "s"), 24, size=2)
    out = str(tmp_path / "labels")
    output = LabelOutput(out)
    common = [a for s in inputs for a in ("--input", s)] + ["--output", out, "--ray-address",
                                                          ray_cluster.address]
    first = subprocess.Popen([sys.executable, os.path.join(REPO, "jobs", "label_corpus.py"), *common,
                              "--points-per-side", "16", "--batch-size", "1"],  # slow enough to overlap
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not output.parquet_files():
        time.sleep(0.5)
    assert output.parquet_files(), "the first run wrote nothing"
    second = label(*common, "--min-score", "0.5", "--overwrite")
    stdout, stderr = first.communicate(timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert first.returncode == 2 and "taken over by another run" in stderr, stdout[-2000:] + stderr[-2000:]
    manifest = output.read_json(MANIFEST)
    assert manifest["labeling"]["postprocess"]["min_score"] == 0.5
    census = output.census()
    assert not census.invalid and len(census.done) == len(inputs)  # every file of the second's settings
    assert output.read_json(SUCCESS)["samples"] == 24 == len(output.read_table())


def test_training_reads_the_vocabulary_the_labels_were_made_with(tmp_path):
    from pipeline.train.examples import ExampleBuilder
    from samcp.config import LabelerConfig
    from samcp.model_files import describe_models

    vocab = tmp_path / "v.yaml"
    vocab.write_text("name: mine\ntemplates: ['a picture of a {}']\nclasses:\n"
                     "  - {id: 1, name: ball, isthing: true, synonyms: [sphere]}\n"
                     "  - {id: 2, name: sky, isthing: false}\n")
    labeling = describe_models(LabelerConfig(vocab=str(vocab), points_per_side=8))
    recorded = labeling_vocabulary(labeling)
    vocab.write_text("name: edited\nclasses:\n  - {id: 1, name: sky, isthing: false}\n")  # edited later
    assert labeling_vocabulary(labeling) == recorded and recorded.templates == ("a picture of a {}",)
    builder = ExampleBuilder(labeling, roi_size=7)
    assert builder.vocab == recorded and [c.name for c in builder.vocab.classes] == ["ball", "sky"]
    old_style = {**labeling, "vocabulary": {k: v for k, v in labeling["vocabulary"].items()
                                            if k in ("source", "name", "fingerprint", "classes")}}
    try:  # a manifest that recorded only the classes: the edited file is refused, not used
        labeling_vocabulary(old_style)
        raise AssertionError("an edited vocabulary file was used")
    except VocabularyError as error:
        assert "has changed since these labels were made" in str(error)
