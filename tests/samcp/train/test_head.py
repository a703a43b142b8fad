import json
import shutil

import pytest
import torch

from samcp import Labeler, LabelerConfig
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.model.factory import save_head
from samcp.model.head import HeadConfig, SamCPHead
from samcp.train.head import HeadTrainConfig, train_head
from samcp.vocab import load_vocabulary


def test_head_training_lowers_the_loss_and_resumes(tmp_path):
    cfg = HeadTrainConfig(train_images=4, cache_part_size=2, points_per_side=8, steps=30, batch_size=2,
                          lr=5e-4, warmup_steps=2, checkpoint_every=10)
    head_config = HeadConfig(dim=64, mlp_hidden_dim=64, ffn_dim=128, encoder_layers=1, decoder_layers=2)
    head = train_head(cfg, head_config, str(tmp_path), log=lambda line: None)
    assert head.trained_classes == tuple(c.name for c in load_vocabulary(cfg.vocab).classes)
    assert head.sam_model == cfg.sam_model == "tiny"
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 30 and log[-1]["loss"] < log[0]["loss"]
    assert len(list((tmp_path / "cache").glob("part-*.pt"))) == 2

    lines = []
    longer = HeadTrainConfig(**{**cfg.__dict__, "steps": 40})
    train_head(longer, head_config, str(tmp_path), log=lines.append)
    assert "resumed from" in lines[0] and "at step 30" in lines[0]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 40


def test_a_head_trained_on_clip_region_embeddings_labels_with_them(tmp_path):
    cfg = HeadTrainConfig(train_images=2, cache_part_size=2, points_per_side=8, steps=4, batch_size=2,
                          warmup_steps=1, checkpoint_every=4)
    head_config = HeadConfig(dim=64, mlp_hidden_dim=64, ffn_dim=128, encoder_layers=1, decoder_layers=1,
                             clip_dim=64)
    head = train_head(cfg, head_config, str(tmp_path / "run"), log=lambda line: None)
    part = torch.load(tmp_path / "run" / "cache" / "part-00000.pt", weights_only=True)
    clip = part[0]["features"]["clip"].float()
    assert clip.shape == (len(part[0]["features"]["boxes"]), 64)
    torch.testing.assert_close(clip.norm(dim=-1), torch.ones(len(clip)), atol=2e-3, rtol=0)

    plain = HeadConfig(dim=64, mlp_hidden_dim=64, ffn_dim=128, encoder_layers=1, decoder_layers=1)
    train_head(cfg, plain, str(tmp_path / "plain"), log=lambda line: None)
    with pytest.raises(ValueError, match="cached without the CLIP region embeddings"):
        train_head(cfg, head_config, str(tmp_path / "plain"))
    shutil.copytree(tmp_path / "run" / "cache", tmp_path / "shared" / "cache")
    train_head(cfg, plain, str(tmp_path / "shared"), log=lambda line: None)  # a head without CLIP ignores it
    with pytest.raises(ValueError, match="--clip-dim 32"):
        train_head(cfg, HeadConfig(clip_dim=32), str(tmp_path / "other"))

    save_head(head, str(tmp_path / "head.pt"))
    labeler = Labeler.from_config(LabelerConfig(head_checkpoint=str(tmp_path / "head.pt")), device="cpu")
    assert labeler.seen.all()  # trained on the labeling vocabulary: kappa_seen for every class
    image = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))[0].image
    assert labeler.label(image).num_patches > 0  # patches -> CLIP region embeddings -> head
    with pytest.raises(ValueError, match="trained on SAM 'tiny'.*not 'tiny8'"):  # recorded in the file
        Labeler.from_config(LabelerConfig(sam_model="tiny8", head_checkpoint=str(tmp_path / "head.pt")),
                            device="cpu")
    save_head(SamCPHead(HeadConfig(clip_dim=32)), str(tmp_path / "wide.pt"))
    with pytest.raises(ValueError, match="width 32"):
        Labeler.from_config(LabelerConfig(head_checkpoint=str(tmp_path / "wide.pt")), device="cpu")
