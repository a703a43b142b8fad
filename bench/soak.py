"""Soak: a long labeling job with corrupt samples and labeling actors killed, checked row by row.

    python bench/soak.py --num-images 5000 --corrupt 0.02 --kills 2 --workdir /tmp/soak

Writes synthetic shards (held-out split) in which a seeded random `--corrupt`
fraction of the samples is broken (cut, emptied or replaced by text), runs
`run_label_job` on a local Ray with 2 labeling actors, SIGKILLs a labeling
actor each time another 1/(kills+1) of the shards is written, and then checks
every input sample against the output: exactly one row each, `error` with a
reason for the broken ones, `ok` for the rest. Writes bench/results/soak-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time

import numpy as np
import psutil

from pipeline.config import JobConfig
from pipeline.job import run_label_job
from pipeline.output import SUCCESS, LabelOutput
from pipeline.shards import synthetic_sample, write_shards
from samcp.config import LabelerConfig
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.provenance import provenance

BREAKS = {  # how a sample is broken -> the error its row must give
    "cut": "corrupt image",
    "empty": "empty image",
    "text": "not an image",
}


def make_corpus(root: str, num_images: int, shard_size: int, corrupt: float, seed: int
                ) -> tuple[list[str], dict[str, str]]:
    """Shards of synthetic samples, a `corrupt` fraction broken; returns (shards, {key: expected error})."""
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], height=128, width=160))
    rng = np.random.default_rng(seed)
    broken = {int(i): str(rng.choice(list(BREAKS)))
              for i in rng.choice(num_images, int(round(corrupt * num_images)), replace=False)}
    expected: dict[str, str] = {}

    def samples():
        for i in range(num_images):
            sample = synthetic_sample(corpus[i])
            how = broken.get(i)
            if how:
                data = sample["jpg"]
                sample["jpg"] = {"cut": data[:len(data) // 3], "empty": b"", "text": b"not an image"}[how]
            expected[sample["__key__"]] = BREAKS[how] if how else ""
            yield sample

    shards = write_shards(samples(), os.path.join(root, "shards"), shard_size, total=num_images)
    return [s.removeprefix("file://") for s in shards], expected


def kill_actors(output: LabelOutput, shards: int, kills: int, done: threading.Event, log: list) -> None:
    """SIGKILL one labeling actor each time another 1/(kills+1) of the shards is written."""
    for k in range(1, kills + 1):
        while not done.is_set():
            written = len(output.parquet_files()) if output.fs.exists(output.root) else 0
            if written >= k * shards // (kills + 1):
                break
            time.sleep(1.0)
        # This job's actors only: the local Ray's processes descend from this driver.
        actors = [p for p in psutil.Process().children(recursive=True)
                  if "MapBatches(LabelActor)" in " ".join(p.cmdline())]
        if done.is_set() or not actors:
            return
        actors[0].kill()
        log.append({"pid": actors[0].pid, "after_shards": written, "at": time.strftime("%H:%M:%S")})
        print(f"[soak] killed labeling actor {actors[0].pid} after {written}/{shards} shards", flush=True)


def check(output: LabelOutput, shards: list[str], expected: dict[str, str]) -> dict:
    """Every input sample against the output rows; returns the counts of each finding."""
    rows = output.read_table().to_pylist()
    seen: dict[str, list[dict]] = {}
    for row in rows:
        seen.setdefault(row["key"], []).append(row)
    findings = {"rows": len(rows), "samples": len(expected), "missing": 0, "duplicated": 0,
                "wrong_status": 0, "unexpected_keys": len(set(seen) - set(expected))}
    for key, error in expected.items():
        found = seen.get(key, [])
        if not found:
            findings["missing"] += 1
            continue
        findings["duplicated"] += len(found) > 1
        row = found[0]
        ok = row["status"] == "error" and error in row["error"] if error else row["status"] == "ok"
        findings["wrong_status"] += not ok
    findings["errors"] = sum(r["status"] == "error" for r in rows)
    findings["broken_inputs"] = sum(bool(e) for e in expected.values())
    findings["shards_with_output"] = len(output.finished_shards(shards))
    findings["success_file_samples"] = (output.read_json(SUCCESS) or {}).get("samples")
    return findings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--corrupt", type=float, default=0.02)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--points-per-side", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/samcp-soak")
    return parser


def main() -> None:
    args = build_parser().parse_args()

    shards, expected = make_corpus(args.workdir, args.num_images, args.shard_size, args.corrupt, args.seed)
    output = LabelOutput(os.path.join(args.workdir, "labels"))
    cfg = JobConfig(inputs=tuple(shards), output=output.uri, actors=args.actors, overwrite=True,
                    labeler=LabelerConfig(points_per_side=args.points_per_side), ray_address="local")
    done, kills = threading.Event(), []
    killer = threading.Thread(target=kill_actors, args=(output, len(shards), args.kills, done, kills),
                              daemon=True)
    started = time.time()
    killer.start()
    summary = run_label_job(cfg, log=lambda line: print(line, flush=True))
    done.set()
    findings = check(output, shards, expected)
    passed = (findings["missing"] == findings["duplicated"] == findings["wrong_status"]
              == findings["unexpected_keys"] == 0 and len(kills) == args.kills
              and findings["success_file_samples"] == args.num_images)
    result = {"passed": passed, "findings": findings, "kills": kills,
              "seconds": round(time.time() - started, 1),
              "images_per_second": summary["images_per_second"], "failed_shards": summary["failed_shards"],
              "args": vars(args), "device": f"cpu ({os.cpu_count()} cores, {platform.machine()})"}
    result["provenance"] = provenance(cfg.labeler.checkpoint_files(), vars(args), "val",
                                      range(args.num_images))
    print(json.dumps(result, indent=1))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "soak-cpu.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{'PASSED' if passed else 'FAILED'}: {findings['samples']} samples, {findings['rows']} rows, "
          f"{findings['broken_inputs']} broken, {len(kills)} actor kills; wrote {path}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
