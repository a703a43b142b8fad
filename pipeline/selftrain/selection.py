"""Pseudo-label selection: which labeled segments a retraining run learns from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScoreFilter:
    """Which pseudo-labeled segments to learn from: score >= the class's threshold and, when
    `min_flip_iou` > 0, flip_iou >= it (labels made with `--flip-agreement`)."""

    keep_score: float = field(default=0.5, metadata={"help": "keep segments scored at least this"})
    class_keep_score: dict[str, float] = field(default_factory=dict, metadata={
        "help": 'per-class thresholds as JSON, e.g. \'{"car": 0.7}\' (above 1: never kept)'})
    min_flip_iou: float = field(default=0.0, metadata={
        "help": "> 0: keep only segments found again with IoU >= this in the mirrored image (labels made "
                "with --flip-agreement; self-training then labels with it, at twice the cost)"})

    def check_reachable(self, shard_counts: list[dict], labels: str) -> None:
        """Raise ValueError when no segment of `labels` can be kept, from the counts of its shard
        files (`max_score`; outputs of older versions lack it: then nothing is checked)."""
        if not shard_counts or any("max_score" not in counts for counts in shard_counts):
            return
        best = max((c["max_score"] for c in shard_counts if c["max_score"] is not None), default=None)
        lowest = min([self.keep_score, *self.class_keep_score.values()])
        if best is None:
            raise ValueError(f"the labels in {labels} hold no segment to learn from")
        if best < lowest:
            raise ValueError(f"no segment of {labels} scores {lowest:g} or more: their best score is "
                             f"{best:.2f}; lower --keep-score (and --class-keep-score) to keep some")

    def keep(self, segment: dict) -> bool:
        if segment["score"] < self.class_keep_score.get(segment["category"], self.keep_score):
            return False
        if self.min_flip_iou <= 0:
            return True
        if segment.get("flip_iou") is None:
            raise ValueError("--min-flip-iou needs labels made with --flip-agreement; these segments "
                             "carry no flip_iou")
        return segment["flip_iou"] >= self.min_flip_iou
