"""`samcp self-train` as a script, for `ray job submit -- python jobs/self_train.py ...`:
the same code and flags (pipeline/commands/self_train.py)."""

import sys

from pipeline.commands.self_train import build_parser, main  # noqa: F401 - build_parser: the documented flags

if __name__ == "__main__":
    sys.exit(main())
