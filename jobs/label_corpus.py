"""`samcp corpus` as a script, for `ray job submit -- python jobs/label_corpus.py ...`:
the same code and flags (pipeline/commands/corpus.py)."""

import sys

from pipeline.commands.corpus import build_parser, main  # noqa: F401 - build_parser: the documented flags

if __name__ == "__main__":
    sys.exit(main())
