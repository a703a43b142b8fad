"""Bad models and vocabularies stop `jobs/label_corpus.py` before anything is written, with a clear
message and exit 2: the models are built once on the driver before the output is claimed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from pipeline.shards import synthetic_sample, write_shards
from samcp.checkpoint import save_weights
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.sam.build import build_sam

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Exploit:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def bad_input(tmp_path, case: str) -> tuple[list[str], str]:
    """(flags, expected message) of one broken model or vocabulary."""
    path = tmp_path / "bad"
    if case == "corrupt-sam":  # a download cut short
        save_weights(build_sam("tiny", checkpoint=None), str(path))
        path.write_bytes(path.read_bytes()[:100_000])
        return ["--sam-checkpoint", str(path)], "corrupt checkpoint"
    if case == "wrong-architecture":
        save_weights(build_sam("tiny", checkpoint=None), str(path))
        return ["--sam-model", "vit_b", "--sam-checkpoint", str(path), "--head-checkpoint", "none"], \
            "does not fit architecture 'vit_b'"
    if case == "malicious-head":
        torch.save({"weight": Exploit(str(tmp_path / "pwned"))}, path)
        return ["--head-checkpoint", str(path)], "refusing checkpoint"
    if case == "vocabulary":
        path.write_text("classes:\n  - {id: 1, name: a, isthing: true}\n"
                        "  - {id: 1, name: b, isthing: true}\n")
        return ["--vocab", str(path)], ":3: duplicate class id 1"
    raise ValueError(case)


@pytest.mark.parametrize("case", ["corrupt-sam", "wrong-architecture", "malicious-head", "vocabulary"])
def test_a_bad_model_or_vocabulary_stops_the_job_before_anything_is_written(tmp_path, case):
    image = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=96, width=128))[0]
    write_shards([synthetic_sample(image)], str(tmp_path / "shards"), 1, progress=False)
    flags, message = bad_input(tmp_path, case)
    (tmp_path / "pwned").unlink(missing_ok=True)
    done = subprocess.run([sys.executable, os.path.join(REPO, "jobs", "label_corpus.py"), "--input",
                           str(tmp_path / "shards" / "*.tar"), "--output", str(tmp_path / "labels"), *flags],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "labels").exists() and not (tmp_path / "pwned").exists()
