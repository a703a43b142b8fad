"""The patch cache: what the SAM-CP head trains on, computed once per image and view, on Ray Data.

SAM cuts every image of the label sources (`LabelSource`: shards with their ground truth
inside, shards labeled by a COCO panoptic folder, or a labeling job's pseudo-labels) into
patches; each image and view becomes a `samcp.train.head.CachedImage` (SAM's embedding,
the patches' boxes and RoI masks, their CLIP region embeddings for a head that reads them,
and their targets against the labels), serialized. A pool of actors (GPU, or CPU) loads
the models once and takes whole input shards: each shard's examples are written, by the
actor, to one Parquet file in `--cache` (any fsspec URI), named like the labeling job's
(`pipeline.output.shard_file_name`), atomically. The driver only sees one small summary
per shard.

Like the labeling job, a rerun finishes only the shards without a valid file, a cache made
with other models or settings is refused (its `_manifest.json` says which), a sample that
cannot be used is a counted skip with its reason (footer, `_SUCCESS`), and a shard that
cannot be read is reported and left for the rerun.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from pipeline.cluster import init_ray
from pipeline.inputs import expand_inputs
from pipeline.output import LabelOutput, shard_file_name
from pipeline.selftrain.selection import ScoreFilter
from pipeline.train.examples import (
    ExampleBuilder,
    GroundTruthReader,
    PseudoLabelReader,
    ShardTruthReader,
    ShardUnreadable,
)
from samcp.data.coco import PanopticDataset
from samcp.data.decode import DecodeConfig
from samcp.storage import Folder, absolute, atomic_write, ensure_directory

CACHE_VERSION = 1
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
METADATA_KEY = b"samcp_cache"
SCHEMA = pa.schema([("key", pa.string()), ("example", pa.large_binary())])


# The views of every training image besides itself (`ExampleBuilder`), as flags.
VIEW_HELP = {
    "mirror": "every training image also enters mirrored left-right (one more example each)",
    "turn": "every training image also enters turned by 90, 180 or 270 degrees, picked by its key "
            "(one more example each)",
}


class CacheConflict(ValueError):
    """The cache folder holds examples made with other models or settings."""


@dataclass(frozen=True)
class LabelSource:
    """Shards and where their labels are.

    kind "truth": the labels are inside each sample (`json` + `panoptic.png`, as
    `jobs/make_shards.py synthetic` and `coco` write them); "coco": a COCO panoptic folder
    whose PNGs are named by sample key (`labels`); "pseudo": a labeling job's output
    (`labels`), its segments kept by `scores`.
    """

    kind: str
    shards: tuple[str, ...]  # URIs, globs, brace patterns
    labels: str | None = None
    scores: ScoreFilter = field(default_factory=ScoreFilter)

    def __post_init__(self):
        if self.kind not in ("truth", "coco", "pseudo"):
            raise ValueError(f"label source kind must be truth, coco or pseudo, got {self.kind!r}")
        if self.kind != "truth" and not self.labels:
            raise ValueError(f"a {self.kind} label source needs its labels")

    def reader(self, storage_options: dict | None, decode: DecodeConfig):
        """The callable that turns a row `{"shard"}` into sample rows (`pipeline.train.examples`)."""
        if self.kind == "truth":
            return ShardTruthReader(storage_options, decode)
        if self.kind == "coco":
            return GroundTruthReader(self.labels, storage_options, decode)
        return PseudoLabelReader(self.labels, self.scores, storage_options, decode)

    def check(self, storage_options: dict | None) -> None:
        """Fail now, on the driver, for labels that cannot be read (not in a reading task)."""
        if self.kind == "coco":
            PanopticDataset.folder(self.labels)
        elif self.kind == "pseudo":
            output = LabelOutput(self.labels, storage_options)
            output.manifest()
            self.scores.check_reachable(list(output.census().done.values()), self.labels)

    def labels_record(self) -> dict:
        """Where the labels are and which are kept: what a shard's examples were made from besides it."""
        record = {"kind": self.kind, "labels": self.labels}
        if self.kind == "pseudo":
            record["scores"] = asdict(self.scores)
        return record

    def describe(self) -> dict:
        return {**self.labels_record(), "shards": list(self.shards)}


