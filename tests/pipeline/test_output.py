import json

import pyarrow.parquet as pq
import pytest

from pipeline.output import (
    MANIFEST,
    MANIFEST_VERSION,
    METADATA_KEY,
    LabelOutput,
    OutputConflict,
    shard_file_name,
)
from pipeline.schema import SCHEMA_VERSION, error_row, ok_row

SEGMENT = {"id": 1, "category_id": 9, "category": "sky", "isthing": False, "score": 0.9, "area": 4,
           "bbox": [0, 0, 2, 2], "rle": {"counts": "04"}}


def manifest(score: float = 0.3) -> dict:
    return {"labeling": {"vocabulary": {"fingerprint": "abc"}, "postprocess": {"min_score": score}},
            "schema_version": SCHEMA_VERSION, "package_version": "0.1.0", "created": "now"}


def test_shard_files_are_named_by_shard_and_unique_per_uri():
    assert shard_file_name("s3://b/x/shard-000001.tar").startswith("shard-000001-")
    assert shard_file_name("s3://b/x/shard-000001.tar") != shard_file_name("s3://b/y/shard-000001.tar")


def test_written_shards_are_finished_with_counts_and_metadata(tmp_path):
    output = LabelOutput(str(tmp_path / "out"))
    output.prepare(manifest(), overwrite=False)
    rows = [ok_row("a", "s.tar", 2, 2, 3, [SEGMENT]), error_row("b", "s.tar", "corrupt image")]
    counts = {"samples": 2, "ok": 1, "error": 1, "segments": 1, "score_sum": 0.9, "max_score": 0.9}
    assert output.write_shard("s.tar", rows, manifest()) == counts
    assert output.finished_shards(["s.tar", "t.tar"]) == {"s.tar"}
    assert output.census().done == {"s.tar": counts}
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
    assert output.read_json(MANIFEST)["labeling"]["postprocess"]["min_score"] == 0.5


def test_parquet_files_without_a_manifest_are_not_taken_over(tmp_path):
    (tmp_path / "old.parquet").write_bytes(b"")
    with pytest.raises(OutputConflict, match="no _manifest.json"):
        LabelOutput(str(tmp_path)).prepare(manifest(), overwrite=False)


def version_1(record: dict) -> dict:
    """`record` as manifest version 1 wrote it: no manifest version, the head as "samcp_head", the
    post-processing score threshold as "score_thresh" (the row schema is kept: rows of another
    schema are never resumed, see below)."""
    labeling = dict(record["labeling"])
    labeling["samcp_head"] = labeling.pop("head")
    labeling["postprocess"] = {("score_thresh" if k == "min_score" else k): v
                               for k, v in labeling["postprocess"].items()}
    return {k: v for k, v in {**record, "labeling": labeling}.items() if k != "version"}


def test_an_output_of_an_earlier_version_is_resumed_when_its_labels_would_be_the_same(tmp_path):
    today = {"version": MANIFEST_VERSION, "schema_version": SCHEMA_VERSION,
             "labeling": {**manifest()["labeling"], "head": {"sha256": "h"}}, "created": "now"}
    old = LabelOutput(str(tmp_path / "old"))
    old.prepare(version_1(today), overwrite=False)
    old.write_shard("s.tar", [error_row("a", "s.tar", "x")], version_1(today))  # its footer: version 1 too
    assert "samcp_head" in old.read_json(MANIFEST)["labeling"]
    old.prepare(today, overwrite=False)  # the same settings under today's names: resumed
    assert old.finished_shards(["s.tar"]) == {"s.tar"}
    assert old.census(today["labeling"]).done == {"s.tar": {"samples": 1, "ok": 0, "error": 1, "segments": 0,
                                                            "score_sum": 0.0, "max_score": None}}
    assert old.read_json(MANIFEST)["version"] == MANIFEST_VERSION  # now in today's form
    assert old.manifest()["labeling"]["head"] == {"sha256": "h"}
    old.write_shard("t.tar", [error_row("b", "t.tar", "x")], today)
    assert set(old.census().done) == {"s.tar", "t.tar"}

    changed = LabelOutput(str(tmp_path / "changed"))
    changed.prepare(version_1(today), overwrite=False)
    other = {**today, "labeling": {**today["labeling"], "postprocess": {"min_score": 0.5}}}
    with pytest.raises(OutputConflict, match=r"other postprocess \(min_score\)"):
        changed.prepare(other, overwrite=False)
    (tmp_path / "changed" / MANIFEST).write_text(json.dumps({**today, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(OutputConflict, match="row schema"):
        changed.prepare(today, overwrite=False)
    (tmp_path / "changed" / MANIFEST).write_text(json.dumps({k: v for k, v in today.items()
                                                             if k != "schema_version"}))
    with pytest.raises(OutputConflict, match=r"row schema \(version 1"):  # labels at the model's size
        changed.prepare(today, overwrite=False)
