"""Patch encoder: one feature vector per SAM patch, contextualised over the image's patches.

Per patch: RoIAlign of the backbone feature map inside the patch box, times the
patch's own mask on the same grid (MaskRoI), flattened through an MLP (plus, when
`clip_dim` > 0, an MLP of the patch's CLIP region embedding, which sees the region's
pixels at CLIP's input size rather than the backbone's coarse grid); plus a sine
encoding of its box; then omega post-norm self-attention layers over the patches of
each image (padding masked out).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

from samcp.masks import as_float
from samcp.model.layers import MLP, Attention, FeedForward, box_sine_encoding


def mask_roi_grid(masks: torch.Tensor, boxes: torch.Tensor, size: int, samples: int = 4) -> torch.Tensor:
    """Each patch mask (N, H, W) bool sampled on a size x size grid inside its own box
    (N, 4) xyxy pixels: (N, size, size) float in {0, 1}, a cell 1 where the mean of its
    samples x samples bilinear samples is at least 0.5. A fixed sample count keeps the cost independent of
    the box size (RoIAlign's adaptive default samples a 100 px box 15 x 15 times per cell)."""
    if len(masks) == 0:
        return masks.new_zeros((0, size, size), dtype=torch.float)
    rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None],
                      boxes], dim=1)
    sampled = roi_align(as_float(masks[:, None]), rois, output_size=size, aligned=True,
                        sampling_ratio=samples)
    return (sampled[:, 0] >= 0.5).float()


class PatchEncoder(nn.Module):
    def __init__(self, feature_dim: int, dim: int, roi_size: int, mlp_hidden_dim: int,
                 num_layers: int, num_heads: int, ffn_dim: int, use_mask_roi: bool = True,
                 clip_dim: int = 0):
        super().__init__()
        self.roi_size = roi_size
        self.use_mask_roi = use_mask_roi
        self.roi_mlp = MLP(feature_dim * roi_size * roi_size, mlp_hidden_dim, dim, 2)
        self.clip_mlp = MLP(clip_dim, mlp_hidden_dim, dim, 2) if clip_dim else None
        self.roi_norm = nn.LayerNorm(dim)
        self.pos_mlp = MLP(dim, dim, dim, 2)
        self.attention = nn.ModuleList(Attention(dim, num_heads) for _ in range(num_layers))
        self.ffn = nn.ModuleList(FeedForward(dim, ffn_dim) for _ in range(num_layers))

    def forward(self, features: torch.Tensor, feature_boxes: torch.Tensor, roi_masks: torch.Tensor,
                norm_boxes: torch.Tensor, padding: torch.Tensor, clip: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        features: (B, C, h, w) backbone map. feature_boxes: (B, N, 4) xyxy in feature-map cells.
        roi_masks: (B, N, S, S) patch masks inside their boxes. norm_boxes: (B, N, 4) cxcywh in [0, 1].
        padding: (B, N) bool, True where there is no patch. clip: (B, N, E) patch region embeddings,
        required when the encoder was built with `clip_dim` > 0.
        Returns patch features and their positional encodings, both (B, N, D).
        """
        b, n = padding.shape
        batch_index = torch.arange(b, device=features.device, dtype=features.dtype)
        rois = torch.cat([batch_index[:, None, None].expand(b, n, 1), feature_boxes], dim=-1)
        pooled = roi_align(features, rois.reshape(-1, 5), output_size=self.roi_size, aligned=True)
        pooled = pooled.reshape(b, n, -1, self.roi_size, self.roi_size)
        if self.use_mask_roi:
            pooled = pooled * roi_masks[:, :, None]
        x = self.roi_mlp(pooled.flatten(2))
        if self.clip_mlp is not None:
            if clip is None:
                raise ValueError("this head reads each patch's CLIP region embedding (clip_dim > 0), "
                                 "but its inputs have none")
            x = x + self.clip_mlp(clip)
        x = self.roi_norm(x)
        pos = self.pos_mlp(box_sine_encoding(norm_boxes, x.shape[-1]))
        for attention, ffn in zip(self.attention, self.ffn):
            x = ffn(attention(x, pos, x, pos, key_padding_mask=padding))
        return x.masked_fill(padding[..., None], 0), pos
