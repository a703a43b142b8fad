"""Score panoptic predictions against COCO panoptic ground truth: PQ/SQ/RQ, mask AP, mIoU.

    # predictions and ground truth as COCO panoptic folders (panoptic.json + panoptic/*.png)
    python jobs/evaluate.py --ground-truth GT_DIR --predictions PRED_DIR
    # or label held-out synthetic images with the models and score them
    python jobs/evaluate.py --synthetic-val 200 [--sam-checkpoint ... --samcp-checkpoint ...]

Prediction segments may carry `score` (for AP; 1.0 when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image
from tqdm import tqdm

from samcp.data.categories import Category
from samcp.data.coco import rgb_to_id
from samcp.data.synthetic import SPLIT_SEEDS
from samcp.eval.evaluator import PanopticEvaluator, evaluate_on_synthetic


def load_panoptic_folder(folder: str) -> tuple[dict, dict[str, dict]]:
    """(json, annotations by PNG file name) of a COCO panoptic folder."""
    path = os.path.join(folder, "panoptic.json")
    if not os.path.exists(path):
        raise SystemExit(f"no panoptic.json in {folder}")
    with open(path) as f:
        data = json.load(f)
    return data, {a["file_name"]: a for a in data["annotations"]}


def read_ids(folder: str, file_name: str) -> np.ndarray:
    return rgb_to_id(np.asarray(Image.open(os.path.join(folder, "panoptic", file_name)).convert("RGB")))


def evaluate_folders(gt_dir: str, pred_dir: str) -> dict:
    gt_json, gt = load_panoptic_folder(gt_dir)
    _, pred = load_panoptic_folder(pred_dir)
    categories = [Category(c["id"], c["name"], bool(c["isthing"]), tuple(c.get("color", (0, 0, 0))))
                  for c in gt_json["categories"]]
    missing = sorted(set(gt) - set(pred))
    if missing:
        print(f"warning: {len(missing)} images have no prediction (scored as empty), e.g. {missing[0]}",
              file=sys.stderr)
    evaluator = PanopticEvaluator(categories)
    for name, annotation in tqdm(gt.items(), desc="evaluate", unit="img"):
        gt_ids = read_ids(gt_dir, name)
        if name in pred:
            pred_ids = read_ids(pred_dir, name)
            segments = [{"score": 1.0, **s} for s in pred[name]["segments_info"]]
        else:
            pred_ids, segments = np.zeros_like(gt_ids), []
        evaluator.update(gt_ids, annotation["segments_info"], pred_ids, segments)
    return evaluator.summary()


def evaluate_synthetic(args: argparse.Namespace) -> dict:
    from samcp.labeler import Labeler
    from samcp.patches import PatchConfig
    from samcp.postprocess import PostprocessConfig

    patch_overrides = {"points_per_side": args.points_per_side} if args.points_per_side else {}
    labeler = Labeler(sam_model=args.sam_model, sam_checkpoint=args.sam_checkpoint,
                      head_checkpoint=args.samcp_checkpoint, vocab=args.vocab,
                      patch_config=PatchConfig.for_model(args.sam_model, **patch_overrides),
                      postprocess=PostprocessConfig(merge_instances=args.merge))
    return evaluate_on_synthetic(labeler, args.split, args.synthetic_val)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ground-truth", help="COCO panoptic folder of the ground truth")
    parser.add_argument("--predictions", help="COCO panoptic folder of the predictions")
    parser.add_argument("--synthetic-val", type=int, help="label and score this many synthetic images")
    parser.add_argument("--split", choices=sorted(SPLIT_SEEDS), default="val")
    parser.add_argument("--sam-model", default="tiny")
    parser.add_argument("--sam-checkpoint", default="shipped")
    parser.add_argument("--samcp-checkpoint", default="shipped")
    parser.add_argument("--vocab", default="builtin:synthetic")
    parser.add_argument("--points-per-side", type=int, help="default: tuned for --sam-model")
    parser.add_argument("--merge", action=argparse.BooleanOptionalAction, default=True,
                        help="merge patches into instances (--no-merge: each patch its own instance)")
    parser.add_argument("--output", help="write the summary JSON here")
    args = parser.parse_args(argv)
    if args.synthetic_val:
        summary = evaluate_synthetic(args)
    elif args.ground_truth and args.predictions:
        summary = evaluate_folders(args.ground_truth, args.predictions)
    else:
        parser.error("give --ground-truth and --predictions, or --synthetic-val N")
    print(PanopticEvaluator.format(summary))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
