"""Small building blocks shared by the patch encoder and the affinity decoder."""

from __future__ import annotations

import math

import torch
from torch import nn


def box_sine_encoding(boxes: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """DAB/DINO-style sine encoding of normalized cxcywh boxes (..., 4) -> (..., dim); dim % 8 == 0."""
    if dim % 8:
        raise ValueError(f"box encoding dim must be a multiple of 8, got {dim}")
    per_coord = dim // 4
    freqs = temperature ** (2 * (torch.arange(per_coord // 2, device=boxes.device) / per_coord))
    angles = boxes[..., None] * 2 * math.pi / freqs  # (..., 4, per_coord / 2)
    encoded = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., 4, per_coord)
    return encoded.flatten(-2)


class MLP(nn.Module):
    """Linear layers with ReLU between them: in_dim -> hidden_dim x (num_layers - 1) -> out_dim."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class FeedForward(nn.Module):
    """Post-norm FFN block: LayerNorm(x + W2 relu(W1 x))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.mlp = MLP(dim, hidden_dim, dim, 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.mlp(x))


class Attention(nn.Module):
    """Post-norm multi-head attention block with positions added to queries and keys.

    x: (B, Q, D), memory: (B, N, D). `attn_mask` (B * heads, Q, N) or (Q, N) bool,
    True = may NOT attend; `key_padding_mask` (B, N) bool, True = padding.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, x_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.attn(x + x_pos, memory + memory_pos, memory, attn_mask=attn_mask,
                           key_padding_mask=key_padding_mask, need_weights=False)
        return self.norm(x + out)
