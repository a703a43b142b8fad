"""The package's own weights: which files it ships, and where a "shipped" reference points.

    shipped_file("sam", "tiny")              -> .../samcp/assets/sam_tiny.pt
    checkpoint_file("clip", "samcp-clip-tiny", "shipped") -> .../samcp/assets/open_clip_tiny.pt
    checkpoint_file("sam", "vit_h", "s3://b/sam_vit_h.pth") -> "s3://b/sam_vit_h.pth" (as given)

Every part that takes a checkpoint reference ("shipped", a path or URI, or None for random
weights) resolves it here, so "shipped" means one thing everywhere.
"""

from __future__ import annotations

from importlib import resources

# part -> {model name -> file name under samcp/assets}; a head is named by the SAM whose
# embedding it reads (each shipped SAM has its head: `--sam-model tiny8` is the quality preset)
SHIPPED = {
    "sam": {"tiny": "sam_tiny.pt", "tiny8": "sam_tiny8.pt"},
    "clip": {"samcp-clip-tiny": "open_clip_tiny.pt"},
    "head": {"tiny": "samcp_head_tiny.pt", "tiny8": "samcp_head_tiny8.pt"},
}
HINTS = {"sam": "give its weights with --sam-checkpoint, or 'none' for random weights",
         "clip": "give its weights with --clip-checkpoint, or 'none' for a random initialisation",
         "head": "give a head trained on that SAM with --head-checkpoint (samcp train), or 'none' "
                 "(random weights) for speed tests"}
# The SAM weights the shipped `tiny` head was trained on (`samcp.checkpoint.weights_fingerprint`
# of sam_tiny.pt): that head file predates heads that record it themselves.
SHIPPED_HEAD_SAM = ("tiny", "6159bce57d1092ec3d041d48e15e979d3f5d028652f6219c446a4f984026438d")


def shipped_file(part: str, name: str) -> str:
    """Path of the file the package ships for model `name` of `part` ("sam", "clip", or "head"
    with the name of the SAM it reads)."""
    if name not in SHIPPED[part]:
        what = f"head for SAM {name!r}" if part == "head" else f"weights for {part} {name!r}"
        raise ValueError(f"no shipped {what} (shipped: {sorted(SHIPPED[part])}): "
                         + HINTS[part])
    return str(resources.files("samcp") / "assets" / SHIPPED[part][name])


def checkpoint_file(part: str, name: str, checkpoint: str | None) -> str | None:
    """The file a checkpoint reference names: the package's own for "shipped", else as given."""
    return shipped_file(part, name) if checkpoint == "shipped" else checkpoint
