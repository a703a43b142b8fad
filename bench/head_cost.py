"""What the SAM-CP head adds to SAM: time per image of SAM patching vs head + post-processing + RLE.

    python bench/head_cost.py                      # shipped tiny models, 256 px synthetic images

Times each stage of `samcp.Labeler` on the same images in one run (after a
warm-up batch) and prints the head's share of the SAM patching time.
Writes bench/results/head_cost-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.labeler import Labeler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    labeler = Labeler()
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))
    images = [corpus[i].image for i in range(args.images)]
    labeler.label_batch(images[:args.batch_size])  # warm-up
    sam_s = head_s = 0.0
    patches_total = 0
    for i in range(0, len(images), args.batch_size):
        start = time.perf_counter()
        patch_sets = labeler.generator(images[i:i + args.batch_size])
        sam_s += time.perf_counter() - start
        start = time.perf_counter()
        for patches in patch_sets:
            labeler.label_patches(patches)  # head, panoptic post-processing, RLE of each segment
            patches_total += len(patches)
        head_s += time.perf_counter() - start
    n = len(images)
    results = {"sam_ms_per_image": round(1000 * sam_s / n, 1),
               "head_ms_per_image": round(1000 * head_s / n, 1),
               "head_share_of_sam": round(head_s / sam_s, 3), "mean_patches": round(patches_total / n, 1),
               "images": n, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
               "device": str(labeler.device)}
    print(f"SAM patching {results['sam_ms_per_image']} ms/img, head + post-processing + RLE "
          f"{results['head_ms_per_image']} ms/img = {results['head_share_of_sam']:.1%} of SAM "
          f"({results['mean_patches']} patches per image)")
    device = "gpu" if labeler.device.type == "cuda" else "cpu"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"head_cost-{device}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
