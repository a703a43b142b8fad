import pytest
import torch

from samcp.model.factory import build_head, check_head_fits, save_head
from samcp.model.head import HeadConfig, SamCPHead

SMALL = HeadConfig(dim=32, mlp_hidden_dim=32, ffn_dim=64, encoder_layers=1, decoder_layers=1)


def test_a_checkpoint_keeps_config_weights_the_trained_classes_and_the_sam(tmp_path):
    head = SamCPHead(SMALL, ("ball", "sky"), "tiny8")
    save_head(head, str(tmp_path / "head.pt"), half=False)
    built = build_head(str(tmp_path / "head.pt"))
    assert built.config == SMALL and built.trained_classes == ("ball", "sky") and built.sam_model == "tiny8"
    assert all(torch.equal(v, built.state_dict()[k]) for k, v in head.state_dict().items())


def test_an_older_checkpoint_records_no_classes_nor_sam_and_a_bad_record_is_refused(tmp_path):
    save_head(SamCPHead(SMALL, ("ball",), "tiny"), str(tmp_path / "head.pt"))
    raw = torch.load(tmp_path / "head.pt", weights_only=True)
    del raw["trained_classes"], raw["sam_model"]
    torch.save(raw, tmp_path / "old.pt")
    old = build_head(str(tmp_path / "old.pt"))
    assert old.trained_classes == () and old.sam_model == ""
    check_head_fits(old, "vit_b")  # nothing recorded: only the width check applies (in the Labeler)
    with pytest.raises(ValueError, match="trained on SAM 'tiny'.*not 'vit_b'"):
        check_head_fits(build_head(str(tmp_path / "head.pt")), "vit_b")
    raw["trained_classes"] = "ball"
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="list of class names"):
        build_head(str(tmp_path / "bad.pt"))
    raw["trained_classes"], raw["sam_model"] = ["ball"], 8
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="SAM architecture name"):
        build_head(str(tmp_path / "bad.pt"))
