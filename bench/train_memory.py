"""The trainer's peak memory does not grow with the cache: 500 against 5,000 cached examples.

    python bench/train_memory.py                    # shipped tiny models, 256 px synthetic images
    python bench/train_memory.py --sizes 500 5000 --base 50

A real patch cache of `--base` synthetic training images is built once (shipped SAM and
CLIP); caches of each size repeat its shard file under other names (rows repeat, as
the issue allows). Each size then trains the same number of steps (one epoch of the
largest cache; 1 worker, batch 8), so that the runs differ only in the cache's size, in a
fresh process with its own local Ray, while the proportional set size (PSS: shared pages
split between the processes that map them, so Ray's object store counts once) of that
process and every process it started is summed every second; the peak is reported, with
the ratio of each size's peak to the first's (goal: within 10%), and the PSS per process
title at the peak and the peak of each title. Writes
bench/results/train_memory-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--base", type=int, default=50, help="images in the real cache that is repeated")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int,
                        help="steps of every run (default: one epoch of the largest cache, so that the "
                             "runs differ only in the cache's size)")
    parser.add_argument("--folder", help="work folder (default: a temporary one)")
    parser.add_argument("--child", nargs=2, metavar=("CACHE", "OUTPUT"), help=argparse.SUPPRESS)
    return parser


def real_cache(folder: str, images: int) -> str:
    """A patch cache of `images` synthetic training images in one shard."""
    from pipeline.shards import synthetic_sample, write_shards
    from pipeline.train.cache import CacheConfig, LabelSource, run_cache_job
    from samcp.config import LabelerConfig
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
    from samcp.model_files import describe_models

    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["train"]))
    shard, = write_shards((synthetic_sample(corpus[i], "png") for i in range(images)),
                          os.path.join(folder, "shards"), images, progress=False)
    cache = os.path.join(folder, "cache")
    run_cache_job(CacheConfig(cache, clip_dim=64), describe_models(LabelerConfig(head_checkpoint=None)),
                  [LabelSource("truth", (shard,))], lambda line: None)
    import ray
    ray.shutdown()
    return cache


def repeated_cache(cache: str, folder: str, examples: int) -> str:
    """A cache of `examples` rows: the shard file of `cache` repeated under other names."""
    success = json.load(open(os.path.join(cache, "_SUCCESS")))
    name, = success["files"]
    per_file = success["examples"]
    copies = -(-examples // per_file)
    out = os.path.join(folder, f"cache-{examples}")
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(cache, "_manifest.json"), out)
    files = []
    for index in range(copies):
        files.append(f"copy-{index:05d}.parquet")
        target = os.path.join(out, files[-1])
        if not os.path.exists(target):
            os.link(os.path.join(cache, name), target)
    with open(os.path.join(out, "_SUCCESS"), "w") as f:
        json.dump({**success, "files": files, "examples": copies * per_file}, f)
    return out


def tree_pss_mib(root: int) -> dict[str, float]:
    """PSS in MiB of `root` and every process it started, summed per process title (Ray names its
    workers by what they run: `ray::RayTrainWorker`, `ray::ReadParquet`, `raylet`, ...)."""
    import psutil

    try:
        processes = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    by_title: dict[str, float] = {}
    for process in processes:
        try:
            cmdline = process.cmdline()
            title = "driver" if process.pid == root else (
                os.path.basename(cmdline[0]).split(".")[0] if cmdline else process.name())
            if title.startswith("python") and len(cmdline) > 1:
                title = os.path.basename(cmdline[1] if not cmdline[1].startswith("-") else cmdline[-1])
            by_title[title] = by_title.get(title, 0.0) + process.memory_full_info().pss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return by_title


def train_child(cache: str, output: str, batch_size: int, steps: int) -> None:
    from pipeline.train.trainer import TrainConfig, run_training
    from samcp.model.head import HeadConfig

    result = run_training(TrainConfig(cache, output, workers=1, steps=steps, batch_size=batch_size,
                                      checkpoint_every=10**6), HeadConfig(clip_dim=64), log=lambda line: None)
    print(json.dumps({"steps": result["plan"].total_steps, "examples": result["images"]}))


def rounded(by_title: dict[str, float]) -> dict[str, float]:
    return {title: round(mib, 1) for title, mib in sorted(by_title.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        train_child(*args.child, args.batch_size, args.steps)
        return 0
    from samcp.config import LabelerConfig
    from samcp.provenance import provenance, write_result

    folder = args.folder or tempfile.mkdtemp(prefix="train_memory-")
    base = real_cache(folder, args.base)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    runs = []
    steps = args.steps or max(args.sizes) // args.batch_size
    for size in args.sizes:
        cache = repeated_cache(base, folder, size)
        output = os.path.join(folder, f"run-{size}")
        shutil.rmtree(output, ignore_errors=True)
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, "--batch-size", str(args.batch_size),
                                  "--steps", str(steps), "--child", cache, output],
                                 stdout=subprocess.PIPE, text=True, env=env)
        peak, at_peak, title_peaks = 0.0, {}, {}
        while child.poll() is None:
            by_title = tree_pss_mib(child.pid)
            if sum(by_title.values()) > peak:
                peak, at_peak = sum(by_title.values()), by_title
            for title, mib in by_title.items():
                title_peaks[title] = max(title_peaks.get(title, 0.0), mib)
            time.sleep(1.0)
        out = child.stdout.read()
        if child.returncode:
            raise SystemExit(f"training on {size} examples failed")
        trained = json.loads(out.strip().splitlines()[-1])
        runs.append({"examples": trained["examples"], "steps": trained["steps"],
                     "peak_pss_mib": round(peak, 1), "seconds": round(time.perf_counter() - started, 1),
                     "at_peak_mib": rounded(at_peak), "peak_per_process_mib": rounded(title_peaks)})
        print(f"{trained['examples']} examples, {trained['steps']} steps: peak {peak:.0f} MiB", flush=True)
    for run in runs:
        run["peak_ratio"] = round(run["peak_pss_mib"] / runs[0]["peak_pss_mib"], 3)
    result = {"device": f"cpu x {os.cpu_count()}", "base_images": args.base, "batch_size": args.batch_size,
              "workers": 1, "runs": runs,
              "provenance": provenance(LabelerConfig(head_checkpoint=None).checkpoint_files(), vars(args),
                                       "train", range(args.base))}
    path = os.path.join(RESULTS, "train_memory-cpu.json")
    write_result(path, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
