"""Choose post-processing thresholds and kappas for a head: PQ of every combination on labeled
synthetic images that no model trained on (SAM and the head run once per image).

    python jobs/tune_postprocess.py --num-images 100 --output runs/tune.json   # train images 5000..5099
    python jobs/tune_postprocess.py --head-checkpoint runs/head/samcp_head.pt --kappa-seen 0 0.1 0.2 0.4

Prints the settings best PQ first. Never tune on the images you report: the default images
(train split, 5000..5099) lie beyond those the shipped models trained on (0..3999); the
validation split stays for reporting (`jobs/evaluate.py --synthetic-val`).
"""

from __future__ import annotations

import argparse
import itertools
import json

from samcp.config import MODEL_FIELDS, LabelerConfig
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.eval.tuning import sweep_postprocess
from samcp.flags import add_config_arguments, config_from_args
from samcp.postprocess import PostprocessConfig
from samcp.provenance import provenance


def build_parser() -> argparse.ArgumentParser:
    defaults = PostprocessConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=sorted(SPLIT_SEEDS), default="train")
    parser.add_argument("--start-index", type=int, default=5000, help="first image of the split")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--min-score", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--affinity-thresh", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--overlap-thresh", type=float, nargs="+", default=[0.5, 0.65, 0.8])
    parser.add_argument("--kappa", type=float, nargs="+", default=[0.4],
                        help="weights of the CLIP classifier in the class ensemble for class names the "
                             "head never trained on")
    parser.add_argument("--kappa-seen", type=float, nargs="+", default=[0.1],
                        help="the same for the classes the head was trained on")
    parser.add_argument("--max-segments", type=int, default=defaults.max_segments)
    add_config_arguments(parser.add_argument_group("models"), LabelerConfig, only=MODEL_FIELDS)
    parser.add_argument("--output", help="write every setting's scores here (JSON)")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    if args.num_images < 1 or args.start_index < 0:
        raise SystemExit("--num-images must be >= 1 and --start-index >= 0")
    from samcp.labeler import Labeler

    settings = [PostprocessConfig(min_score=s, affinity_thresh=a, overlap_thresh=o, kappa=k,
                                  kappa_seen=ks, max_segments=args.max_segments)
                for s, a, o, k, ks in itertools.product(args.min_score, args.affinity_thresh,
                                                        args.overlap_thresh, args.kappa, args.kappa_seen)]
    labeler = Labeler.from_config(config_from_args(LabelerConfig, args, only=MODEL_FIELDS,
                                                   kappa=max(args.kappa), kappa_seen=max(args.kappa_seen)))
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS[args.split]))
    indices = range(args.start_index, args.start_index + args.num_images)
    results = sweep_postprocess(labeler, corpus, indices, settings)
    print(f"{'score':>6s}{'affin.':>7s}{'overlap':>8s}{'kappa':>6s}{'seen':>6s}{'PQ':>7s}{'things':>7s}"
          f"{'stuff':>7s}")
    for r in sorted(results, key=lambda r: -r["pq"]["All"]["pq"]):
        p, pq = r["postprocess"], r["pq"]
        print(f"{p['min_score']:6.2f}{p['affinity_thresh']:7.2f}{p['overlap_thresh']:8.2f}"
              f"{p['kappa']:6.2f}{p['kappa_seen']:6.2f}{pq['All']['pq']:7.2f}{pq['Things']['pq']:7.2f}{pq['Stuff']['pq']:7.2f}")
    if args.output:
        with open(args.output, "w") as f:
            cfg = config_from_args(LabelerConfig, args, only=MODEL_FIELDS)
            json.dump({"split": args.split, "indices": [indices.start, indices.stop],
                       "provenance": provenance(cfg.checkpoint_files(), vars(args), args.split, indices),
                       "settings": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
