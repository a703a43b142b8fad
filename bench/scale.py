"""How many GPUs one labeling driver can serve: the real job with a fast stand-in for the models.

    python bench/scale.py --samples 10000 --shards 10
    python bench/scale.py --samples 1000000 --shards 1000 --folder /tmp/scale    # once, in the background

The samples are tiny PNGs (8x8, written once by a fast generator, --folder) in
`--shards` WebDataset shards, so that the run measures the pipeline, not the model or
the image codec. `jobs/label_corpus.py`'s code runs unchanged (`run_label_job`: the
labeling actors that read, label and write whole shards, the driver that keeps count),
except that the labeling actors' models are replaced by a stand-in that returns, for
each image, the segments of one of a fixed pool of real panoptic labels (ground truth
of synthetic images at 1024x768: tens of segments each, real RLE), so that the rows
weigh what real ones do. Reported: rows/s, the driver's CPU seconds and peak memory per
1,000 images, the object store's peak, where the driver's main thread spends its CPU
(`--profile`: Ray's code, this package's, the rest), and from these the number of
10-images/s GPUs one driver can serve. Every sample must end as exactly one row: checked at the end.
Writes bench/results/scale-<samples>.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import tarfile
import threading
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
GPU_IMAGES_PER_SECOND = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--folder", default="/tmp/scale", help="shards and labels are written here")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="profile the driver (cProfile)")
    return parser


def write_corpus(folder: str, samples: int, shards: int) -> list[str]:
    """`shards` tars of tiny PNGs, written once (a marker file records that they are whole)."""
    from PIL import Image

    marker = os.path.join(folder, f"corpus-{samples}-{shards}.done")
    paths = [os.path.join(folder, f"corpus-{samples}", f"shard-{i:06d}.tar") for i in range(shards)]
    if os.path.exists(marker):
        return paths
    os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
    blobs = []
    for shade in range(16):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (16 * shade, 64, 255 - 16 * shade)).save(buffer, "PNG")
        blobs.append(buffer.getvalue())
    per_shard = -(-samples // shards)
    for index, path in enumerate(paths):
        with tarfile.open(path, "w") as tar:
            for j in range(index * per_shard, min(samples, (index + 1) * per_shard)):
                data = blobs[j % len(blobs)]
                info = tarfile.TarInfo(f"{j:09d}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    open(marker, "w").close()
    return paths


def segment_pool(images: int = 8) -> list[list[dict]]:
    """Real panoptic labels: the ground truth of synthetic images at 1024x768, as segments with RLE."""
    from samcp.data.coco import encode_rle
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
    from samcp.masks import mask_bbox

    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=768, width=1024))
    names = {c.id: c for c in corpus.categories}
    pool = []
    for index in range(images):
        sample = corpus[index]
        segments = []
        for info in sample.metadata()["segments_info"]:
            mask = sample.panoptic == info["id"]
            category = names[info["category_id"]]
            segments.append({"id": info["id"], "category_id": category.id, "category": category.name,
                             "isthing": category.isthing, "score": 0.9, "area": int(mask.sum()),
                             "bbox": mask_bbox(mask), "rle": encode_rle(mask)})
        pool.append(segments)
    return pool


def stand_in_actor(pool: list[list[dict]]) -> type:
    """`LabelActor` with its models replaced: each image gets the segments of one label of `pool`."""
    from pipeline.labeling import LabelActor
    from samcp.labeler import LabeledImage

    class StandInActor(LabelActor):
        count = 0

        @staticmethod
        def build_labeler(labeler, storage_options):
            return None

        def _label(self, images, native_sizes):
            found = []
            for _ in images:
                self.count += 1
                found.append(LabeledImage(None, pool[self.count % len(pool)], 32))
            return found

    return StandInActor


class ObjectStorePeak(threading.Thread):
    """Polls the cluster's object store use (total - available) every 0.5 s; keeps the peak."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0.0, threading.Event()

    def run(self):
        import ray

        while not self.stop.wait(0.5):
            try:
                total = ray.cluster_resources().get("object_store_memory", 0.0)
                free = ray.available_resources().get("object_store_memory", total)
                self.peak = max(self.peak, total - free)
            except Exception:  # noqa: BLE001 - Ray not up yet, or shutting down
                continue


