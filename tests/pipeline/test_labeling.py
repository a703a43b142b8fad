import json

import numpy as np
import pyarrow as pa
import pytest
from pycocotools import mask as mask_utils

from pipeline.labeling import RESULT_SCHEMA, LabelActor, prefetched, publish
from pipeline.output import LabelOutput
from pipeline.reader import NO_IMAGE
from pipeline.shards import synthetic_sample, write_shards
from samcp.config import LabelerConfig
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.model_files import describe_models


def reader_row(index: int, image: np.ndarray, error: str = "", kind: str = "sample") -> dict:
    return {"kind": kind, "key": f"k{index}", "shard": "s.tar", "index": index, "image": image,
            "width": image.shape[1], "height": image.shape[0], "error": error,
            "shard_samples": 3 if kind == "end" else -1, "shard_error": "", "skipped_members": ""}


MODEL = LabelerConfig(points_per_side=8)


@pytest.fixture(scope="module")
def actor():
    return LabelActor(MODEL, torch_threads=1)


def test_samples_are_labeled_and_errors_kept(actor):
    image = SyntheticCorpus(SyntheticConfig(seed=3, height=96, width=128))[0].image
    out, seconds = actor.label_rows([reader_row(0, image), reader_row(1, NO_IMAGE, "corrupt image: x"),
                                     reader_row(2, image)])
    assert [r["status"] for r in out] == ["ok", "error", "ok"] and seconds > 0
    assert out[1]["error"] == "corrupt image: x" and out[1]["width"] is None
    assert out[0]["segments"] and out[0]["segments"] == out[2]["segments"]
    assert (out[0]["height"], out[0]["width"]) == (96, 128) and out[0]["num_patches"] > 0
    assert (out[0]["model_height"], out[0]["model_width"]) == (96, 128)


def test_a_failing_batch_is_retried_image_by_image(actor, monkeypatch):
    image = SyntheticCorpus(SyntheticConfig(seed=3, height=96, width=128))[1].image
    label_batch = actor.labeler.label_batch

    def out_of_memory_on_batches_and_on_the_poison_image(images, native_sizes):
        # A GPU out-of-memory cannot be caused on this CPU machine; this stands in for it.
        if len(images) > 1 or images[0].shape[0] == 64:
            raise RuntimeError("CUDA out of memory")
        return label_batch(images, native_sizes)

    monkeypatch.setattr(actor.labeler, "label_batch", out_of_memory_on_batches_and_on_the_poison_image)
    poison = np.zeros((64, 64, 3), np.uint8)
    out, _ = actor.label_rows([reader_row(0, image), reader_row(1, poison), reader_row(2, image)])
    assert [r["status"] for r in out] == ["ok", "error", "ok"]
    assert out[1]["error"] == "labeling failed: RuntimeError: CUDA out of memory"


def test_an_image_decoded_smaller_is_labeled_at_its_own_size(actor):
    image = SyntheticCorpus(SyntheticConfig(seed=3, height=96, width=128))[0].image
    row = {**reader_row(0, image), "width": 512, "height": 384}  # the reader decoded it at 1/4
    (out,), _ = actor.label_rows([row])
    assert out["status"] == "ok" and out["segments"]
    assert (out["width"], out["height"], out["model_width"], out["model_height"]) == (512, 384, 128, 96)
    covered = 0
    for segment in out["segments"]:
        mask = mask_utils.decode({"size": [384, 512], "counts": segment["counts"].encode()})
        assert mask.shape == (384, 512) and mask.sum() == segment["area"]
        covered += mask.astype(int)
    assert covered.max() == 1


def test_an_actor_labels_whole_shards_writes_them_and_reports_small_rows(tmp_path):
    corpus = SyntheticCorpus(SyntheticConfig(seed=3, height=96, width=128))
    samples = [synthetic_sample(corpus[i]) for i in range(3)] + [{"__key__": "bad", "jpg": b"no jpeg"}]
    shard, = write_shards(samples, str(tmp_path / "shards"), 4, progress=False)
    output = LabelOutput(str(tmp_path / "labels"))
    manifest = {"labeling": describe_models(MODEL), "package_version": "test", "created": ""}
    output.prepare(manifest, overwrite=False)
    actor = LabelActor(MODEL, torch_threads=1, output=output.uri, manifest=manifest, batch_size=2)
    results = pa.concat_tables(actor({"shard": np.array([shard, str(tmp_path / "missing.tar")]),
                                      "files": np.array([[], []], dtype=object)})).to_pylist()
    assert all(pa.Table.from_pylist([r], schema=RESULT_SCHEMA) for r in results)
    assert [(r["kind"], r["samples"]) for r in results] == [("progress", 2), ("progress", 2), ("done", 4),
                                                           ("done", 0)]
    done = results[2]
    counts = json.loads(done["counts"])
    assert {k: counts[k] for k in ("samples", "ok", "error")} == {"samples": 4, "ok": 3, "error": 1}
    assert counts["segments"] > 0 and 0 < counts["max_score"] <= 1
    assert json.loads(done["keys"]) == [s["__key__"] for s in samples] and done["label_seconds"] > 0
    assert "shard not found" in results[3]["shard_error"]
    rows = output.read_table().to_pylist()
    assert [r["key"] for r in rows] == [s["__key__"] for s in samples]
    assert output.finished_shards([shard]) == {shard}


def test_prefetching_keeps_order_cuts_batches_and_passes_errors_on():
    rows = [{"kind": "sample", "i": i} for i in range(5)] + [{"kind": "end"}]
    assert [[r.get("i") for r in chunk] for chunk in prefetched(iter(rows), 2)] == [[0, 1], [2, 3], [4, None]]

    def broken():
        yield {"kind": "sample"}
        raise OSError("gone")

    with pytest.raises(OSError, match="gone"):
        list(prefetched(broken(), 4))


def test_a_failing_store_is_retried_with_backoff_then_the_error_raised(monkeypatch):
    calls, waits, lines = [], [], []

    class FlakyOutput:
        def write_shard(self, shard, rows, manifest, skipped_members=None):
            calls.append(shard)
            if len(calls) < 3:
                raise OSError("503 SlowDown")
            return {"samples": 1}

    monkeypatch.setattr("pipeline.labeling.time.sleep", waits.append)
    assert publish(FlakyOutput(), "s", [], {}, attempts=5, log=lines.append) == {"samples": 1}
    assert len(calls) == 3 and waits == [1, 2] and "retry 2/4 in 2s" in lines[1]
    calls.clear()
    with pytest.raises(OSError, match="SlowDown"):
        publish(FlakyOutput(), "s", [], {}, attempts=2, log=lines.append)
