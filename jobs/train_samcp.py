"""Train the SAM-CP head on the synthetic corpus (SAM frozen); resumable, fixed seed.

    python jobs/train_samcp.py --output runs/samcp [--steps 2000 --train-images 1000 ...]

Rerunning the same command reuses the patch cache and resumes from
`OUTPUT/last.pt`. The finished head is written in fp16 to
`OUTPUT/samcp_head.pt` (the package ships one as `samcp/assets/samcp_head_tiny.pt`).
"""

from __future__ import annotations

import argparse
import os
import sys

from samcp.flags import add_config_arguments, config_from_args
from samcp.model.factory import save_head
from samcp.model.head import HeadConfig
from samcp.train.head import HeadTrainConfig, train_head


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="run directory (cache, checkpoints, metrics)")
    add_config_arguments(parser, HeadTrainConfig)
    add_config_arguments(parser.add_argument_group("head architecture"), HeadConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    head = train_head(config_from_args(HeadTrainConfig, args), config_from_args(HeadConfig, args),
                      args.output, log=lambda line: print(line, flush=True))
    path = os.path.join(args.output, "samcp_head.pt")
    save_head(head, path)
    print(f"head: {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
