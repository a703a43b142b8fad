"""`samcp shards` as a script, for `ray job submit -- python jobs/make_shards.py ...`:
the same code and flags (pipeline/commands/shards.py)."""

import sys

from pipeline.commands.shards import build_parser, main  # noqa: F401 - build_parser: the documented flags

if __name__ == "__main__":
    sys.exit(main())