@dataclass(frozen=True)
class CacheConfig:
    """Where the cache goes and what each example holds; the models are the `labeling` record
    passed to `run_cache_job` (`samcp.model_files.describe_models`, or a labeling manifest's)."""

    cache: str  # folder URI
    roi_size: int = 7  # the head's `HeadConfig.roi_size`
    clip_dim: int = 0  # the head's `HeadConfig.clip_dim` (0: no CLIP region embeddings)
    backbone: str = "sam"  # the head's `HeadConfig.backbone`: "resnet50" examples hold the image
    mirror: bool = field(default=False, metadata={"help": VIEW_HELP["mirror"]})
    turn: bool = field(default=False, metadata={"help": VIEW_HELP["turn"]})
    actors: int = field(default=1, metadata={"help": "patch cache actors (SAM loaded once in each)"})
    num_gpus_per_actor: float = field(default=0.0, metadata={"help": "GPUs per patch cache actor (0: CPU)"})
    cache_batch_size: int = field(default=4, metadata={"help": "images per SAM batch in the patch cache"})
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    storage_options: dict | None = None
    ray_address: str | None = None

    def examples(self) -> dict:
        """What shapes every example, recorded in the manifest and each file's footer."""
        return {"roi_size": self.roi_size, "clip_dim": self.clip_dim, "backbone": self.backbone,
                "mirror": self.mirror,
                "turn": self.turn, "decode": asdict(self.decode)}


class CacheFolder(Folder):
    """The cache folder: one Parquet file per input shard (`key`, `example`), `_manifest.json`,
    `_SUCCESS` (the summary of the last complete run)."""

    def manifest(self) -> dict:
        manifest = self.read_json(MANIFEST)
        if not isinstance(manifest, dict) or "labeling" not in manifest:
            raise FileNotFoundError(f"{self.uri} has no {MANIFEST}: not a patch cache (jobs/train_samcp.py "
                                    "--cache, or pipeline.train.cache)")
        return manifest

    def prepare(self, manifest: dict) -> None:
        """Claim the folder for `manifest`; a folder made with other settings is refused."""
        ensure_directory(self.fs, self.root, self.uri)
        existing = self.read_json(MANIFEST)
        if existing is not None:
            changed = [f"{part}.{k}" for part in ("labeling", "examples")
                       for k in sorted(set(existing.get(part) or {}) | set(manifest[part]))
                       if (existing.get(part) or {}).get(k) != manifest[part].get(k)]
            if changed:
                raise CacheConflict(f"{self.uri} caches examples made with other settings "
                                    f"({', '.join(changed)}); use another --cache, or remove that folder")
        self.write_json(MANIFEST, manifest)  # the sources of this run
        self.fs.invalidate_cache()
        if self.fs.exists(self.path(SUCCESS)):
            self.fs.rm(self.path(SUCCESS))

    def done(self, manifest: dict, labels: dict[str, dict]) -> dict[str, dict]:
        """{shard: its counts} for every valid file of a shard of `labels` ({shard: its source's
        `labels_record`}): whole Parquet, made with `manifest`'s settings from those labels, of the
        shard its name says, with as many rows as its counts."""
        self.fs.invalidate_cache()
        try:
            files = [e["name"] for e in self.fs.ls(self.root, detail=True) if e.get("type") == "file"
                     and e["name"].endswith(".parquet")]
        except FileNotFoundError:
            return {}
        done = {}
        for path in files:
            try:
                with self.fs.open(path, "rb") as f:
                    parquet = pq.ParquetFile(f)
                    rows, metadata = parquet.metadata.num_rows, parquet.schema_arrow.metadata or {}
                record = json.loads(metadata[METADATA_KEY])
            except Exception:  # noqa: BLE001 - a damaged or foreign file is made again
                continue
            same = all(record.get(k) == manifest[k] for k in ("labeling", "examples"))
            if same and record["shard"] in labels and record.get("labels") == labels[record["shard"]] \
                    and path.rsplit("/", 1)[-1] == shard_file_name(record["shard"]) \
                    and record["counts"]["examples"] == rows:
                done[record["shard"]] = record["counts"]
        return done

    def finished(self) -> dict:
        """The summary of the last complete run (`_SUCCESS`): its `files` and `examples`."""
        success = self.read_json(SUCCESS)
        if success is None:
            raise FileNotFoundError(f"{self.uri} is not a finished patch cache (no {SUCCESS}): build it "
                                    "first, or rerun the command that builds it")
        return success

    def write_shard(self, shard: str, labels: dict, rows: list[dict], counts: dict, manifest: dict) -> str:
        """labels: the `labels_record` of the shard's source."""
        metadata = {METADATA_KEY: json.dumps({**{k: manifest[k] for k in ("labeling", "examples")},
                                              "shard": shard, "labels": labels, "counts": counts}).encode()}
        table = pa.Table.from_pylist(rows, schema=SCHEMA.with_metadata(metadata))
        name = shard_file_name(shard)
        with atomic_write(self.fs, self.path(name)) as f:
            pq.write_table(table, f, compression="zstd")
        return name


