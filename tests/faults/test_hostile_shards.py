"""Hostile shards through `jobs/label_corpus.py` on the real Ray head: every tar member ends in a
sample's row or in its shard's counted report, no row twice, and a shard is one input however it
is spelt; damaged files named like finished shards are named and labeled again."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.labeling import transit_table
from pipeline.output import SUCCESS, LabelOutput, shard_file_name
from pipeline.reader import ShardReader
from samcp.data.decode import DecodeConfig
from samcp.data.imageio import encode_image
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["test"], height=64, width=80))
IMAGES = [encode_image(CORPUS[i].image, "png") for i in range(4)]


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    return name, data, kind, link


def write_tar(path: str, members: list[tuple], compress: bool = False) -> None:
    """Members (name, bytes, tar type, link target); names may hold surrogate-escaped bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    with open(path, "wb") as f:
        f.write(gzip.compress(buffer.getvalue()) if compress else buffer.getvalue())


# shard name -> (members, {key: expected error or None when it must be labeled}, members left out)
HOSTILE = {
    "names.tar": ([member("caf\udce9.png", IMAGES[0]), member("\udcff\udcfe/x.png", IMAGES[1]),
                   member("ok.png", IMAGES[2]), member("émoji-✓.png", IMAGES[3])],
                  {"caf\\xe9": None, "\\xff\\xfe/x": None, "ok": None, "émoji-✓": None}, 0),
    "kinds.tar": ([member("a.png", IMAGES[0]), member("a.json", b"{}"),
                   member("b.png", kind=tarfile.LNKTYPE, link="a.png"),  # GNU tar's hard link
                   member("c.png", kind=tarfile.SYMTYPE, link="a.png"),
                   member("d.png", kind=tarfile.FIFOTYPE), member("e.png", kind=tarfile.CHRTYPE),
                   member("f.png", kind=tarfile.LNKTYPE, link="not-there.png"),
                   member("g.png", IMAGES[1]), member("g.json", kind=tarfile.SYMTYPE, link="/etc/passwd"),
                   member(".hidden.png", IMAGES[2]), member("README", b"hi"),
                   member("folder", kind=tarfile.DIRTYPE),
                   member("__meta__", b"{}"), member("dir/.png", IMAGES[2])],
                  {"a": None, "b": None, "c": "symbolic link", "d": "FIFO", "e": "character device",
                   "f": "hard link", "g": "symbolic link"}, 5),
    "repeats.tar": ([member("x.png", IMAGES[0]), member("x.png", IMAGES[1]), member("y.png", IMAGES[0]),
                     member("y.PNG", IMAGES[1]), member("y.png", IMAGES[2]), member("z.png", IMAGES[3])],
                    {"x": "appears twice", "y": "appears twice", "z": None}, 0),
    "sizes.tar": ([member("big.png", os.urandom(3 * 2**20)),
                   member("link.png", kind=tarfile.LNKTYPE, link="big.png"),
                   member("small.png", IMAGES[0])],
                  {"big": "above the limit of 2 MiB", "link": "above the limit of 2 MiB", "small": None}, 0),
}
COMPRESSED = ([member("p.png", IMAGES[0]), member("q.png", kind=tarfile.LNKTYPE, link="p.png")],
              {"p": None, "q": "compressed shard cannot follow"}, 0)


def label(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO, "jobs", "label_corpus.py"), *args,
                           "--points-per-side", "8", "--max-member-mib", "2", "--json"],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def summary_of(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout[done.stdout.index("{\n"):])


