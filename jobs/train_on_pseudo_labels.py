"""Retrain the SAM-CP head on the labels of jobs/label_corpus.py (self-training), with Ray Train.

    ray job submit --working-dir . -- python jobs/train_on_pseudo_labels.py \
        --labels s3://bucket/labels/run-1/ --images 's3://bucket/corpus/shard-{000000..000099}.tar' \
        --init shipped --output s3://bucket/models/samcp_st1/ --keep-score 0.5 --workers 8 --use-gpu

Segments scoring below --keep-score (or their class's --class-keep-score), or
found again in the mirrored image with an IoU below --min-flip-iou (labels made
with `label_corpus.py --flip-agreement`), are dropped, and their pixels, with
every pixel no segment covers, are ignored by the loss rather than taught as
background. Images with real labels can train
alongside (--ground-truth-images: shards whose samples carry their labels, as
make_shards.py synthetic and coco write them, or, with --ground-truth, a COCO
panoptic folder whose PNGs are named by sample key, the shards of its images). SAM, its patch settings, the
vocabulary and the CLIP model are those of the labeling run (its
`_manifest.json`; SAM and CLIP must still have the sha256 recorded there, and
--sam-checkpoint names the SAM that made them when its path now holds another).
Checkpoints go to OUTPUT/train/, one per epoch; rerunning
the same command resumes from the latest. The result, OUTPUT/samcp_head.pt,
loads in `jobs/label_corpus.py --head-checkpoint`.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.train.pseudo import (
    PseudoTrainConfig,
    add_retraining_arguments,
    retraining_config,
    run_pseudo_training,
)
from samcp.storage import add_storage_options_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, help="output URI of jobs/label_corpus.py")
    parser.add_argument("--images", action="append", required=True,
                        help="the labeled shards: URI, glob or brace pattern (repeatable)")
    parser.add_argument("--output", required=True, help="run URI: checkpoints, metrics.json, samcp_head.pt")
    parser.add_argument("--init", default="shipped", help="head checkpoint to start from")
    parser.add_argument("--sam-checkpoint",
                        help="the SAM that made the labels, when their manifest's checkpoint has changed "
                             "since (its sha256 is checked either way)")
    add_retraining_arguments(parser)
    add_storage_options_argument(parser)
    parser.add_argument("--ray-address", help="cluster to join (default: RAY_ADDRESS, else a local Ray)")
    return parser


def parse_args(argv: list[str] | None = None) -> PseudoTrainConfig:
    args = build_parser().parse_args(argv)
    return retraining_config(args, labels=args.labels, images=tuple(args.images), output=args.output,
                             init=args.init, sam_checkpoint=args.sam_checkpoint,
                             storage_options=args.storage_options, ray_address=args.ray_address)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        result = run_pseudo_training(cfg, log=lambda line: print(line, flush=True))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for epoch in result["history"]:
        print(f"epoch {epoch['epoch']}: loss {epoch['loss']:.4f}")
    print(f"head: {result['head']} (trained on {result['images']} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
