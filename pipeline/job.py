"""The labeling job on Ray Data: shards -> reading actors (CPU) -> labeling actors -> Parquet per shard.

Shards are read and decoded by a few CPU actors (`pipeline.reader`), labeled by a pool
of actors that load the models once (`pipeline.labeling`), and streamed back
to the driver, which publishes a shard's file as soon as it holds all the
shard's rows (`pipeline.output`). Ray Data's `write_parquet` is not used: it
names files per block, while resuming needs one atomic file per input shard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import ray

from pipeline.cluster import init_ray
from pipeline.config import JobConfig, package_version
from pipeline.inputs import expand_inputs
from pipeline.labeling import LabelActor
from pipeline.output import MANIFEST_VERSION, PENDING, SUCCESS, LabelOutput
from pipeline.reader import ShardReader
from pipeline.sources import Columns, is_folder_slice, slice_files
from samcp.model_files import describe_models


class ShardAssembler:
    """Gathers the rows of each shard, which arrive in any order, until the shard is whole."""

    def __init__(self):
        self.rows: dict[str, dict[int, dict]] = defaultdict(dict)
        self.ends: dict[str, dict] = {}

    def add(self, rows: list[dict]) -> list[tuple[str, list[dict], dict]]:
        """Take rows; return (shard, sample rows in shard order, end row) for each shard now complete."""
        touched = set()
        for row in rows:
            if row["kind"] == "end":
                self.ends[row["shard"]] = row
            else:
                self.rows[row["shard"]][row["index"]] = row  # keyed: a redone batch never doubles a row
            touched.add(row["shard"])
        complete = []
        for shard in touched:
            end = self.ends.get(shard)
            if end is not None and len(self.rows[shard]) == end["shard_samples"]:
                samples = self.rows.pop(shard)
                complete.append((shard, [samples[i] for i in sorted(samples)], self.ends.pop(shard)))
        return complete

    def incomplete(self) -> list[str]:
        return sorted(set(self.rows) | set(self.ends))


class KeyRegistry:
    """The sample keys of this run, to report a key that comes back in another shard.

    Such samples keep a row each (the `shard` column tells them apart); they are
    counted and named, not merged. Keys are held as 8-byte digests (about 100 bytes
    per sample on the driver); shards finished by an earlier run are not re-read.
    """

    def __init__(self, examples: int = 10):
        self.first_shard: dict[bytes, str] = {}
        self.count = 0
        self.examples: list[dict] = []
        self.max_examples = examples

    def add(self, shard: str, rows: list[dict]) -> list[dict]:
        """Register a shard's rows; returns the new duplicates as {key, shard, first_shard}."""
        found = []
        for row in rows:
            first = self.first_shard.setdefault(hashlib.blake2b(row["key"].encode(), digest_size=8).digest(),
                                                shard)
            if first != shard:
                found.append({"key": row["key"], "shard": shard, "first_shard": first})
        self.count += len(found)
        self.examples += found[:self.max_examples - len(self.examples)]
        return found


