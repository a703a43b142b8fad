import os

import pytest
import s3fs
import torch
from safetensors.torch import save_file

from samcp.checkpoint import load_state_dict, save_weights
from samcp.sam.build import architectures, build_sam


def test_architectures_include_registry_and_tiny():
    assert {"vit_h", "vit_l", "vit_b", "tiny"} <= set(architectures())


def test_tiny_round_trips_through_a_file(tmp_path):
    torch.manual_seed(0)
    sam = build_sam("tiny", checkpoint=None)
    path = str(tmp_path / "tiny.pt")
    save_weights(sam, path)
    loaded = build_sam("tiny", checkpoint=path)
    for (name, a), b in zip(sam.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert not loaded.training


def test_half_weights_load_into_float_model(tmp_path):
    sam = build_sam("tiny", checkpoint=None)
    path = str(tmp_path / "tiny16.pt")
    save_weights(sam, path, half=True)
    assert os.path.getsize(path) < 5e6
    assert next(build_sam("tiny", checkpoint=path).parameters()).dtype == torch.float32


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown SAM architecture 'vit_z'.*tiny"):
        build_sam("vit_z", checkpoint=None)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        build_sam("tiny", checkpoint=str(tmp_path / "absent.pt"))


def test_corrupt_and_truncated_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint\n" * 40)
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        build_sam("tiny", checkpoint=str(junk))
    good = tmp_path / "good.pt"
    save_weights(build_sam("tiny", checkpoint=None), str(good))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        build_sam("tiny", checkpoint=str(truncated))


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Exploit(str(marker))}, path)
    marker.unlink(missing_ok=True)
    with pytest.raises(ValueError, match="refusing checkpoint"):
        load_state_dict(str(path))
    assert not marker.exists()


def test_wrong_architecture(tmp_path):
    path = str(tmp_path / "tiny.pt")
    save_weights(build_sam("tiny", checkpoint=None), path)
    with pytest.raises(ValueError, match="does not fit architecture 'vit_b'"):
        build_sam("vit_b", checkpoint=path)


def test_vit_b_from_s3(s3_bucket, s3_endpoint, tmp_path):
    torch.manual_seed(1)
    sam = build_sam("vit_b", checkpoint=None)
    local = str(tmp_path / "vit_b.pt")
    save_weights(sam, local, half=True)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.put_file(local, f"{s3_bucket}/models/vit_b.pt")
    loaded = build_sam("vit_b", checkpoint=f"s3://{s3_bucket}/models/vit_b.pt")
    expected = sam.image_encoder.patch_embed.proj.weight.half().float()
    assert torch.equal(loaded.image_encoder.patch_embed.proj.weight, expected)
    # The same weights as safetensors (as many checkpoints are published) load the same way.
    save_file(load_state_dict(local), str(tmp_path / "vit_b.safetensors"))
    fs.put_file(str(tmp_path / "vit_b.safetensors"), f"{s3_bucket}/models/vit_b.safetensors")
    again = build_sam("vit_b", checkpoint=f"s3://{s3_bucket}/models/vit_b.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), loaded.state_dict().values()))
