"""Train the small open_clip model on image/caption pairs of the compositional synthetic corpus.

    python jobs/train_clip.py --output runs/clip_tiny [--steps 3000 --train-images 2000 ...]

Rerunning the same command resumes from `OUTPUT/last.pt`. The finished weights are written
in fp16 to `OUTPUT/open_clip_<model>.pt`, a plain open_clip state dict: load it with
`--clip-model samcp-clip-tiny --clip-checkpoint FILE` like any open_clip checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys

from samcp.checkpoint import save_weights
from samcp.flags import add_config_arguments, config_from_args
from samcp.train.clip import ClipTrainConfig, train_clip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="run directory (checkpoints, metrics)")
    add_config_arguments(parser, ClipTrainConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(ClipTrainConfig, args)
    model = train_clip(config, args.output, log=lambda line: print(line, flush=True))
    weights = os.path.join(args.output, f"open_clip_{config.model}.pt")
    save_weights(model, weights, half=True)
    print(f"weights: {weights} ({os.path.getsize(weights) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
