"""LabelerConfig: inert data whose fields are flags; the CLIP checkpoint decides the default kappas,
autocast is checked, and the patch and post-processing settings reach the parts."""

import argparse
import dataclasses

import pytest
import torch

from samcp.config import LabelerConfig
from samcp.flags import add_config_arguments, config_from_args
from samcp.labeler import Labeler
from samcp.postprocess import PostprocessConfig


def parse(argv: list[str]) -> LabelerConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, LabelerConfig)
    return config_from_args(LabelerConfig, parser.parse_args(argv))


def test_building_a_config_reads_nothing():
    cfg = LabelerConfig(vocab="/no/such/vocab.yaml", sam_checkpoint="/no/such/sam.pt",
                        head_checkpoint="s3://no-such-bucket/head.pt")
    assert cfg.checkpoint_files()["sam"] == "/no/such/sam.pt"
    assert cfg.checkpoint_files()["head"] == "s3://no-such-bucket/head.pt"
    assert cfg.checkpoint_files()["clip"].endswith("open_clip_tiny.pt")  # "shipped" resolved


def test_kappa_follows_the_clip_checkpoint_unless_given():
    random_clip = LabelerConfig(clip_checkpoint=None).postprocess_config()
    assert (random_clip.kappa, random_clip.kappa_seen) == (0.0, 0.0)  # random CLIP: the head alone
    shipped = LabelerConfig().postprocess_config()
    assert (shipped.kappa, shipped.kappa_seen) == (0.4, 0.2)  # the shipped trained CLIP
    given = LabelerConfig(kappa=1.0, kappa_seen=0.3).postprocess_config()
    assert (given.kappa, given.kappa_seen) == (1.0, 0.3)


def test_autocast_is_checked_and_reaches_the_patch_generator():
    with pytest.raises(ValueError, match="autocast"):
        LabelerConfig(autocast="int8")
    labeler = Labeler.from_config(LabelerConfig(points_per_side=4, autocast="bf16"), device="cpu")
    assert labeler.generator.autocast_dtype is torch.bfloat16


def test_post_processing_flags_keep_their_names_in_the_config():
    cfg = parse(["--min-score", "0.3", "--affinity-thresh", "0.2", "--overlap-thresh", "0.65",
                 "--kappa-seen", "0.3", "--no-merge-instances"])
    post = cfg.postprocess_config()
    given = (post.min_score, post.affinity_thresh, post.overlap_thresh, post.kappa_seen)
    assert given == (0.3, 0.2, 0.65, 0.3)
    assert post.merge_instances is False
    assert parse([]).postprocess_config() == PostprocessConfig(kappa=0.4, kappa_seen=0.2)
    with pytest.raises(ValueError, match="min_score"):
        LabelerConfig(min_score=-1).postprocess_config()


def test_patch_flags_reach_the_patch_config():
    patches = parse(["--points-per-side", "8", "--crop-n-layers", "1", "--max-patches", "40"]).patch_config()
    assert (patches.points_per_side, patches.crop_n_layers, patches.max_patches) == (8, 1, 40)
    assert patches.pred_iou_thresh == 0.2  # the tiny SAM's own default, kept
    assert parse([]).patch_config().crop_n_layers == 0
    with pytest.raises(ValueError, match="crop_n_layers"):
        LabelerConfig(crop_n_layers=-1).patch_config()


def test_every_field_is_a_flag_with_the_fields_default():
    cfg = parse([])
    assert cfg == LabelerConfig()
    assert parse(["--head-checkpoint", "none", "--sam-model", "tiny8", "--flip-agreement"]) == \
        dataclasses.replace(LabelerConfig(), head_checkpoint=None, sam_model="tiny8", flip_agreement=True)
