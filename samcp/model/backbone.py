"""A second backbone for the head: torchvision's ResNet-50 (the reference's R50 rows).

The default head reads SAM's own image embedding (no second network). A head with
`HeadConfig.backbone = "resnet50"` reads a ResNet-50 trunk's C4 map instead (stride 16,
1024 channels, projected to `feature_dim` by a 1x1 convolution), trained with the head at
`backbone_lr_mult` x its learning rate; its batch norms are frozen (torchvision's
`FrozenBatchNorm2d`). Its input is the image in SAM's input frame (longest side resized to
SAM's input size, padded at the bottom and right), so patch boxes map onto its grid as
onto SAM's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn
from torchvision.models import resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from samcp.checkpoint import load_state_dict

BACKBONES = ("sam", "resnet50")
STRIDE = 16  # C4
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class ResNetBackbone(nn.Module):
    """ResNet-50 up to C4 with frozen batch norms, then a 1x1 projection to `out_dim` channels."""

    def __init__(self, out_dim: int):
        super().__init__()
        trunk = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        self.trunk = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool,
                                   trunk.layer1, trunk.layer2, trunk.layer3)
        self.project = nn.Conv2d(1024, out_dim, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: (B, 3, S, S) in 0..255 -> (B, out_dim, S / 16, S / 16)."""
        return self.project(self.trunk((pixels.float() - self.mean) / self.std))

    def load_torchvision(self, checkpoint: str, storage_options: dict | None = None) -> None:
        """Load a torchvision ResNet-50 state dict (path or URI; `fc` and `layer4` are not used)."""
        names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6"}
        state = load_state_dict(checkpoint, storage_options)
        mapped = {}
        for key, value in state.items():
            top, _, rest = key.partition(".")
            if top in names and "num_batches_tracked" not in rest:
                mapped[f"{names[top]}.{rest}"] = value
        missing = sorted(set(self.trunk.state_dict()) - set(mapped))
        if missing:
            raise ValueError(f"{checkpoint} is not a torchvision ResNet-50 state dict: it lacks "
                             f"{len(missing)} trunk tensors, e.g. {missing[0]}")
        self.trunk.load_state_dict(mapped)


def backbone_pixels(image: np.ndarray, input_size: int) -> torch.Tensor:
    """(H, W, 3) uint8 image -> (3, S, S) uint8 in SAM's input frame (S = `input_size`)."""
    resized = ResizeLongestSide(input_size).apply_image(np.ascontiguousarray(image))
    pixels = torch.from_numpy(resized).permute(2, 0, 1)
    return F.pad(pixels, (0, input_size - pixels.shape[2], 0, input_size - pixels.shape[1]))
