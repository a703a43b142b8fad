"""Credentials given to a job never show up in its output, its errors, the Parquet or the cluster's logs."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import s3fs

from pipeline.output import MANIFEST, METADATA_KEY, SUCCESS
from pipeline.shards import synthetic_sample, write_shards
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY, SECRET = "AKIAFAULTTESTKEY0001", "sEcReT-do-not-log-5f3a9"  # moto takes any credentials


def test_credentials_stay_out_of_logs_errors_and_outputs(ray_cluster, s3_endpoint, s3_bucket):
    options = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": s3_endpoint}}
    images = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=96, width=128))
    samples = [synthetic_sample(images[i]) for i in range(2)] + [{"__key__": "bad", "jpg": b"junk"}]
    shards = write_shards(samples, f"s3://{s3_bucket}/shards", 3, storage_options=options, progress=False)
    out = f"s3://{s3_bucket}/labels"
    texts = []
    missing = f"s3://{s3_bucket}/shards/missing.tar"
    for attempt in range(2):  # a failing run, then a rerun once the missing shard exists (an empty tar)
        if attempt:
            s3fs.S3FileSystem(**options).pipe(missing, b"\0" * 1024)
        args = [a for uri in [*shards, missing] for a in ("--input", uri)]
        done = subprocess.run([sys.executable, os.path.join(REPO, "jobs", "label_corpus.py"), *args,
                               "--output", out, "--points-per-side", "8", "--storage-options",
                               json.dumps(options), "--ray-address", ray_cluster.address],
                              capture_output=True, text=True, timeout=600)
        texts += [done.stdout, done.stderr]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "missing.tar" in texts[1]  # the failing run did name its missing shard

    fs = s3fs.S3FileSystem(**options)
    texts += [fs.cat_file(f"{out}/{MANIFEST}").decode(), fs.cat_file(f"{out}/{SUCCESS}").decode()]
    for path in fs.glob(f"{out}/*.parquet"):
        with fs.open(path, "rb") as f:
            texts.append(pq.ParquetFile(f).schema_arrow.metadata[METADATA_KEY].decode())
            texts.append(json.dumps(pq.read_table(f).to_pylist(), default=str))
    for log in glob.glob(os.path.join(ray_cluster.temp_dir, "session_*", "logs", "**", "*"), recursive=True):
        if os.path.isfile(log):
            with open(log, errors="replace") as f:
                texts.append(f.read())
    assert len(texts) > 10
    leaks = [text[max(0, text.find(s) - 200):text.find(s) + 50] for text in texts for s in (KEY, SECRET)
             if s in text]
    assert not leaks, leaks
