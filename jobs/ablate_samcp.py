"""Ablation table of the SAM-CP head: train one head per variant on the same patch cache,
label the same validation images, and print PQ per variant.

    python jobs/make_shards.py synthetic --num-images 700 --seed 1 --image-format png --output data/train700
    python jobs/ablate_samcp.py --images 'data/train700/*.tar' --output runs/ablation \\
        --steps 4000 --num-images 200 [--variants full no_dca ...]

The shipped SAM and CLIP cut the --images (shards with their ground truth inside) into
patches once (OUTPUT/cache, or --cache); every variant trains on that cache through
the one trainer (`pipeline.train.trainer`, 1 worker, batch 8, cosine schedule).

Variants: full, no_dca, no_ar (no affinity refinement), no_mask_roi, omega0 (no patch
self-attention); `full` is also scored with instance merging off (each patch its own
instance). Each variant's run directory is resumable; results go to OUTPUT/ablation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pipeline.train.cache import CacheConfig, LabelSource, run_cache_job
from pipeline.train.trainer import TrainConfig, run_training
from samcp.config import LabelerConfig
from samcp.eval.evaluator import evaluate_on_synthetic
from samcp.labeler import Labeler
from samcp.model.head import HeadConfig
from samcp.model_files import describe_models
from samcp.provenance import provenance

VARIANTS: dict[str, dict] = {
    "full": {},
    "no_dca": {"use_dca": False},
    "no_ar": {"use_affinity_refine": False},
    "no_mask_roi": {"use_mask_roi": False},
    "omega0": {"encoder_layers": 0},
}


def score(head_path: str, num_images: int, merge: bool) -> dict:
    labeler = Labeler.from_config(LabelerConfig(head_checkpoint=head_path, merge_instances=merge))
    return evaluate_on_synthetic(labeler, "val", num_images,
                                 desc=f"score {os.path.basename(os.path.dirname(head_path))}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--images", action="append", required=True,
                        help="training shards with their ground truth inside (repeatable)")
    parser.add_argument("--cache", help="patch cache URI (default: OUTPUT/cache)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--num-images", type=int, default=200, help="validation images scored")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    results_path = os.path.join(args.output, "ablation.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    cache = args.cache or os.path.join(args.output, "cache")
    log = lambda line: print(line, flush=True)  # noqa: E731
    summary = run_cache_job(CacheConfig(cache, roi_size=HeadConfig.roi_size),
                            describe_models(LabelerConfig(head_checkpoint=None)),
                            [LabelSource("truth", tuple(args.images))], log)
    if summary["failed"]:
        print("error: some shards could not be cached (listed above)", file=sys.stderr)
        return 1
    for name in args.variants:
        run = os.path.join(args.output, name)
        head_path = os.path.join(run, "samcp_head.pt")
        if not os.path.exists(head_path):
            run_training(TrainConfig(cache, run, workers=1, steps=args.steps, batch_size=8, lr=args.lr,
                                     schedule="cosine", grad_clip=1.0), HeadConfig(**VARIANTS[name]), log)
        for merge in ([True, False] if name == "full" else [True]):
            key = name if merge else "no_merge"
            if key not in results:
                results[key] = score(head_path, args.num_images, merge)["pq"]
                files = LabelerConfig(head_checkpoint=head_path).checkpoint_files()
                results.setdefault("provenance", {})[key] = provenance(files, vars(args), "val",
                                                                       range(args.num_images))
                with open(results_path, "w") as f:
                    json.dump(results, f, indent=1)
    print(f"{'variant':12s}{'PQ':>7s}{'PQ-th':>7s}{'PQ-st':>7s}")
    for key, pq in results.items():
        if key == "provenance":
            continue
        print(f"{key:12s}{pq['All']['pq']:7.1f}{pq['Things']['pq']:7.1f}{pq['Stuff']['pq']:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
