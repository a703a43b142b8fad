"""SAM's mask decoder for a grid of single-point prompts on one image, sharing what the prompts share.

segment-anything's `MaskDecoder` copies the image embedding once per prompt and runs
every step of its two-way transformer per prompt. With point prompts and no mask
input, the first layer's image side (embedding + the no-mask embedding, positional
encoding) is the same for every prompt, so its image-token projections (keys and
values of token-to-image attention, queries of image-to-token attention) are computed
once per image instead of once per prompt, and the softmax over each prompt's few
tokens avoids a slow CPU path (`softmax_over_tokens`). The mask upscaling, a quarter
of the decoder's work, runs only for prompts with a mask whose predicted IoU passes
the filter. Same modules and weights as the `MaskDecoder` given; the same result up to
float rounding (tests/samcp/test_point_decoder.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def softmax_over_tokens(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over a short last dimension (a prompt's T tokens). On a CPU it runs through a
    transposed view: torch's softmax over a last dimension of 7 is about 7x slower there."""
    if logits.device.type != "cpu":
        return logits.softmax(-1)
    return logits.transpose(-1, -2).softmax(-2).transpose(-1, -2)


def tokens_to_shared_image(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                           ) -> torch.Tensor:
    """`attn(q, k, v)` for P prompts' tokens q (P, T, C) against one image's k, v (1, HW, C):
    the image is projected once, and all P * T tokens attend to it in one call. -> (P, T, C)."""
    p, t, _ = q.shape
    heads = attn.num_heads
    queries = _heads(attn.q_proj(q).reshape(1, p * t, -1), heads)  # (1, heads, P*T, d)
    keys, values = _heads(attn.k_proj(k), heads), _heads(attn.v_proj(v), heads)  # (1, heads, HW, d)
    out = F.scaled_dot_product_attention(queries, keys, values)
    return attn.out_proj(_merge_heads(out).reshape(p, t, -1))


def shared_image_to_tokens(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                           ) -> torch.Tensor:
    """`attn(q, k, v)` for one image's tokens q (1, HW, C) against each of P prompts' tokens
    k, v (P, T, C): the image is projected once, and scored against all P * T tokens in one
    product. -> (P, HW, C)."""
    p, t, _ = k.shape
    heads = attn.num_heads
    queries = _heads(attn.q_proj(q), heads)[0]  # (heads, HW, d)
    keys = _heads(attn.k_proj(k).reshape(1, p * t, -1), heads)[0]  # (heads, P*T, d)
    logits = (queries @ keys.transpose(1, 2)).unflatten(2, (p, t))  # (heads, HW, P, T)
    weights = softmax_over_tokens(logits / queries.shape[-1] ** 0.5)
    out = torch.einsum("hnpt,phtd->pnhd", weights, _heads(attn.v_proj(v), heads))
    return attn.out_proj(out.flatten(2))


def image_to_tokens(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`attn(q, k, v)` for each prompt's image tokens q (P, HW, C) against its tokens k, v (P, T, C),
    with `softmax_over_tokens`. -> (P, HW, C)."""
    heads = attn.num_heads
    queries, keys = _heads(attn.q_proj(q), heads), _heads(attn.k_proj(k), heads)
    weights = softmax_over_tokens(queries @ keys.transpose(-1, -2) / keys.shape[-1] ** 0.5)
    return attn.out_proj(_merge_heads(weights @ _heads(attn.v_proj(v), heads)))


def two_way_block(block: TwoWayAttentionBlock, queries: torch.Tensor, keys: torch.Tensor,
                  query_pe: torch.Tensor, key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`block(queries, keys, query_pe, key_pe)` for a block after the first (positional encoding in
    its self-attention), with `image_to_tokens`. queries (P, T, C), keys (P, HW, C)."""
    q = queries + query_pe
    queries = block.norm1(queries + block.self_attn(q=q, k=q, v=queries))
    q, k = queries + query_pe, keys + key_pe
    queries = block.norm2(queries + block.cross_attn_token_to_image(q=q, k=k, v=keys))
    queries = block.norm3(queries + block.mlp(queries))
    q = queries + query_pe
    keys = block.norm4(keys + image_to_tokens(block.cross_attn_image_to_token, k, q, queries))
    return queries, keys


class PointGridDecoder:
    """Decodes many point prompts on one image with a SAM `MaskDecoder` (multimask output)."""

    def __init__(self, decoder: MaskDecoder):
        self.decoder = decoder

    def __call__(self, image_embedding: torch.Tensor, image_pe: torch.Tensor, no_mask: torch.Tensor,
                 sparse: torch.Tensor, iou_thresh: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe, no_mask (the dense prompt embedding): (1, C, h, w).
        sparse: (P, T, C) prompt tokens. Returns the masks whose predicted IoU passes
        `iou_thresh` (all of them when it is <= 0): low-res logits (K, 4h, 4w), predicted
        IoU (K,) and each mask's index in the (P, 3) multimask output, flattened (K,)."""
        d = self.decoder
        tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight])[None].expand(len(sparse), -1, -1)
        tokens = torch.cat([tokens, sparse], dim=1)  # (P, T, C)
        _, c, h, w = image_embedding.shape
        src = (image_embedding + no_mask).flatten(2).transpose(1, 2)  # (1, HW, C)
        pos = image_pe.flatten(2).transpose(1, 2)
        queries, keys = self._transformer(src, pos, tokens)
        iou = d.iou_prediction_head(queries[:, 0])[:, 1:]  # (P, 3): multimask output
        passed = iou > iou_thresh if iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
        prompts = passed.any(1).nonzero()[:, 0]
        upscaled = d.output_upscaling(keys[prompts].transpose(1, 2).reshape(-1, c, h, w))  # (n, c', 4h, 4w)
        hyper = torch.stack([mlp(queries[prompts, 1 + i])  # (n, 3, c'): the multimask tokens
                             for i, mlp in enumerate(d.output_hypernetworks_mlps) if i > 0], dim=1)
        masks = (hyper @ upscaled.flatten(2)).unflatten(2, upscaled.shape[2:])  # (n, 3, 4h, 4w)
        kept = passed[prompts]
        index = (prompts[:, None] * 3 + torch.arange(3, device=iou.device))[kept]
        return masks[kept], iou[prompts][kept], index

    def _transformer(self, src: torch.Tensor, pos: torch.Tensor, tokens: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """`TwoWayTransformer` with its first layer's image side computed once.
        src, pos: (1, HW, C); tokens: (P, T, C). -> queries (P, T, C), keys (P, HW, C)."""
        transformer = self.decoder.transformer
        first = transformer.layers[0]  # segment-anything skips the positional encoding in its self-attention
        queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
        queries = first.norm2(queries + tokens_to_shared_image(first.cross_attn_token_to_image,
                                                               queries + tokens, src + pos, src))
        queries = first.norm3(queries + first.mlp(queries))
        keys = first.norm4(src + shared_image_to_tokens(first.cross_attn_image_to_token,
                                                        src + pos, queries + tokens, queries))
        for block in transformer.layers[1:]:
            queries, keys = two_way_block(block, queries, keys, tokens, pos)
        out = transformer.final_attn_token_to_image(q=queries + tokens, k=keys + pos, v=keys)
        return transformer.norm_final_attn(queries + out), keys
