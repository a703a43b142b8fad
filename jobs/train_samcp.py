"""`samcp train` as a script, for `ray job submit -- python jobs/train_samcp.py ...`:
the same code and flags (pipeline/commands/train.py)."""

import sys

from pipeline.commands.train import build_parser, main  # noqa: F401 - build_parser: the documented flags

if __name__ == "__main__":
    sys.exit(main())