class ShardCacher:
    """Callable class for Ray Data's `map` over rows `{"shard", "source"}`: reads the shard, builds
    its examples in batches, writes its file; returns `{"shard", "counts": JSON, "error"}`."""

    def __init__(self, manifest: dict, sources: list[LabelSource], cfg: CacheConfig, torch_threads: int):
        self.manifest, self.cfg = manifest, cfg
        self.sources = sources
        self.builder = ExampleBuilder(manifest["labeling"], cfg.roi_size, cfg.clip_dim, cfg.storage_options,
                                      torch_threads, cfg.mirror, cfg.turn, cfg.backbone)
        self.folder = CacheFolder(cfg.cache, cfg.storage_options)

    def __call__(self, row: dict) -> dict:
        shard, source = row["shard"], self.sources[int(row["source"])]
        started = time.perf_counter()
        rows, skipped, examples, samples = [], Counter(), SkipExamples(), 0
        try:
            pending = []
            for sample in source.reader(self.cfg.storage_options, self.cfg.decode)({"shard": shard}):
                samples += 1
                if "skip" in sample:
                    skipped[reason_kind(sample["skip"])] += 1
                    examples.add(sample)
                    continue
                pending.append(sample)
                if len(pending) == self.cfg.cache_batch_size:
                    rows += self.build(pending, skipped, examples)
                    pending = []
            rows += self.build(pending, skipped, examples)
        except ShardUnreadable as error:
            return {"shard": shard, "counts": "{}", "error": str(error)}
        counts = {"samples": samples, "examples": len(rows), "skipped": dict(skipped),
                  "skip_examples": examples.items, "seconds": round(time.perf_counter() - started, 3)}
        try:
            self.folder.write_shard(shard, source.labels_record(), rows, counts, self.manifest)
        except Exception as error:  # noqa: BLE001 - a store that refuses the file fails this shard only
            return {"shard": shard, "counts": "{}",
                    "error": f"writing its cache file failed: {type(error).__name__}: {error}".split("\n")[0]}
        return {"shard": shard, "counts": json.dumps(counts), "error": ""}

    def build(self, pending: list[dict], skipped: Counter, examples: SkipExamples) -> list[dict]:
        """The examples of a batch of samples; a batch that fails is built image by image, so that
        only the images that fail are skipped (with the error)."""
        if not pending:
            return []
        try:
            built = self.builder.build(pending)
        except Exception:  # noqa: BLE001 - find the image that fails
            built = []
            for sample in pending:
                try:
                    built += self.builder.build([sample])
                except Exception as error:  # noqa: BLE001 - a bad sample is a skip, never a crash
                    built.append({"key": sample["key"], "skip": f"failed: {type(error).__name__}: {error}"})
        kept = []
        for row in built:
            if "skip" in row:
                skipped[reason_kind(row["skip"])] += 1
                examples.add(row)
            else:
                kept.append(row)
        return kept


class SkipExamples:
    """The first few skipped samples of a shard, with their full reasons."""

    def __init__(self, limit: int = 5):
        self.items: list[dict] = []
        self.limit = limit

    def add(self, row: dict) -> None:
        if len(self.items) < self.limit:
            self.items.append({"key": row["key"], "reason": row["skip"].split("\n")[0][:300]})


