"""Score panoptic predictions against COCO panoptic ground truth: PQ/SQ/RQ, mask AP, mIoU.

    # predictions and ground truth as COCO panoptic folders (panoptic.json + panoptic/*.png)
    samcp evaluate --ground-truth GT_DIR --predictions PRED_DIR
    # or the Parquet labels of `samcp corpus` (any fsspec URI), matched by sample key
    samcp evaluate --ground-truth GT_DIR --labels OUTPUT_DIR
    # or label held-out synthetic images with the models and score them
    samcp evaluate --synthetic-val 200 [--sam-checkpoint ... --head-checkpoint ...]

Prediction segments may carry `score` (for AP; 1.0 when missing).
"""

from __future__ import annotations

import argparse
import sys

from samcp.config import LabelerConfig
from samcp.data.coco import PanopticDataset
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig
from samcp.eval.evaluator import PanopticEvaluator, evaluate_against, evaluate_on_synthetic
from samcp.flags import CORPUS_SHIFT, add_config_arguments, config_from_args, flag_values
from samcp.provenance import provenance, write_result
from samcp.storage import add_storage_options_argument


def evaluate_folders(gt_dir: str, pred_dir: str) -> dict:
    predictions = PanopticDataset.folder(pred_dir)

    def predict(stem: str):
        annotation = predictions.annotations.get(f"{stem}.png")
        return None if annotation is None else (predictions.ids(annotation["file_name"]),
                                                annotation["segments_info"])

    return evaluate_against(PanopticDataset.folder(gt_dir), predict)


def evaluate_labels(gt_dir: str, labels: str, storage_options: dict | None) -> dict:
    """Score the Parquet output of `samcp corpus`; rows match ground truth by sample key."""
    from pipeline.labels import rows_by_key, score_rows

    rows = rows_by_key(labels, storage_options)
    errors = sum(r["status"] != "ok" for r in rows.values())
    if errors:
        print(f"warning: {errors} label rows are errors (scored as empty)", file=sys.stderr)
    return score_rows(rows, gt_dir)


def evaluate_synthetic(args: argparse.Namespace) -> dict:
    from samcp.labeler import Labeler

    labeler = Labeler.from_config(config_from_args(LabelerConfig, args))
    return evaluate_on_synthetic(labeler, args.split, args.synthetic_val, attributes=tuple(args.attributes),
                                 **flag_values(args, CORPUS_SHIFT))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ground-truth", help="COCO panoptic folder of the ground truth")
    parser.add_argument("--predictions", help="COCO panoptic folder of the predictions")
    parser.add_argument("--labels", help="output directory URI of `samcp corpus` (Parquet)")
    add_storage_options_argument(parser)
    parser.add_argument("--synthetic-val", type=int, help="label and score this many synthetic images")
    parser.add_argument("--split", choices=sorted(SPLIT_SEEDS), default="val")
    parser.add_argument("--attributes", nargs="*", default=[],
                        help="compositional synthetic images, e.g. plain striped dotted")
    shift = parser.add_argument_group("synthetic corpus shift")
    add_config_arguments(shift, SyntheticConfig, only=CORPUS_SHIFT)
    add_config_arguments(parser.add_argument_group("models (--synthetic-val)"), LabelerConfig)
    parser.add_argument("--output", help="write the summary JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.synthetic_val or (args.ground_truth and (args.predictions or args.labels))):
        parser.error("give --ground-truth with --predictions or --labels, or --synthetic-val N")
    try:
        if args.synthetic_val:
            summary = evaluate_synthetic(args)
            summary["provenance"] = provenance(config_from_args(LabelerConfig, args).checkpoint_files(),
                                               vars(args), args.split, range(args.synthetic_val))
        elif args.predictions:
            summary = evaluate_folders(args.ground_truth, args.predictions)
        else:
            summary = evaluate_labels(args.ground_truth, args.labels, args.storage_options)
            summary["provenance"] = provenance({}, vars(args), None, f"every image of {args.ground_truth}")
    except (OSError, ValueError) as error:  # a missing folder, unusable labels, a bad file name
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(PanopticEvaluator.format(summary))
    if args.output:
        write_result(args.output, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
