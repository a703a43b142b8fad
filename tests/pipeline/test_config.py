"""ModelConfig: the CLIP checkpoint decides the default kappa, and the manifest records both."""

from pipeline.config import ModelConfig
from samcp.checkpoint import file_sha256
from samcp.text_encoder import shipped_clip_checkpoint


def test_kappa_follows_the_clip_checkpoint_unless_given():
    assert ModelConfig(clip_checkpoint=None).postprocess_config().kappa == 0.0  # random CLIP: the head alone
    assert ModelConfig().postprocess_config().kappa == 0.4  # the shipped trained CLIP
    assert ModelConfig(clip_checkpoint="shipped", kappa=1.0).postprocess_config().kappa == 1.0
    described = ModelConfig(clip_checkpoint="shipped", min_score=0.5).describe()
    assert described["postprocess"]["kappa"] == 0.4 and described["postprocess"]["score_thresh"] == 0.5
    assert described["clip"] == {"model": "samcp-clip-tiny", "checkpoint": "shipped",
                                 "sha256": file_sha256(shipped_clip_checkpoint("samcp-clip-tiny"))}
