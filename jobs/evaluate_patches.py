"""Measure SAM patches on held-out synthetic images: oracle PQ and whole/part recall.

    python jobs/evaluate_patches.py --num-images 200 [--sam-model tiny --sam-checkpoint shipped]

Prints a table and writes the numbers as JSON (`--output`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from samcp.data.attributes import PATTERNS
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus, SyntheticImage
from samcp.eval.patch_quality import PatchQuality
from samcp.flags import CORPUS_SHIFT, add_config_arguments, config_from_args, flag_values
from samcp.provenance import provenance, write_result
from samcp.sam.build import architectures, build_sam
from samcp.sam.patches import PatchConfig, PatchGenerator
from samcp.shipped import checkpoint_file


def ground_truth_at_mask_resolution(generator: PatchGenerator, sample: SyntheticImage) -> np.ndarray:
    """The sample's wholes and parts as SAM's masks would carry them at best: each resized and
    padded as SAM's input, shrunk to its low-res mask grid (area average) and brought back to the
    image as SAM upsamples its mask logits. -> (K, H, W) bool."""
    masks = ([sample.panoptic == s.id for s in sample.segments]
             + [sample.part_map == p.id for p in sample.parts])
    side = generator.sam.image_encoder.img_size
    input_size = generator.transform.get_preprocess_shape(sample.height, sample.width, side)
    masks = F.interpolate(torch.as_tensor(np.stack(masks), dtype=torch.float)[:, None], input_size,
                          mode="area")
    padded = F.pad(masks, (0, side - input_size[1], 0, side - input_size[0]))
    low_res = F.interpolate(padded, generator.sam.prompt_encoder.mask_input_size, mode="area")[:, 0]
    # Logits whose zero crossing is the half-covered cell, as SAM's mask threshold (0) reads them.
    return (generator.upsample(low_res - 0.5, input_size, (sample.height, sample.width)) > 0).numpy()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam-model", default="tiny", choices=architectures())
    parser.add_argument("--sam-checkpoint", default="shipped",
                        help='path or fsspec URI; "shipped" for the package\'s own weights')
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--split", choices=sorted(SPLIT_SEEDS), default="val")
    parser.add_argument("--first-index", type=int, default=0, help="index of the first image scored")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--attributes", nargs="*", default=[], choices=PATTERNS,
                        help="score the compositional corpus made with these patterns (see make_shards.py)")
    add_config_arguments(parser, SyntheticConfig, only=CORPUS_SHIFT)
    parser.add_argument("--batch-size", type=int, default=4, help="images encoded together")
    parser.add_argument("--resolution-ceiling", action="store_true",
                        help="score the ground truth's own wholes and parts at SAM's mask resolution "
                             "instead of SAM's patches: the best any SAM of this input size can do")
    parser.add_argument("--output", help="write the summary JSON here")
    add_config_arguments(parser, PatchConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # The patch settings default to those tuned for the SAM model (PatchConfig.for_model), as in labeling.
    sam_model = parser.parse_known_args(argv)[0].sam_model
    parser.set_defaults(**dataclasses.asdict(PatchConfig.for_model(sam_model)))
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sam = build_sam(args.sam_model, args.sam_checkpoint).to(device)
    generator = PatchGenerator(sam, config_from_args(PatchConfig, args))
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS[args.split], height=args.image_size,
                                             width=args.image_size, attributes=tuple(args.attributes),
                                             **flag_values(args, CORPUS_SHIFT)))
    quality = PatchQuality({c.id: c for c in corpus.categories})
    started = time.time()
    end = args.first_index + args.num_images
    for first in tqdm(range(args.first_index, end, args.batch_size), unit="batch", desc="patches"):
        samples = [corpus[i] for i in range(first, min(first + args.batch_size, end))]
        if args.resolution_ceiling:
            for sample in samples:
                quality.update(ground_truth_at_mask_resolution(generator, sample), sample)
            continue
        for sample, patches in zip(samples, generator([s.image for s in samples])):
            quality.update(patches.masks.cpu().numpy(), sample)
    summary = quality.summary()
    summary.update(images=args.num_images, split=args.split, first_index=args.first_index,
                   sam_model=args.sam_model, sam_checkpoint=args.sam_checkpoint,
                   seconds=round(time.time() - started, 1),
                   patch_config=vars(generator.config),
                   provenance=provenance({"sam": checkpoint_file("sam", args.sam_model, args.sam_checkpoint)},
                                         vars(args), args.split, range(args.first_index, end)))
    pq = summary["oracle_pq"]
    print(f"oracle PQ  all {pq['All']['pq']:.1f}  things {pq['Things']['pq']:.1f}  "
          f"stuff {pq['Stuff']['pq']:.1f}   patches/image {summary['patches_per_image']:.1f}")
    for group in ("wholes", "things", "stuff", "parts"):
        r = summary[f"recall_{group}"]
        print(f"recall {group:7s} @0.50 {r['0.50']:.3f}  @0.75 {r['0.75']:.3f}  (n={r['count']})")
    for name, r in summary["recall_by_class"].items():
        print(f"  {name:12s} @0.50 {r['0.50']:.3f}  @0.75 {r['0.75']:.3f}  (n={r['count']})")
    if args.output:
        write_result(args.output, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
