"""`samcp evaluate` as a script, for `ray job submit -- python jobs/evaluate.py ...`:
the same code and flags (pipeline/commands/evaluate.py)."""

import sys

from pipeline.commands.evaluate import build_parser, main  # noqa: F401 - build_parser: the documented flags

if __name__ == "__main__":
    sys.exit(main())
