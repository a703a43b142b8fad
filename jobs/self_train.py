"""Self-training: N rounds of label -> filter -> retrain -> evaluate, with PQ per round.

    python jobs/self_train.py --unlabeled 'data/target/*.tar' --eval-images 'data/val/*.tar' \
        --eval-ground-truth data/val_coco --init runs/small_head/samcp_head.pt --rounds 2 --output runs/st

Round 0 scores the starting head; each round labels the unlabeled shards with
the latest head (jobs/label_corpus.py), keeps segments scored >= --min-score,
retrains from that head on them (jobs/train_on_pseudo_labels.py, Ray Train),
with the --ground-truth images alongside when given (a labeled subset keeps the
classes alive that the pseudo-labels miss), and scores the new head on the
evaluation shards against their COCO panoptic
ground truth. Rerunning the same command resumes. OUTPUT/self_training.json
holds the table.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.config import ModelConfig
from pipeline.selftrain.rounds import SelfTrainConfig, run_self_training
from pipeline.train.examples import ScoreFilter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unlabeled", action="append", required=True,
                        help="shards to learn from (repeatable)")
    parser.add_argument("--eval-images", action="append", required=True, help="held-out shards (repeatable)")
    parser.add_argument("--eval-ground-truth", required=True, help="their COCO panoptic folder")
    parser.add_argument("--output", required=True, help="local folder for the rounds")
    parser.add_argument("--init", default="shipped", help="starting head checkpoint")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ground-truth",
                        help="COCO panoptic folder of labeled images, trained on in every round")
    parser.add_argument("--ground-truth-images", action="append", default=[],
                        help="the shards of those images (repeatable)")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--class-min-score", type=json.loads, default={},
                        help='per-class thresholds as JSON, e.g. \'{"car": 0.7}\' (above 1: never kept)')
    parser.add_argument("--min-flip-iou", type=float, default=0.0,
                        help="> 0: label with --flip-agreement and keep only segments found again with "
                             "IoU >= this in the mirrored image (labeling costs twice as much)")
    parser.add_argument("--points-per-side", type=int, help="SAM point grid (default: per SAM model)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--mirror", action="store_true",
                        help="retrain on every image also mirrored left-right (one more example per image)")
    parser.add_argument("--turn", action="store_true",
                        help="every training image also enters turned by 90, 180 or 270 degrees, "
                             "picked by its key (one more example per image)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--actors", type=int, default=1, help="labeling actors")
    parser.add_argument("--ray-address")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model = ModelConfig(points_per_side=args.points_per_side, flip_agreement=args.min_flip_iou > 0)
    cfg = SelfTrainConfig(unlabeled=tuple(args.unlabeled), eval_images=tuple(args.eval_images),
                          eval_ground_truth=args.eval_ground_truth, output=args.output, init=args.init,
                          rounds=args.rounds, model=model,
                          scores=ScoreFilter(args.min_score, args.class_min_score, args.min_flip_iou),
                          ground_truth=args.ground_truth,
                          ground_truth_images=tuple(args.ground_truth_images), workers=args.workers,
                          use_gpu=args.use_gpu, epochs=args.epochs, mirror=args.mirror, turn=args.turn,
                          batch_size=args.batch_size, lr=args.lr, actors=args.actors,
                          ray_address=args.ray_address)
    run_self_training(cfg, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
