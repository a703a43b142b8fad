"""Label a few images on this machine, no cluster: overlay PNGs and JSON.

    samcp label photo.jpg scene.png --out samcp_out
    samcp label photos/ --vocab my_classes.yaml

Writes OUT/<name>.png (the image with its segments tinted, outlined and named) and
OUT/<name>.json (the segments: category, score, area, bbox, RLE) per image; a folder
stands for the image files below it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter

import numpy as np
from PIL import Image

from pipeline.sources import IMAGE_EXTENSIONS, list_images
from pipeline.words import plural
from samcp.caveats import chance_warning, unseen_warning
from samcp.config import LabelerConfig
from samcp.data.decode import DecodeConfig, DecodeError, decode
from samcp.flags import add_config_arguments, config_from_args
from samcp.labeler import Labeler
from samcp.viz import overlay_panoptic, vocabulary_categories


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files (jpg, png, webp, ...) or folders of them")
    parser.add_argument("--out", default="samcp_out",
                        help="folder for the overlays and JSON (default samcp_out)")
    parser.add_argument("--max-side", type=int, default=DecodeConfig.max_side,
                        help="the longer side the model sees (labels stay at the image's own size)")
    add_config_arguments(parser.add_argument_group("models"), LabelerConfig)
    return parser


def image_files(paths: list[str]) -> list[str]:
    """`paths` with each folder replaced by the image files below it (sorted), duplicates once.
    Raises ValueError for a path that does not exist or a folder without images."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = list_images(path)
            if not found:
                raise ValueError(f"{path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(os.path.join(path, name) for name in found)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return list(dict.fromkeys(files))


def output_names(images: list[str], out: str) -> dict[str, str]:
    """Input path -> the name of its results in `out` (`<name>.png`, `<name>.json`): the file's
    stem, with 8 hex of its path appended for inputs that share a stem. Raises ValueError when a
    result would overwrite one of the inputs."""
    stems = [os.path.splitext(os.path.basename(path))[0] or "image" for path in images]
    counts = Counter(stems)
    names = {path: f"{stem}-{hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]}"
             if counts[stem] > 1 else stem for path, stem in zip(images, stems)}
    inputs = {os.path.realpath(path) for path in images}
    for name in names.values():
        for suffix in (".png", ".json"):
            result = os.path.join(out, name + suffix)
            if os.path.realpath(result) in inputs:
                raise ValueError(f"--out {out} would overwrite the input {result}; choose another --out")
    return names


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out} is a file, not a folder")
        decode_config = DecodeConfig(max_side=args.max_side)
        names = output_names(image_files(args.images), args.out)
        config = config_from_args(LabelerConfig, args)
        labeler = Labeler.from_config(config)
        os.makedirs(args.out, exist_ok=True)
    except (OSError, ValueError) as error:  # ValueError includes VocabularyError
        print(f"error: {error}", file=sys.stderr)
        return 2
    warning = unseen_warning(config.clip_model, config.clip_checkpoint, labeler.vocab)
    if warning:
        print(warning, file=sys.stderr)
    categories = vocabulary_categories(labeler.vocab)
    failed, scores = 0, []
    for path, name in names.items():
        try:
            with open(path, "rb") as f:
                decoded = decode(f.read(), decode_config)
        except (OSError, DecodeError) as error:
            print(f"{path}: error: {error}", file=sys.stderr)
            failed += 1
            continue
        image, (height, width) = decoded.pixels, decoded.native_size
        result = labeler.label(image, (height, width))  # masks at the image's own size
        ids = result.id_map
        if ids.shape != image.shape[:2]:  # the overlay is drawn at the size the model saw
            ids = np.asarray(Image.fromarray(ids).resize(image.shape[1::-1], Image.NEAREST))
        Image.fromarray(overlay_panoptic(image, ids, result.segments, categories)).save(
            os.path.join(args.out, f"{name}.png"))
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump({"image": path, "width": width, "height": height, "model_width": image.shape[1],
                       "model_height": image.shape[0], "vocabulary": labeler.vocab.name,
                       "segments": result.segments}, f, indent=1)
        scores.extend(s["score"] for s in result.segments)
        names_found = ", ".join(sorted({s["category"] for s in result.segments})) or "none"
        print(f"{path}: {plural(len(result.segments), 'segment')}: {names_found} -> {args.out}/{name}.png")
    warning = chance_warning(sum(scores) / len(scores) if scores else None, len(labeler.vocab.classes))
    if warning:
        print(warning, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
