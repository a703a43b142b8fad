"""Machines that fail mid-job: a labeling actor killed, a worker node removed.

Ray restarts the actor (Ray Data's actor pools retry their tasks), the shards
being read or labeled are redone, and since the driver keeps a shard's rows by
sample index, nothing is written twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import psutil
import pytest

from pipeline.output import SUCCESS, LabelOutput
from pipeline.shards import synthetic_sample, write_shards
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corpus(folder: str, num_images: int, shard_size: int) -> list[str]:
    images = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=96, width=128))
    shards = write_shards([synthetic_sample(images[i]) for i in range(num_images)], folder, shard_size,
                          progress=False)
    return [s.removeprefix("file://") for s in shards]  # local paths, as the job names them


def start_job(shards_glob: str, out: str, ray_address: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(REPO, "jobs", "label_corpus.py"),
                             "--input", shards_glob, "--output", out, "--points-per-side", "8",
                             "--batch-size", "2", "--ray-address", ray_address, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def label_actors(temp_dir: str) -> list[psutil.Process]:
    """The labeling actors of the test cluster (descendants of its raylets), none of another Ray's."""
    raylets = [p for p in psutil.process_iter(["cmdline", "name"])
               if p.info["name"] == "raylet" and temp_dir in " ".join(p.info["cmdline"] or [])]
    return [p for raylet in raylets for p in raylet.children(recursive=True)
            if "MapBatches(LabelActor)" in " ".join(p.cmdline())]


def wait_for_first_shard(output: LabelOutput, job: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not (os.path.isdir(output.root) and output.parquet_files()):
        assert job.poll() is None, job.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no shard was labeled in time"
        time.sleep(0.2)


def assert_one_row_per_sample(output: LabelOutput, shards: list[str], per_shard: int) -> None:
    rows = output.read_table().to_pylist()
    assert Counter(r["shard"] for r in rows) == {s: per_shard for s in shards}
    assert len({(r["shard"], r["key"]) for r in rows}) == len(rows)
    assert all(r["status"] == "ok" for r in rows)
    assert output.read_json(SUCCESS)["samples"] == len(rows)


def test_a_labeling_actor_killed_mid_job_is_restarted(ray_cluster, tmp_path):
    shards = corpus(str(tmp_path / "shards"), 16, 2)
    output = LabelOutput(str(tmp_path / "labels"))
    job = start_job(f"{tmp_path}/shards/*.tar", output.uri, ray_cluster.address)
    wait_for_first_shard(output, job)
    victims = label_actors(ray_cluster.temp_dir)
    assert victims
    for victim in victims:
        victim.kill()  # SIGKILL, mid-batch: the shards still to label are 7 of 8
    log, _ = job.communicate(timeout=600)
    assert job.returncode == 0, log[-3000:]
    assert "[label] shards 8/8" in log
    assert_one_row_per_sample(output, shards, 2)


# What `ray start --address` does; the CLI itself refuses to add a node while Ray is kept to
# loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), but the node it starts is the same.
START_NODE = """
import socket
import sys
from ray._private.node import Node
from ray._private.parameter import RayParams

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

# Its own agent ports: the defaults may be taken by another test worker's cluster.
Node(RayParams(gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=2,
               resources={"second_node": 1}, dashboard_agent_listen_port=free_port(),
               metrics_agent_port=free_port(), runtime_env_agent_port=free_port(),
               metrics_export_port=free_port()),
     head=False, shutdown_at_exit=False, spawn_reaper=False)
"""


@pytest.mark.slow
def test_a_worker_node_removed_mid_job(ray_cluster, tmp_path):
    joined = subprocess.run([sys.executable, "-c", START_NODE, ray_cluster.address], capture_output=True,
                            text=True, timeout=120)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    node = [p for p in psutil.process_iter(["cmdline", "name"])
            if p.info["name"] == "raylet" and "second_node" in " ".join(p.info["cmdline"] or [])]
    try:
        assert len(node) == 1
        shards = corpus(str(tmp_path / "shards"), 16, 2)
        output = LabelOutput(str(tmp_path / "labels"))
        # 0.75 CPU per actor: both actors and both readers fit on the head alone once the node is gone.
        job = start_job(f"{tmp_path}/shards/*.tar", output.uri, ray_cluster.address, "--actors", "2",
                        "--cpus-per-actor", "0.75")
        wait_for_first_shard(output, job)
        on_node = [p for p in node[0].children(recursive=True) if "MapWorker" in " ".join(p.cmdline())]
        assert on_node, "none of the job's actors ran on the second node"
        for process in [*node[0].children(recursive=True), node[0]]:
            process.kill()  # the node is gone, with whatever it was running
        log, _ = job.communicate(timeout=600)
        assert job.returncode == 0, log[-3000:]
        assert_one_row_per_sample(output, shards, 2)
    finally:
        for process in node:
            for child in [*process.children(recursive=True), process] if process.is_running() else []:
                child.kill()
