"""The labeling job on Ray Data: shards -> labeling actors that read, label and write them -> a small
row per shard to the driver.

A pool of actors loads the models once each (`pipeline.labeling`); each takes whole shards,
reads and decodes them on a thread (`pipeline.reader`), labels them in batches and publishes
each shard's Parquet file itself, atomically (`pipeline.output`). The driver plans the shards,
claims the output, and keeps count from the actors' small result rows (a progress row per
batch, a done row per shard with its counts and keys): its cost per image is a few
microseconds, and a slow store holds up only the actor that writes to it. Ray Data's
`write_parquet` is not used: it names files per block, while resuming needs one atomic file
per input shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import ray

from pipeline.cluster import init_ray
from pipeline.config import JobConfig, package_version
from pipeline.inputs import expand_inputs
from pipeline.labeling import LabelActor
from pipeline.output import MANIFEST_VERSION, PENDING, SUCCESS, LabelOutput, OutputConflict
from pipeline.sources import Columns, is_folder_slice, slice_files
from pipeline.words import plural
from samcp.model_files import describe_models


class KeyRegistry:
    """The sample keys of this run, to report a key that comes back in another shard.

    Such samples keep a row each (the `shard` column tells them apart); they are counted and
    named, not merged. Each key is held as an 8-byte digest in a sorted array with the index of
    the shard it was first seen in: 12 bytes per sample on the driver (12 MB per million);
    shards finished by an earlier run are not re-read.
    """

    def __init__(self, examples: int = 10):
        self.digests = np.empty(0, np.uint64)
        self.first = np.empty(0, np.int32)  # index into `shards`
        self.shards: list[str] = []
        self.count = 0
        self.examples: list[dict] = []
        self.max_examples = examples

    def add(self, shard: str, keys: list[str]) -> list[dict]:
        """Register a shard's keys; returns the new duplicates as {key, shard, first_shard}."""
        digests = np.array([int.from_bytes(hashlib.blake2b(k.encode("utf-8", "surrogateescape"),
                                                           digest_size=8).digest(), "little") for k in keys],
                           np.uint64)
        at = np.searchsorted(self.digests, digests)
        seen = np.zeros(len(digests), bool)
        if len(self.digests):
            seen = self.digests[np.minimum(at, len(self.digests) - 1)] == digests
        found = [{"key": keys[i], "shard": shard, "first_shard": self.shards[self.first[at[i]]]}
                 for i in np.flatnonzero(seen)]
        new = np.unique(digests[~seen])
        where = np.searchsorted(self.digests, new)
        self.digests = np.insert(self.digests, where, new)
        self.first = np.insert(self.first, where, len(self.shards))
        self.shards.append(shard)
        self.count += len(found)
        self.examples += found[:self.max_examples - len(self.examples)]
        return found


