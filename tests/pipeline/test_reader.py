import io
import os
import tarfile

import numpy as np

from pipeline.reader import ShardReader
from samcp.data.imageio import encode_image


def write_tar(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def image_bytes(height=20, width=30) -> bytes:
    noise = np.random.default_rng(height * width).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return encode_image(noise, "png")


def test_every_sample_becomes_one_row_then_an_end_row(tmp_path):
    shard = str(tmp_path / "s.tar")
    write_tar(shard, [("a.png", image_bytes()), ("a.json", b"{}"),
                      ("dir/b.jpg", b"garbage"),
                      ("c.json", b"{}"),
                      ("d.png", image_bytes(12, 16)),
                      ("a.png", image_bytes())])  # `a` again, after other samples
    rows = list(ShardReader()({"shard": shard}))
    samples, end = rows[:-1], rows[-1]
    assert [r["key"] for r in samples] == ["a", "dir/b", "c", "d", "a"]
    assert [r["index"] for r in samples] == [0, 1, 2, 3, 4]
    assert samples[0]["image"].shape == (20, 30, 3) and samples[0]["error"] == ""
    assert (samples[3]["height"], samples[3]["width"]) == (12, 16)
    assert "not an image" in samples[1]["error"] and samples[1]["image"].shape == (0, 0, 3)
    assert samples[2]["error"] == "sample has no image (fields: json)"
    assert "duplicate key 'a'" in samples[4]["error"] and "sample 0" in samples[4]["error"]
    assert (end["kind"], end["shard_samples"], end["shard_error"]) == ("end", 5, "")


def test_unreadable_shards_end_with_the_reason(tmp_path):
    reader = ShardReader()
    missing = list(reader({"shard": str(tmp_path / "missing.tar")}))
    assert len(missing) == 1 and missing[0]["shard_error"].startswith("shard not found")

    shard = str(tmp_path / "cut.tar")
    write_tar(shard, [(f"k{i}.png", image_bytes(64, 64)) for i in range(4)])  # 12 kB each
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    rows = list(reader({"shard": shard}))
    assert rows[-1]["kind"] == "end" and "truncated" in rows[-1]["shard_error"]
    assert rows[-1]["shard_samples"] == len(rows) - 1 < 4

    write_tar(shard, [(f"k{i}.png", image_bytes(64, 64)) for i in range(4)])
    with open(shard, "rb") as f:
        whole = f.read()
    boundary = whole.index(b"k2.png") // 512 * 512  # cut exactly before a member's header
    with open(shard, "wb") as f:
        f.write(whole[:boundary])
    rows = list(reader({"shard": shard}))
    assert "truncated" in rows[-1]["shard_error"] and "end-of-archive" in rows[-1]["shard_error"]
