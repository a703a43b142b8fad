"""Retrain the SAM-CP head on the labels of jobs/label_corpus.py (self-training), with Ray Train.

    ray job submit --working-dir . -- python jobs/train_on_pseudo_labels.py \
        --labels s3://bucket/labels/run-1/ --images 's3://bucket/corpus/shard-{000000..000099}.tar' \
        --init shipped --output s3://bucket/models/samcp_st1/ --min-score 0.5 --workers 8 --use-gpu

Segments scoring below --min-score (or their class's --class-min-score), or
found again in the mirrored image with an IoU below --min-flip-iou (labels made
with `label_corpus.py --flip-agreement`), are dropped, and their pixels, with
every pixel no segment covers, are ignored by the loss rather than taught as
background. Images with real labels can train
alongside (--ground-truth, a COCO panoptic folder whose PNGs are named by sample
key, with --ground-truth-images, their shards). SAM, its patch settings, the
vocabulary and the CLIP model are those of the labeling run (its
`_manifest.json`; SAM and CLIP must still have the sha256 recorded there, and
--sam-checkpoint names the SAM that made them when its path now holds another).
Checkpoints go to OUTPUT/train/, one per epoch; rerunning
the same command resumes from the latest. The result, OUTPUT/samcp_head.pt,
loads in `jobs/label_corpus.py --samcp-checkpoint`.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.train.examples import ScoreFilter
from pipeline.train.trainer import PseudoTrainConfig, run_pseudo_training
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
    parser.add_argument("--min-score", type=float, default=0.5, help="keep segments scored at least this")
    parser.add_argument("--class-min-score", type=json.loads, default={},
                        help='per-class thresholds as JSON, e.g. \'{"car": 0.7}\'')
    parser.add_argument("--min-flip-iou", type=float, default=0.0,
                        help="also keep only segments found again with IoU >= this in the mirrored "
                             "image (labels made with label_corpus.py --flip-agreement)")
    parser.add_argument("--ground-truth",
                        help="COCO panoptic folder of images with real labels, trained on too")
    parser.add_argument("--ground-truth-images", action="append", default=[],
                        help="the shards of those images (repeatable)")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (DDP)")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--mirror", action="store_true",
                        help="every training image also enters mirrored left-right (one more example each)")
    parser.add_argument("--turn", action="store_true",
                        help="every training image also enters turned by 90, 180 or 270 degrees, "
                             "picked by its key (one more example per image)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per worker and step")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    add_storage_options_argument(parser)
    parser.add_argument("--ray-address", help="cluster to join (default: RAY_ADDRESS, else a local Ray)")
    return parser


def parse_args(argv: list[str] | None = None) -> PseudoTrainConfig:
    args = build_parser().parse_args(argv)
    return PseudoTrainConfig(labels=args.labels, images=tuple(args.images), output=args.output,
                             init=args.init, sam_checkpoint=args.sam_checkpoint,
                             scores=ScoreFilter(args.min_score, args.class_min_score, args.min_flip_iou),
                             ground_truth=args.ground_truth,
                             ground_truth_images=tuple(args.ground_truth_images),
                             workers=args.workers,
                             use_gpu=args.use_gpu, epochs=args.epochs, mirror=args.mirror, turn=args.turn,
                             batch_size=args.batch_size, lr=args.lr,
                             seed=args.seed, storage_options=args.storage_options,
                             ray_address=args.ray_address)


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
