"""ModelConfig: the CLIP checkpoint decides the default kappas, autocast is checked, and the manifest
records both."""

import argparse

import pytest
import torch

from pipeline.config import ModelConfig
from samcp.checkpoint import file_sha256
from samcp.clip.text_encoder import shipped_clip_checkpoint
from samcp.postprocess import PostprocessConfig


def test_kappa_follows_the_clip_checkpoint_unless_given():
    random_clip = ModelConfig(clip_checkpoint=None).postprocess_config()
    assert (random_clip.kappa, random_clip.kappa_seen) == (0.0, 0.0)  # random CLIP: the head alone
    shipped = ModelConfig().postprocess_config()
    assert (shipped.kappa, shipped.kappa_seen) == (0.4, 0.2)  # the shipped trained CLIP
    given = ModelConfig(clip_checkpoint="shipped", kappa=1.0, kappa_seen=0.3).postprocess_config()
    assert (given.kappa, given.kappa_seen) == (1.0, 0.3)
    described = ModelConfig(clip_checkpoint="shipped", min_score=0.5).describe()
    assert described["postprocess"]["kappa"] == 0.4 and described["postprocess"]["score_thresh"] == 0.5
    assert described["postprocess"]["overlap_thresh"] == 0.5  # the default
    assert described["clip"] == {"model": "samcp-clip-tiny", "checkpoint": "shipped",
                                 "sha256": file_sha256(shipped_clip_checkpoint("samcp-clip-tiny"))}


def test_autocast_is_checked_recorded_and_reaches_the_patch_generator():
    with pytest.raises(ValueError, match="autocast"):
        ModelConfig(autocast="int8")
    model = ModelConfig(points_per_side=4, autocast="bf16")
    assert model.describe()["sam"]["autocast"] == "bf16"
    assert model.build_labeler(device="cpu").generator.autocast_dtype is torch.bfloat16


def test_post_processing_flags_reach_the_labeler():
    parser = argparse.ArgumentParser()
    ModelConfig.add_arguments(parser)
    args = parser.parse_args(["--min-score", "0.3", "--affinity-thresh", "0.2", "--overlap-thresh", "0.65",
                              "--kappa-seen", "0.3"])
    cfg = ModelConfig.from_args(args).postprocess_config()
    given = (cfg.score_thresh, cfg.affinity_thresh, cfg.overlap_thresh, cfg.kappa_seen)
    assert given == (0.3, 0.2, 0.65, 0.3)
    assert (ModelConfig.from_args(parser.parse_args([])).postprocess_config()
            == PostprocessConfig(kappa=0.4, kappa_seen=0.2))
    with pytest.raises(ValueError, match="score_thresh"):
        ModelConfig(min_score=-1).postprocess_config()


def test_patch_flags_reach_the_patch_generator():
    parser = argparse.ArgumentParser()
    ModelConfig.add_arguments(parser)
    args = parser.parse_args(["--points-per-side", "8", "--crop-n-layers", "1", "--max-patches", "40"])
    patches = ModelConfig.from_args(args).patch_config()
    assert (patches.points_per_side, patches.crop_n_layers, patches.max_patches) == (8, 1, 40)
    assert patches.pred_iou_thresh == 0.2  # the tiny SAM's own default, kept
    assert ModelConfig.from_args(parser.parse_args([])).patch_config().crop_n_layers == 0
    with pytest.raises(ValueError, match="crop_n_layers"):
        ModelConfig(crop_n_layers=-1).patch_config()


def test_the_shipped_head_is_refused_with_another_sam_before_any_work():
    with pytest.raises(ValueError, match="trained on SAM 'tiny'"):
        ModelConfig(sam_model="tiny8")
    assert ModelConfig(sam_model="tiny8", samcp_checkpoint=None).sam_model == "tiny8"
