import pytest

from pipeline.config import JobConfig
from pipeline.job import Progress, ShardAssembler, actor_resources


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
    cfg = JobConfig(inputs=("x",), output="o", actors=2)  # two reading actors of 0.25 CPU
    assert actor_resources(cfg, cluster_cpus=2) == (0.75, 1)
    assert actor_resources(JobConfig(inputs=("x",), output="o"), cluster_cpus=2) == (1.5, 2)
    gpu = JobConfig(inputs=("x",), output="o", actors=8, num_gpus_per_actor=1)
    assert actor_resources(gpu, cluster_cpus=4) == (1.0, 1)
    with pytest.raises(ValueError, match="do not fit"):
        actor_resources(JobConfig(inputs=("x",), output="o", actors=2, cpus_per_actor=1), cluster_cpus=2)
    with pytest.raises(ValueError, match="--actors"):
        JobConfig(inputs=("x",), output="o", actors=0)


def test_progress_line_shows_rate_and_eta():
    lines = []
    progress = Progress(shards_total=4, every_s=0.0, log=lines.append)
    progress.start -= 10.0
    progress.add({"samples": 10, "ok": 9, "error": 1})
    assert lines[-1].startswith("[label] shards 1/4  images 10 (ok 9, error 1)")
    assert "1.00 img/s" in lines[-1] and "ETA 0m30s" in lines[-1]
