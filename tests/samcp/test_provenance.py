import datetime
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from samcp import provenance as provenance_module
from samcp.provenance import provenance


def git(folder, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=folder,
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout with one commit, standing in for the project's."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    git(repo, "add", "code.py")
    git(repo, "commit", "-q", "-m", "one")
    monkeypatch.setattr(provenance_module, "_REPO_PROBE_DIR", str(repo))
    return repo


def test_fields(checkout, tmp_path, monkeypatch):
    weights = tmp_path / "head.pt"
    weights.write_bytes(b"not really weights" * 1000)
    monkeypatch.setattr(sys, "argv", ["bench/head_cost.py", "--images", "4", "--vocab", "a b"])
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    record = provenance({"samcp_head": str(weights), "sam": None},
                        {"images": 4, "where": pathlib.Path("/x"), "sizes": (1, 2)}, "val", range(0, 200))

    assert set(record) == {"provenance_source", "command", "git_commit", "git_dirty", "models", "settings",
                           "split", "indices", "hardware", "date"}
    assert record["provenance_source"] == "recorded"
    assert record["command"] == "python bench/head_cost.py --images 4 --vocab 'a b'"
    assert record["git_commit"] == git(checkout, "rev-parse", "HEAD") and len(record["git_commit"]) == 40
    assert record["git_dirty"] is False
    assert record["models"] == {
        "samcp_head": {"file": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
        "sam": {"file": None, "sha256": None}}
    assert record["settings"] == {"images": 4, "where": "/x", "sizes": [1, 2]}
    assert record["split"] == "val" and record["indices"] == "0..199"
    assert record["hardware"]["cores"] == os.cpu_count()
    assert record["hardware"]["torch"] == torch.__version__
    assert isinstance(record["hardware"]["cpu"], str) and record["hardware"]["cpu"]
    expected_device = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    assert record["hardware"]["cuda_device"] == expected_device
    date = datetime.datetime.fromisoformat(record["date"])
    assert date.utcoffset() == datetime.timedelta(0)
    assert before <= date <= datetime.datetime.now(datetime.timezone.utc)
    assert json.loads(json.dumps(record)) == record  # ready to write as it is


def test_indices_as_given_and_no_split():
    record = provenance({}, {}, None, [3, 5, 8])
    assert record["split"] is None and record["indices"] == [3, 5, 8] and record["models"] == {}
    assert provenance({}, {}, "val", "every 10th of 0..999")["indices"] == "every 10th of 0..999"
    assert provenance({}, {}, "val", range(0, 10, 5))["indices"] == [0, 5]


def test_dirty_checkout(checkout):
    (checkout / "code.py").write_text("x = 2\n")
    assert provenance({}, {}, None, None)["git_dirty"] is True


def test_not_a_git_checkout(tmp_path, monkeypatch):
    folder = tmp_path / "installed" / "samcp"
    folder.mkdir(parents=True)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git looks no higher than tmp_path
    monkeypatch.setattr(provenance_module, "_REPO_PROBE_DIR", str(folder))
    record = provenance({}, {}, None, None)
    assert record["git_commit"] == "unknown" and record["git_dirty"] == "unknown"


def test_model_files_must_be_files(tmp_path):
    with pytest.raises(ValueError, match="shipped"):
        provenance({"sam": "shipped"}, {}, None, None)
    with pytest.raises(FileNotFoundError):
        provenance({"sam": str(tmp_path / "missing.pt")}, {}, None, None)
