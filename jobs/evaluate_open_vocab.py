"""Open-vocabulary table: PQ of seen vs held-out class names for several CLIP ensemble weights.

    python jobs/evaluate_open_vocab.py --head-checkpoint runs/head_seen/samcp_head.pt \\
        --clip-checkpoint runs/clip/open_clip_samcp-clip-tiny.pt --num-images 200

The head was trained with `--seen-vocab`; the images are labeled with `--vocab` (every
class), and PQ is averaged over seen and over held-out thing classes for each kappa.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from samcp.config import LabelerConfig
from samcp.eval.open_vocab import evaluate_open_vocabulary
from samcp.flags import add_config_arguments, config_from_args
from samcp.labeler import Labeler
from samcp.provenance import provenance
from samcp.vocab import load_vocabulary

# The model flags this job takes from `LabelerConfig`: the two checkpoints are required here, and
# the kappa is what it sweeps (--kappas).
OWN = ("head_checkpoint", "clip_checkpoint", "kappa")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head-checkpoint", required=True, help="head trained on the seen classes")
    parser.add_argument("--clip-checkpoint", required=True,
                        help="the CLIP whose text embeddings the head used")
    models = parser.add_argument_group("models")
    add_config_arguments(models, LabelerConfig,
                         only=[f.name for f in dataclasses.fields(LabelerConfig) if f.name not in OWN])
    parser.set_defaults(vocab="builtin:synthetic_attributes")
    parser.add_argument("--seen-vocab", default="builtin:synthetic_attributes_seen",
                        help="the classes the head was trained with")
    parser.add_argument("--attributes", nargs="+", default=["plain", "striped", "dotted"])
    parser.add_argument("--num-images", type=int, default=200, help="held-out (val) images")
    parser.add_argument("--kappas", type=float, nargs="+", default=[0.0, 0.4, 1.0])
    parser.add_argument("--output", help="write the results JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(LabelerConfig, args, kappa=0.4)
    labeler = Labeler.from_config(cfg)
    seen = [c.name for c in load_vocabulary(args.seen_vocab).classes]
    results = evaluate_open_vocabulary(labeler, seen, args.kappas, args.num_images,
                                       tuple(args.attributes))
    accuracy = results.pop("clip_region_accuracy")
    print("CLIP region accuracy on ground-truth masks: "
          + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    print("kappa     PQ  things  stuff   seen  held-out  ratio")
    for kappa, r in results.items():
        print(f"{kappa:5.2f} {r['pq']['All']['pq']:6.1f} {r['pq']['Things']['pq']:7.1f} "
              f"{r['pq']['Stuff']['pq']:6.1f} {r['seen_things']['pq']:6.1f} "
              f"{r['held_out_things']['pq']:9.1f} {r['held_out_over_seen']:6.2f}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"settings": vars(args), "clip_region_accuracy": accuracy,
                       "provenance": provenance(cfg.checkpoint_files(), vars(args), "val",
                                                range(args.num_images)),
                       "results": {str(k): v for k, v in results.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
