"""Self-training: N rounds of label -> filter -> retrain -> evaluate, with PQ per round.

    samcp self-train --unlabeled 'data/target/*.tar' --eval-images 'data/val/*.tar' \\
        --eval-ground-truth data/val_coco --head-checkpoint runs/small_head/samcp_head.pt \\
        --rounds 2 --output runs/st

Round 0 scores the starting head; each round labels the unlabeled shards with
the latest head (`samcp corpus`), keeps segments scored >= --keep-score,
retrains from that head on them (jobs/train_on_pseudo_labels.py, Ray Train),
with the --ground-truth-images (or --ground-truth) images alongside when given (a labeled subset keeps the
classes alive that the pseudo-labels miss), and scores the new head on the
evaluation shards against their COCO panoptic
ground truth. Rerunning the same command resumes. OUTPUT/self_training.json
holds the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from pipeline.selftrain.rounds import SelfTrainConfig, run_self_training
from pipeline.train.pseudo import add_retraining_arguments, retraining_config
from samcp.config import LabelerConfig
from samcp.flags import add_config_arguments, config_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unlabeled", action="append", required=True,
                        help="shards to learn from (repeatable)")
    parser.add_argument("--eval-images", action="append", required=True, help="held-out shards (repeatable)")
    parser.add_argument("--eval-ground-truth", required=True, help="their COCO panoptic folder")
    parser.add_argument("--output", required=True, help="local folder for the rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--actors", type=int, default=1, help="labeling actors")
    parser.add_argument("--ray-address")
    add_config_arguments(parser.add_argument_group("models (--head-checkpoint: the starting head)"),
                         LabelerConfig)
    add_retraining_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    labeler = config_from_args(LabelerConfig, args)
    if args.min_flip_iou > 0:
        labeler = dataclasses.replace(labeler, flip_agreement=True)
    cfg = SelfTrainConfig(unlabeled=tuple(args.unlabeled), eval_images=tuple(args.eval_images),
                          eval_ground_truth=args.eval_ground_truth, output=args.output, rounds=args.rounds,
                          labeler=labeler, actors=args.actors,
                          retraining=retraining_config(args, labels="", images=tuple(args.unlabeled),
                                                       output="", ray_address=args.ray_address))
    run_self_training(cfg, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
