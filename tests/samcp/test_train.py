import json

from samcp.model.head import HeadConfig
from samcp.train import HeadTrainConfig, train_head


def test_head_training_lowers_the_loss_and_resumes(tmp_path):
    cfg = HeadTrainConfig(train_images=4, cache_part_size=2, points_per_side=8, steps=30, batch_size=2,
                          lr=5e-4, warmup_steps=2, checkpoint_every=10)
    head_config = HeadConfig(dim=64, mlp_hidden_dim=64, ffn_dim=128, encoder_layers=1, decoder_layers=2)
    train_head(cfg, head_config, str(tmp_path), log=lambda line: None)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 30 and log[-1]["loss"] < log[0]["loss"]
    assert len(list((tmp_path / "cache").glob("part-*.pt"))) == 2

    lines = []
    longer = HeadTrainConfig(**{**cfg.__dict__, "steps": 40})
    train_head(longer, head_config, str(tmp_path), log=lines.append)
    assert "resumed from" in lines[0] and "at step 30" in lines[0]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 40
