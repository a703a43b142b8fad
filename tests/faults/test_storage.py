"""Object storage that fails: S3 (moto on 127.0.0.1) behind a fault-injecting proxy.

Transient errors and slow answers are retried; a denied object fails its shard
with the reason; labels that cannot be written are retried with backoff, and a
shard whose labels still cannot be written is reported, not lost: the rerun
writes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import s3fs

from pipeline.output import SUCCESS, LabelOutput
from pipeline.shards import synthetic_sample, write_shards
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corpus(s3_bucket: str, num_images: int = 6, shard_size: int = 2) -> list[str]:
    images = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=96, width=128))
    return write_shards([synthetic_sample(images[i]) for i in range(num_images)], f"s3://{s3_bucket}/shards",
                        shard_size, progress=False)


# The S3 client's own retries cut to a few seconds (s3fs still retries), so that the
# job's retries are what carries a write through an outage.
NO_CLIENT_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 1}}}


def label_command(proxy, s3_bucket: str, ray_address: str, *args: str, **options) -> list[str]:
    options = {"client_kwargs": {"endpoint_url": proxy.endpoint}, **options}
    return [sys.executable, os.path.join(REPO, "jobs", "label_corpus.py"), "--input", f"s3://{s3_bucket}/shards/*.tar",
            "--output", f"s3://{s3_bucket}/labels", "--points-per-side", "8",
            "--storage-options", json.dumps(options), "--ray-address", ray_address, *args]


def label(proxy, s3_bucket: str, ray_address: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(label_command(proxy, s3_bucket, ray_address, **options), capture_output=True,
                          text=True, timeout=600)


def rows_per_shard(s3_bucket: str) -> dict[str, int]:
    s3fs.S3FileSystem.clear_instance_cache()
    rows = LabelOutput(f"s3://{s3_bucket}/labels").read_table().to_pylist()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["shard"]] = counts.get(row["shard"], 0) + 1
    return counts


def test_transient_errors_and_slow_answers_are_retried(ray_cluster, s3_proxy, s3_bucket):
    shards = corpus(s3_bucket)
    s3_proxy.faults.delay_s, s3_proxy.faults.fail_every = 0.05, 4
    done = label(s3_proxy, s3_bucket, ray_cluster.address)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert s3_proxy.faults.counts["failed"] >= 3
    assert rows_per_shard(s3_bucket) == {s: 2 for s in shards}


def test_a_denied_shard_fails_with_the_reason_and_the_rerun_completes(ray_cluster, s3_proxy, s3_bucket):
    shards = corpus(s3_bucket)
    s3_proxy.faults.deny = ("shards/shard-000001.tar",)
    first = label(s3_proxy, s3_bucket, ray_cluster.address)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    assert "shard-000001.tar: permission denied" in first.stderr, first.stderr[-6000:]
    assert rows_per_shard(s3_bucket) == {shards[0]: 2, shards[2]: 2}
    s3_proxy.faults.deny = ()
    second = label(s3_proxy, s3_bucket, ray_cluster.address)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert rows_per_shard(s3_bucket) == {s: 2 for s in shards}


@pytest.mark.slow
def test_labels_that_cannot_be_written_are_retried_then_reported_not_lost(ray_cluster, s3_proxy, s3_bucket):
    shards = corpus(s3_bucket)
    # The store refuses label files for 12 s: the job's retries with backoff carry the writes through.
    s3_proxy.faults.fail_writes, s3_proxy.faults.fail_writes_for_s = (".parquet",), 12.0
    done = label(s3_proxy, s3_bucket, ray_cluster.address, **NO_CLIENT_RETRIES)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert s3_proxy.faults.counts["failed"] > 0 and "[label] writing the labels of" in done.stdout
    assert rows_per_shard(s3_bucket) == {s: 2 for s in shards}

    # A store that stays down for one shard's labels: that shard is reported; the rerun writes it.
    s3fs.S3FileSystem().rm(f"{s3_bucket}/labels", recursive=True)
    s3_proxy.faults.fail_writes = (os.path.basename(shards[1]).replace(".tar", "-"),)
    s3_proxy.faults.fail_writes_for_s, s3_proxy.faults.first_write = float("inf"), None
    first = label(s3_proxy, s3_bucket, ray_cluster.address, **NO_CLIENT_RETRIES)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"labels of {shards[1]} could not be written" in first.stderr
    assert "retry 4/4" in first.stdout
    assert rows_per_shard(s3_bucket) == {shards[0]: 2, shards[2]: 2}
    s3_proxy.faults.fail_writes = ()
    second = label(s3_proxy, s3_bucket, ray_cluster.address)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert rows_per_shard(s3_bucket) == {s: 2 for s in shards}
    assert LabelOutput(f"s3://{s3_bucket}/labels").read_json(SUCCESS)["samples"] == 6


@pytest.mark.slow
def test_while_the_store_refuses_one_shards_labels_the_other_shards_are_labeled(ray_cluster, s3_proxy,
                                                                                 s3_bucket, tmp_path):
    shards = corpus(s3_bucket, num_images=8, shard_size=2)
    s3_proxy.faults.fail_writes = (os.path.basename(shards[0]).replace(".tar", "-"),)
    s3_proxy.faults.fail_writes_for_s = 12.0
    output = open(tmp_path / "log", "w+")
    job = subprocess.Popen(label_command(s3_proxy, s3_bucket, ray_cluster.address, "--actors", "2",
                                         **NO_CLIENT_RETRIES),
                           stdout=output, stderr=subprocess.STDOUT, text=True)
    fs, appeared = s3fs.S3FileSystem(), {}
    while True:
        running = job.poll() is None
        fs.invalidate_cache()
        for path in fs.glob(f"{s3_bucket}/labels/*.parquet"):
            appeared.setdefault(os.path.basename(path).rsplit("-", 1)[0], time.monotonic())
        if not running:
            break
        time.sleep(0.2)
    log = (tmp_path / "log").read_text()
    output.close()
    assert job.returncode == 0, log[-3000:]
    refused_from = s3_proxy.faults.first_write
    assert refused_from is not None and "retry" in log
    first = os.path.basename(shards[0]).replace(".tar", "")
    others = [t for name, t in appeared.items() if name != first]
    # The other actor labeled and wrote shards while the store refused the first one's labels.
    assert len(others) == 3 and sum(refused_from < t < appeared[first] for t in others) >= 2, appeared
    assert rows_per_shard(s3_bucket) == {s: 2 for s in shards}
