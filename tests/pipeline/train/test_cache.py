"""The patch cache on a real local Ray cluster: one file per input shard, skipped samples counted with
their reasons, a shard that cannot be read reported and finished by the rerun, other settings refused."""

import json
import os

import pyarrow.parquet as pq
import pytest

from pipeline.output import shard_file_name
from pipeline.shards import synthetic_sample, write_shards
from pipeline.train.cache import SUCCESS, CacheConfig, CacheConflict, LabelSource, run_cache_job
from samcp.config import LabelerConfig
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.model_files import describe_models
from samcp.train.head import CachedImage


def test_cache_counts_skips_reports_a_missing_shard_and_a_rerun_finishes_only_it(ray_cluster, tmp_path):
    corpus = SyntheticCorpus(SyntheticConfig(seed=4, height=96, width=128))
    images = [corpus[i] for i in range(3)]
    samples = [synthetic_sample(image, "png") for image in images]
    samples.append({"__key__": "broken", "png": b"not a png"})
    first, second = (uri.removeprefix("file://") for uri in
                     write_shards(samples, str(tmp_path / "shards"), 2, progress=False))
    hidden, local = tmp_path / "elsewhere.tar", second
    os.rename(local, hidden)  # the second shard is missing on the first run
    labeling = describe_models(LabelerConfig(points_per_side=8, head_checkpoint=None))
    cfg = CacheConfig(str(tmp_path / "cache"), mirror=True, ray_address=ray_cluster.address)
    source = LabelSource("truth", (str(tmp_path / "shards" / "*.tar"), second))
    lines = []
    summary = run_cache_job(cfg, labeling, [source], lines.append)
    assert list(summary["failed"]) == [local] and "not found" in summary["failed"][local]
    assert not os.path.exists(tmp_path / "cache" / SUCCESS)  # not finished
    made = os.path.getmtime(tmp_path / "cache" / shard_file_name(first))

    os.rename(hidden, local)
    summary = run_cache_job(cfg, labeling, [source], lines.append)
    assert "[cache] 2 shards, 1 already cached" in "\n".join(lines) and not summary["failed"]
    assert os.path.getmtime(tmp_path / "cache" / shard_file_name(first)) == made  # not made again
    assert summary["samples"] == 4 and summary["examples"] == 6  # 3 images, each also mirrored
    assert summary["skipped"] == {"unreadable sample": 1}
    assert summary["skip_examples"][0]["key"] == "broken"
    assert json.loads((tmp_path / "cache" / SUCCESS).read_text())["files"] == summary["files"]
    table = pq.read_table(tmp_path / "cache" / shard_file_name(first))
    assert table.column("key").to_pylist() == [images[0].key, f"{images[0].key}:mirror",
                                               images[1].key, f"{images[1].key}:mirror"]
    example = CachedImage.from_bytes(table.column("example")[0].as_py())
    assert example.features.embedding.dtype.is_floating_point and len(example.targets.thing_labels) > 0

    with pytest.raises(CacheConflict, match="examples.roi_size"):
        run_cache_job(CacheConfig(cfg.cache, roi_size=5, mirror=True), labeling, [source], lines.append)


def test_a_damaged_cache_file_is_made_again(ray_cluster, tmp_path):
    corpus = SyntheticCorpus(SyntheticConfig(seed=4, height=96, width=128))
    shard, = write_shards([synthetic_sample(corpus[0], "png")], str(tmp_path / "shards"), 1, progress=False)
    shard = shard.removeprefix("file://")
    labeling = describe_models(LabelerConfig(points_per_side=8, head_checkpoint=None))
    cfg = CacheConfig(str(tmp_path / "cache"), ray_address=ray_cluster.address)
    run_cache_job(cfg, labeling, [LabelSource("truth", (shard,))], lambda line: None)
    path = tmp_path / "cache" / shard_file_name(shard)
    path.write_bytes(path.read_bytes()[:100])  # cut
    summary = run_cache_job(cfg, labeling, [LabelSource("truth", (shard,))], lambda line: None)
    assert summary["examples"] == 1 == pq.read_table(path).num_rows
