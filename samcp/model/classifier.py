"""Vision-language classifier: query features scored against class text embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TextClassifier(nn.Module):
    """logit[m, c] = <normalize(W q_m), e_c> / exp(s) + b_c, with e_c = P(t_c / 0.1) and
    b_c = <t_c, w> + b0 from the L2-normalized text embedding t_c of class c, so any
    vocabulary can be scored without retraining."""

    def __init__(self, dim: int, text_dim: int):
        super().__init__()
        self.query_proj = nn.Linear(dim, dim)
        self.text_proj = nn.Linear(text_dim, dim)
        self.text_bias = nn.Linear(text_dim, 1)
        nn.init.zeros_(self.text_bias.weight)
        nn.init.constant_(self.text_bias.bias, -math.log(99))  # prior 0.01
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def forward(self, queries: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """queries (B, Q, D), text (C, T) -> logits (B, Q, C)."""
        q = F.normalize(self.query_proj(queries), dim=-1)
        t = F.normalize(text, dim=-1)
        logits = q @ self.text_proj(t / 0.1).T / self.logit_scale.exp() + self.text_bias(t)[:, 0]
        return logits.clamp(-5e4, 5e4)
