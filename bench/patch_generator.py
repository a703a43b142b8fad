"""Batched patch generator vs segment-anything's SamAutomaticMaskGenerator: images/s on
the same images, model and settings, and how well their masks agree.

    python bench/patch_generator.py                       # shipped tiny SAM, 256 px, CPU or GPU
    python bench/patch_generator.py --sam-model vit_b --sam-checkpoint none --image-size 1024

Random weights (`--sam-checkpoint none`) are fine for speed; agreement then means little.
Writes bench/results/patch_generator-<model>-<device>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from segment_anything import SamAutomaticMaskGenerator

from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.eval.patch_quality import pairwise_iou
from samcp.provenance import provenance, write_result
from samcp.sam.build import build_sam
from samcp.sam.patches import AUTOCAST_DTYPES, PatchConfig, PatchGenerator
from samcp.shipped import checkpoint_file


def mean_matched_iou(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0 or len(b) == 0:
        return float(len(a) == len(b))
    iou = pairwise_iou(a, b)
    rows, cols = linear_sum_assignment(-iou)
    return float(iou[rows, cols].mean())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam-model", default="tiny")
    parser.add_argument("--sam-checkpoint", default="shipped", help='"none" for random weights')
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--points-per-batch", type=int, help="default: 1024 on GPU, 64 on CPU")
    parser.add_argument("--official-points-per-batch", type=int, default=64)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-score-thresh", type=float, default=0.95)
    parser.add_argument("--crop-n-layers", type=int, default=0, help="SAM crop layers (both generators)")
    parser.add_argument("--autocast", choices=sorted(AUTOCAST_DTYPES), default="none")
    return parser


def main() -> None:
    args = build_parser().parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    checkpoint = None if args.sam_checkpoint == "none" else args.sam_checkpoint
    sam = build_sam(args.sam_model, checkpoint).to(device)
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], height=args.image_size,
                                             width=args.image_size))
    images = [corpus[i].image for i in range(args.images)]
    thresholds = dict(points_per_side=args.points_per_side, pred_iou_thresh=args.pred_iou_thresh,
                      stability_score_thresh=args.stability_score_thresh, crop_n_layers=args.crop_n_layers)
    official = SamAutomaticMaskGenerator(sam, points_per_batch=args.official_points_per_batch,
                                         output_mode="binary_mask", **thresholds)
    dtype = AUTOCAST_DTYPES[args.autocast]
    ours = PatchGenerator(sam, PatchConfig(points_per_batch=args.points_per_batch, max_patches=None,
                                           **thresholds), autocast_dtype=dtype)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    official.generate(images[0])  # warm-up both
    ours(images[:1])
    sync()
    started = time.perf_counter()
    reference = []
    for image in images:
        masks = [m["segmentation"] for m in official.generate(image)]
        reference.append(np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool))
    sync()
    official_seconds = time.perf_counter() - started
    started = time.perf_counter()
    mine = []
    for first in range(0, len(images), args.batch_size):
        mine += [p.masks for p in ours(images[first:first + args.batch_size])]
    sync()
    ours_seconds = time.perf_counter() - started

    agreement = [mean_matched_iou(m.cpu().numpy(), r) for m, r in zip(mine, reference)]
    counts = [(len(m), len(r)) for m, r in zip(mine, reference)]
    result = {
        "device": (torch.cuda.get_device_name() if device == "cuda"
                   else f"cpu ({os.cpu_count()} cores, {platform.machine()})"),
        "sam_model": args.sam_model, "sam_checkpoint": args.sam_checkpoint,
        "image_size": args.image_size, "images": args.images, "batch_size": args.batch_size,
        "autocast": args.autocast, "points_per_batch": args.points_per_batch, **thresholds,
        "official_images_per_s": args.images / official_seconds,
        "batched_images_per_s": args.images / ours_seconds,
        "speedup": official_seconds / ours_seconds,
        "mean_matched_iou": float(np.mean(agreement)),
        "mask_counts_batched_vs_official": counts,
        "provenance": provenance({"sam": checkpoint_file("sam", args.sam_model, checkpoint)}, vars(args),
                                 "val", range(args.images)),
    }
    print(f"official {result['official_images_per_s']:.2f} img/s   batched "
          f"{result['batched_images_per_s']:.2f} img/s   speedup x{result['speedup']:.2f}   "
          f"mean matched IoU {result['mean_matched_iou']:.4f}   on {result['device']}")
    os.makedirs("bench/results", exist_ok=True)
    dtype_tag = "" if args.autocast == "none" else f"-{args.autocast}"
    crop_tag = f"-crops{args.crop_n_layers}" if args.crop_n_layers else ""
    path = (f"bench/results/patch_generator-{args.sam_model}-{device}-pps{args.points_per_side}"
            f"{crop_tag}{dtype_tag}.json")
    write_result(path, result)


if __name__ == "__main__":
    main()
