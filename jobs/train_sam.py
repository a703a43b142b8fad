"""Train the small SAM on the synthetic corpus; resumable, fixed seed.

    python jobs/train_sam.py --output runs/sam_tiny [--steps 4000 --batch-size 8 ...]

Rerunning the same command resumes from `OUTPUT/last.pt`. The finished weights
are written in fp16 to `OUTPUT/sam_<sam_model>.pt`, the file the package
ships as `samcp/assets/sam_tiny.pt`.
"""

from __future__ import annotations

import argparse
import os
import sys

from samcp.checkpoint import save_weights
from samcp.flags import add_config_arguments, config_from_args
from samcp.train.sam import SamTrainConfig, train_sam


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="run directory (checkpoints, metrics)")
    add_config_arguments(parser, SamTrainConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(SamTrainConfig, args)
    sam = train_sam(config, args.output, log=lambda line: print(line, flush=True))
    weights = os.path.join(args.output, f"sam_{config.sam_model}.pt")
    save_weights(sam, weights, half=True)
    print(f"weights: {weights} ({os.path.getsize(weights) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
