"""`samcp export` as a script, for `ray job submit -- python jobs/export.py ...`:
the same code and flags (pipeline/commands/export.py)."""

import sys

from pipeline.commands.export import build_parser, main  # noqa: F401 - build_parser: the documented flags

if __name__ == "__main__":
    sys.exit(main())
