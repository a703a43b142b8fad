"""describe_models checks a LabelerConfig's files without building the models: what the Labeler
refuses it refuses, and a head is held to the SAM weights it was trained on (their fingerprint)."""

import os

import pytest
import torch

from samcp.checkpoint import load_state_dict, weights_fingerprint
from samcp.config import LabelerConfig
from samcp.labeler import Labeler
from samcp.model.factory import build_head, save_head, shipped_head_checkpoint
from samcp.model_files import describe_models
from samcp.shipped import SHIPPED_HEAD_SAM, shipped_file


def test_the_shipped_models_are_described_with_their_sha256_and_settings():
    described = describe_models(LabelerConfig(min_score=0.5))
    assert set(described) == {"sam", "head", "clip", "vocabulary", "patches", "postprocess", "flip_agreement"}
    assert described["postprocess"]["min_score"] == 0.5 and described["postprocess"]["kappa"] == 0.4
    assert described["sam"]["checkpoint"] == "shipped" and len(described["sam"]["sha256"]) == 64
    assert described["head"]["model"] == "samcp-head" and described["vocabulary"]["name"] == "synthetic"


def test_the_fingerprint_is_the_tensors_not_the_file(tmp_path):
    state = load_state_dict(shipped_file("sam", "tiny"))
    assert weights_fingerprint(state) == SHIPPED_HEAD_SAM[1]  # the shipped head's SAM is the shipped SAM
    resaved = {k: state[k].float() for k in reversed(list(state))}  # fp32, other key order, other file
    torch.save({"model": resaved}, tmp_path / "resaved.pt")
    assert weights_fingerprint(load_state_dict(str(tmp_path / "resaved.pt"))) == SHIPPED_HEAD_SAM[1]
    describe_models(LabelerConfig(sam_checkpoint=str(tmp_path / "resaved.pt")))  # the same weights: accepted
    nudged = dict(resaved)
    name = next(k for k in nudged if nudged[k].is_floating_point())
    nudged[name] = nudged[name] + 1e-3
    assert weights_fingerprint(nudged) != SHIPPED_HEAD_SAM[1]


def test_a_head_trained_on_other_weights_of_the_same_sam_is_refused_before_any_model_is_built(tmp_path):
    state = load_state_dict(shipped_file("sam", "tiny"))
    other = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(other, tmp_path / "other_tiny.pt")
    cfg = LabelerConfig(sam_checkpoint=str(tmp_path / "other_tiny.pt"))  # the shipped head, other weights
    with pytest.raises(ValueError, match="other 'tiny' SAM weights"):
        describe_models(cfg)
    with pytest.raises(ValueError, match="other 'tiny' SAM weights"):
        Labeler.from_config(cfg, device="cpu")
    head = build_head()
    head.sam_weights = weights_fingerprint(other)  # a head that records them is accepted with them
    save_head(head, str(tmp_path / "head.pt"))
    describe_models(LabelerConfig(sam_checkpoint=str(tmp_path / "other_tiny.pt"),
                                  head_checkpoint=str(tmp_path / "head.pt")))
    assert build_head(str(tmp_path / "head.pt")).sam_weights == weights_fingerprint(other)  # saved with it


@pytest.mark.parametrize("case", ["missing", "corrupt", "other-architecture", "head-width", "head-sam"])
def test_what_the_labeler_would_refuse_is_refused_from_the_files(tmp_path, case):
    files = {"missing": LabelerConfig(sam_checkpoint=str(tmp_path / "nothing.pt")),
             "corrupt": LabelerConfig(clip_checkpoint=str(tmp_path / "corrupt.pt")),
             "other-architecture": LabelerConfig(sam_checkpoint=shipped_file("sam", "tiny8")),
             "head-width": LabelerConfig(sam_model="vit_b", sam_checkpoint=None,
                                         head_checkpoint=shipped_head_checkpoint("tiny")),
             "head-sam": LabelerConfig(sam_model="tiny8", head_checkpoint=shipped_head_checkpoint("tiny"))}
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    expected = {"missing": (FileNotFoundError, "not found"),
                "corrupt": (ValueError, "(corrupt|refusing) checkpoint"),
                "other-architecture": (ValueError, "does not fit architecture 'tiny'"),
                "head-width": (ValueError, "128-channel SAM embeddings.*gives 256"),
                "head-sam": (ValueError, "trained on SAM 'tiny'.*not 'tiny8'")}[case]
    with pytest.raises(expected[0], match=expected[1]):
        describe_models(files[case])
    with pytest.raises(expected[0], match=expected[1]):
        Labeler.from_config(files[case], device="cpu")
    assert not os.path.exists(tmp_path / "nothing.pt")
