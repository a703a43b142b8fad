import hashlib

import pytest

from pipeline.train.pseudo import labeling_models
from samcp.shipped import shipped_file


def _labeling(sam_checkpoint: str, sam_sha256: str) -> dict:
    return {"sam": {"model": "tiny", "checkpoint": sam_checkpoint, "sha256": sam_sha256, "autocast": "none"},
            "clip": {"model": "samcp-clip-tiny", "checkpoint": None, "sha256": None}}


def test_labeling_models_accept_the_files_that_made_the_labels(tmp_path):
    sam = tmp_path / "sam.pt"
    sam.write_bytes(b"weights")
    labeling = _labeling(str(sam), hashlib.sha256(b"weights").hexdigest())
    assert labeling_models(labeling) == labeling
    with open(shipped_file("sam", "tiny"), "rb") as f:
        shipped = _labeling("shipped", hashlib.sha256(f.read()).hexdigest())
    assert labeling_models(shipped)["sam"]["checkpoint"] == "shipped"


def test_a_changed_sam_fails_clearly_and_the_old_one_can_be_named(tmp_path):
    old, new = tmp_path / "old.pt", tmp_path / "new.pt"
    old.write_bytes(b"old weights")
    labeling = _labeling(str(old), hashlib.sha256(b"old weights").hexdigest())
    old.rename(new)
    new.write_bytes(b"new weights")
    with pytest.raises(FileNotFoundError):
        labeling_models(labeling)
    old.write_bytes(b"retrained weights")
    with pytest.raises(ValueError, match="made with a SAM checkpoint.*--sam-checkpoint"):
        labeling_models(labeling)
    kept = tmp_path / "kept.pt"
    kept.write_bytes(b"old weights")
    assert labeling_models(labeling, str(kept))["sam"]["checkpoint"] == str(kept)
    with pytest.raises(ValueError, match="sha256"):
        labeling_models(labeling, str(new))
