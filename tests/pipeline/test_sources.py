import io
import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.inputs import InputError, expand_inputs
from pipeline.reader import ShardReader
from pipeline.sources import Columns, parse, slice_files


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def read(unit: str, **row) -> list[dict]:
    return list(ShardReader()({"shard": unit, **row}))


def test_a_manifest_is_cut_into_slices_and_a_missing_object_is_its_samples_error(tmp_path):
    for i in range(5):
        (tmp_path / f"img{i}.png").write_bytes(png((10 * i, 0, 0)))
    uris = [str(tmp_path / f"img{i}.png") for i in range(5)] + [str(tmp_path / "gone.png")]
    pq.write_table(pa.table({"url": uris, "id": [f"k{i}" for i in range(6)]}), tmp_path / "m.parquet",
                   row_group_size=2)
    units = expand_inputs([str(tmp_path / "m.parquet")], columns=Columns(uri="url", key="id"), slice_size=4)
    assert [parse(u)[2:] for u in units] == [(0, 4), (4, 6)]
    rows = [r for u in units for r in read(u)]
    samples = [r for r in rows if r["kind"] == "sample"]
    assert [r["key"] for r in samples] == [f"k{i}" for i in range(6)]
    assert [r["index"] for r in samples] == [0, 1, 2, 3, 0, 1]
    assert all(not r["error"] and r["image"].shape == (30, 40, 3) for r in samples[:5])
    assert "object not found" in samples[5]["error"]
    ends = [r for r in rows if r["kind"] == "end"]
    assert [e["shard_samples"] for e in ends] == [4, 2] and not any(e["shard_error"] for e in ends)


def test_a_csv_manifest_keys_samples_by_uri_without_a_key_column(tmp_path):
    (tmp_path / "a.png").write_bytes(png((1, 2, 3)))
    pacsv.write_csv(pa.table({"path": [str(tmp_path / "a.png"), ""]}), tmp_path / "m.csv")
    unit, = expand_inputs([str(tmp_path / "m.csv")], columns=Columns(uri="path"))
    first, second, end = read(unit)
    assert first["key"] == str(tmp_path / "a.png") and not first["error"]
    assert "no image URI" in second["error"] and end["shard_samples"] == 2


def test_a_table_with_images_inside(tmp_path):
    images = [{"bytes": png((0, 9 * i, 0)), "path": f"{i}.png"} for i in range(3)]
    images.append({"bytes": None, "path": "x"})
    pq.write_table(pa.table({"image": images}), tmp_path / "train-00000.parquet")
    unit, = expand_inputs([str(tmp_path / "train-00000.parquet")], columns=Columns(image="image"))
    rows = read(unit)
    assert [r["key"] for r in rows[:4]] == [f"train-00000/{i:08d}" for i in range(4)]
    assert all(not r["error"] for r in rows[:3]) and "no image bytes" in rows[3]["error"]


def test_a_folder_is_listed_keyed_by_path_and_a_file_gone_since_is_an_error_row(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("b.jpg", "a.png", "sub/c.png"):
        Image.new("RGB", (20, 20)).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    units = expand_inputs([str(photos)], slice_size=2)
    assert len(units) == 2
    files = slice_files(units[0])
    assert files == ["a.png", "b.jpg"]
    os.remove(photos / "b.jpg")  # gone after the driver listed it
    rows = read(units[0], files=files)
    assert [(r["key"], bool(r["error"])) for r in rows[:2]] == [("a", False), ("b", True)]
    assert "object not found" in rows[1]["error"]
    end = read(units[1])[-1]  # listed again by the reader: the listing changed, the slice fails whole
    assert "changed since this slice was made" in end["shard_error"]


def test_tables_need_a_column_that_exists(tmp_path):
    pq.write_table(pa.table({"url": ["x"]}), tmp_path / "m.parquet")
    with pytest.raises(InputError, match="needs --uri-column"):
        expand_inputs([str(tmp_path / "m.parquet")])
    with pytest.raises(InputError, match="no column 'link'"):
        expand_inputs([str(tmp_path / "m.parquet")], columns=Columns(uri="link"))
    with pytest.raises(InputError, match="not both"):
        expand_inputs([str(tmp_path / "m.parquet")], columns=Columns(uri="url", image="url"))
    with pytest.raises(InputError, match="not found"):
        expand_inputs([str(tmp_path / "none.parquet")], columns=Columns(uri="url"))
