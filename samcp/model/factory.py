"""Save and build SAM-CP heads: a checkpoint holds its `HeadConfig`, the names of the classes it was
trained on and the SAM architecture and weights (fingerprint) whose embedding it read, next to the
weights."""

from __future__ import annotations

import dataclasses
import io

import torch

from samcp.checkpoint import load_weights, read_checkpoint
from samcp.model.head import HeadConfig, SamCPHead
from samcp.shipped import SHIPPED_HEAD_SAM, shipped_file
from samcp.storage import open_uri


def check_head_fits(head: SamCPHead, sam_model: str, sam_weights: str | None = None) -> None:
    """Refuse a head trained on another SAM than `sam_model` with weights of fingerprint
    `sam_weights` (None: not known, the architecture alone is compared). Either is compared
    when the head records it: a SAM of the same width would run, reading an embedding the head
    was never trained on."""
    if head.sam_model and head.sam_model != sam_model:
        raise ValueError(f"the SAM-CP head was trained on SAM {head.sam_model!r}'s embedding, "
                         f"not {sam_model!r}'s: pass a head trained on that SAM (jobs/train_samcp.py "
                         f"--sam-model {sam_model}), or none (random weights) for speed tests")
    if head.sam_weights and sam_weights is not None and head.sam_weights != sam_weights:
        raise ValueError(f"the SAM-CP head was trained on other {sam_model!r} SAM weights (fingerprint "
                         f"{head.sam_weights[:12]}) than these ({sam_weights[:12]}): pass the SAM "
                         "checkpoint it was trained with, or a head trained on this one")


def shipped_head_checkpoint(sam_model: str = "tiny") -> str:
    """The package's head for the shipped SAM `sam_model` ("tiny" or "tiny8")."""
    return shipped_file("head", sam_model)


def save_head(head: SamCPHead, uri: str, half: bool = True, storage_options: dict | None = None) -> None:
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in head.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"config": dataclasses.asdict(head.config), "trained_classes": list(head.trained_classes),
                "sam_model": head.sam_model, "sam_weights": head.sam_weights, "model": state}, buffer)
    with open_uri(uri, "wb", storage_options) as f:
        f.write(buffer.getvalue())


def random_head(feature_dim: int, text_dim: int, seed: int = 0) -> SamCPHead:
    """A head of the default sizes with fixed-seed random weights, reading a SAM embedding of
    `feature_dim` channels and text embeddings of `text_dim`: for speed tests of any SAM."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SamCPHead(HeadConfig(feature_dim=feature_dim, text_dim=text_dim)).eval()


def build_head(checkpoint: str = "shipped", storage_options: dict | None = None,
               sam_model: str = "tiny") -> SamCPHead:
    """A head in eval mode from a checkpoint path or fsspec URI ("shipped": the package's own for
    the shipped SAM `sam_model`)."""
    if checkpoint == "shipped":
        checkpoint = shipped_head_checkpoint(sam_model)
    raw = read_checkpoint(checkpoint, storage_options)
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        raise ValueError(f"{checkpoint} is not a SAM-CP head checkpoint (no 'config')")
    known = {f.name for f in dataclasses.fields(HeadConfig)}
    config_dict = raw["config"].get("head", raw["config"])  # training states nest it under "head"
    unknown = set(config_dict) - known
    if unknown:
        raise ValueError(f"{checkpoint}: unknown head config keys {sorted(unknown)}")
    trained_classes = raw.get("trained_classes", [])  # older checkpoints do not record them
    if not isinstance(trained_classes, list) or not all(isinstance(c, str) for c in trained_classes):
        raise ValueError(f"{checkpoint}: 'trained_classes' must be a list of class names")
    sam_model = raw.get("sam_model", "")  # older checkpoints do not record it
    if not isinstance(sam_model, str):
        raise ValueError(f"{checkpoint}: 'sam_model' must be a SAM architecture name")
    sam_weights = raw.get("sam_weights", "")  # older checkpoints do not record it
    if not isinstance(sam_weights, str):
        raise ValueError(f"{checkpoint}: 'sam_weights' must be a weights fingerprint")
    if checkpoint == shipped_head_checkpoint("tiny"):  # it predates heads that record their SAM weights
        sam_model, sam_weights = SHIPPED_HEAD_SAM
    head = SamCPHead(HeadConfig(**config_dict), tuple(trained_classes), sam_model, sam_weights)
    load_weights(head, checkpoint, "samcp-head", storage_options)
    return head.eval()
