"""The metrics a training run reports are every worker's, not rank 0's alone."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.train.trainer import mean_over_workers


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        # rank 0 learns well, rank 1 badly: two steps each since the last report
        losses = [{"loss": 0.9, "dice": 0.1}, {"loss": 1.1, "dice": 0.3}] if rank == 0 else \
            [{"loss": 3.9, "dice": 0.5}, {"loss": 4.1, "dice": 0.7}]
        results[rank] = mean_over_workers(losses, torch.device("cpu"))
    finally:
        dist.destroy_process_group()


def test_reported_losses_are_averaged_over_steps_and_every_worker():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(port, results), nprocs=2, join=True)
        reported = dict(results)
    for rank in (0, 1):  # both workers report the same mean: (1.0 + 4.0) / 2, (0.2 + 0.6) / 2
        assert reported[rank]["loss"] == torch.tensor(2.5).item()
        assert abs(reported[rank]["dice"] - 0.4) < 1e-6
    assert mean_over_workers([{"loss": 2.0}, {"loss": 4.0}], torch.device("cpu")) == {"loss": 3.0}