def one_row_per_sample(output: str, samples: int, shards: int) -> dict:
    import pyarrow.dataset as pads

    from pipeline.output import LabelOutput

    files = LabelOutput(output).parquet_files()
    table = pads.dataset(files, format="parquet").to_table(columns=["shard", "key"])
    pairs = len(set(zip(table.column("shard").to_pylist(), table.column("key").to_pylist())))
    return {"rows": table.num_rows, "files": len(files), "unique_shard_keys": pairs,
            "exactly_one_row_per_sample": table.num_rows == pairs == samples and len(files) == shards}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import shutil

    import ray

    from pipeline.config import JobConfig
    from samcp.config import LabelerConfig
    from samcp.provenance import provenance, write_result

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    started = time.perf_counter()
    shards = write_corpus(args.folder, args.samples, args.shards)
    generated_s = time.perf_counter() - started
    pool = segment_pool()
    output = os.path.join(args.folder, f"labels-{args.samples}")
    shutil.rmtree(output, ignore_errors=True)
    cfg = JobConfig(inputs=tuple(shards), output=output, actors=args.actors, batch_size=args.batch_size,
                    labeler=LabelerConfig(), progress_every_s=60.0)
    ray.init(include_dashboard=False, log_to_driver=False)
    store = ObjectStorePeak()
    store.start()
    from pipeline.job import run_label_job

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # the main thread's CPU, not its waits
        profiler.enable()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    rss_before = cpu_before.ru_maxrss / 1024
    started = time.perf_counter()
    summary = run_label_job(cfg, log=lambda line: print(line, flush=True), actor=stand_in_actor(pool))
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    if profiler is not None:
        profiler.disable()
    store.stop.set()
    driver_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    per_1000 = driver_cpu / args.samples * 1000
    result = {
        "samples": args.samples, "shards": args.shards, "actors": args.actors, "batch_size": args.batch_size,
        "corpus_written_s": round(generated_s, 1), "wall_s": round(wall, 1),
        "rows_per_s": round(args.samples / wall, 1),
        "driver_cpu_s": round(driver_cpu, 1), "driver_cpu_s_per_1000_images": round(per_1000, 3),
        "driver_peak_rss_mib": round(cpu_after.ru_maxrss / 1024),
        "driver_rss_mib_before_run": round(rss_before),
        "object_store_peak_mib": round(store.peak / 2**20),
        "gpus_per_driver": round(1000 / per_1000 / GPU_IMAGES_PER_SECOND, 1),
        "summary": {k: summary[k] for k in ("samples", "ok", "error", "shards", "failed_shards")},
        "check": one_row_per_sample(output, args.samples, args.shards),
    }
    if profiler is not None:
        result["driver_profile"] = profile_shares(profiler, driver_cpu)
    print(json.dumps(result, indent=1))
    ray.shutdown()
    # The shipped models: the job checks them (describe_models) and records them in the output's
    # manifest; the stand-in labels instead of them, from the ground truth of test images 0..7.
    result["provenance"] = provenance(cfg.labeler.checkpoint_files(), {
        **vars(args), "labels": "stand-in: the ground truth of synthetic test images 0..7 at 1024x768, "
                                "one per image in turn; the models are loaded only for the job's check"},
        "test", range(8))
    write_result(os.path.join(RESULTS, f"scale-{args.samples}.json"), result)
    return 0 if result["check"]["exactly_one_row_per_sample"] else 1


def profile_shares(profiler, driver_cpu: float) -> dict:
    """Where the driver's main thread spent its time (cProfile self seconds): in Ray's code (Ray
    Data's iterator and scheduling, the core worker's Python side), in this package's code, and the
    rest (standard library, pyarrow); plus this package's top functions by cumulative time."""
    import pstats

    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (calls, ncalls, self, cumulative, callers)
    ours = {k: v for k, v in stats.items() if "/pipeline/" in k[0] or "/samcp/" in k[0]}
    main_thread = sum(v[2] for v in stats.values())
    ray_self = sum(v[2] for k, v in stats.items() if f"{os.sep}ray{os.sep}" in k[0])
    package_self = sum(v[2] for v in ours.values())
    top = sorted(ours.items(), key=lambda item: -item[1][3])[:10]
    return {"driver_cpu_s": round(driver_cpu, 1), "main_thread_s": round(main_thread, 2),
            "ray_self_s": round(ray_self, 2), "package_self_s": round(package_self, 2),
            "other_self_s": round(main_thread - ray_self - package_self, 2),
            "package_top_cumulative_s": {f"{os.path.basename(k[0])}:{k[2]}": round(v[3], 2)
                                         for k, v in top}}


if __name__ == "__main__":
    sys.exit(main())
