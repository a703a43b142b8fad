import numpy as np
import pyarrow as pa
import pytest
from pycocotools import mask as mask_utils

from pipeline.labeling import LabelActor
from pipeline.reader import NO_IMAGE
from pipeline.schema import TRANSIT_SCHEMA
from samcp.config import LabelerConfig
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus


def batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows as Ray Data hands them to `map_batches` in numpy format."""
    columns = {}
    for name in rows[0]:
        column = np.empty(len(rows), dtype=object)
        column[:] = [r[name] for r in rows]
        columns[name] = column
    return columns


def reader_row(index: int, image: np.ndarray, error: str = "", kind: str = "sample") -> dict:
    return {"kind": kind, "key": f"k{index}", "shard": "s.tar", "index": index, "image": image,
            "width": image.shape[1], "height": image.shape[0], "error": error,
            "shard_samples": 3 if kind == "end" else -1, "shard_error": "", "skipped_members": ""}


@pytest.fixture(scope="module")
def actor():
    return LabelActor(LabelerConfig(points_per_side=8), torch_threads=1)


def test_samples_are_labeled_errors_kept_and_end_rows_passed_through(actor):
    image = SyntheticCorpus(SyntheticConfig(seed=3, height=96, width=128))[0].image
    rows = [reader_row(0, image), reader_row(1, NO_IMAGE, "corrupt image: x"),
            reader_row(2, image), reader_row(3, NO_IMAGE, kind="end")]
    table = actor(batch(rows))
    assert table.schema.equals(TRANSIT_SCHEMA) and isinstance(table, pa.Table)
    out = table.to_pylist()
    assert [r["status"] for r in out[:3]] == ["ok", "error", "ok"]
    assert out[1]["error"] == "corrupt image: x" and out[1]["width"] is None
    assert out[0]["segments"] and out[0]["segments"] == out[2]["segments"]
    assert (out[0]["height"], out[0]["width"]) == (96, 128) and out[0]["num_patches"] > 0
    assert (out[0]["model_height"], out[0]["model_width"]) == (96, 128)
    assert out[3]["kind"] == "end" and out[3]["shard_samples"] == 3 and out[3]["shard_error"] is None


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
    out = actor(batch([reader_row(0, image), reader_row(1, poison), reader_row(2, image)])).to_pylist()
    assert [r["status"] for r in out] == ["ok", "error", "ok"]
    assert out[1]["error"] == "labeling failed: RuntimeError: CUDA out of memory"


def test_an_image_decoded_smaller_is_labeled_at_its_own_size(actor):
    image = SyntheticCorpus(SyntheticConfig(seed=3, height=96, width=128))[0].image
    row = {**reader_row(0, image), "width": 512, "height": 384}  # the reader decoded it at 1/4
    out, = actor(batch([row])).to_pylist()
    assert out["status"] == "ok" and out["segments"]
    assert (out["width"], out["height"], out["model_width"], out["model_height"]) == (512, 384, 128, 96)
    covered = 0
    for segment in out["segments"]:
        mask = mask_utils.decode({"size": [384, 512], "counts": segment["counts"].encode()})
        assert mask.shape == (384, 512) and mask.sum() == segment["area"]
        covered += mask.astype(int)
    assert covered.max() == 1
