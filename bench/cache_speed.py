"""Patch cache building against the bare labeling loop, on the same images and machine.

    python bench/cache_speed.py                          # shipped tiny models, 256 px synthetic images
    python bench/cache_speed.py --images 32 --rounds 5

What a cache actor does per batch (`ExampleBuilder.build`: SAM patches, the CLIP region
embeddings the head reads, targets against the ground truth, serialization) is timed
against what a labeling actor does per batch (`Labeler.label_batch`: SAM patches, the
head, post-processing, RLE), in one process, on the same images, in alternating rounds
after a warm-up round; the ratio of each round's images/s is reported, with its median
(goal: cache >= 0.9 x labeling). Writes bench/results/cache_speed-<cpu|gpu>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clip-dim", type=int, default=64, help="the head's CLIP region input width")
    parser.add_argument("--output", help="result JSON (default: bench/results/cache_speed-<device>.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from pipeline.train.examples import ExampleBuilder, truth_row
    from samcp.config import LabelerConfig
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
    from samcp.labeler import Labeler
    from samcp.model_files import describe_models
    from samcp.provenance import provenance, write_result

    config = LabelerConfig()
    labeler = Labeler.from_config(config)
    builder = ExampleBuilder(describe_models(config), roi_size=7, clip_dim=args.clip_dim)
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["train"]))
    samples = [corpus[5000 + i] for i in range(args.images)]
    rows = [truth_row({"key": s.key, "image": s.image, "height": s.image.shape[0], "width": s.image.shape[1]},
                      s.panoptic, s.metadata()["segments_info"])
            for s in samples]
    batches = [rows[i:i + args.batch_size] for i in range(0, len(rows), args.batch_size)]

    def labeling() -> None:
        for batch in batches:
            labeler.label_batch([r["image"] for r in batch])

    def caching() -> None:
        for batch in batches:
            builder.build(batch)

    def rate(work) -> float:
        started = time.perf_counter()
        work()
        return len(rows) / (time.perf_counter() - started)

    labeling(), caching()  # warm-up
    rounds = []
    for _ in range(args.rounds):
        label_rate, cache_rate = rate(labeling), rate(caching)
        rounds.append({"labeling_images_per_s": label_rate, "cache_images_per_s": cache_rate,
                       "ratio": cache_rate / label_rate})
        print(f"labeling {label_rate:.2f} img/s, cache {cache_rate:.2f} img/s, "
              f"ratio {rounds[-1]['ratio']:.3f}", flush=True)
    device = "gpu" if torch.cuda.is_available() else "cpu"
    result = {"device": torch.cuda.get_device_name() if device == "gpu" else f"cpu x {os.cpu_count()}",
              "images": args.images, "batch_size": args.batch_size, "clip_dim": args.clip_dim,
              "torch_threads": torch.get_num_threads(), "rounds": rounds,
              "median_ratio": statistics.median(r["ratio"] for r in rounds),
              "provenance": provenance(config.checkpoint_files(), vars(args), "train",
                                       range(5000, 5000 + args.images))}
    print(f"median ratio cache / labeling: {result['median_ratio']:.3f}")
    path = args.output or os.path.join(RESULTS, f"cache_speed-{device}.json")
    write_result(path, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
