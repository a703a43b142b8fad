import io
import json

import numpy as np
import pytest
import s3fs
import webdataset as wds
from PIL import Image

from pipeline.shards import ImageFolder, shard_pattern, synthetic_sample, write_shards
from samcp.data.coco import decode_id_png
from samcp.data.synthetic import SyntheticConfig, SyntheticCorpus
from samcp.storage import atomic_write, resolve


def read_back(pattern: str) -> list[dict]:
    return list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))


def small_samples(count: int, seed: int = 0) -> list[dict]:
    corpus = SyntheticCorpus(SyntheticConfig(seed=seed, height=64, width=96))
    return [synthetic_sample(corpus[i]) for i in range(count)]


def test_shards_round_trip_with_ground_truth(tmp_path):
    urls = write_shards(small_samples(10), str(tmp_path), shard_size=4, progress=False)
    assert [u.rsplit("/", 1)[-1] for u in urls] == [
        "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    pattern = shard_pattern(str(tmp_path), len(urls))
    assert pattern.endswith("shard-{000000..000002}.tar")
    rows = read_back(pattern)
    assert len({r["__key__"] for r in rows}) == 10
    for row in rows:
        image = Image.open(io.BytesIO(row["jpg"]))
        meta = json.loads(row["json"])
        ids = decode_id_png(row["panoptic.png"])
        assert image.size == (meta["width"], meta["height"]) == (96, 64)
        assert ids.shape == (64, 96)
        segment_ids = [s["id"] for s in meta["segments_info"]]
        assert len(segment_ids) == len(set(segment_ids))
        assert set(np.unique(ids)) == set(segment_ids)
    assert not list(tmp_path.glob("*.tmp-*"))


@pytest.mark.parametrize("key, message", [("a.b", "dot"), ("", "without __key__")])
def test_bad_keys_are_refused(tmp_path, key, message):
    with pytest.raises(ValueError, match=message):
        write_shards([{"__key__": key, "jpg": b"x"}], str(tmp_path), 2, progress=False)


def test_duplicate_keys_are_refused(tmp_path):
    sample = {"__key__": "same", "jpg": b"x"}
    with pytest.raises(ValueError, match="duplicate sample key 'same'"):
        write_shards([sample, dict(sample)], str(tmp_path), 5, progress=False)


def test_image_folder_keys_are_unique_and_stable(tmp_path):
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name, fmt in [("a.b.jpg", "JPEG"), ("a_b.png", "PNG"), ("sub/x.webp", "WEBP"),
                      ("sub/deeper/y z.JPEG", "JPEG")]:
        Image.fromarray(pixels).save(tmp_path / name, format=fmt)
    (tmp_path / "notes.txt").write_text("not an image")
    folder = ImageFolder(str(tmp_path))
    assert len(folder) == 4
    samples = list(folder)
    keys = [s["__key__"] for s in samples]
    assert len(set(keys)) == 4
    assert keys == [s["__key__"] for s in ImageFolder(str(tmp_path))]
    assert "sub/x" in keys and "sub/deeper/y_z" in keys
    assert sum(k.startswith("a_b_") for k in keys) == 2  # the colliding pair, both disambiguated
    assert {next(k for k in s if k in ("jpg", "png", "webp")) for s in samples} == {"jpg", "png", "webp"}


def test_missing_image_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolder(str(tmp_path / "nope"))


def test_shards_to_s3(s3_bucket, s3_endpoint):
    output = f"s3://{s3_bucket}/corpus"
    urls = write_shards(small_samples(5), output, shard_size=2, progress=False)
    assert urls == [f"{output}/shard-00000{i}.tar" for i in range(3)]
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    keys = [key for url in urls for key in _tar_keys(fs.cat_file(url))]
    assert len(keys) == len(set(keys)) == 5


def _tar_keys(tar_bytes: bytes) -> list[str]:
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return sorted({m.name.split(".", 1)[0] for m in tar.getmembers()})


@pytest.mark.parametrize("where", ["local", "s3"])
def test_atomic_write_publishes_nothing_on_failure(tmp_path, s3_bucket, where):
    uri = str(tmp_path / "out.bin") if where == "local" else f"s3://{s3_bucket}/out.bin"
    fs, path = resolve(uri)
    with pytest.raises(RuntimeError):
        with atomic_write(fs, path) as f:
            f.write(b"half")
            raise RuntimeError("writer died")
    fs.invalidate_cache()
    assert not fs.exists(path)
    assert list(tmp_path.iterdir()) == []
    with atomic_write(fs, path) as f:
        f.write(b"whole")
    fs.invalidate_cache()
    assert fs.cat_file(path) == b"whole"
