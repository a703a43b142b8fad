"""Export the labels of `samcp corpus` to COCO panoptic (json + PNG), COCO instances (json, RLE)
or a Hugging Face datasets folder (Parquet with images).

    samcp export --labels s3://bucket/labels/run-1/ --format coco-panoptic --output coco_pan/
    samcp evaluate --ground-truth GT_DIR --predictions coco_pan/      # scores the same PQ
    samcp export --labels OUTPUT --format coco-instances --output coco_inst/
    samcp export --labels OUTPUT --format hf-parquet --output hf/   # datasets.load_dataset("hf/")

Error rows are not exported; they are listed in OUTPUT/errors.json with their reason. hf-parquet
reads each image from the shard it was labeled from (`--no-images` leaves images out).
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.export import FORMATS, export
from samcp.storage import add_storage_options_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", required=True, help="output URI of `samcp corpus`")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, help="local folder to write")
    parser.add_argument("--images", action=argparse.BooleanOptionalAction, default=True,
                        help="hf-parquet: include each source image (read from its shard; default on)")
    add_storage_options_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        counts = export(args.labels, args.output, args.format, args.storage_options, images=args.images)
    except (OSError, ValueError) as error:  # a missing or unusable folder or store, bad labels
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
