"""Label a corpus of WebDataset shards with SAM-CP on Ray: one Parquet file of panoptic labels per shard.

    # on a cluster
    ray job submit --working-dir . -- python jobs/label_corpus.py \
        --input 's3://bucket/corpus/shard-{000000..000099}.tar' --output s3://bucket/labels/run-1/
    # on this machine (starts or joins a local Ray)
    samcp corpus --input 'data/shards/*.tar' --output data/labels
    # nothing to prepare: synthetic shards + shipped models -> demo_output/
    samcp corpus --demo

Defaults are the package's shipped small models and `builtin:synthetic`. A rerun
with the same arguments labels only the shards that have no output yet; other
models, vocabulary or settings against an existing output are refused unless
--overwrite. s3:// uses the standard AWS variables (AWS_ENDPOINT_URL, credentials,
region). Exit status: 0 when every shard is labeled, 1 when some shards could not
be read or their labels written (listed; rerun after fixing that), 2 for bad
arguments, models or vocabularies, or a refused output.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.cluster import set_verbose
from pipeline.config import INPUT_FIELDS, RUN_FIELDS, JobConfig
from pipeline.inputs import InputError
from pipeline.output import OutputConflict
from pipeline.words import plural
from samcp.caveats import chance_warning, unseen_warning
from samcp.config import LabelerConfig
from samcp.data.decode import DecodeConfig
from samcp.flags import add_config_arguments, config_from_args
from samcp.storage import StorageError, add_storage_options_argument
from samcp.vocab import VocabularyError, load_vocabulary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append", default=[],
                        help="WebDataset shards (URI, glob or brace pattern), a manifest or table "
                             "(.parquet, .csv: see --uri-column, --image-column) or a folder of images "
                             "(repeatable)")
    parser.add_argument("--output", help="output directory URI")
    parser.add_argument("--demo", action="store_true",
                        help="label a small synthetic corpus into ./demo_output/ and print its PQ")
    parser.add_argument("--demo-images", type=int, default=16, help="synthetic images for --demo")
    add_config_arguments(parser.add_argument_group("inputs"), JobConfig, only=INPUT_FIELDS)
    add_config_arguments(parser.add_argument_group("models"), LabelerConfig)
    run = parser.add_argument_group("run")
    add_config_arguments(run, JobConfig, only=RUN_FIELDS)
    run.add_argument("--max-side", type=int, default=DecodeConfig.max_side,
                     help="the longer side the model sees: larger images are downscaled while they decode "
                          "(labels stay at the image's own size)")
    run.add_argument("--max-member-mib", type=int, default=DecodeConfig.max_member_bytes // 2**20,
                     help="tar members larger than this are not read: their sample becomes an error row "
                          f"(default {DecodeConfig.max_member_bytes // 2**20})")
    add_storage_options_argument(run)
    run.add_argument("--verbose", action="store_true",
                     help="show Ray's and the workers' output (else in Ray's log files)")
    run.add_argument("--json", action="store_true",
                     help="end with the run's whole summary as JSON, after the progress lines (kept in "
                          "OUTPUT/_SUCCESS when whole)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.demo and not (args.input and args.output):
        parser.error("give --input and --output, or --demo")
    return args


def job_config(args: argparse.Namespace) -> JobConfig:
    return config_from_args(JobConfig, args, only=RUN_FIELDS + INPUT_FIELDS, inputs=tuple(args.input),
                            output=args.output or "", labeler=config_from_args(LabelerConfig, args),
                            storage_options=args.storage_options, decode=decode_config(args))


def decode_config(args: argparse.Namespace) -> DecodeConfig:
    if args.max_member_mib < 1:
        raise ValueError(f"--max-member-mib must be at least 1, got {args.max_member_mib}")
    return DecodeConfig(max_side=args.max_side, max_member_bytes=args.max_member_mib * 2**20)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipeline.job import run_label_job

    set_verbose(args.verbose)
    try:
        cfg = job_config(args)
        vocab = load_vocabulary(cfg.labeler.vocab)
        warning = unseen_warning(cfg.labeler.clip_model, cfg.labeler.clip_checkpoint, vocab)
        if warning:
            print(warning, file=sys.stderr)
        if args.demo:
            from pipeline.demo import run_demo

            run_demo(cfg, num_images=args.demo_images)
            return 0
        summary = run_label_job(cfg)
    except (InputError, OutputConflict, VocabularyError, StorageError, FileNotFoundError,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1) if args.json else summary_line(summary))
    warning = chance_warning(summary["mean_score"], summary["vocabulary"]["classes"])
    if warning:
        print(warning, file=sys.stderr)
    if summary["failed_shards"]:
        print(f"error: {plural(len(summary['failed_shards']), 'shard')} could not be read or their labels "
              "written; nothing is kept of them; fix that and rerun the same command:", file=sys.stderr)
        for shard, reason in summary["failed_shards"].items():
            print(f"  {shard}: {reason}", file=sys.stderr)
        return 1
    return 0


def summary_line(summary: dict) -> str:
    """The run in one line: images, segments, mean score, time, where."""
    score = f", mean score {summary['mean_score']:.2f}" if summary["mean_score"] is not None else ""
    whole = "" if summary["failed_shards"] or summary["unlabeled_from_earlier_runs"] else \
        f" (summary: {summary['output'].rstrip('/')}/_SUCCESS)"
    return (f"[label] done: {plural(summary['samples'], 'image')} ({summary['ok']:,} ok, "
            f"{plural(summary['error'], 'error')}), {plural(summary['segments'], 'segment')}{score}, "
            f"in {summary['seconds']:.0f}s -> {summary['output']}{whole}")


if __name__ == "__main__":
    sys.exit(main())
