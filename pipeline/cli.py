"""`samcp`: one command-line tool for every job. `samcp COMMAND --help` shows a command's flags.

Each command is the same code as its script in jobs/ (kept for `ray job submit -- python
jobs/label_corpus.py ...`); the module is imported only when its command runs.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module of pipeline.commands, its script in jobs/, what it does)
COMMANDS = {
    "label": ("label", None, "label a few images or a folder on this machine: overlay PNGs and JSON"),
    "corpus": ("corpus", "label_corpus", "label a corpus on Ray (shards, folders, manifests) into Parquet"),
    "export": ("export", "export", "export labels to COCO panoptic, COCO instances or Hugging Face Parquet"),
    "render": ("render", "render", "draw labels over their images into a static HTML report"),
    "evaluate": ("evaluate", "evaluate", "score labels or predictions against COCO panoptic ground truth"),
    "train": ("train", "train_samcp", "train a SAM-CP head on labeled images (patch cache, Ray Train)"),
    "self-train": ("self_train", "self_train", "rounds of label -> filter -> retrain -> evaluate"),
    "shards": ("shards", "make_shards", "write WebDataset shards from a folder, COCO panoptic or synthetic"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()]
    return "\n".join(["usage: samcp COMMAND [flags]   (samcp COMMAND --help)", "", __doc__.split("\n\n")[0],
                      "", "commands:", *lines])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"samcp: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"pipeline.commands.{COMMANDS[name][0]}")
    sys.argv[0] = f"samcp {name}"  # argparse names the command in its usage and errors
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
