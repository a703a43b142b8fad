import json

import pyarrow.parquet as pq
import pytest

from pipeline.output import MANIFEST, METADATA_KEY, LabelOutput, OutputConflict, shard_file_name
from pipeline.schema import error_row, ok_row

SEGMENT = {"id": 1, "category_id": 9, "category": "sky", "isthing": False, "score": 0.9, "area": 4,
           "bbox": [0, 0, 2, 2], "rle": {"counts": "04"}}


def manifest(score: float = 0.3) -> dict:
    return {"labeling": {"vocabulary": {"fingerprint": "abc"}, "postprocess": {"score_thresh": score}},
            "package_version": "0.1.0", "created": "now"}


def test_shard_files_are_named_by_shard_and_unique_per_uri():
    assert shard_file_name("s3://b/x/shard-000001.tar").startswith("shard-000001-")
    assert shard_file_name("s3://b/x/shard-000001.tar") != shard_file_name("s3://b/y/shard-000001.tar")


def test_written_shards_are_finished_with_counts_and_metadata(tmp_path):
    output = LabelOutput(str(tmp_path / "out"))
    output.prepare(manifest(), overwrite=False)
    rows = [ok_row("a", "s.tar", 2, 2, 3, [SEGMENT]), error_row("b", "s.tar", "corrupt image")]
    assert output.write_shard("s.tar", rows, manifest()) == {"samples": 2, "ok": 1, "error": 1}
    assert output.finished_shards(["s.tar", "t.tar"]) == {"s.tar"}
    assert output.census().done == {"s.tar": {"samples": 2, "ok": 1, "error": 1}}
    table = output.read_table()
    assert table.column("key").to_pylist() == ["a", "b"]
    assert table.column("segments").to_pylist()[0][0]["counts"] == "04"
    metadata = json.loads(pq.read_schema(output.path(shard_file_name("s.tar"))).metadata[METADATA_KEY])
    assert metadata["shard"] == "s.tar" and metadata["labeling"] == manifest()["labeling"]
    assert [p.name for p in (tmp_path / "out").iterdir() if ".tmp" in p.name] == []


def test_other_settings_are_refused_unless_overwritten(tmp_path):
    output = LabelOutput(str(tmp_path))
    output.prepare(manifest(), overwrite=False)
    output.write_shard("s.tar", [error_row("a", "s.tar", "x")], manifest())
    output.prepare(manifest(), overwrite=False)  # same settings: resume
    assert output.finished_shards(["s.tar"]) == {"s.tar"}
    with pytest.raises(OutputConflict, match="other postprocess.*--overwrite"):
        output.prepare(manifest(0.5), overwrite=False)
    output.prepare(manifest(0.5), overwrite=True)
    assert output.finished_shards(["s.tar"]) == set()
    assert output.read_json(MANIFEST)["labeling"]["postprocess"]["score_thresh"] == 0.5


def test_parquet_files_without_a_manifest_are_not_taken_over(tmp_path):
    (tmp_path / "old.parquet").write_bytes(b"")
    with pytest.raises(OutputConflict, match="no _manifest.json"):
        LabelOutput(str(tmp_path)).prepare(manifest(), overwrite=False)
