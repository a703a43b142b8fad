"""Export the labels of `samcp corpus` to COCO panoptic (json + PNG), COCO instances (json, RLE)
or a Hugging Face datasets folder (Parquet with images).

    samcp export --labels s3://bucket/labels/run-1/ --format coco-panoptic --output coco_pan/
    samcp evaluate --ground-truth GT_DIR --predictions coco_pan/      # scores the same PQ
    samcp export --labels OUTPUT --format coco-instances --output coco_inst/ --images coco_inst/images/
    samcp export --labels OUTPUT --format hf-parquet --output hf/   # datasets.load_dataset("hf/")

Every export reads the labeled shards again for the image files. COCO `file_name`s are the
sample keys with the source file's extension (`IMG_0001.jpg`); `--images DIR` copies the files
there, byte for byte, under those names (an image root for detectron2, FiftyOne or CVAT).
hf-parquet holds each image file's own bytes (`--no-images` leaves them out). Error rows are
not exported; they are listed in OUTPUT/errors.json with their reason.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.export import FORMATS, export
from pipeline.words import plural
from samcp.storage import add_storage_options_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", required=True, help="output URI of `samcp corpus`")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, help="local folder to write")
    parser.add_argument("--images", metavar="DIR",
                        help="coco formats: copy the labeled image files here, named as their file_name")
    parser.add_argument("--no-images", action="store_true",
                        help="hf-parquet: leave the images out (default: each image file's own bytes)")
    add_storage_options_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        counts = export(args.labels, args.output, args.format, args.storage_options,
                        images=not args.no_images, images_dir=args.images)
    except (OSError, ValueError) as error:  # a missing or unusable folder or store, bad labels
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = f" (images in {args.images})" if args.images else ""
    print(f"[export] {args.format}: {plural(counts['images'], 'image')}, "
          f"{plural(counts['skipped'], 'sample')} left out (listed in {args.output.rstrip('/')}/errors.json)"
          f" -> {args.output}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
