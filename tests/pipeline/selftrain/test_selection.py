"""Which pseudo-labeled segments a retraining run keeps, and a threshold nothing passes refused early."""

import pytest
import ray

from pipeline.selftrain.selection import ScoreFilter


def test_a_threshold_above_every_stored_score_is_refused_with_the_best_score():
    shards = [{"max_score": 0.19}, {"max_score": None}]  # the second shard has no segment
    with pytest.raises(ValueError, match="best score is 0.19"):
        ScoreFilter(keep_score=0.5).check_reachable(shards, "labels/")
    ScoreFilter(keep_score=0.15).check_reachable(shards, "labels/")
    ScoreFilter(keep_score=0.5, class_keep_score={"car": 0.1}).check_reachable(shards, "labels/")
    ScoreFilter(keep_score=0.5).check_reachable([{"samples": 4}], "labels/")  # an older output: unknown
    with pytest.raises(ValueError, match="no segment to learn from"):
        ScoreFilter().check_reachable([{"max_score": None}], "labels/")


def test_a_pseudo_label_source_refuses_it_on_the_driver_before_any_cache_work(labeled):
    """`LabelSource.check` runs before the cache job starts Ray: a threshold above the labels' best
    score fails there, from the shard files' footers."""
    from pipeline.train.cache import LabelSource

    root, _ = labeled
    source = LabelSource("pseudo", (str(root / "shards" / "*.tar"),), str(root / "labels"),
                         ScoreFilter(keep_score=0.999))
    with pytest.raises(ValueError, match="lower --keep-score"):
        source.check(None)
    LabelSource("pseudo", source.shards, source.labels, ScoreFilter(keep_score=0.1)).check(None)
    assert not ray.is_initialized()