def reason_kind(reason: str) -> str:
    """What skipped samples are counted by: the reason up to its first colon."""
    return reason.split(":", 1)[0]


def run_cache_job(cfg: CacheConfig, labeling: dict, sources: list[LabelSource],
                  log: Callable[[str], None] = print) -> dict:
    """Build (or finish) the cache of `sources` with the models and patch settings of `labeling`.

    Returns the summary also written to `_SUCCESS`: examples, skipped samples by reason, the
    shard files, and the shards that failed (then `_SUCCESS` is not written)."""
    cfg_cache = absolute(cfg.cache)
    folder = CacheFolder(cfg_cache, cfg.storage_options)
    manifest = {"version": CACHE_VERSION, "labeling": labeling, "examples": cfg.examples(),
                "sources": [s.describe() for s in sources]}
    for source in sources:
        source.check(cfg.storage_options)
    shards = []  # (shard, index of its source), each shard once
    for index, source in enumerate(sources):
        for shard in expand_inputs(list(source.shards), cfg.storage_options):
            if shard not in {s for s, _ in shards}:
                shards.append((shard, index))
    folder.prepare(manifest)
    done = folder.done(manifest, {s: sources[i].labels_record() for s, i in shards})
    todo = [(s, i) for s, i in shards if s not in done]
    log(f"[cache] {len(shards)} shards, {len(done)} already cached in {cfg_cache}, {len(todo)} to do")
    failed = {}
    if todo:
        init_ray(cfg.ray_address)
        # CPU actors share the cluster's CPUs (a quarter left for Ray's own tasks); GPU actors take one.
        cpus = max(1.0, ray.cluster_resources().get("CPU", 1.0) - 0.25)
        per_actor = 1.0 if cfg.num_gpus_per_actor else cpus / max(1, cfg.actors)
        ds = ray.data.from_items([{"shard": s, "source": i} for s, i in todo], override_num_blocks=len(todo))
        ds = ds.map(ShardCacher, fn_constructor_kwargs={
                        "manifest": manifest, "sources": sources, "cfg": cfg,
                        "torch_threads": max(1, round(per_actor))},
                    compute=ray.data.ActorPoolStrategy(size=cfg.actors), num_cpus=per_actor,
                    num_gpus=cfg.num_gpus_per_actor or None)
        ds.context.execution_no_progress_timeout_s = -1  # a shard may take longer than Ray Data's 30 min
        started, images = time.perf_counter(), 0
        for index, result in enumerate(ds.iter_rows(), 1):
            if result["error"]:
                failed[result["shard"]] = result["error"]
                log(f"[cache] shard failed, nothing written for it: {result['error']}")
                continue
            counts = json.loads(result["counts"])
            done[result["shard"]] = counts
            images += counts["samples"]
            rate = images / max(time.perf_counter() - started, 1e-9)
            log(f"[cache] {index}/{len(todo)} shards, {counts['examples']} examples from "
                f"{result['shard'].rsplit('/', 1)[-1]}, {rate:.2f} img/s")
    summary = summarize(done, failed, [s for s, _ in shards])
    if not failed:
        folder.write_json(SUCCESS, summary)
    log(f"[cache] {summary['examples']} examples, {sum(summary['skipped'].values())} samples skipped "
        f"{summary['skipped'] or ''}, {len(failed)} shards failed")
    return summary


def summarize(done: dict[str, dict], failed: dict[str, str], shards: list[str]) -> dict:
    skipped, examples = Counter(), []
    for shard in shards:
        counts = done.get(shard)
        if counts:
            skipped.update(counts["skipped"])
            examples += counts["skip_examples"]
    return {"version": CACHE_VERSION, "shards": len(shards),
            "samples": sum(done[s]["samples"] for s in shards if s in done),
            "examples": sum(done[s]["examples"] for s in shards if s in done),
            "skipped": dict(skipped), "skip_examples": examples[:10],
            "files": [shard_file_name(s) for s in shards if s in done], "failed": failed}
