"""The SAM-CP head: patch encoder + unified affinity decoder + text classifier."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samcp.model.affinity_decoder import AffinityDecoder
from samcp.model.backbone import BACKBONES, ResNetBackbone
from samcp.model.classifier import TextClassifier
from samcp.model.inputs import HeadInputs
from samcp.model.patch_encoder import PatchEncoder


@dataclass(frozen=True)
class HeadConfig:
    """Sizes and switches of the head; every module can be turned off for ablation."""

    feature_dim: int = 128  # channels of the backbone map (SAM tiny's embedding, or the ResNet's projection)
    text_dim: int = 64
    dim: int = 128
    roi_size: int = 7
    mlp_hidden_dim: int = 256
    num_heads: int = 4
    ffn_dim: int = 512
    encoder_layers: int = 2  # omega
    decoder_layers: int = 3
    use_mask_roi: bool = True
    use_dca: bool = True
    use_affinity_refine: bool = True
    clip_dim: int = 0  # > 0: each patch also carries its CLIP region embedding of this width
    # "sam": SAM's embedding is the backbone map; "resnet50": a ResNet-50 trained with the head
    # (`samcp.model.backbone`) reads the image, at `backbone_lr_mult` x the head's learning rate.
    backbone: str = "sam"
    backbone_lr_mult: float = 0.1

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")

    @property
    def reads_sam_embedding(self) -> bool:
        return self.backbone == "sam"


class SamCPHead(nn.Module):
    """trained_classes: names of the vocabulary classes the head was trained on; sam_model: the SAM
    architecture whose embedding it was trained on, sam_weights: the fingerprint of those SAM
    weights (`samcp.checkpoint.weights_fingerprint`; empty: not recorded). Checkpoints keep all
    three (`samcp.model.factory.save_head`)."""

    def __init__(self, config: HeadConfig, trained_classes: tuple[str, ...] = (), sam_model: str = "",
                 sam_weights: str = ""):
        super().__init__()
        self.config = config
        self.trained_classes = tuple(trained_classes)
        self.sam_model = sam_model
        self.sam_weights = sam_weights
        self.backbone = None if config.reads_sam_embedding else ResNetBackbone(config.feature_dim)
        self.encoder = PatchEncoder(config.feature_dim, config.dim, config.roi_size,
                                    config.mlp_hidden_dim, config.encoder_layers, config.num_heads,
                                    config.ffn_dim, use_mask_roi=config.use_mask_roi,
                                    clip_dim=config.clip_dim)
        self.decoder = AffinityDecoder(config.dim, config.text_dim, config.decoder_layers,
                                       config.num_heads, config.ffn_dim, use_dca=config.use_dca,
                                       use_affinity_refine=config.use_affinity_refine)
        self.classifier = TextClassifier(config.dim, config.text_dim)

    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups: the ResNet backbone's (if any) at its `lr_mult`."""
        if self.backbone is None:
            return [{"params": list(self.parameters()), "lr_mult": 1.0}]
        backbone = {id(p) for p in self.backbone.parameters()}
        return [{"params": [p for p in self.parameters() if id(p) not in backbone], "lr_mult": 1.0},
                {"params": list(self.backbone.parameters()), "lr_mult": self.config.backbone_lr_mult}]

    def forward(self, inputs: HeadInputs, stuff_text: torch.Tensor, thing_text: torch.Tensor,
                last_only: bool = False) -> list[dict[str, torch.Tensor]]:
        """stuff_text (S, T), thing_text (K, T): text embeddings of the vocabulary's classes;
        `inputs.features` is SAM's embedding, or the images for a ResNet backbone.

        Returns one dict per decoder layer (`last_only`: the last layer's alone, what inference
        reads): "affinity" (B, S + N, N) logits, where rows 0..S-1 are the semantic queries
        (stuff class s) and rows S.. the instance queries (one per patch); "stuff_logits" (B, S)
        each semantic query's own-class logit; "thing_logits" (B, N, K) the instance queries'
        thing-class logits.
        """
        features = inputs.features if self.backbone is None else self.backbone(inputs.features)
        patches, pos = self.encoder(features, inputs.feature_boxes, inputs.roi_masks,
                                    inputs.boxes_cxcywh, inputs.padding, inputs.clip)
        decoded = self.decoder(patches, pos, inputs.boxes_xyxy, inputs.padding, stuff_text)
        layers = list(zip(decoded["queries"], decoded["affinity"]))
        s = stuff_text.shape[0]
        outputs = []
        for queries, affinity in layers[-1:] if last_only else layers:
            stuff_logits = self.classifier(queries[:, :s], stuff_text).diagonal(dim1=1, dim2=2)
            outputs.append({"affinity": affinity, "stuff_logits": stuff_logits,
                            "thing_logits": self.classifier(queries[:, s:], thing_text)})
        return outputs
