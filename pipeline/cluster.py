"""Joining a Ray cluster from a job's driver, and how much of Ray's output the driver shows."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

import ray

# Where object storage is, for workers that were started without it (credentials are
# left to the workers' own environment or instance role, so they never enter Ray's job info).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION",
                 "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
_verbose = True


def set_verbose(verbose: bool) -> None:
    """Whether this process shows Ray's output (a job's --verbose); call once, before Ray starts.
    Quiet: Ray's and Ray Data's Python logs below errors, Ray Data's progress report and the
    workers' output stay out of the terminal (the workers' output is in Ray's log files,
    /tmp/ray/session_latest/logs on the head), and Ray's C++ logs are kept to fatal errors, in the
    driver and in a local Ray it starts itself (RAY_BACKEND_LOG_LEVEL, which that Ray inherits:
    rerun with --verbose for its full logs); the job's own progress line and summary remain."""
    global _verbose
    _verbose = verbose
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the core worker's C++ lines
        for name in ("ray", "ray.data", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.ERROR)


def init_ray(address: str | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, set by `ray job submit`), else start a local one."""
    if ray.is_initialized():
        return
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    with contextlib.nullcontext() if _verbose else _stderr_held():
        ray.init(address=address, runtime_env={"env_vars": env} if env else None, log_to_driver=_verbose,
                 logging_level=logging.INFO if _verbose else logging.ERROR)
    if not _verbose:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _stderr_held():
    """The process's stderr (file descriptor 2, where Ray's C++ side writes) held back while Ray
    starts, and shown only if starting fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