def test_every_member_ends_in_a_row_or_the_report_and_a_shard_is_one_input_however_spelt(ray_cluster,
                                                                                          tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    cases = {**HOSTILE, "compressed.tar.gz": COMPRESSED}
    for name, (members, _, _) in cases.items():
        write_tar(str(shards / name), members, compress=name.endswith(".gz"))
    out = str(tmp_path / "labels")
    first = label("--input", f"{shards}/*.tar*", "--output", out, "--ray-address", ray_cluster.address)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = summary_of(first)
    output = LabelOutput(out)
    rows = output.read_table().to_pylist()
    assert Counter((r["shard"], r["key"]) for r in rows).most_common(1)[0][1] == 1  # no row twice
    counts = output.census().done
    for name, (_, expected, left_out) in cases.items():
        shard = str(shards / name)
        found = {r["key"]: r for r in rows if r["shard"] == shard}
        assert set(found) == set(expected), name
        for key, error in expected.items():
            if error is None:
                assert found[key]["status"] == "ok", (name, key, found[key]["error"])
            else:
                assert found[key]["status"] == "error" and error in found[key]["error"], (key, found[key])
        assert counts[shard].get("skipped_members", {}).get("count", 0) == left_out, name
    assert found["q"]["error"].startswith("member q.png")
    kinds = counts[str(shards / "kinds.tar")]["skipped_members"]
    assert set(kinds["reasons"]) == {"no sample key in the name (it starts with a dot or has no extension)",
                                     "folder", "WebDataset metadata"}
    assert summary["skipped_members"] == 5 and summary["samples"] == len(rows)
    # The hard link is served from its target's bytes: labeled exactly like it.
    a, b = (next(r for r in rows if r["key"] == key and r["shard"].endswith("kinds.tar")) for key in "ab")
    assert a["segments"] == b["segments"] and a["segments"]

    # The same shards under other spellings are the same inputs: nothing labeled again.
    os.symlink(shards, tmp_path / "alias")
    spellings = [f"file://{shards}/names.tar", f"{tmp_path}/alias/kinds.tar", "shards/repeats.tar",
                 f"{shards}//sizes.tar", f"{shards}/./compressed.tar.gz", f"{shards}/../shards/names.tar"]
    again = label(*[a for s in spellings for a in ("--input", s)], "--output", out,
                  "--ray-address", ray_cluster.address, cwd=str(tmp_path))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "5 shards: 5 already labeled, 0 to label" in again.stdout
    assert summary_of(again)["samples"] == len(rows) == len(output.read_table())

    # Files named like finished shards that are not: relabeled, each named; the rows come back the same.
    paths = {name: output.path(shard_file_name(str(shards / name))) for name in HOSTILE}
    with open(paths["names.tar"], "wb"):
        pass  # zero bytes
    with open(paths["kinds.tar"], "r+b") as f:
        f.truncate(os.path.getsize(paths["kinds.tar"]) // 2)  # cut
    pq.write_table(pa.table({"key": ["intruder"]}), paths["repeats.tar"])  # foreign Parquet
    with open(paths["sizes.tar"], "rb") as f:
        other = pq.read_table(f)
    record = json.loads(other.schema.metadata[b"samcp"])
    record["labeling"]["postprocess"]["min_score"] = 0.99  # made with other settings
    pq.write_table(other.replace_schema_metadata({b"samcp": json.dumps(record).encode()}), paths["sizes.tar"])
    third = label("--input", f"{shards}/*.tar*", "--output", out, "--ray-address", ray_cluster.address)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "1 already labeled, 4 to label" in third.stdout
    for name in HOSTILE:
        assert f"{paths[name]} is not a valid shard file" in third.stdout, name
    assert sorted(map(str, output.read_table().to_pylist()), key=str) == sorted(map(str, rows), key=str)
    assert output.read_json(SUCCESS)["samples"] == len(rows)


def test_a_row_that_does_not_fit_the_schema_becomes_its_error_row():
    base = {"kind": "sample", "shard": "s.tar", "index": 0, "shard_samples": -1, "shard_error": None,
            "skipped_members": None, "width": 4, "height": 4, "error": None, "num_patches": 1}
    segment = {"id": 1, "category": "x", "isthing": True, "score": 0.5, "area": 1, "bbox": [0, 0, 1, 1],
               "counts": "0", "flip_iou": None}
    rows = [{**base, "key": "fine", "status": "ok", "segments": []},
            {**base, "key": "caf\udce9", "status": "ok", "segments": []},  # not UTF-8
            {**base, "key": "huge-id", "status": "ok", "segments": [{**segment, "category_id": 2**31}]},
            {**base, "key": "bad-area", "status": "ok",
             "segments": [{**segment, "category_id": 1, "area": "x"}]},
            {**base, "key": "end", "kind": "end", "index": 4, "status": "error", "segments": []}]
    table = transit_table(rows).to_pylist()
    assert [r["key"] for r in table] == ["fine", "caf\\xe9", "huge-id", "bad-area", "end"]
    assert [r["status"] for r in table] == ["ok", "error", "error", "error", "error"]
    assert all("labels could not be stored" in r["error"] for r in table[1:4])
    assert table[4]["kind"] == "end" and table[4]["index"] == 4


def test_members_above_the_limit_are_skipped_unread(tmp_path, monkeypatch):
    shard = tmp_path / "s.tar"
    write_tar(str(shard), [member("big.png", b"\0" * (5 * 2**20)), member("ok.png", IMAGES[0])])
    extracted, extract = [], tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile",
                        lambda tar, found: extracted.append(found.name) or extract(tar, found))
    rows = list(ShardReader(decode=DecodeConfig(max_member_bytes=2**20))({"shard": str(shard)}))
    assert "5.0 MiB, above the limit of 1 MiB" in rows[0]["error"] and rows[1]["error"] == ""
    assert extracted == ["ok.png"]  # the large member's bytes were never asked for
