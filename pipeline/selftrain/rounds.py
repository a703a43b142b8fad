"""Self-training rounds: label -> keep the confident labels -> retrain -> evaluate, N times.

    OUTPUT/round-0/eval/             the starting head's labels of the evaluation shards (+ eval.json)
    OUTPUT/round-R/labels/           round R's pseudo-labels of the unlabeled shards (head of round R-1)
    OUTPUT/round-R/train/            Ray Train run on them -> samcp_head.pt
    OUTPUT/round-R/eval/             that head's labels of the evaluation shards, scored (eval.json)
    OUTPUT/self_training.json        the table: PQ per round

Every step resumes: the labeling job skips finished shards, training restarts
from its last checkpoint, and a round whose eval.json exists is not redone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.config import JobConfig, ModelConfig
from pipeline.job import run_label_job
from pipeline.labels import rows_by_key, score_rows
from pipeline.train.examples import ScoreFilter
from pipeline.train.trainer import PseudoTrainConfig, run_pseudo_training


@dataclass(frozen=True)
class SelfTrainConfig:
    unlabeled: tuple[str, ...]  # shards to pseudo-label and learn from
    eval_images: tuple[str, ...]  # held-out shards with ground truth...
    eval_ground_truth: str  # ...as a COCO panoptic folder (file names = sample keys)
    output: str  # local folder of the rounds
    init: str = "shipped"  # the starting head
    rounds: int = 2
    model: ModelConfig = field(default_factory=ModelConfig)  # SAM, vocabulary... (the head is per round)
    scores: ScoreFilter = field(default_factory=ScoreFilter)
    ground_truth: str | None = None  # labeled images trained on every round (see PseudoTrainConfig)
    ground_truth_images: tuple[str, ...] = ()
    workers: int = 2
    use_gpu: bool = False
    epochs: int = 10
    mirror: bool = False  # retrain on every image also mirrored left-right (see PseudoTrainConfig)
    turn: bool = False  # retrain on every image also turned by 90, 180 or 270 degrees
    batch_size: int = 4
    lr: float = 1e-4
    actors: int = 1
    ray_address: str | None = None


def evaluate_head(cfg: SelfTrainConfig, head: str, folder: str, log: Callable[[str], None]) -> dict:
    """Label the evaluation shards with `head` and score them against the ground truth (cached)."""
    path = os.path.join(folder, "eval.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    job = JobConfig(inputs=cfg.eval_images, output=os.path.join(folder, "labels"),
                    model=dataclasses.replace(cfg.model, samcp_checkpoint=head, flip_agreement=False),
                    actors=cfg.actors,
                    ray_address=cfg.ray_address)
    run_label_job(job, log)
    summary = score_rows(rows_by_key(job.output), cfg.eval_ground_truth)
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def table_row(round_index: int, head: str, summary: dict, images: int | None) -> dict:
    pq = summary["pq"]
    return {"round": round_index, "head": head, "training_images": images,
            "pq": round(pq["All"]["pq"], 2), "sq": round(pq["All"]["sq"], 2), "rq": round(pq["All"]["rq"], 2),
            "pq_things": round(pq["Things"]["pq"], 2), "pq_stuff": round(pq["Stuff"]["pq"], 2),
            "mask_ap": round(summary["mask_ap"]["ap"], 2), "miou": round(summary["miou"], 2)}


def format_table(rows: list[dict]) -> str:
    lines = ["| round | PQ | SQ | RQ | PQ things | PQ stuff | mask AP | mIoU | training images |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['pq']:.1f} | {r['sq']:.1f} | {r['rq']:.1f} | {r['pq_things']:.1f} "
                     f"| {r['pq_stuff']:.1f} | {r['mask_ap']:.1f} | {r['miou']:.1f} "
                     f"| {r['training_images'] or '-'} |")
    return "\n".join(lines)


def run_self_training(cfg: SelfTrainConfig, log: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) every round; returns the table rows, round 0 being the starting head."""
    os.makedirs(cfg.output, exist_ok=True)
    head = cfg.init
    start = evaluate_head(cfg, head, os.path.join(cfg.output, "round-0", "eval"), log)
    rows = [table_row(0, head, start, None)]
    log(f"[self-train] round 0 (starting head): PQ {rows[0]['pq']:.1f}")
    for round_index in range(1, cfg.rounds + 1):
        folder = os.path.join(cfg.output, f"round-{round_index}")
        labels = os.path.join(folder, "labels")
        run_label_job(JobConfig(inputs=cfg.unlabeled, output=labels, actors=cfg.actors,
                                model=dataclasses.replace(cfg.model, samcp_checkpoint=head),
                                ray_address=cfg.ray_address), log)
        trained = run_pseudo_training(PseudoTrainConfig(
            labels=labels, images=cfg.unlabeled, output=os.path.join(folder, "train"), init=head,
            scores=cfg.scores, ground_truth=cfg.ground_truth, ground_truth_images=cfg.ground_truth_images,
            workers=cfg.workers, use_gpu=cfg.use_gpu, epochs=cfg.epochs, mirror=cfg.mirror, turn=cfg.turn,
            batch_size=cfg.batch_size, lr=cfg.lr, ray_address=cfg.ray_address), log)
        head = trained["head"]
        summary = evaluate_head(cfg, head, os.path.join(folder, "eval"), log)
        rows.append(table_row(round_index, head, summary, trained["images"]))
        log(f"[self-train] round {round_index}: PQ {rows[-1]['pq']:.1f} "
            f"({rows[-1]['pq'] - rows[0]['pq']:+.1f} over round 0)")
        with open(os.path.join(cfg.output, "self_training.json"), "w") as f:
            json.dump({"rows": rows, "config": dataclasses.asdict(cfg)}, f, indent=1)
    log(format_table(rows))
    return rows
