"""Reading weights: mapped from the file rather than read into memory, torch and safetensors files,
and clear errors for damaged ones."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from samcp.checkpoint import file_sha256, load_state_dict, read_checkpoint, weights_fingerprint


def anonymous_mib() -> float:
    """This process's resident memory not backed by a file (Linux), in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


@pytest.mark.parametrize("name", ["big.pt", "big.safetensors"])
def test_weights_are_mapped_from_the_file_not_copied_into_memory(tmp_path, name):
    path = str(tmp_path / name)
    weights = {f"w{i}": torch.randn(1024, 1024) for i in range(32)}  # 128 MiB of fp32
    if name.endswith(".safetensors"):
        save_file(weights, path)
    else:
        torch.save(weights, path)
    del weights
    before = anonymous_mib()
    state = read_checkpoint(path)
    total = sum(float(t.sum()) for t in state.values())  # every page read
    grown = anonymous_mib() - before
    assert total == total and grown < 32, f"{grown:.0f} MiB of anonymous memory for a 128 MiB file"
    with open("/proc/self/maps") as f:
        assert path in f.read()


def test_safetensors_and_torch_files_give_the_same_state_dict(tmp_path):
    state = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).half()}
    torch.save(state, tmp_path / "w.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)  # cannot be mapped
    loaded = [load_state_dict(str(tmp_path / name)) for name in ("w.pth", "w.safetensors", "legacy.pth")]
    assert len({weights_fingerprint(s) for s in loaded}) == 1
    assert all(torch.equal(s[k], state[k]) and s[k].dtype == state[k].dtype for s in loaded for k in state)
    assert file_sha256(str(tmp_path / "w.pth")) != file_sha256(str(tmp_path / "w.safetensors"))


@pytest.mark.parametrize("name", ["w.pth", "w.safetensors"])
def test_a_truncated_file_is_a_clear_error(tmp_path, name):
    good = tmp_path / f"good-{name}"
    if name.endswith(".safetensors"):
        save_file({"a": torch.randn(64, 64)}, str(good))
    else:
        torch.save({"a": torch.randn(64, 64)}, good)
    (tmp_path / name).write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        read_checkpoint(str(tmp_path / name))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_checkpoint(str(tmp_path / f"missing-{name}"))
