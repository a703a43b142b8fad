"""`samcp label IMAGE... [--vocab ...] [--out DIR]`: try models and vocabularies on a few images,
no cluster. Writes DIR/<name>.png (the image with its segments tinted, outlined and named)
and DIR/<name>.json (the segments: category, score, area, bbox, RLE) per image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from PIL import Image

from pipeline.config import ModelConfig
from pipeline.decode import DecodeConfig, DecodeError, decode_image
from samcp.viz import overlay_panoptic, vocabulary_categories


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="samcp", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    label = commands.add_parser("label", help="label images into overlay PNGs and JSON")
    label.add_argument("images", nargs="+", help="image files (jpg, png, webp, ...)")
    label.add_argument("--out", default="samcp_out",
                       help="folder for the overlays and JSON (default samcp_out)")
    label.add_argument("--max-side", type=int, default=DecodeConfig.max_side,
                       help="images are downscaled to this longer side")
    ModelConfig.add_arguments(label)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        labeler = ModelConfig.from_args(args).build_labeler()
    except (FileNotFoundError, ValueError) as error:  # ValueError includes VocabularyError
        print(f"error: {error}", file=sys.stderr)
        return 2
    categories = vocabulary_categories(labeler.vocab)
    os.makedirs(args.out, exist_ok=True)
    failed = 0
    for path in args.images:
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            with open(path, "rb") as f:
                image = decode_image(f.read(), DecodeConfig(max_side=args.max_side))
        except (OSError, DecodeError) as error:
            print(f"{path}: error: {error}", file=sys.stderr)
            failed += 1
            continue
        result = labeler.label(image)
        Image.fromarray(overlay_panoptic(image, result.id_map, result.segments, categories)).save(
            os.path.join(args.out, f"{name}.png"))
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump({"image": path, "width": image.shape[1], "height": image.shape[0],
                       "vocabulary": labeler.vocab.name, "segments": result.segments}, f, indent=1)
        names = ", ".join(sorted({s["category"] for s in result.segments})) or "none"
        print(f"{path}: {len(result.segments)} segments: {names} -> {args.out}/{name}.png")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
