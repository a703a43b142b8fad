"""Check pseudo-labels against ground truth: precision and coverage of their thing segments per filter.

    python jobs/audit_pseudo_labels.py --labels runs/st/round-1/labels --ground-truth runs/st/target_coco

For a labeling output (jobs/label_corpus.py) of images that also have COCO
panoptic ground truth (PNGs named by sample key, e.g. from make_shards.py
--coco-dir), prints how many thing segments each --keep-score / --min-flip-iou
pair keeps, the share that are right (a ground-truth thing of the same class at
IoU > 0.5), the share with a right mask whatever the class, and the share of
ground-truth things they cover. --min-flip-iou values above 0 need labels made
with --flip-agreement.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.labels import rows_by_key
from pipeline.selftrain.audit import check_rows, format_precision_table, precision_table
from samcp.data.coco import PanopticDataset
from samcp.storage import add_storage_options_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, help="output URI of jobs/label_corpus.py")
    parser.add_argument("--ground-truth", required=True, help="COCO panoptic folder of the same images")
    parser.add_argument("--keep-score", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7])
    parser.add_argument("--min-flip-iou", type=float, nargs="+", default=[0.0],
                        help="e.g. 0 0.5 0.7 0.8 (labels made with --flip-agreement)")
    add_storage_options_argument(parser)
    parser.add_argument("--output", help="write the table here (JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checked, truth_things = check_rows(rows_by_key(args.labels, args.storage_options),
                                       PanopticDataset.folder(args.ground_truth))
    if not checked and not truth_things:
        print(f"error: no labeled image of {args.labels} is annotated in {args.ground_truth}",
              file=sys.stderr)
        return 1
    try:
        table = precision_table(checked, truth_things, args.keep_score, args.min_flip_iou)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_precision_table(table, truth_things))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"labels": args.labels, "ground_truth": args.ground_truth,
                       "truth_things": truth_things, "table": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
