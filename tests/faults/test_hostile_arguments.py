"""Hostile and odd arguments to the jobs and `samcp`: exit 2 with a message naming the bad value,
never a traceback, never a secret in any output stream, never a hang."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest
import ray
import s3fs

from pipeline import cli
from samcp.storage import S3_DEFAULTS, storage_options_for

REPO = Path(__file__).resolve().parents[2]
KEY, SECRET = "AKIAHOSTILEKEY000001", "hostile-secret-9c1e"
JOBS_WITH_STORAGE = {"label_corpus": ["--input", "x.tar", "--output", "out"],
                     "export": ["--labels", "l", "--format", "coco-panoptic", "--output", "o"],
                     "render": ["--labels", "l", "--output", "o"],
                     "evaluate": ["--ground-truth", "g", "--labels", "l"],
                     "audit_pseudo_labels": ["--labels", "l", "--ground-truth", "g"],
                     "make_shards": ["folder", "--images", "i", "--output", "o"],
                     "train_on_pseudo_labels": ["--labels", "l", "--images", "x.tar", "--output", "o"]}


def job(name: str):
    spec = importlib.util.spec_from_file_location(f"hostile_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_code(function, argv: list[str]) -> int:
    try:
        return function(argv)
    except SystemExit as stop:  # argparse
        return stop.code


@pytest.mark.parametrize("name", sorted(JOBS_WITH_STORAGE))
def test_malformed_storage_options_are_refused_without_echoing_them(name, capsys):
    module = job(name)
    bad = [f'{{"key": "{KEY}", "secret": "{SECRET}"',  # cut
           f"{{'key': '{KEY}', 'secret': '{SECRET}'}}",  # Python, not JSON
           f"key={KEY},secret={SECRET}",
           f'["{KEY}", "{SECRET}"]',  # JSON, not an object
           f'"{KEY} {SECRET}"']
    for value in bad:
        code = exit_code(module.main, [*JOBS_WITH_STORAGE[name], "--storage-options", value])
        out, err = capsys.readouterr()
        assert code == 2, (name, value, err)
        assert "--storage-options" in err and KEY not in out + err and SECRET not in out + err, err


def test_bad_output_folders_and_stores_exit_2_with_the_reason(tmp_path, s3_endpoint, s3_bucket, capsys):
    label = job("label_corpus").main
    shard = tmp_path / "s.tar"
    shard.write_bytes(b"\0" * 1024)  # an empty tar
    a_file = tmp_path / "file"
    a_file.write_text("x")
    closed = '{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}'  # nothing listens there
    cases = [  # (--input, --output, more flags, what the message says)
        (shard, a_file, [], "is a file, not a folder"),
        (shard, a_file / "below", [], "cannot create the folder"),
        (shard, "/proc/self/samcp-labels", [], "cannot create the folder"),
        (shard, "s3://no-such-bucket-samcp/labels", [], "does not exist"),
        (shard, f"s3://{s3_bucket}/labels", ["--storage-options", closed], "cannot reach"),
        (f"s3://{s3_bucket}/*.tar", tmp_path / "out", ["--storage-options", closed], "cannot list"),
        (shard, tmp_path / "out", ["--max-side", "0"], "--max-side must be"),
        (shard, tmp_path / "out", ["--max-side", "-5"], "--max-side must be"),
        (shard, tmp_path / "out", ["--max-side", "4"], "--max-side must be"),
        (shard, tmp_path / "out", ["--max-member-mib", "0"], "--max-member-mib"),
        (shard, tmp_path / "out", ["--max-side", "big"], "invalid int value: 'big'"),
        (shard, tmp_path / "out", ["--head-checkpoint", str(tmp_path)], "is a folder, not a file"),
        (shard, tmp_path / "out", ["--sam-checkpoint", str(tmp_path)], "is a folder, not a file"),
        (shard, tmp_path / "out", ["--vocab", str(tmp_path)], "is a folder, not a vocabulary file"),
    ]
    for source, output, extra, message in cases:
        started = time.monotonic()
        code = exit_code(label, ["--input", str(source), "--output", str(output), "--points-per-side", "8",
                                 *extra])
        out, err = capsys.readouterr()
        assert code == 2 and message in err, (output, extra, out[-2000:], err[-2000:])
        assert "Traceback" not in err and time.monotonic() - started < 60, extra
    assert not s3fs.S3FileSystem().exists("no-such-bucket-samcp")  # a misspelt bucket is never created
    assert not (tmp_path / "out").exists()  # refused settings claim nothing


@pytest.mark.slow
def test_a_store_that_never_answers_fails_in_bounded_time(tmp_path, capsys):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in iter(int, 1)], daemon=True).start()
    options = f'{{"client_kwargs": {{"endpoint_url": "http://127.0.0.1:{server.getsockname()[1]}"}}}}'
    shard = tmp_path / "s.tar"
    shard.write_bytes(b"")
    started = time.monotonic()
    code = job("label_corpus").main(["--input", str(shard), "--output", "s3://silent/labels",
                                     "--storage-options", options])
    elapsed = time.monotonic() - started
    _, err = capsys.readouterr()
    assert code == 2 and "Read timeout" in err and "cannot reach" in err, err
    assert held and elapsed < 150, elapsed  # botocore's default would be ~7 minutes per request
    assert storage_options_for("s3://b/x", {"config_kwargs": {"read_timeout": 1}})["config_kwargs"] == {
        **S3_DEFAULTS, "read_timeout": 1}  # the caller's settings win


def test_samcp_label_never_overwrites_inputs_or_its_own_results(tmp_path, capsys):
    from PIL import Image

    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    for path in (photos / "x.png", photos / "a" / "same.png", photos / "b" / "same.jpg"):
        Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    before = (photos / "x.png").read_bytes()
    flags = ["--points-per-side", "8"]
    for out in (photos, photos / "a"):  # out holds an input with a result's name
        code = cli.main(["label", str(photos / "x.png"), str(photos / "a" / "same.png"), "--out", str(out),
                         *flags])
        _, err = capsys.readouterr()
        assert code == 2 and "would overwrite the input" in err, err
    assert (photos / "x.png").read_bytes() == before
    (tmp_path / "afile").write_text("x")
    assert cli.main(["label", str(photos / "x.png"), "--out", str(tmp_path / "afile"), *flags]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert cli.main(["label", str(photos / "x.png"), "--max-side", "0", *flags]) == 2
    assert "--max-side must be" in capsys.readouterr().err
    out = tmp_path / "results"
    code = cli.main(["label", str(photos / "a" / "same.png"), str(photos / "b" / "same.jpg"),
                     "--out", str(out), *flags])
    assert code == 0, capsys.readouterr().err
    results = sorted(p.name for p in out.iterdir())
    assert len(results) == 4 and len({name.split(".")[0] for name in results}) == 2  # one pair per input
    assert all(name.startswith("same-") for name in results)


def test_gpu_actors_on_a_cluster_without_gpus_and_a_damaged_manifest(ray_cluster, tmp_path, capsys):
    """Asking for GPUs the cluster lacks stops at once (Ray would wait forever); a damaged
    manifest is refused, and --overwrite clears it without reading it."""
    label = job("label_corpus").main
    shard = tmp_path / "s.tar"
    shard.write_bytes(b"\0" * 1024)  # an empty tar
    out = tmp_path / "out"
    out.mkdir()
    base = ["--input", str(shard), "--output", str(out), "--points-per-side", "8", "--ray-address",
            ray_cluster.address]
    for damage in (b"{not json", b"[1, 2]", b'{"labeling": 5}'):
        (out / "_manifest.json").write_bytes(damage)
        assert label(base) == 2
        assert "_manifest.json" in capsys.readouterr().err
    (tmp_path / "other.tar").write_bytes(b"\0" * 1024)
    base[1] = str(tmp_path / "other.tar")
    started = time.monotonic()
    code = label([*base, "--overwrite", "--num-gpus-per-actor", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "needs 1 GPUs, but the cluster has 0" in err, err
    assert time.monotonic() - started < 120
    assert b"labeling" in (out / "_manifest.json").read_bytes()  # --overwrite replaced the damaged one
    ray.shutdown()  # this test's driver: leave the cluster to the next


GOOD_CLASS = "  - {id: 1, name: ball, isthing: true}\n"
BAD_VOCABULARIES = {  # text -> what the message names
    "classes:\n" + GOOD_CLASS + "templates: 5\n": "'templates' must be a list",
    "classes:\n" + GOOD_CLASS + "templates: 'a photo of a {}.'\n": "'templates' must be a list",
    "classes:\n" + GOOD_CLASS + "templates: ['a {x} of {}']\n": "no other {...} field",
    "classes:\n" + GOOD_CLASS + "templates: ['a {} and {}']\n": "'{}' once",
    "classes:\n" + GOOD_CLASS + "templates: ['{0}']\n": "no other {...} field",
    "classes:\n" + GOOD_CLASS + "templates: ['a {!r}']\n": "no other {...} field",
    "classes:\n" + GOOD_CLASS + "templates: ['a {']\n": "not a valid format string",
    "classes:\n" + GOOD_CLASS + "templates: [7]\n": "must be text",
    "classes:\n  - !!python/object:os.system {id: 1}\n": "not valid YAML",
    "classes:\n  - !custom {id: 1, name: a, isthing: true}\n": "not valid YAML",
    "name: !!binary aGVsbG8=\nclasses:\n" + GOOD_CLASS: "'name' must be text",
    "? [a, b]\n: 1\nclasses:\n" + GOOD_CLASS: "unhashable key",
    "7: 1\nclasses:\n" + GOOD_CLASS: "unknown key '7'",
    "classes:\n  - {? [id]: 1, name: a, isthing: true}\n": "not valid YAML",
    "classes:\n  - {id: -1, name: a, isthing: true}\n": "from 0 to 2147483647",
    "classes:\n  - {id: 2147483648, name: a, isthing: true}\n": "from 0 to 2147483647",
    "classes:\n  - {id: 99999999999999999999, name: a, isthing: true}\n": "from 0 to 2147483647",
    "classes:\n  - {id: 1.5, name: a, isthing: true}\n": "'id' must be int",
    'classes:\n  - {id: 1, name: "two\\nlines", isthing: true}\n': "one line of printable text",
    "classes:\n  - {id: 1, name: a, isthing: true, synonyms: [\"x\\ty\"]}\n": "one line of printable text",
    "clases:\n" + GOOD_CLASS: "unknown key 'clases'",
}


@pytest.mark.parametrize("text", list(BAD_VOCABULARIES), ids=range(len(BAD_VOCABULARIES)))
def test_bad_vocabularies_are_refused_with_the_reason(text, tmp_path):
    from samcp.vocab import VocabularyError, load_vocabulary

    (tmp_path / "v.yaml").write_text(text)
    with pytest.raises(VocabularyError) as refused:
        load_vocabulary(str(tmp_path / "v.yaml"))
    assert BAD_VOCABULARIES[text] in str(refused.value) and str(tmp_path / "v.yaml") in str(refused.value)


def test_the_label_job_refuses_a_bad_vocabulary_before_anything(tmp_path, capsys):
    (tmp_path / "v.yaml").write_text("classes:\n  - {id: 4294967296, name: a, isthing: true}\n")
    code = job("label_corpus").main(["--input", str(tmp_path / "s.tar"), "--output", str(tmp_path / "out"),
                                     "--vocab", str(tmp_path / "v.yaml")])
    assert code == 2 and "v.yaml:2" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_readers_and_packers_exit_2_for_unusable_folders_and_stores(tmp_path, s3_endpoint, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    not_labels = tmp_path / "not-labels"
    not_labels.mkdir()
    (tmp_path / "photos").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "photos" / "p.png")
    cases = [
        ("export", ["--labels", str(not_labels), "--format", "hf-parquet", "--output", str(a_file)],
         "is a file, not a folder"),
        ("export", ["--labels", str(not_labels), "--format", "coco-panoptic", "--output",
                    str(tmp_path / "e")],
         "no _manifest.json"),
        ("render", ["--labels", str(not_labels), "--output", str(a_file)], "is a file, not a folder"),
        ("render", ["--labels", str(a_file), "--output", str(tmp_path / "r")], "no _manifest.json"),
        ("evaluate", ["--ground-truth", str(not_labels), "--labels", str(not_labels)], "no _manifest.json"),
        ("evaluate", ["--ground-truth", str(not_labels), "--predictions", str(not_labels)],
         "no panoptic.json"),
        ("make_shards", ["folder", "--images", str(tmp_path / "photos"), "--output",
                         "s3://no-such-bucket-samcp/shards", "--no-progress"], "does not exist"),
        ("make_shards", ["folder", "--images", str(tmp_path / "photos"), "--output", str(a_file),
                         "--no-progress"], "is a file, not a folder"),
    ]
    for name, argv, message in cases:
        code = exit_code(job(name).main, argv)
        out, err = capsys.readouterr()
        assert code == 2 and message in err and "Traceback" not in err, (name, argv, out[-1000:], err[-1000:])
    assert not (tmp_path / "e").exists() and not s3fs.S3FileSystem().exists("no-such-bucket-samcp")
