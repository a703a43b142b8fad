import pytest
import torch

from samcp.model.factory import build_head, save_head
from samcp.model.head import HeadConfig, SamCPHead

SMALL = HeadConfig(dim=32, mlp_hidden_dim=32, ffn_dim=64, encoder_layers=1, decoder_layers=1)


def test_a_checkpoint_keeps_config_weights_and_the_trained_classes(tmp_path):
    head = SamCPHead(SMALL, ("ball", "sky"))
    save_head(head, str(tmp_path / "head.pt"), half=False)
    built = build_head(str(tmp_path / "head.pt"))
    assert built.config == SMALL and built.trained_classes == ("ball", "sky")
    assert all(torch.equal(v, built.state_dict()[k]) for k, v in head.state_dict().items())


def test_an_older_checkpoint_records_no_classes_and_a_bad_record_is_refused(tmp_path):
    save_head(SamCPHead(SMALL, ("ball",)), str(tmp_path / "head.pt"))
    raw = torch.load(tmp_path / "head.pt", weights_only=True)
    del raw["trained_classes"]
    torch.save(raw, tmp_path / "old.pt")
    assert build_head(str(tmp_path / "old.pt")).trained_classes == ()
    raw["trained_classes"] = "ball"
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="list of class names"):
        build_head(str(tmp_path / "bad.pt"))
