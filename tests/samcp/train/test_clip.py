"""The small CLIP's contrastive training: the loss, a short run, and a checkpoint open_clip loads."""

import json

import open_clip
import torch
import torch.nn.functional as F

from samcp.clip.region import RegionClassifier, region_encoder
from samcp.clip.text_encoder import TextEncoder
from samcp.train.clip import ClipTrainConfig, multi_positive_loss, train_clip
from samcp.vocab import load_vocabulary


def test_multi_positive_loss_rewards_matching_pairs_and_shares_a_text():
    texts = F.normalize(torch.eye(3, 8), dim=-1)
    index = torch.tensor([0, 0, 1, 2])  # two images share text 0
    matching = texts[index]
    wrong = texts[torch.tensor([1, 2, 0, 0])]
    scale = torch.tensor(20.0)
    good = multi_positive_loss(matching, texts, index, scale)
    assert good < 0.01 + torch.log(torch.tensor(2.0)) / 2  # text 0 spreads its target over 2 images
    assert multi_positive_loss(wrong, texts, index, scale) > good + 5


def test_short_training_lowers_the_loss_and_saves_an_open_clip_checkpoint(tmp_path):
    from samcp.checkpoint import save_weights

    cfg = ClipTrainConfig(train_images=24, steps=50, regions_per_batch=48, captions_per_batch=8,
                          warmup_steps=5, lr=2e-3, checkpoint_every=25)
    model = train_clip(cfg, str(tmp_path), log=lambda _: None)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
    assert len(losses) == 2 and losses[1] < losses[0] - 0.3
    weights = tmp_path / "clip.pt"
    save_weights(model, str(weights), half=True)
    # loads like a real open_clip checkpoint, through open_clip's own factory ...
    loaded = open_clip.create_model(cfg.model, pretrained=str(weights))
    assert torch.allclose(loaded.logit_scale, model.logit_scale.half().float())
    # ... and through this package's text encoder and region classifier
    encoder = TextEncoder(cfg.model, str(weights), cache_dir=None)
    vocab = load_vocabulary(cfg.vocab)
    probs = RegionClassifier(region_encoder(encoder), encoder.embed(vocab))(
        torch.zeros(32, 32, 3, dtype=torch.uint8), torch.ones(1, 32, 32, dtype=torch.bool))
    assert probs.shape == (1, len(vocab.classes))
