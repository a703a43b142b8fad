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

from pipeline.config import JobConfig
from pipeline.job import run_label_job
from pipeline.labels import rows_by_key, score_rows
from pipeline.train.pseudo import PseudoTrainConfig, run_pseudo_training
from samcp.config import LabelerConfig


@dataclass(frozen=True)
class SelfTrainConfig:
    unlabeled: tuple[str, ...]  # shards to pseudo-label and learn from
    eval_images: tuple[str, ...]  # held-out shards with ground truth...
    eval_ground_truth: str  # ...as a COCO panoptic folder (file names = sample keys)
    output: str  # local folder of the rounds
    rounds: int = 2
    # The models that label; its head is the starting head, each round's labels come from the last.
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    # Each round's retraining: its labels, output and init are set per round.
    retraining: PseudoTrainConfig = field(
        default_factory=lambda: PseudoTrainConfig(labels="", images=(), output=""))
    actors: int = 1  # labeling actors


def evaluate_head(cfg: SelfTrainConfig, head: str, folder: str, log: Callable[[str], None]) -> dict:
    """Label the evaluation shards with `head` and score them against the ground truth (cached)."""
    path = os.path.join(folder, "eval.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    job = JobConfig(inputs=cfg.eval_images, output=os.path.join(folder, "labels"),
                    labeler=dataclasses.replace(cfg.labeler, head_checkpoint=head, flip_agreement=False),
                    actors=cfg.actors, ray_address=cfg.retraining.ray_address)
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
    head = cfg.labeler.head_checkpoint
    start = evaluate_head(cfg, head, os.path.join(cfg.output, "round-0", "eval"), log)
    rows = [table_row(0, head, start, None)]
    log(f"[self-train] round 0 (starting head): PQ {rows[0]['pq']:.1f}")
    for round_index in range(1, cfg.rounds + 1):
        folder = os.path.join(cfg.output, f"round-{round_index}")
        labels = os.path.join(folder, "labels")
        run_label_job(JobConfig(inputs=cfg.unlabeled, output=labels, actors=cfg.actors,
                                labeler=dataclasses.replace(cfg.labeler, head_checkpoint=head),
                                ray_address=cfg.retraining.ray_address), log)
        trained = run_pseudo_training(dataclasses.replace(
            cfg.retraining, labels=labels, images=cfg.unlabeled, output=os.path.join(folder, "train"),
            init=head), log)
        head = trained["head"]
        summary = evaluate_head(cfg, head, os.path.join(folder, "eval"), log)
        rows.append(table_row(round_index, head, summary, trained["images"]))
        log(f"[self-train] round {round_index}: PQ {rows[-1]['pq']:.1f} "
            f"({rows[-1]['pq'] - rows[0]['pq']:+.1f} over round 0)")
        with open(os.path.join(cfg.output, "self_training.json"), "w") as f:
            json.dump({"rows": rows, "config": dataclasses.asdict(cfg)}, f, indent=1)
    log(format_table(rows))
    return rows
