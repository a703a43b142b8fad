"""Provenance of a result JSON: the command, code, model files, settings, images and machine behind it.

Every benchmark and evaluation that writes a result JSON adds `"provenance": provenance(...)`
to what it writes, so that a number can be traced to what made it and made again.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

import torch

from samcp.checkpoint import file_sha256

_REPO_PROBE_DIR = os.path.dirname(os.path.abspath(__file__))  # git is asked about this folder's checkout


def provenance(model_files: dict[str, str | None], settings: dict, split: str | None,
               indices: list[int] | range | str | None, storage_options: dict | None = None) -> dict:
    """What made a result, as a JSON-ready dict to store under the result's "provenance" key.

    Arguments:
      model_files: {name: file} of every model file the run used, e.g. {"sam": ..., "head": ...,
        "clip": ...}; a file is a local path or fsspec URI, None for a model with random weights.
        "shipped" is no file: the caller resolves it first (`LabelerConfig.checkpoint_files`).
      settings: the run's settings (e.g. `vars(args)`); values that JSON cannot hold are written
        as their `str()`.
      split: the synthetic split the images came from ("train", "val", ...), None if none.
      indices: the images' indices in that split, as a list, a `range` (written as the string
        "FIRST..LAST", both included) or a string that describes them; None if none.
      storage_options: fsspec options for reading model files on a store (for their sha256).

    Returns {
      "provenance_source": "recorded" (a JSON filled in afterwards from git says "backfilled from git"),
      "command": the command line, `shlex.join` of sys.argv with the interpreter written as `python`,
      "git_commit": HEAD of the git checkout this package lies in, "unknown" when it is in none
        (an installed package) or git cannot tell,
      "git_dirty": True if tracked files differ from that commit (untracked files are not counted),
        False if not, "unknown" with an unknown commit,
      "models": {name: {"file": the file as given, "sha256": its sha256 hex digest}}
        (both None for random weights),
      "settings", "split", "indices": as given (indices made JSON-ready as above),
      "hardware": {"cpu": CPU model name, "cores": os.cpu_count(), "torch": torch's version,
        "cuda_device": torch.cuda.get_device_name() of the current device, None without CUDA},
      "date": when this was called, UTC, ISO 8601 to the second (e.g. "2026-11-28T09:15:02+00:00"),
    }. Raises FileNotFoundError for a model file that is not there.
    """
    commit, dirty = _git_state(_REPO_PROBE_DIR)
    models = {}
    for name, file in model_files.items():
        if file == "shipped":
            raise ValueError(f'model {name!r}: resolve "shipped" to the package\'s file before provenance()')
        models[name] = {"file": file, "sha256": None if file is None else file_sha256(file, storage_options)}
    if isinstance(indices, range):
        indices = f"{indices.start}..{indices.stop - 1}" if indices.step == 1 else list(indices)
    return {
        "provenance_source": "recorded",
        "command": shlex.join(["python", *sys.argv]),
        "git_commit": commit,
        "git_dirty": dirty,
        "models": models,
        "settings": _json_ready(settings),
        "split": split,
        "indices": _json_ready(indices),
        "hardware": _hardware(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _git_state(folder: str) -> tuple[str, bool | str]:
    """(HEAD commit, whether tracked files differ from it) of the checkout `folder` is in;
    ("unknown", "unknown") outside a git checkout or without git."""
    # git finds the checkout from `folder`, not from a GIT_DIR / GIT_WORK_TREE set around us
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, env=env, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--verify", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    return commit, dirty


def _hardware() -> dict:
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def write_result(path: str, result: dict) -> None:
    """Write a result JSON (a benchmark's, an evaluation's) and say where."""
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")


def _json_ready(value):
    return json.loads(json.dumps(value, default=str))