@dataclass
class Progress:
    """Counts of the run and a periodic line with images/s and ETA, moved by every labeled batch."""

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
    in_flight: dict[str, int] = field(default_factory=dict)  # images labeled of shards not yet done

    def advance(self, shard: str, samples: int) -> None:
        """A batch of `shard` labeled."""
        self.in_flight[shard] = self.in_flight.get(shard, 0) + samples
        self._maybe_log()

    def add(self, counts: dict, shard: str | None = None) -> None:
        """A shard done, with its counts."""
        self.in_flight.pop(shard, None)
        self.shards_done += 1
        self.samples += counts["samples"]
        self.ok += counts["ok"]
        self.errors += counts["error"]
        self._maybe_log(self.shards_done == self.shards_total)

    def drop(self, shard: str) -> None:
        """A shard failed: its images no longer count."""
        self.in_flight.pop(shard, None)

    def _maybe_log(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last_line >= self.every_s:
            self.log(self.line())
            self.last_line = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def line(self) -> str:
        images = self.samples + sum(self.in_flight.values())
        rate = images / max(self.elapsed, 1e-9)
        left = self.shards_total - self.shards_done
        per_shard = self.samples / self.shards_done if self.shards_done else float("nan")
        eta = (left * per_shard - sum(self.in_flight.values())) / rate if rate > 0 else float("nan")
        return (f"[label] shards {self.shards_done}/{self.shards_total}  images {images} "
                f"(ok {self.ok}, error {self.errors})  {rate:.2f} img/s  ETA {_duration(max(eta, 0.0))}")


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan: not known yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def actor_resources(cfg: JobConfig, cluster_cpus: float) -> tuple[float, int]:
    """(Ray CPUs per labeling actor, torch threads per labeling actor).

    GPU actors take 1 CPU. CPU actors share the cluster's CPUs, so every actor finds room
    and the labeling keeps every core busy.
    """
    cpus = cfg.cpus_per_actor
    if cpus is None:
        cpus = 1.0 if cfg.num_gpus_per_actor else cluster_cpus / cfg.actors
    fits = cfg.num_gpus_per_actor > 0 or cpus * cfg.actors <= cluster_cpus + 1e-9
    if cpus <= 0 or not fits:
        raise ValueError(f"{cfg.actors} actors of {cpus:g} CPUs do not fit the cluster's "
                         f"{cluster_cpus:g} CPUs; lower --actors or --cpus-per-actor")
    return cpus, max(1, round(cpus))


def build_dataset(cfg: JobConfig, shards: list[str], manifest: dict, actor: type = LabelActor
                  ) -> ray.data.Dataset:
    """The streaming plan: one row per shard through the labeling actor pool (`actor`: `LabelActor`;
    bench/scale.py swaps in one with a fast stand-in for the models), which yields result rows."""
    cpus, threads = actor_resources(cfg, ray.cluster_resources().get("CPU", 1.0))
    listings: dict[str, list[str]] = {}
    ds = ray.data.from_items([{"shard": s, "files": folder_files(s, cfg.storage_options, listings)}
                              for s in shards], override_num_blocks=len(shards))
    ds = ds.map_batches(
        actor, batch_size=1, batch_format="numpy",
        fn_constructor_kwargs={"labeler": cfg.labeler, "storage_options": cfg.storage_options,
                               "torch_threads": threads, "output": cfg.output, "manifest": manifest,
                               "decode": cfg.decode, "batch_size": cfg.batch_size,
                               "write_attempts": cfg.write_attempts},
        compute=ray.data.ActorPoolStrategy(size=cfg.actors), num_cpus=cpus,
        num_gpus=cfg.num_gpus_per_actor or None)
    ds.context.execution_no_progress_timeout_s = -1  # a shard may take longer than Ray Data's 30 min
    return ds


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
    log(f"[label] {plural(len(shards), 'shard')}: {len(shards) - len(pending)} already labeled, "
        f"{len(pending)} to label -> {cfg.output}")
    progress = Progress(len(pending), cfg.progress_every_s, log)
    failed: dict[str, str] = {}
    keys = KeyRegistry()
    if pending:
        init_ray(cfg.ray_address)
        check_gpus(cfg)
        done: set[str] = set()
        for batch in build_dataset(cfg, pending, manifest, actor).iter_batches(batch_format="pyarrow",
                                                                               batch_size=None):
            for result in batch.to_pylist():
                shard = result["shard"]
                if result["kind"] == "progress":
                    progress.advance(shard, result["samples"])
                    continue
                for line in json.loads(result["log"]):
                    log(line)
                if result["kind"] == "conflict":
                    raise OutputConflict(result["shard_error"])
                if shard in done:  # a shard retried after its actor died: its first result counts
                    continue
                done.add(shard)
                if result["shard_error"]:
                    failed[shard] = result["shard_error"]
                    progress.drop(shard)
                    log(f"[label] shard failed, nothing written for it: {result['shard_error']}")
                    continue
                progress.add(json.loads(result["counts"]), shard)
                progress.label_seconds += result["label_seconds"]
                for duplicate in keys.add(shard, json.loads(result["keys"]))[:3]:
                    log(f"[label] key {duplicate['key']!r} of {shard} is also in "
                        f"{duplicate['first_shard']} (both kept, as separate rows)")
        missing = [s for s in pending if s not in done]
        if missing:
            raise RuntimeError(f"the stream ended without a result for {len(missing)} shards, "
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
    segments = sum(c.get("segments", 0) for c in final.done.values())  # files of older runs lack them
    score_sum = sum(c.get("score_sum", 0.0) for c in final.done.values())
    skipped_members = sum(c.get("skipped_members", {}).get("count", 0) for c in final.done.values())
    summary = {
        "shards": len(final.done), "inputs": len(shards), "shards_labeled": progress.shards_done,
        "shards_skipped": len(shards) - len(pending), "failed_shards": failed,
        "unlabeled_from_earlier_runs": len(earlier), **totals, "skipped_members": skipped_members,
        "segments": segments, "mean_score": round(score_sum / segments, 4) if segments else None,
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
        "vocabulary": {**{k: labeling["vocabulary"][k] for k in ("source", "name", "fingerprint")},
                       "classes": len(labeling["vocabulary"]["classes"])},
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
