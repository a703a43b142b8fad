"""Typed settings of a labeling job: which models label (`ModelConfig`) and how the job runs (`JobConfig`)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from importlib import metadata

from samcp.checkpoint import file_sha256
from samcp.clip.text_encoder import shipped_clip_checkpoint
from samcp.config_cli import add_model_arguments
from samcp.data.decode import DecodeConfig
from samcp.labeler import Labeler
from samcp.model.factory import build_head, check_head_fits, shipped_head_checkpoint
from samcp.postprocess import PostprocessConfig
from samcp.sam.build import shipped_checkpoint
from samcp.sam.patches import AUTOCAST_DTYPES, PatchConfig
from samcp.storage import absolute_reference
from samcp.vocab import load_vocabulary


@dataclass(frozen=True)
class ModelConfig:
    """SAM + SAM-CP head + CLIP text tower + vocabulary, and the settings that change labels.

    Checkpoints are paths or fsspec URIs; "shipped" means the package's own small
    models. None in `max_patches`, `points_per_side`, the SAM thresholds and the post-processing
    ones (`min_score`, `affinity_thresh`, `overlap_thresh`) keeps the defaults tuned for
    `sam_model` (see `PatchConfig.for_model`) and of `PostprocessConfig`.
    """

    sam_model: str = "tiny"
    sam_checkpoint: str | None = "shipped"
    samcp_checkpoint: str | None = "shipped"  # None: a fixed-seed random head (speed tests)
    clip_model: str = "samcp-clip-tiny"
    clip_checkpoint: str | None = "shipped"  # None: fixed-seed random initialisation
    vocab: str = "builtin:synthetic"
    max_patches: int | None = None
    points_per_side: int | None = None
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    crop_n_layers: int | None = None
    min_score: float | None = None
    affinity_thresh: float | None = None
    overlap_thresh: float | None = None
    kappa: float | None = None  # None: 0.4 with trained CLIP weights, else 0 (see PostprocessConfig)
    kappa_seen: float | None = None  # None: 0.2 with trained CLIP weights, else 0
    autocast: str = "none"  # SAM's dtype under autocast on a GPU: none (fp32), bf16 or fp16
    flip_agreement: bool = False  # also label each image mirrored: segments get flip_iou (2x the cost)

    def __post_init__(self):
        if self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)}, got {self.autocast!r}")
        if self.samcp_checkpoint == "shipped":  # fail here, before Ray starts (the Labeler checks any head)
            check_head_fits(build_head("shipped"), self.sam_model)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The model flags of the labeling CLIs (`--vocab`, `--sam-model`, ...), as a group."""
        models = add_model_arguments(parser)
        models.add_argument("--max-patches", type=int,
                            help="SAM patches kept per image (default: per SAM model)")
        models.add_argument("--points-per-side", type=int, help="SAM point grid (default: per SAM model)")
        models.add_argument("--pred-iou-thresh", type=float,
                            help="keep SAM masks with a predicted IoU above this (default: per SAM model)")
        models.add_argument("--stability-score-thresh", type=float,
                            help="keep SAM masks at least this stable (default: per SAM model)")
        models.add_argument("--crop-n-layers", type=int,
                            help="also run SAM on zoomed crops: layer i adds (2^i)^2 overlapping crops, "
                                 "for finer masks of small parts at that many times the SAM cost "
                                 "(default: per SAM model, 0 for tiny)")
        models.add_argument("--min-score", type=float, help="drop segments scored below this (default 0.1)")
        models.add_argument("--affinity-thresh", type=float,
                            help="drop queries whose best patch affinity is not above this (default 0.1)")
        models.add_argument("--overlap-thresh", type=float,
                            help="drop segments that keep less than this share of their mask (default 0.5)")
        models.add_argument("--kappa", type=float,
                            help="weight of the frozen CLIP classifier in the class ensemble for class "
                                 "names the head was not trained on (default 0.4 with trained CLIP "
                                 "weights, 0 with random ones)")
        models.add_argument("--kappa-seen", type=float,
                            help="the same for the classes the head's checkpoint records as trained "
                                 "(default 0.2 with trained CLIP weights, 0 with random ones)")
        models.add_argument("--autocast", choices=sorted(AUTOCAST_DTYPES), default="none",
                            help="run SAM under autocast in this dtype on a GPU (default: fp32)")
        models.add_argument("--flip-agreement", action="store_true",
                            help="also label each image mirrored left-right and give every segment its "
                                 "flip_iou (IoU with the same-class segment found there), a filter for "
                                 "pseudo-labels (--min-flip-iou of train_on_pseudo_labels); twice the cost")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelConfig:
        return cls(sam_model=args.sam_model, sam_checkpoint=args.sam_checkpoint,
                   samcp_checkpoint=args.samcp_checkpoint, clip_model=args.clip_model,
                   clip_checkpoint=args.clip_checkpoint, vocab=args.vocab, max_patches=args.max_patches,
                   points_per_side=args.points_per_side, pred_iou_thresh=args.pred_iou_thresh,
                   stability_score_thresh=args.stability_score_thresh, crop_n_layers=args.crop_n_layers,
                   min_score=args.min_score,
                   affinity_thresh=args.affinity_thresh, overlap_thresh=args.overlap_thresh,
                   kappa=args.kappa, kappa_seen=args.kappa_seen, autocast=args.autocast,
                   flip_agreement=args.flip_agreement)

    def with_absolute_paths(self) -> ModelConfig:
        """The same models with local checkpoint and vocabulary paths made absolute (for Ray workers)."""
        return dataclasses.replace(self, sam_checkpoint=absolute_reference(self.sam_checkpoint),
                                   samcp_checkpoint=absolute_reference(self.samcp_checkpoint),
                                   clip_checkpoint=absolute_reference(self.clip_checkpoint),
                                   vocab=absolute_reference(self.vocab))

    def patch_config(self) -> PatchConfig:
        overrides = {"max_patches": self.max_patches, "points_per_side": self.points_per_side,
                     "pred_iou_thresh": self.pred_iou_thresh,
                     "stability_score_thresh": self.stability_score_thresh,
                     "crop_n_layers": self.crop_n_layers}
        return PatchConfig.for_model(self.sam_model, **{k: v for k, v in overrides.items() if v is not None})

    def postprocess_config(self) -> PostprocessConfig:
        given = {"score_thresh": self.min_score, "affinity_thresh": self.affinity_thresh,
                 "overlap_thresh": self.overlap_thresh}
        config = PostprocessConfig(kappa=self.kappa, kappa_seen=self.kappa_seen,
                                   **{k: v for k, v in given.items() if v is not None})
        return config.with_default_kappas(bool(self.clip_checkpoint))

    def build_labeler(self, storage_options: dict | None = None, device: str | None = None) -> Labeler:
        return Labeler(sam_model=self.sam_model, sam_checkpoint=self.sam_checkpoint,
                       head_checkpoint=self.samcp_checkpoint, vocab=self.vocab, clip_model=self.clip_model,
                       clip_checkpoint=self.clip_checkpoint, patch_config=self.patch_config(),
                       postprocess=self.postprocess_config(), device=device, storage_options=storage_options,
                       autocast=AUTOCAST_DTYPES[self.autocast], flip_agreement=self.flip_agreement)

    def describe(self, storage_options: dict | None = None) -> dict:
        """What makes these labels what they are: checkpoints with sha256, vocabulary, settings.

        Reads each checkpoint once to hash it; raises FileNotFoundError / VocabularyError early.
        """
        vocab = load_vocabulary(self.vocab)
        sam_checkpoint = checkpoint_file("sam", self.sam_model, self.sam_checkpoint)
        head_checkpoint = checkpoint_file("samcp_head", "samcp-head", self.samcp_checkpoint)
        clip_checkpoint = checkpoint_file("clip", self.clip_model, self.clip_checkpoint)

        def model(name: str, checkpoint: str | None, shown: str | None) -> dict:
            digest = None if checkpoint is None else file_sha256(checkpoint, storage_options)
            return {"model": name, "checkpoint": shown, "sha256": digest}

        return {
            "sam": {**model(self.sam_model, sam_checkpoint, self.sam_checkpoint), "autocast": self.autocast},
            "samcp_head": model("samcp-head", head_checkpoint, self.samcp_checkpoint),
            "clip": model(self.clip_model, clip_checkpoint, self.clip_checkpoint),
            "vocabulary": vocab.record(self.vocab),
            "patches": dataclasses.asdict(self.patch_config()),
            "postprocess": dataclasses.asdict(self.postprocess_config()),
            "flip_agreement": self.flip_agreement,
        }


