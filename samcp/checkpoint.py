"""Reading and writing weights from local paths or any fsspec URI, never unpickling code."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from samcp.storage import open_uri

FOLDER = "checkpoint {uri} is a folder, not a file: name the weights file in it"


def file_sha256(uri: str, storage_options: dict | None = None, chunk_bytes: int = 1 << 22) -> str:
    """sha256 hex digest of a file at a path or fsspec URI, read in chunks."""
    digest = hashlib.sha256()
    try:
        with open_uri(uri, "rb", storage_options) as f:
            while chunk := f.read(chunk_bytes):
                digest.update(chunk)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {uri}") from None
    except IsADirectoryError:
        raise ValueError(FOLDER.format(uri=uri)) from None
    return digest.hexdigest()


def read_checkpoint(uri: str, storage_options: dict | None = None):
    """Whatever `uri` holds, on the CPU: a torch file loaded with `weights_only=True`, or a
    safetensors file (name ending in `.safetensors`).

    The tensors are mapped from the file, not read into memory (a remote file is first copied to a
    temporary local one, in chunks), so loading them into a model holds one copy of the weights.
    Raises FileNotFoundError for a missing file and ValueError for anything that is not plain
    weights (corrupt, truncated, or a pickle with code).
    """
    try:
        with _local_copy(uri, storage_options) as path:
            if uri.endswith(".safetensors"):
                return _load_safetensors(path, uri)
            return _load_torch(path, uri)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {uri}") from None
    except IsADirectoryError:
        raise ValueError(FOLDER.format(uri=uri)) from None


def _load_torch(path: str, uri: str):
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):  # a file in torch's legacy format cannot be mapped
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            raise ValueError(f"refusing checkpoint {uri}: it holds objects other than plain weights, "
                             "which are never unpickled") from None
        raise ValueError(f"corrupt checkpoint {uri}: {error}".split("\n")[0]) from None
    except Exception as error:  # torch raises many types for damaged files
        raise ValueError(f"corrupt checkpoint {uri}: {error}".split("\n")[0]) from None


def _load_safetensors(path: str, uri: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"corrupt checkpoint {uri}: {error}".split("\n")[0]) from None


@contextmanager
def _local_copy(uri: str, storage_options: dict | None, chunk_bytes: int = 1 << 22) -> Iterator[str]:
    """A local path holding `uri`'s bytes: the file itself when local, else a temporary copy."""
    if os.path.isfile(uri):
        yield uri
        return
    with tempfile.NamedTemporaryFile(suffix=os.path.splitext(uri)[1]) as copy:
        with open_uri(uri, "rb", storage_options) as f:
            while chunk := f.read(chunk_bytes):
                copy.write(chunk)
        copy.flush()
        yield copy.name


def load_state_dict(uri: str, storage_options: dict | None = None) -> dict:
    """The state dict saved at `uri` (see `read_checkpoint`); a dict holding the weights
    under `model` or `state_dict` is unwrapped."""
    state = read_checkpoint(uri, storage_options)
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {uri} does not hold a state dict of tensors")
    return state


def check_fits(state: dict, expected: dict, uri: str, architecture: str) -> None:
    """Raise ValueError naming `architecture` unless the state dict `state` has exactly the keys
    and shapes of `expected` (a model's state dict, or shapes of one built on the meta device)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        details = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                            for label, keys in (("missing", missing), ("unexpected", unexpected),
                                                ("wrong shape", wrong_shape)) if keys)
        raise ValueError(f"checkpoint {uri} does not fit architecture {architecture!r} ({details})")


def load_weights(model: nn.Module, uri: str, architecture: str,
                 storage_options: dict | None = None) -> None:
    """Load `uri` into `model`, in the model's dtype (each tensor is copied from the mapped file into
    the model's own, so the weights are held once); a mismatch names the architecture."""
    state = load_state_dict(uri, storage_options)
    check_fits(state, model.state_dict(), uri, architecture)
    model.load_state_dict(state)


def weights_fingerprint(state: dict) -> str:
    """sha256 of a state dict's contents: names, shapes and values (floating tensors as fp32), in
    name order. The same tensors give the same fingerprint whatever file holds them (another
    format, fp16 or fp32 storage of fp16 values, another key order), so a model built from a file
    has the fingerprint of that file's state dict."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu()
        tensor = tensor.float() if tensor.is_floating_point() else tensor.long()
        digest.update(f"{name}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_weights(model: nn.Module, uri: str, half: bool = False,
                 storage_options: dict | None = None) -> None:
    """Save the model's state dict to `uri`; `half` stores floating tensors as fp16."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with open_uri(uri, "wb", storage_options) as f:
        f.write(buffer.getvalue())
