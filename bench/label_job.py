"""The labeling pipeline (Ray Data, shards -> Parquet) against the bare `Labeler` loop, and its memory.

    python bench/label_job.py speed --num-images 200 --actors 1 2     # images/s, pipeline / bare loop
    python bench/label_job.py memory --sizes 200 2000                 # peak memory as the corpus grows
    python bench/label_job.py gpu --sam-model vit_h --sam-checkpoint none --image-size 1024 \
        --autocast bf16 --num-images 256 --shard-size 16    # GPU utilization over a labeling job

`speed` labels the same synthetic images (held-out split, 256 px, local shards)
with the bare loop (`Labeler.label_batch` over decoded images, all cores to
torch) and with `run_label_job` on a local Ray for each actor count, end to end
(Ray start-up and model loading included). `memory` runs the job on corpora of
each size, each on a Ray of its own, and samples the unique memory (USS) of the
driver and every Ray process it started. `gpu` labels on one GPU actor and samples the
GPU's utilization (NVML, 10 Hz) over the job's steady state: from the first shard
written to the last (model loading and the first batch before it are left out).
Writes bench/results/pipeline-<mode>-<device>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time

import psutil
import ray
import torch

from pipeline.config import JobConfig
from pipeline.job import run_label_job
from pipeline.reader import IMAGE_FIELDS
from pipeline.shards import synthetic_sample, write_shards
from samcp.config import LabelerConfig
from samcp.data.decode import decode_image
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.flags import add_config_arguments, config_from_args
from samcp.labeler import Labeler
from samcp.provenance import provenance, write_result


def make_shards(root: str, num_images: int, shard_size: int, image_size: int = 256) -> list[str]:
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], height=image_size, width=image_size))
    samples = (synthetic_sample(corpus[i]) for i in range(num_images))
    return write_shards(samples, os.path.join(root, f"shards-{num_images}"), shard_size, progress=False)


def bare_loop(model: LabelerConfig, shards: list[str], batch_size: int) -> float:
    """Images/s of `Labeler.label_batch` over the shards' images, decoded beforehand."""
    import webdataset as wds

    images = [decode_image(next(s[f] for f in IMAGE_FIELDS if f in s))
              for s in wds.WebDataset(shards, shardshuffle=False, empty_check=False)]
    labeler = Labeler.from_config(model)
    labeler.label_batch(images[:batch_size])  # warm-up, as the actors' first batch
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        labeler.label_batch(images[i:i + batch_size])
    return len(images) / (time.perf_counter() - start)


