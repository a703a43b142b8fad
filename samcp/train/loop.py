"""Pieces every training job here shares: learning-rate schedule, resumable state, metrics log."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import torch


def warmup_cosine(base_lr: float, warmup_steps: int, total_steps: int, step: int) -> float:
    """Linear warm-up to `base_lr`, then cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_step(base_lr: float, warmup_steps: int, total_steps: int, step: int) -> float:
    """Linear warm-up to `base_lr`, then x0.1 at 8/12 and again at 11/12 of `total_steps` (the
    reference's 12-epoch schedule, decays after epochs 8 and 11, at any length)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return base_lr * 0.1 ** ((step >= total_steps * 8 // 12) + (step >= total_steps * 11 // 12))


SCHEDULES = {"cosine": warmup_cosine, "step": warmup_step}


def save_state(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
               config: dict) -> None:
    """Write the resumable training state atomically (temp file, then rename)."""
    tmp = f"{path}.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "config": config}, tmp)
    os.replace(tmp, path)


def resume_state(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 device: torch.device) -> int:
    """Load `path` into model and optimizer if it exists; returns the step to start from."""
    if not os.path.exists(path):
        return 0
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


class MetricsLog:
    """Averages metrics over a window of steps, prints a progress line with rate and ETA,
    and appends the averages to a JSON-lines file."""

    def __init__(self, path: str, total_steps: int, start_step: int, every: int = 25, log=print):
        self.path, self.total, self.start, self.every, self.log = path, total_steps, start_step, every, log
        self.started = time.time()
        self.window: list[dict[str, float]] = []

    def add(self, step: int, values: dict[str, float], lr: float) -> None:
        self.window.append(values)
        done = step + 1
        if done % self.every and done != self.total:
            return
        mean = {k: float(np.mean([w[k] for w in self.window])) for k in self.window[0]}
        rate = (done - self.start) / max(time.time() - self.started, 1e-9)
        eta = (self.total - done) / max(rate, 1e-9)
        fields = " ".join(f"{k} {v:.4f}" for k, v in mean.items())
        self.log(f"step {done}/{self.total} {fields} lr {lr:.2e} {rate:.2f} step/s eta {eta / 60:.1f} min")
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": done, "lr": lr, **mean}) + "\n")
        self.window = []
