"""Draw labels over their images and write a static HTML report (gallery, class histogram, score
distribution, errors) that opens in a browser with no server.

    samcp render --labels demo_output/labels --output demo_output/report      # 24 random images
    samcp render --labels s3://bucket/labels/run-1/ --output report/ --keys img-001 img-002

The images are read again from the shards the labels were made from.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.report import render_report
from pipeline.words import plural
from samcp.storage import add_storage_options_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", required=True, help="output URI of `samcp corpus`")
    parser.add_argument("--output", required=True, help="local folder for index.html and overlays/")
    parser.add_argument("--keys", nargs="+", default=None,
                        help="sample keys to show (default: a random sample)")
    parser.add_argument("--sample", type=int, default=24, help="how many random ok images to show (24)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sample (0)")
    add_storage_options_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sample < 1:
        print("error: --sample must be at least 1", file=sys.stderr)
        return 2
    try:
        counts = render_report(args.labels, args.output, args.keys, args.sample, args.seed,
                               args.storage_options)
    except (OSError, ValueError) as error:  # a missing or unusable folder or store, bad labels
        print(f"error: {error}", file=sys.stderr)
        return 2
    for key, reason in counts["not_shown"].items():
        print(f"[render] {key}: not shown: {reason}", file=sys.stderr)
    print(f"[render] {plural(counts['rows'], 'row')} ({counts['ok']:,} ok, "
          f"{plural(counts['errors'], 'error')}), "
          f"{counts['shown']:,} shown -> {args.output}/index.html")
    return 1 if counts["not_shown"] else 0


if __name__ == "__main__":
    sys.exit(main())
