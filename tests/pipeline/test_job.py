import pytest
import ray.data

from pipeline.config import JobConfig
from pipeline.job import (
    KeyRegistry,
    Progress,
    ShardAssembler,
    actor_resources,
    object_store_budget,
    publish,
    readers,
)


def row(shard: str, index: int, kind: str = "sample", samples: int = -1) -> dict:
    return {"kind": kind, "shard": shard, "index": index, "shard_samples": samples, "key": f"{shard}-{index}"}


def test_a_shard_is_complete_once_its_end_row_and_every_sample_arrived_in_any_order():
    assembler = ShardAssembler()
    assert assembler.add([row("a", 1), row("b", 0), row("a", 2, "end", samples=2)]) == []
    assert assembler.add([row("a", 1)]) == []  # a redone batch does not count twice
    (shard, rows, end), = assembler.add([row("a", 0)])
    assert shard == "a" and [r["index"] for r in rows] == [0, 1] and end["shard_samples"] == 2
    assert assembler.incomplete() == ["b"]
    assert [s for s, _, _ in assembler.add([row("c", 0, "end", samples=0)])] == ["c"]


def test_cpu_actors_share_what_readers_leave_and_gpu_actors_take_one_cpu():
    cfg = JobConfig(inputs=("x",), output="o", actors=2)  # one reading actor of 0.25 CPU
    assert readers(cfg) == 1 and actor_resources(cfg, cluster_cpus=2) == (0.875, 1)
    assert actor_resources(JobConfig(inputs=("x",), output="o"), cluster_cpus=2) == (1.75, 2)
    assert readers(JobConfig(inputs=("x",), output="o", actors=9)) == 2
    assert readers(JobConfig(inputs=("x",), output="o", actors=2, read_tasks=3)) == 3
    gpu = JobConfig(inputs=("x",), output="o", actors=8, num_gpus_per_actor=1)
    assert readers(gpu) == 8 and actor_resources(gpu, cluster_cpus=4) == (1.0, 1)
    with pytest.raises(ValueError, match="do not fit"):
        actor_resources(JobConfig(inputs=("x",), output="o", actors=2, cpus_per_actor=1), cluster_cpus=2)
    with pytest.raises(ValueError, match="--actors"):
        JobConfig(inputs=("x",), output="o", actors=0)


def test_keys_that_come_back_in_another_shard_are_reported_once_each():
    keys = KeyRegistry(examples=2)
    assert keys.add("a", [{"key": "k1"}, {"key": "k2"}, {"key": "k1"}]) == []  # within a shard: the reader's
    found = keys.add("b", [{"key": "k2"}, {"key": "k3"}])
    assert found == [{"key": "k2", "shard": "b", "first_shard": "a"}]
    keys.add("c", [{"key": "k1"}, {"key": "k3"}, {"key": "k2"}])
    assert keys.count == 4 and len(keys.examples) == 2


def test_the_object_store_budget_holds_while_the_job_streams_and_is_restored():
    options = ray.data.DataContext.get_current().execution_options
    before = options.resource_limits
    with object_store_budget(JobConfig(inputs=("x",), output="o", actors=2)):
        assert options.resource_limits.object_store_memory == 128 * 2**20
    assert options.resource_limits == before


def test_a_failing_store_is_retried_with_backoff_then_the_error_raised(monkeypatch):
    calls, waits, lines = [], [], []

    class FlakyOutput:
        def write_shard(self, shard, rows, manifest, skipped_members=None):
            calls.append(shard)
            if len(calls) < 3:
                raise OSError("503 SlowDown")
            return {"samples": 1}

    monkeypatch.setattr("pipeline.job.time.sleep", waits.append)
    assert publish(FlakyOutput(), "s", [], {}, attempts=5, log=lines.append) == {"samples": 1}
    assert len(calls) == 3 and waits == [1, 2] and "retry 2/4 in 2s" in lines[1]
    calls.clear()
    with pytest.raises(OSError, match="SlowDown"):
        publish(FlakyOutput(), "s", [], {}, attempts=2, log=lines.append)


def test_progress_line_shows_rate_and_eta():
    lines = []
    progress = Progress(shards_total=4, every_s=0.0, log=lines.append)
    progress.start -= 10.0
    progress.add({"samples": 10, "ok": 9, "error": 1})
    assert lines[-1].startswith("[label] shards 1/4  images 10 (ok 9, error 1)")
    assert "1.00 img/s" in lines[-1] and "ETA 0m30s" in lines[-1]
