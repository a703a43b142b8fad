"""Check a `LabelerConfig`'s model files without building its models, and describe them.

`describe_models(cfg)` is what a labeling run records (and compares on resume): each checkpoint
with its sha256, the vocabulary, the patch and post-processing settings. On the way it refuses
what `Labeler.from_config` would refuse (missing or unreadable files, weights of another
architecture, a head trained on other SAM weights or for other embedding widths), holding at most
one checkpoint's tensors mapped from a file, never a model: the models are built on the meta
device, for their shapes.
"""

from __future__ import annotations

import dataclasses

import open_clip
import torch

from samcp.checkpoint import check_fits, file_sha256, load_state_dict, weights_fingerprint
from samcp.clip.region import check_clip_width
from samcp.clip.text_encoder import meta_clip
from samcp.config import LabelerConfig
from samcp.model.factory import build_head, check_head_fits
from samcp.sam.build import build_sam
from samcp.vocab import load_vocabulary


def describe_models(cfg: LabelerConfig, storage_options: dict | None = None) -> dict:
    """{"sam", "head", "clip"}: {"model", "checkpoint" (as given), "sha256"} each ("autocast" too for
    SAM), "vocabulary" (its record), "patches", "postprocess" (the settings in full), "flip_agreement".

    Raises FileNotFoundError for a missing checkpoint, ValueError (VocabularyError included) for
    one that does not fit or a bad vocabulary.
    """
    vocab = load_vocabulary(cfg.vocab)
    files = cfg.checkpoint_files()
    with torch.device("meta"):
        sam = build_sam(cfg.sam_model, None)
    clip = meta_clip(cfg.clip_model)
    sam_weights = None
    if files["sam"] is not None:
        state = load_state_dict(files["sam"], storage_options)
        check_fits(state, sam.state_dict(), files["sam"], cfg.sam_model)
        sam_weights = weights_fingerprint(state)
        del state
    if files["clip"] is not None:
        check_fits(load_state_dict(files["clip"], storage_options), clip.state_dict(),
                   files["clip"], cfg.clip_model)
    if files["head"] is not None:
        head = build_head(files["head"], storage_options)
        sam_width = (sam.prompt_encoder.embed_dim if head.config.reads_sam_embedding
                     else head.config.feature_dim)  # a ResNet backbone's projection
        widths = (sam_width, open_clip.get_model_config(cfg.clip_model)["embed_dim"])
        if (head.config.feature_dim, head.config.text_dim) != widths:
            raise ValueError(f"the SAM-CP head reads {head.config.feature_dim}-channel SAM embeddings and "
                             f"{head.config.text_dim}-wide text embeddings, but SAM {cfg.sam_model!r} gives "
                             f"{widths[0]} and CLIP {cfg.clip_model!r} {widths[1]}: use a head trained with "
                             "these models (samcp train), or none (random weights) for speed tests")
        check_head_fits(head, cfg.sam_model, sam_weights)
        check_clip_width(head.config.clip_dim, cfg.clip_model)

    def model(part: str, name: str, given: str | None) -> dict:
        digest = None if files[part] is None else file_sha256(files[part], storage_options)
        return {"model": name, "checkpoint": given, "sha256": digest}

    return {
        "sam": {**model("sam", cfg.sam_model, cfg.sam_checkpoint), "autocast": cfg.autocast},
        "head": model("head", "samcp-head", cfg.head_checkpoint),
        "clip": model("clip", cfg.clip_model, cfg.clip_checkpoint),
        "vocabulary": vocab.record(cfg.vocab),
        "patches": dataclasses.asdict(cfg.patch_config()),
        "postprocess": dataclasses.asdict(cfg.postprocess_config()),
        "flip_agreement": cfg.flip_agreement,
    }
