"""Write WebDataset shards from the synthetic generator, a COCO panoptic dataset or a folder of images.

    samcp shards synthetic --num-images 200 --shard-size 50 --output DIR
    samcp shards coco --panoptic-json s3://data/coco/annotations/panoptic_train2017.json \\
        --images s3://data/coco/train2017 --vocab builtin:coco_panoptic --output s3://data/coco-shards/train/
    samcp shards folder --images PHOTOS/ --shard-size 1000 --output s3://bucket/corpus/

`--output` is a directory URI (local path, s3://, any fsspec URI); every input is a path or URI
too. Synthetic shards carry their ground truth (`json`, `panoptic.png`, `parts.png`);
`--coco-dir` also exports the same images as COCO panoptic + instances, and
`--preview` draws the first 8 with their ground truth overlaid. COCO shards carry each image as
it is with its ground truth in the same form (`json`, the dataset's own `panoptic.png`), category
ids mapped by name onto `--vocab` (a category the vocabulary lacks is an error, before anything is
written); images or PNGs that cannot be read are left out and listed in `_corpus.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from PIL import Image

from pipeline.shards import ImageFolder, PanopticSamples, shard_pattern, synthetic_sample, write_shards
from samcp.data.attributes import PATTERNS
from samcp.data.coco import PanopticDataset, export_coco
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.flags import CORPUS_SHIFT, add_config_arguments, flag_values
from samcp.storage import add_storage_options_argument, join, resolve
from samcp.viz import grid, overlay_panoptic
from samcp.vocab import load_vocabulary


def parse_size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '192x256' -> (height 192, width 256)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_subparsers(dest="source", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--output", required=True, help="directory URI for the shards")
        sub.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
        add_storage_options_argument(sub)
        sub.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    synthetic = source.add_parser("synthetic", help="procedural images with panoptic ground truth")
    common(synthetic)
    synthetic.add_argument("--num-images", type=int, required=True)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--start-index", type=int, default=0,
                           help="index of the first image (to extend a corpus)")
    synthetic.add_argument("--image-size", type=parse_size, default=(256, 256), help="N or HxW")
    synthetic.add_argument("--image-format", choices=["jpg", "png", "webp"], default="jpg")
    synthetic.add_argument("--coco-dir", help="also export COCO panoptic + instances here (local)")
    synthetic.add_argument("--preview", help="also draw the first 8 images with ground truth (PNG)")
    synthetic.add_argument("--attributes", nargs="*", default=[], choices=PATTERNS,
                           help="compositional classes: each thing gets one of these patterns, e.g. "
                                "plain striped dotted (vocabulary builtin:synthetic_attributes)")
    synthetic.add_argument("--texture-only", action="store_true",
                           help="paint the --attributes patterns but keep the plain object classes "
                                "(vocabulary builtin:synthetic): a texture-shifted corpus")
    add_config_arguments(synthetic, SyntheticConfig, only=CORPUS_SHIFT)

    coco = source.add_parser("coco", help="a COCO panoptic dataset (json, PNG folder, image folder)")
    common(coco)
    coco.add_argument("--panoptic-json", required=True, help="e.g. annotations/panoptic_train2017.json")
    coco.add_argument("--panoptic-dir", help="its PNG folder (default: the json's path without .json)")
    coco.add_argument("--images", required=True, help="its image folder, e.g. train2017")
    coco.add_argument("--vocab", default="builtin:coco_panoptic",
                      help="vocabulary whose class ids the shards carry (builtin:NAME or a YAML file)")

    folder = source.add_parser("folder", help="a folder of jpg/png/webp images, recursive")
    common(folder)
    folder.add_argument("--images", required=True, help="folder URI to pack")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def write_manifest(output: str, storage_options: dict | None, manifest: dict) -> None:
    fs, root = resolve(output, storage_options)
    with fs.open(join(fs, root, "_corpus.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def preview(corpus: SyntheticCorpus, start: int, count: int, path: str) -> None:
    tiles = []
    for index in range(start, start + count):
        sample = corpus[index]
        tiles.append(overlay_panoptic(sample.image, sample.panoptic, sample.metadata()["segments_info"],
                                      {c.id: c for c in corpus.categories}, part_map=sample.part_map))
    Image.fromarray(grid(tiles, columns=4)).save(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return make_shards(args)
    except (OSError, ValueError) as error:  # a missing folder, an unusable store, a bad key, a vocabulary
        print(f"error: {error}", file=sys.stderr)
        return 2


def make_shards(args: argparse.Namespace) -> int:
    started = time.time()
    if args.source == "synthetic":
        if args.num_images < 1:
            raise SystemExit("--num-images must be >= 1")
        height, width = args.image_size
        config = SyntheticConfig(seed=args.seed, height=height, width=width,
                                 attributes=tuple(args.attributes), texture_only=args.texture_only,
                                 **flag_values(args, CORPUS_SHIFT))
        corpus = SyntheticCorpus(config)
        indices = range(args.start_index, args.start_index + args.num_images)
        samples = (synthetic_sample(corpus[i], args.image_format) for i in indices)
        total = len(indices)
        manifest = {"source": "synthetic", "config": dataclasses.asdict(config),
                    "start_index": args.start_index, "image_format": args.image_format,
                    "categories": [c.to_coco() for c in corpus.categories]}
    elif args.source == "coco":
        dataset = PanopticDataset(args.panoptic_json, args.panoptic_dir, args.images, args.storage_options)
        vocab = load_vocabulary(args.vocab)
        files = PanopticSamples(dataset, vocab.ids_for(dataset.categories))
        if len(files) == 0:
            raise SystemExit(f"{args.panoptic_json} lists no annotations")
        samples, total = iter(files), len(files)
        manifest = {"source": "coco", "panoptic_json": args.panoptic_json, "panoptic_dir": dataset.png_root,
                    "images": args.images, "vocabulary": vocab.record(args.vocab),
                    "category_ids": {str(k): v for k, v in files.category_ids.items()}}
    else:
        files = ImageFolder(args.images, args.storage_options)
        if len(files) == 0:
            raise SystemExit(f"no jpg/png/webp images under {args.images}")
        samples, total = iter(files), len(files)
        manifest = {"source": "folder", "images": args.images}
    urls = write_shards(samples, args.output, args.shard_size, storage_options=args.storage_options,
                        total=total, progress=not args.no_progress)
    if args.source != "synthetic" and files.skipped:
        total -= len(files.skipped)
        manifest["skipped"] = files.skipped
        for skipped in files.skipped:
            print(f"left out {skipped['path']}: cannot be read ({skipped['reason']})", file=sys.stderr)
    manifest.update(num_samples=total, num_shards=len(urls), shard_size=args.shard_size,
                    pattern=shard_pattern(args.output, len(urls)))
    write_manifest(args.output, args.storage_options, manifest)
    left_out = f" ({len(manifest['skipped'])} unreadable files left out, listed in _corpus.json)" \
        if manifest.get("skipped") else ""
    print(f"wrote {total} samples in {len(urls)} shards to {manifest['pattern']} "
          f"in {time.time() - started:.1f}s{left_out}")
    if args.source == "synthetic" and args.coco_dir:
        paths = export_coco((corpus[i] for i in indices), args.coco_dir, corpus.categories)
        print(f"COCO panoptic: {paths['panoptic']}  COCO instances: {paths['instances']}")
    if args.source == "synthetic" and args.preview:
        preview(corpus, args.start_index, min(8, total), args.preview)
        print(f"preview: {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
