"""`samcp render` as a script, for `ray job submit -- python jobs/render.py ...`:
the same code and flags (pipeline/commands/render.py)."""

import sys

from pipeline.commands.render import build_parser, main  # noqa: F401 - build_parser: the documented flags

if __name__ == "__main__":
    sys.exit(main())
