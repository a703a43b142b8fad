import pytest

from pipeline.config import JobConfig
from pipeline.job import KeyRegistry, Progress, actor_resources


def test_cpu_actors_share_the_cluster_and_gpu_actors_take_one_cpu():
    assert actor_resources(JobConfig(inputs=("x",), output="o", actors=2), cluster_cpus=2) == (1.0, 1)
    assert actor_resources(JobConfig(inputs=("x",), output="o"), cluster_cpus=2) == (2.0, 2)
    gpu = JobConfig(inputs=("x",), output="o", actors=8, num_gpus_per_actor=1)
    assert actor_resources(gpu, cluster_cpus=4) == (1.0, 1)
    with pytest.raises(ValueError, match="do not fit"):
        actor_resources(JobConfig(inputs=("x",), output="o", actors=2, cpus_per_actor=1.5), cluster_cpus=2)
    with pytest.raises(ValueError, match="--actors"):
        JobConfig(inputs=("x",), output="o", actors=0)


def test_keys_that_come_back_in_another_shard_are_reported_once_each():
    keys = KeyRegistry(examples=2)
    assert keys.add("a", ["k1", "k2", "k1"]) == []  # within a shard: the reader's
    found = keys.add("b", ["k2", "k3"])
    assert found == [{"key": "k2", "shard": "b", "first_shard": "a"}]
    keys.add("c", ["k1", "k3", "k2"])
    assert keys.count == 4 and len(keys.examples) == 2
    assert keys.digests.nbytes + keys.first.nbytes == 12 * 3  # 12 bytes per distinct key


def test_progress_line_moves_with_every_batch_and_shows_rate_and_eta():
    lines = []
    progress = Progress(shards_total=4, every_s=0.0, log=lines.append)
    progress.start -= 10.0
    progress.advance("a", 4)
    assert lines[-1].startswith("[label] shards 0/4  images 4 (ok 0, error 0)")
    progress.add({"samples": 10, "ok": 9, "error": 1}, "a")
    assert lines[-1].startswith("[label] shards 1/4  images 10 (ok 9, error 1)")
    assert "1.00 img/s" in lines[-1] and "ETA 0m30s" in lines[-1]