class Sampler:
    """Calls `sample()` every `every_s` seconds in a thread while used as a context manager."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


class MemorySampler(Sampler):
    """Peak summed USS of this process and all its descendants (the local Ray), with the USS of
    each process (by name) at that peak."""

    def __init__(self, every_s: float = 0.5):
        super().__init__(every_s)
        self.peak, self.driver_peak = 0, 0
        self.at_peak: dict[str, int] = {}
        self.me = psutil.Process()

    def sample(self) -> None:
        usage: dict[str, int] = {}
        for process in [self.me, *self.me.children(recursive=True)]:
            try:
                name = "driver" if process.pid == self.me.pid else process.name()
                usage[name] = usage.get(name, 0) + process.memory_full_info().uss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if sum(usage.values()) > self.peak:
            self.peak, self.at_peak = sum(usage.values()), usage
        self.driver_peak = max(self.driver_peak, self.me.memory_info().rss)


class GpuSampler(Sampler):
    """GPU utilization (NVML: share of time a kernel ran) of device 0 over time."""

    def __init__(self, every_s: float = 0.1):
        import pynvml  # nvidia-ml-py: only this mode needs it

        super().__init__(every_s)
        pynvml.nvmlInit()
        self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        self.samples: list[tuple[float, int]] = []  # (time.monotonic(), percent)

    def sample(self) -> None:
        self.samples.append((time.monotonic(), self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu))


def label(cfg: JobConfig, log=lambda line: print(line, flush=True)) -> tuple[dict, float]:
    start = time.perf_counter()
    summary = run_label_job(cfg, log=log)
    return summary, time.perf_counter() - start


def speed(args: argparse.Namespace, model: LabelerConfig, root: str) -> dict:
    shards = make_shards(root, args.num_images, args.shard_size)
    bare = bare_loop(model, shards, args.batch_size)
    print(f"bare Labeler loop: {bare:.3f} img/s", flush=True)
    results = {"bare_images_per_second": round(bare, 3), "pipeline": {}}
    for actors in args.actors:
        cfg = JobConfig(inputs=tuple(shards), output=os.path.join(root, f"labels-{actors}"), model=model,
                        actors=actors, batch_size=args.batch_size, overwrite=True)
        summary, seconds = label(cfg)
        rate = summary["samples"] / seconds
        results["pipeline"][f"{actors}_actors"] = {"images_per_second": round(rate, 3),
                                                   "ratio_to_bare": round(rate / bare, 3),
                                                   "seconds": round(seconds, 1)}
        print(f"pipeline, {actors} actors: {rate:.3f} img/s = {rate / bare:.2f} x bare loop", flush=True)
    return results


def memory(args: argparse.Namespace, model: LabelerConfig, root: str) -> dict:
    results = {}
    for size in args.sizes:
        shards = make_shards(root, size, args.shard_size)
        cfg = JobConfig(inputs=tuple(shards), output=os.path.join(root, f"labels-mem-{size}"), model=model,
                        actors=args.actors[0], batch_size=args.batch_size, overwrite=True)
        ray.init(num_cpus=os.cpu_count())  # a fresh Ray per size: no idle workers left from the last run
        with MemorySampler() as sampler:
            summary, seconds = label(cfg)
        ray.shutdown()
        results[str(size)] = {"peak_uss_mib": round(sampler.peak / 2**20), "seconds": round(seconds, 1),
                              "driver_peak_rss_mib": round(sampler.driver_peak / 2**20),
                              "uss_mib_at_peak_by_process": {k: round(v / 2**20) for k, v in sorted(
                                  sampler.at_peak.items(), key=lambda kv: -kv[1])},
                              "images_per_second": round(summary["samples"] / seconds, 3)}
        print(f"{size} images: peak {results[str(size)]['peak_uss_mib']} MiB "
              f"(driver {results[str(size)]['driver_peak_rss_mib']} MiB)", flush=True)
    first, last = results[str(args.sizes[0])], results[str(args.sizes[-1])]
    results["peak_ratio_last_to_first"] = round(last["peak_uss_mib"] / first["peak_uss_mib"], 3)
    print(f"peak memory {args.sizes[-1]} / {args.sizes[0]} images: {results['peak_ratio_last_to_first']:.3f}")
    return results


def gpu(args: argparse.Namespace, model: LabelerConfig, root: str) -> dict:
    shards = make_shards(root, args.num_images, args.shard_size, args.image_size)
    cfg = JobConfig(inputs=tuple(shards), output=os.path.join(root, "labels-gpu"), model=model,
                    actors=1, num_gpus_per_actor=1, batch_size=args.batch_size, overwrite=True,
                    progress_every_s=0)  # a progress line, with its time, for every shard written
    written = []

    def log(line: str) -> None:
        if line.startswith("[label] shards"):
            written.append(time.monotonic())
        print(line, flush=True)

    ray.init(num_cpus=os.cpu_count())
    with GpuSampler() as sampler:
        summary, seconds = label(cfg, log)
    steady = [u for t, u in sampler.samples if written[0] <= t <= written[-1]]
    window = written[-1] - written[0]
    results = {"gpu": torch.cuda.get_device_name(0), "seconds": round(seconds, 1),
               "images_per_second": round(summary["samples"] / seconds, 3),
               "steady_seconds": round(window, 1),
               "gpu_busy_steady": round(sum(steady) / len(steady) / 100, 3), "samples_steady": len(steady),
               "gpu_busy_whole_job": round(sum(u for _, u in sampler.samples) / len(sampler.samples) / 100,
                                           3)}
    print(f"GPU busy {results['gpu_busy_steady']:.1%} of the steady state ({window:.1f} s), "
          f"{results['gpu_busy_whole_job']:.1%} of the whole job; {results['images_per_second']} img/s "
          f"end to end (Ray start and model loading included)")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["speed", "memory", "gpu"])
    parser.add_argument("--num-images", type=int, default=200, help="speed: images labeled")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000], help="memory: corpus sizes")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="memory uses the first")
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=256, help="gpu: synthetic image side")
    add_config_arguments(parser.add_argument_group("models"), LabelerConfig)
    parser.add_argument("--workdir", help="where shards and labels go (default: a temporary folder)")
    return parser


def main() -> None:
    args = build_parser().parse_args()

    model = config_from_args(LabelerConfig, args)
    if args.mode == "speed":
        ray.init(num_cpus=os.cpu_count())
    with tempfile.TemporaryDirectory() as tmp:
        results = {"speed": speed, "memory": memory, "gpu": gpu}[args.mode](args, model, args.workdir or tmp)
    device = "gpu" if torch.cuda.is_available() else "cpu"
    results.update(mode=args.mode, device=device, cpu=platform.processor() or platform.machine(),
                   cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                   settings={k: v for k, v in vars(args).items() if k != "workdir"})
    files = model.checkpoint_files()
    images = (", ".join(f"0..{n - 1}" for n in args.sizes) if args.mode == "memory"  # a corpus per size
              else range(args.num_images))
    results["provenance"] = provenance(files, vars(args), "val", images)
    results_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = os.path.join(results_dir, f"pipeline-{args.mode}-{device}.json")
    write_result(path, results)


if __name__ == "__main__":
    main()