@dataclass
class Progress:
    """Counts of the run and a periodic line with images/s and ETA."""

    shards_total: int
    every_s: float
    log: Callable[[str], None]
    start: float = field(default_factory=time.monotonic)
    shards_done: int = 0
    samples: int = 0
    ok: int = 0
    errors: int = 0
    label_seconds: float = 0.0  # the labeling actors' time on the images of this run
    last_line: float = field(default_factory=time.monotonic)

    def add(self, counts: dict) -> None:
        self.shards_done += 1
        self.samples += counts["samples"]
        self.ok += counts["ok"]
        self.errors += counts["error"]
        if time.monotonic() - self.last_line >= self.every_s or self.shards_done == self.shards_total:
            self.log(self.line())
            self.last_line = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def line(self) -> str:
        rate = self.samples / max(self.elapsed, 1e-9)
        left = self.shards_total - self.shards_done
        per_shard = self.samples / self.shards_done if self.shards_done else float("nan")
        eta = left * per_shard / rate if rate > 0 else float("nan")
        return (f"[label] shards {self.shards_done}/{self.shards_total}  images {self.samples} "
                f"(ok {self.ok}, error {self.errors})  {rate:.2f} img/s  ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan: not known yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def readers(cfg: JobConfig) -> int:
    """Shard-reading actors: `read_tasks`, by default one per GPU actor, or one per 8 CPU actors.

    A reader decodes tens to hundreds of images/s; a CPU actor labels a few, a GPU
    actor tens: more readers than that would sit idle, each holding its memory.
    """
    if cfg.read_tasks:
        return cfg.read_tasks
    return cfg.actors if cfg.num_gpus_per_actor else math.ceil(cfg.actors / 8)


def actor_resources(cfg: JobConfig, cluster_cpus: float) -> tuple[float, int]:
    """(Ray CPUs per labeling actor, torch threads per labeling actor).

    GPU actors take 1 CPU. CPU actors share the cluster's CPUs left by the
    reading actors, so every actor finds room and the labeling keeps every core busy.
    """
    reading = cfg.read_cpus * readers(cfg)
    cpus = cfg.cpus_per_actor
    if cpus is None:
        cpus = 1.0 if cfg.num_gpus_per_actor else (cluster_cpus - reading) / cfg.actors
    fits = cfg.num_gpus_per_actor > 0 or cpus * cfg.actors + reading <= cluster_cpus + 1e-9
    if cpus <= 0 or not fits:
        raise ValueError(f"{cfg.actors} actors of {cpus:g} CPUs plus readers do not fit the cluster's "
                         f"{cluster_cpus:g} CPUs; lower --actors or --cpus-per-actor")
    return cpus, max(1, round(cpus))


def build_dataset(cfg: JobConfig, shards: list[str], actor: type = LabelActor) -> ray.data.Dataset:
    """The streaming plan: shards through the reading actors, then the labeling actor pool (`actor`:
    `LabelActor`; bench/scale.py swaps in one with a fast stand-in for the models)."""
    cpus, threads = actor_resources(cfg, ray.cluster_resources().get("CPU", 1.0))
    listings: dict[str, list[str]] = {}
    ds = ray.data.from_items([{"shard": s, "files": folder_files(s, cfg.storage_options, listings)}
                              for s in shards], override_num_blocks=len(shards))
    # A fixed pool of reading actors: reading tasks would each take a worker process, and Ray
    # keeps finished ones idle, so the processes (and memory) would grow with a longer run.
    ds = ds.flat_map(ShardReader, fn_constructor_kwargs={"storage_options": cfg.storage_options,
                                                         "decode": cfg.decode},
                     num_cpus=cfg.read_cpus,
                     compute=ray.data.ActorPoolStrategy(size=readers(cfg)))
    return ds.map_batches(
        actor, batch_size=cfg.batch_size, batch_format="numpy",
        fn_constructor_kwargs={"labeler": cfg.labeler, "storage_options": cfg.storage_options,
                               "torch_threads": threads},
        compute=ray.data.ActorPoolStrategy(size=cfg.actors), num_cpus=cpus,
        num_gpus=cfg.num_gpus_per_actor or None)


def folder_files(shard: str, storage_options: dict | None, listings: dict[str, list[str]]) -> list[str]:
    """A folder slice's file names, listed once per folder here, so that a file gone by the time it is
    read is its sample's error row ([] for other shards, and for a slice whose folder changed: its
    reader fails it with the reason)."""
    if not is_folder_slice(shard):
        return []
    try:
        return slice_files(shard, storage_options, listings)
    except ValueError:
        return []


@contextlib.contextmanager
def object_store_budget(cfg: JobConfig) -> Iterator[None]:
    """Bound Ray Data's object store use while the job streams (64 MiB per labeling actor by
    default): reading outruns labeling, and would otherwise buffer the corpus. Restored after."""
    options = ray.data.DataContext.get_current().execution_options
    before = options.resource_limits
    budget_mib = cfg.object_store_mib or 64 * cfg.actors
    options.resource_limits = before.copy(object_store_memory=budget_mib * 2**20)
    try:
        yield
    finally:
        options.resource_limits = before


def publish(output: LabelOutput, shard: str, rows: list[dict], manifest: dict, attempts: int,
            log: Callable[[str], None], skipped_members: dict | None = None) -> dict:
    """Write one shard's labels, retrying with backoff (1, 2, 4... s) while the store fails."""
    for attempt in range(1, attempts):
        try:
            return output.write_shard(shard, rows, manifest, skipped_members)
        except OSError as error:
            log(f"[label] writing the labels of {shard} failed ({error}); "
                f"retry {attempt}/{attempts - 1} in {2 ** (attempt - 1)}s")
            time.sleep(2 ** (attempt - 1))
    return output.write_shard(shard, rows, manifest, skipped_members)  # the last try: its error fails it


def check_gpus(cfg: JobConfig) -> None:
    """Raise ValueError when the cluster has fewer GPUs than the labeling actors ask for (Ray would
    wait for them forever)."""
    need = cfg.num_gpus_per_actor * cfg.actors
    have = ray.cluster_resources().get("GPU", 0.0)
    if need > have:
        raise ValueError(f"--actors {cfg.actors} x --num-gpus-per-actor {cfg.num_gpus_per_actor:g} "
                         f"needs {need:g} GPUs, but the cluster has {have:g}; lower them, or "
                         "--num-gpus-per-actor 0 to label on CPUs")


def run_label_job(cfg: JobConfig, log: Callable[[str], None] = print, actor: type = LabelActor) -> dict:
    """Label every shard of `cfg.inputs` that has no valid output yet; returns the summary.

    The summary's `failed_shards` maps shards that could not be read whole (or whose labels
    could not be written) to the reason; its counts cover every shard file of the output.
    `_SUCCESS` is removed when a run starts and written at its end only when every shard any
    run asked for (`_pending.json`) is labeled. Ray is joined (or started) only when there is
    something to label.
    """
    cfg = dataclasses.replace(cfg, labeler=cfg.labeler.with_absolute_paths())
    shards = expand_inputs(list(cfg.inputs), cfg.storage_options,
                           Columns(uri=cfg.uri_column, image=cfg.image_column, key=cfg.key_column),
                           cfg.slice_size)
    output = LabelOutput(cfg.output, cfg.storage_options)
    # Checks every model file (a missing, corrupt or mismatched checkpoint fails now with its own
    # message, not later as a dead actor on the cluster, and before the output is claimed).
    labeling = {**describe_models(cfg.labeler, cfg.storage_options), "decode": dataclasses.asdict(cfg.decode)}
    manifest = {"version": MANIFEST_VERSION, "labeling": labeling,
                "package_version": package_version(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    output.prepare(manifest, cfg.overwrite)
    output.remove(SUCCESS)
    census = output.census(labeling)
    for path, reason in census.invalid.items():
        log(f"[label] {path} is not a valid shard file ({reason}): its shard is labeled again if asked for")
    asked = list(dict.fromkeys([*_earlier_pending(output, log), *shards]))
    unlabeled = [s for s in asked if s not in census.done]
    _write_pending(output, unlabeled)
    pending = [s for s in shards if s not in census.done]
    log(f"[label] {len(shards)} shards: {len(shards) - len(pending)} already labeled, "
        f"{len(pending)} to label -> {cfg.output}")
    progress = Progress(len(pending), cfg.progress_every_s, log)
    failed: dict[str, str] = {}
    keys = KeyRegistry()
    if pending:
        init_ray(cfg.ray_address)
        check_gpus(cfg)
        assembler = ShardAssembler()
        with object_store_budget(cfg):
            stream = build_dataset(cfg, pending, actor).iter_batches(batch_format="pyarrow", batch_size=None)
            for batch in stream:
                for shard, rows, end in assembler.add(batch.to_pylist()):
                    if not end["shard_error"]:
                        skipped = json.loads(end["skipped_members"]) if end["skipped_members"] else None
                        try:
                            progress.add(publish(output, shard, rows, manifest, cfg.write_attempts, log,
                                                 skipped))
                            progress.label_seconds += sum(r["label_seconds"] or 0.0 for r in rows)
                        except OSError as error:
                            end["shard_error"] = f"labels of {shard} could not be written: {error}"
                    if end["shard_error"]:
                        failed[shard] = end["shard_error"]
                        log(f"[label] shard failed, nothing written for it: {end['shard_error']}")
                        continue
                    for duplicate in keys.add(shard, rows)[:3]:
                        log(f"[label] key {duplicate['key']!r} of {shard} is also in "
                            f"{duplicate['first_shard']} (both kept, as separate rows)")
        if assembler.incomplete():
            missing = assembler.incomplete()
            raise RuntimeError(f"the stream ended with rows missing for {len(missing)} shards, "
                               f"e.g. {missing[0]}")
    final = output.census(labeling)
    for path, reason in final.invalid.items():  # written meanwhile by another run on the same output
        failed[path] = f"not a valid shard file at the end of the run: {reason}; rerun to label it again"
    unlabeled = [s for s in unlabeled if s not in final.done]
    _write_pending(output, unlabeled)
    inputs = set(shards)
    earlier = [s for s in unlabeled if s not in failed and s not in inputs]
    if earlier:
        log(f"[label] {len(earlier)} shards asked for by an earlier run are still unlabeled, "
            f"e.g. {earlier[0]}: no {SUCCESS} until they are (rerun with them among the inputs, or delete "
            f"{output.path(PENDING)} to forget them)")
    totals = {name: sum(c[name] for c in final.done.values()) for name in ("samples", "ok", "error")}
    skipped_members = sum(c.get("skipped_members", {}).get("count", 0) for c in final.done.values())
    summary = {
        "shards": len(final.done), "inputs": len(shards), "shards_labeled": progress.shards_done,
        "shards_skipped": len(shards) - len(pending), "failed_shards": failed,
        "unlabeled_from_earlier_runs": len(earlier), **totals, "skipped_members": skipped_members,
        "duplicate_keys": {"count": keys.count, "examples": keys.examples},
        "seconds": round(progress.elapsed, 1),
        "images_per_second": round(progress.samples / max(progress.elapsed, 1e-9), 3),
        # Per image labeled in this run: a labeling actor's seconds, and the GPU-seconds they held.
        "actor_seconds_per_image": round(progress.label_seconds / progress.ok, 4) if progress.ok else None,
        "gpu_seconds_per_image": round(progress.label_seconds * cfg.num_gpus_per_actor / progress.ok, 4)
        if progress.ok and cfg.num_gpus_per_actor else None,
        "output": cfg.output, "package_version": manifest["package_version"],
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": {k: labeling[k] for k in ("sam", "head", "clip")},
        "vocabulary": {k: labeling["vocabulary"][k] for k in ("source", "name", "fingerprint")},
    }
    if not failed and not unlabeled:
        output.write_json(SUCCESS, summary)
    return summary


def _earlier_pending(output: LabelOutput, log: Callable[[str], None]) -> list[str]:
    try:
        pending = output.read_json(PENDING) or []
    except ValueError:
        pending = None
    if not isinstance(pending, list) or not all(isinstance(s, str) for s in pending):
        log(f"[label] {output.path(PENDING)} is damaged: ignored")
        return []
    return pending


def _write_pending(output: LabelOutput, unlabeled: list[str]) -> None:
    if unlabeled:
        output.write_json(PENDING, unlabeled)
    else:
        output.remove(PENDING)
