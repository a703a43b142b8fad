"""The ResNet-50 backbone: C4 at stride 16, frozen batch norms, torchvision weights from a file, and a
head that reads it through the labeler."""

import numpy as np
import pytest
import torch
from torchvision.models import resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from samcp.model.backbone import ResNetBackbone, backbone_pixels
from samcp.model.head import HeadConfig, SamCPHead


def test_c4_map_at_stride_16_with_frozen_batch_norms():
    backbone = ResNetBackbone(out_dim=32).eval()
    pixels = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    assert backbone(pixels).shape == (2, 32, 8, 8)
    norms = [m for m in backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) == 1 + 3 * 3 + 4 * 3 + 6 * 3 + 3  # stem, layer1-3 blocks, the downsample norms
    assert not any(list(norm.parameters()) for norm in norms)  # nothing to train
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())


def test_torchvision_weights_load_from_a_file_and_other_files_are_refused(tmp_path):
    source = resnet50(weights=None)
    torch.save(source.state_dict(), tmp_path / "r50.pth")
    backbone = ResNetBackbone(out_dim=16)
    backbone.load_torchvision(str(tmp_path / "r50.pth"))
    assert torch.equal(backbone.trunk[6][0].conv1.weight, source.layer3[0].conv1.weight)
    assert torch.equal(backbone.trunk[1].running_var, source.bn1.running_var)
    torch.save({"conv1.weight": source.conv1.weight}, tmp_path / "part.pth")
    with pytest.raises(ValueError, match="not a torchvision ResNet-50"):
        backbone.load_torchvision(str(tmp_path / "part.pth"))


def test_pixels_are_in_sams_input_frame():
    image = np.full((60, 120, 3), 200, np.uint8)
    pixels = backbone_pixels(image, 256)
    assert pixels.shape == (3, 256, 256) and pixels.dtype == torch.uint8
    assert (pixels[:, :128, :] == 200).all() and (pixels[:, 128:, :] == 0).all()  # padded below


def test_the_backbone_trains_at_its_lr_multiplier():
    head = SamCPHead(HeadConfig(backbone="resnet50", feature_dim=64, backbone_lr_mult=0.1))
    groups = head.parameter_groups()
    assert [g["lr_mult"] for g in groups] == [1.0, 0.1]
    assert sum(len(g["params"]) for g in groups) == len(list(head.parameters()))
    with pytest.raises(ValueError, match="backbone must be one of"):
        HeadConfig(backbone="vgg")
