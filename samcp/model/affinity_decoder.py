"""Unified affinity decoder: semantic (Type-I) and instance (Type-II) queries over patches.

Queries are [S semantic queries, one per stuff class, made from its text
embedding; N instance queries, which are the patches themselves]. Each layer:
self-attention over the queries, an affinity head that scores every
(query, patch) pair, cross-attention from queries to patches, and an FFN.
Affinity logits accumulate over layers (AR); dynamic cross-attention (DCA)
lets a query attend only to the patches its min-max normalized affinity
still claims (>= 0.5); each query's position follows the union box of the
patches it claims.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import box_convert

from samcp.model.layers import MLP, Attention, FeedForward, box_sine_encoding


def normalized_affinity(logits: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """sigmoid(logits) (B, Q, N) min-max normalized over each query's valid patches; the best
    patch of every query is exactly 1 and padded patches are 0."""
    prob = logits.sigmoid()
    pad = padding[:, None, :]
    low = prob.masked_fill(pad, math.inf).amin(-1, keepdim=True)
    high = prob.masked_fill(pad, -math.inf).amax(-1, keepdim=True)
    scaled = (prob - low) / (high - low).clamp(min=1e-6)
    scaled = torch.where(prob >= high, torch.ones_like(scaled), scaled)
    return scaled.masked_fill(pad, 0)


def claimed_union_boxes(claims: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Union box (B, Q, 4) xyxy of the patches each query claims. claims: (B, Q, N) bool,
    boxes: (B, N, 4) xyxy; a query that claims nothing gets the whole frame [0, 0, 1, 1]."""
    big = torch.finfo(boxes.dtype).max
    expanded = boxes[:, None].expand(-1, claims.shape[1], -1, -1)
    keep = claims[..., None]
    lows = expanded[..., :2].masked_fill(~keep, big).amin(2)
    highs = expanded[..., 2:].masked_fill(~keep, -big).amax(2)
    union = torch.cat([lows, highs], dim=-1)
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device, dtype=boxes.dtype)
    return torch.where(claims.any(-1, keepdim=True), union, whole)


class AffinityHead(nn.Module):
    """Affinity logits (B, Q, N) between queries (B, Q, D) and patches (B, N, D): per-head
    scaled dot products mixed by 1x1 convolutions over the heads, plus a per-patch bias."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.query_mlp = MLP(dim, ffn_dim, dim, 2)
        self.patch_mlp = MLP(dim, ffn_dim, dim, 2)
        self.mix = nn.Sequential(nn.ReLU(), nn.Conv2d(num_heads, num_heads, 1), nn.ReLU(),
                                 nn.Conv2d(num_heads, num_heads, 1), nn.ReLU(),
                                 nn.Conv2d(num_heads, 1, 1))
        self.logit_scale = nn.Parameter(torch.zeros(()))
        self.patch_bias = nn.Linear(dim, 1)
        nn.init.zeros_(self.patch_bias.weight)
        nn.init.constant_(self.patch_bias.bias, -math.log(99))  # prior 0.01

    def forward(self, queries: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        q = queries + self.query_mlp(queries)
        p = patches + self.patch_mlp(patches)
        b, nq, d = q.shape
        h = self.num_heads
        qh = q.reshape(b, nq, h, d // h).transpose(1, 2)
        ph = p.reshape(b, -1, h, d // h).transpose(1, 2)
        similarity = qh @ ph.transpose(-1, -2) / math.sqrt(d // h)  # (B, h, Q, N)
        return self.mix(similarity)[:, 0] / self.logit_scale.exp() + self.patch_bias(p)[..., 0][:, None]


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.self_attention = Attention(dim, num_heads)
        self.affinity = AffinityHead(dim, num_heads, ffn_dim)
        self.cross_attention = Attention(dim, num_heads)
        self.ffn = FeedForward(dim, ffn_dim)


class AffinityDecoder(nn.Module):
    def __init__(self, dim: int, text_dim: int, num_layers: int, num_heads: int, ffn_dim: int,
                 use_dca: bool = True, use_affinity_refine: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.use_dca = use_dca
        self.use_affinity_refine = use_affinity_refine
        self.semantic_proj = nn.Sequential(nn.Linear(text_dim, dim), nn.LayerNorm(dim))
        self.semantic_box = nn.Linear(text_dim, 4)
        self.ref_point_head = MLP(dim, dim, dim, 2)
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, ffn_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, patches: torch.Tensor, patch_pos: torch.Tensor, patch_boxes: torch.Tensor,
                padding: torch.Tensor, stuff_text: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """
        patches, patch_pos: (B, N, D) from the patch encoder. patch_boxes: (B, N, 4) xyxy in [0, 1].
        padding: (B, N) bool. stuff_text: (S, T) text embeddings of the stuff classes.
        Returns per layer "queries" (B, S + N, D), normalized, and "affinity" logits (B, S + N, N).
        """
        b, n, _ = patches.shape
        s = stuff_text.shape[0]
        semantic = self.semantic_proj(stuff_text)[None].expand(b, -1, -1)
        queries = torch.cat([semantic, patches], dim=1)
        semantic_boxes = self.semantic_box(stuff_text).sigmoid()[None].expand(b, -1, -1)
        query_boxes = torch.cat([box_convert(semantic_boxes, "cxcywh", "xyxy"), patch_boxes], dim=1)
        query_padding = torch.cat([padding.new_zeros(b, s), padding], dim=1)
        self_mask = _query_mask(s, n, patches.device)
        cross_mask = None
        total = None
        outputs: dict[str, list[torch.Tensor]] = {"queries": [], "affinity": []}
        for layer in self.layers:
            query_pos = self.ref_point_head(box_sine_encoding(box_convert(query_boxes, "xyxy", "cxcywh"),
                                                              queries.shape[-1]))
            queries = layer.self_attention(queries, query_pos, queries, query_pos, attn_mask=self_mask,
                                           key_padding_mask=query_padding)
            step = layer.affinity(queries + query_pos, patches + patch_pos)
            total = step if total is None or not self.use_affinity_refine else total + step
            queries = layer.cross_attention(queries, query_pos, patches, patch_pos, attn_mask=cross_mask,
                                            key_padding_mask=padding)
            queries = layer.ffn(queries)
            outputs["queries"].append(self.norm(queries))
            outputs["affinity"].append(total)
            claims = normalized_affinity(total.detach(), padding) >= 0.5
            if self.use_dca:
                cross_mask = (~claims).repeat_interleave(self.num_heads, dim=0)
            query_boxes = claimed_union_boxes(claims, patch_boxes)
        return outputs


def _query_mask(num_semantic: int, num_patches: int, device: torch.device) -> torch.Tensor:
    """(Q, Q) True = blocked: instance queries ignore semantic queries; semantic queries see
    only themselves and the instance queries."""
    q = num_semantic + num_patches
    mask = torch.zeros((q, q), dtype=torch.bool, device=device)
    mask[:, :num_semantic] = True
    mask[torch.arange(num_semantic), torch.arange(num_semantic)] = False
    return mask