@dataclass(frozen=True)
class JobConfig:
    """A labeling run: shards in, one Parquet file per shard out (see `pipeline.output`)."""

    inputs: tuple[str, ...]
    output: str
    model: ModelConfig = field(default_factory=ModelConfig)
    actors: int = 1
    num_gpus_per_actor: float = 0.0
    cpus_per_actor: float | None = None  # None: 1 with GPUs, else the CPUs left by readers, shared
    batch_size: int = 4  # images per labeling call
    read_cpus: float = 0.25  # Ray CPUs each shard-reading actor claims
    read_tasks: int | None = None  # shard-reading actors; None: 1 per GPU actor, 1 per 8 CPU actors
    # Ray Data's object store budget for blocks in flight (decoded images waiting for an actor):
    # reading outruns labeling, so without a bound it would buffer the corpus in the object store.
    object_store_mib: int | None = None  # None: 64 MiB per labeling actor
    storage_options: dict | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    write_attempts: int = 5  # tries to write a shard's labels (backoff 1, 2, 4, 8 s) before it fails
    overwrite: bool = False
    progress_every_s: float = 10.0
    ray_address: str | None = None  # None: RAY_ADDRESS (set by `ray job submit`), else a local Ray

    def __post_init__(self):
        if self.actors < 1:
            raise ValueError(f"--actors must be >= 1, got {self.actors}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.read_tasks is not None and self.read_tasks < 1:
            raise ValueError(f"--read-tasks must be >= 1, got {self.read_tasks}")
        if self.write_attempts < 1:
            raise ValueError(f"write_attempts must be >= 1, got {self.write_attempts}")
        if self.object_store_mib is not None and self.object_store_mib < 16:
            raise ValueError(f"--object-store-mib must be >= 16, got {self.object_store_mib}")
        if self.num_gpus_per_actor < 0:
            raise ValueError(f"--num-gpus-per-actor must be >= 0, got {self.num_gpus_per_actor}")


SHIPPED_FILES = {"sam": shipped_checkpoint, "clip": shipped_clip_checkpoint,
                 "samcp_head": lambda _: shipped_head_checkpoint()}


def checkpoint_file(part: str, model: str, checkpoint: str | None) -> str | None:
    """The file a model reference names: the package's own weights of `model` for "shipped"
    (`part` is "sam", "clip" or "samcp_head"), otherwise `checkpoint` as given."""
    return SHIPPED_FILES[part](model) if checkpoint == "shipped" else checkpoint


def package_version() -> str:
    try:
        return metadata.version("samcp-labeler")
    except metadata.PackageNotFoundError:
        return "unknown"
