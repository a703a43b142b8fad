"""`LabelerConfig`: which models label and the settings that change their labels, as inert data.

Building one reads nothing; `samcp.Labeler.from_config` builds the models it names, and
`samcp.model_files.describe_models` checks and fingerprints its files without building them.
Checkpoint references are paths or fsspec URIs, "shipped" for the package's own small models
(`samcp.shipped`) or None for fixed-seed random weights (speed tests).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from samcp.postprocess import PostprocessConfig
from samcp.sam.patches import AUTOCAST_DTYPES, PatchConfig
from samcp.shipped import checkpoint_file
from samcp.storage import absolute_reference

# The fields that pick models (the rest tune patches and post-processing).
MODEL_FIELDS = ("vocab", "sam_model", "sam_checkpoint", "head_checkpoint", "clip_model", "clip_checkpoint")
PATCH_FIELDS = ("max_patches", "points_per_side", "pred_iou_thresh", "stability_score_thresh",
                "crop_n_layers")
POSTPROCESS_FIELDS = ("min_score", "affinity_thresh", "overlap_thresh", "merge_instances")


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class LabelerConfig:
    """SAM + SAM-CP head + CLIP + vocabulary, and the settings that change labels.

    None in a patch or post-processing setting keeps the default tuned for `sam_model`
    (`PatchConfig.for_model`) or of `PostprocessConfig`. Each field is the flag of the same
    name (`samcp.flags`).
    """

    vocab: str = field(default="builtin:synthetic", metadata=_help(
        "vocabulary YAML path/URI or builtin:NAME"))
    sam_model: str = field(default="tiny", metadata=_help(
        "SAM architecture: vit_h, vit_l, vit_b, tiny or tiny8"))
    sam_checkpoint: str | None = field(default="shipped", metadata=_help(
        "SAM weights path/URI, 'shipped' (tiny, tiny8) or 'none' (random weights: speed tests)"))
    head_checkpoint: str | None = field(default="shipped", metadata=_help(
        "SAM-CP head path/URI, 'shipped' (the package's head for the shipped SAM: tiny, tiny8) or 'none' "
        "(random weights: speed tests)"))
    clip_model: str = field(default="samcp-clip-tiny", metadata=_help("open_clip architecture"))
    clip_checkpoint: str | None = field(default="shipped", metadata=_help(
        "open_clip weights path/URI, 'shipped' (samcp-clip-tiny) or 'none' (fixed-seed random weights)"))
    max_patches: int | None = field(default=None, metadata=_help(
        "SAM patches kept per image (default: per SAM model)"))
    points_per_side: int | None = field(default=None, metadata=_help(
        "SAM point grid (default: per SAM model)"))
    pred_iou_thresh: float | None = field(default=None, metadata=_help(
        "keep SAM masks with a predicted IoU above this (default: per SAM model)"))
    stability_score_thresh: float | None = field(default=None, metadata=_help(
        "keep SAM masks at least this stable (default: per SAM model)"))
    crop_n_layers: int | None = field(default=None, metadata=_help(
        "also run SAM on zoomed crops: layer i adds (2^i)^2 overlapping crops, for finer masks of small "
        "parts at that many times the SAM cost (default: per SAM model, 0 for tiny)"))
    min_score: float | None = field(default=None, metadata=_help(
        f"drop segments scored below this (default {PostprocessConfig.min_score})"))
    affinity_thresh: float | None = field(default=None, metadata=_help(
        "drop queries whose best patch affinity is not above this "
        f"(default {PostprocessConfig.affinity_thresh})"))
    overlap_thresh: float | None = field(default=None, metadata=_help(
        "drop segments that keep less than this share of their mask "
        f"(default {PostprocessConfig.overlap_thresh})"))
    merge_instances: bool = field(default=True, metadata=_help(
        "merge patches into instances (--no-merge-instances: each patch its own instance, an ablation)"))
    kappa: float | None = field(default=None, metadata=_help(
        "weight of the frozen CLIP classifier in the class ensemble for class names the head was not "
        "trained on (default 0.4 with trained CLIP weights, 0 with random ones)"))
    kappa_seen: float | None = field(default=None, metadata=_help(
        "the same for the classes the head's checkpoint records as trained (default 0.2 with trained CLIP "
        "weights, 0 with random ones)"))
    autocast: str = field(default="none", metadata={
        "help": "run SAM under autocast in this dtype on a GPU (default: none, fp32)",
        "choices": sorted(AUTOCAST_DTYPES)})
    flip_agreement: bool = field(default=False, metadata=_help(
        "also label each image mirrored left-right and give every segment its flip_iou (IoU with the "
        "same-class segment found there), a filter for pseudo-labels (--min-flip-iou); twice the cost"))

    def __post_init__(self):
        if self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)}, got {self.autocast!r}")

    def checkpoint_files(self) -> dict[str, str | None]:
        """{"sam", "head", "clip"}: the file each checkpoint reference names ("shipped" resolved)."""
        return {"sam": checkpoint_file("sam", self.sam_model, self.sam_checkpoint),
                "head": checkpoint_file("head", self.sam_model, self.head_checkpoint),
                "clip": checkpoint_file("clip", self.clip_model, self.clip_checkpoint)}

    def with_absolute_paths(self) -> LabelerConfig:
        """The same models with local checkpoint and vocabulary paths made absolute (for Ray workers)."""
        return dataclasses.replace(self, sam_checkpoint=absolute_reference(self.sam_checkpoint),
                                   head_checkpoint=absolute_reference(self.head_checkpoint),
                                   clip_checkpoint=absolute_reference(self.clip_checkpoint),
                                   vocab=absolute_reference(self.vocab))

    def patch_config(self) -> PatchConfig:
        """The patch settings: those tuned for `sam_model` (read from its config), then the ones set."""
        given = {name: getattr(self, name) for name in PATCH_FIELDS if getattr(self, name) is not None}
        return PatchConfig.for_model(self.sam_model, **given)

    def postprocess_config(self) -> PostprocessConfig:
        given = {name: getattr(self, name) for name in POSTPROCESS_FIELDS if getattr(self, name) is not None}
        config = PostprocessConfig(kappa=self.kappa, kappa_seen=self.kappa_seen, **given)
        return config.with_default_kappas(bool(self.clip_checkpoint))
