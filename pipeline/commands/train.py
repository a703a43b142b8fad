"""Train a SAM-CP head on labeled images (SAM and CLIP frozen): a patch cache, then Ray Train.

    samcp shards synthetic --num-images 2000 --output data/train
    samcp train --images 'data/train/*.tar' --output runs/head

The images come as WebDataset shards (any fsspec URI) whose samples carry their panoptic
ground truth (`samcp shards synthetic` or `coco`, e.g. COCO 2017 or ADE20K packed
with their labels), or, with --ground-truth, a COCO panoptic folder whose PNGs are named
by sample key. SAM (--sam-model, --sam-checkpoint and the patch flags) cuts every image
into patches once: the patch cache (--cache, default OUTPUT/cache) holds what the head
reads and its targets, per input shard, and a rerun finishes only the missing shards.
Ray Train then streams the cache each epoch to --workers DDP workers (--use-gpu: one GPU
each, bf16 autocast), checkpoints to OUTPUT/train/ every --checkpoint-every steps and at
each epoch's end, and a rerun of the same command resumes from the latest. With --val
shards, the metrics get the PQ of their first --val-images images after every epoch.
The head (OUTPUT/samcp_head.pt) loads in `samcp corpus --head-checkpoint`, with
the same SAM, CLIP and vocabulary.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.train.cache import CacheConfig, LabelSource, run_cache_job
from pipeline.train.trainer import TrainConfig, run_training
from samcp.clip.region import check_clip_width
from samcp.config import PATCH_FIELDS, LabelerConfig
from samcp.data.decode import DecodeConfig
from samcp.flags import add_config_arguments, config_from_args
from samcp.model.head import HeadConfig
from samcp.model_files import describe_models
from samcp.storage import StorageError, add_storage_options_argument, child
from samcp.train.criterion import CriterionConfig

MODEL_FIELDS = ("vocab", "sam_model", "sam_checkpoint", "clip_model", "clip_checkpoint", "autocast",
                *PATCH_FIELDS)
CACHE_FIELDS = ("mirror", "turn", "actors", "num_gpus_per_actor", "cache_batch_size")
TRAIN_FIELDS = ("init", "backbone_checkpoint", "val", "val_images", "workers", "use_gpu", "epochs", "steps",
                "batch_size", "lr", "weight_decay", "schedule", "warmup_steps", "grad_clip", "seed",
                "checkpoint_every")
HEAD_FIELDS = tuple(f for f in HeadConfig.__dataclass_fields__ if f not in ("feature_dim", "text_dim"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", action="append", required=True,
                        help="shards of labeled images: URI, glob or brace pattern (repeatable)")
    parser.add_argument("--ground-truth", help="a COCO panoptic folder labeling the --images (PNGs named by "
                                               "sample key; default: the labels inside each sample)")
    parser.add_argument("--output", required=True, help="run URI: checkpoints, metrics.json, samcp_head.pt")
    parser.add_argument("--cache", help="patch cache URI (default: OUTPUT/cache)")
    add_config_arguments(parser.add_argument_group("models (frozen)"), LabelerConfig, only=MODEL_FIELDS)
    cache = parser.add_argument_group("patch cache")
    add_config_arguments(cache, CacheConfig, only=CACHE_FIELDS)
    cache.add_argument("--max-side", type=int, default=DecodeConfig.max_side,
                       help="images are downscaled to this longer side when decoded, their labels with them")
    add_config_arguments(parser.add_argument_group("training"), TrainConfig, only=TRAIN_FIELDS)
    add_config_arguments(parser.add_argument_group("head architecture (a new head)"), HeadConfig,
                         only=HEAD_FIELDS)
    add_config_arguments(parser.add_argument_group("loss weights"), CriterionConfig)
    add_storage_options_argument(parser)
    parser.add_argument("--ray-address", help="cluster to join (default: RAY_ADDRESS, else a local Ray)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = lambda line: print(line, flush=True)  # noqa: E731
    cache = args.cache or child(args.output, "cache", args.storage_options)
    train = config_from_args(TrainConfig, args, only=TRAIN_FIELDS, cache=cache, output=args.output,
                             criterion=config_from_args(CriterionConfig, args),
                             storage_options=args.storage_options, ray_address=args.ray_address)
    try:
        head = config_from_args(HeadConfig, args, only=HEAD_FIELDS)
        models = config_from_args(LabelerConfig, args, only=MODEL_FIELDS, head_checkpoint=None)
        labeling = describe_models(models.with_absolute_paths(), args.storage_options)
        check_clip_width(head.clip_dim, models.clip_model)
        source = LabelSource("coco" if args.ground_truth else "truth", tuple(args.images), args.ground_truth)
        summary = run_cache_job(config_from_args(CacheConfig, args, only=CACHE_FIELDS, cache=cache,
                                                 roi_size=head.roi_size, clip_dim=head.clip_dim,
                                                 backbone=head.backbone,
                                                 decode=DecodeConfig(max_side=args.max_side),
                                                 storage_options=args.storage_options,
                                                 ray_address=args.ray_address), labeling, [source], log)
        if summary["failed"]:
            print(f"error: {len(summary['failed'])} shards could not be cached (listed above); rerun the "
                  "same command once they are fixed", file=sys.stderr)
            return 1
        result = run_training(train, head, log)
    except (FileNotFoundError, ValueError, StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    last = result["history"][-1]
    print(f"step {last['step']}: loss {last['loss']:.4f}" + (f", val PQ {last['val_pq']:.1f}"
                                                             if "val_pq" in last else ""))
    print(f"head: {result['head']} (trained on {result['images']} cached examples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
