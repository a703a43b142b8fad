"""Joining a Ray cluster from a job's driver."""

from __future__ import annotations

import os

import ray

# Where object storage is, for workers that were started without it (credentials are
# left to the workers' own environment or instance role, so they never enter Ray's job info).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION",
                 "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")


def init_ray(address: str | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, set by `ray job submit`), else start a local one."""
    if ray.is_initialized():
        return
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    ray.init(address=address, runtime_env={"env_vars": env} if env else None)
