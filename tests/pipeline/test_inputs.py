import pytest

from pipeline.inputs import InputError, expand_inputs


def test_brace_patterns_globs_and_plain_uris_expand_in_order_without_repeats(tmp_path):
    for name in ("a-0.tar", "a-1.tar", "b.tar"):
        (tmp_path / name).write_bytes(b"")
    shards = expand_inputs([f"{tmp_path}/a-{{0..1}}.tar", f"{tmp_path}/*.tar", "s3://bucket/x.tar"])
    assert shards == [f"{tmp_path}/a-0.tar", f"{tmp_path}/a-1.tar", f"{tmp_path}/b.tar", "s3://bucket/x.tar"]


def test_globs_keep_the_scheme_of_object_store_uris(s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.pipe({f"{s3_bucket}/c/s-1.tar": b"", f"{s3_bucket}/c/s-0.tar": b""})
    assert expand_inputs([f"s3://{s3_bucket}/c/*.tar"]) == [f"s3://{s3_bucket}/c/s-0.tar",
                                                             f"s3://{s3_bucket}/c/s-1.tar"]


def test_a_glob_that_matches_nothing_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no shards match"):
        expand_inputs([f"{tmp_path}/*.tar"])
    with pytest.raises(InputError, match="no --input"):
        expand_inputs([])
