"""From the head's last-layer outputs to non-overlapping panoptic segments.

Each query's mask is the union of the patches it claims (min-max normalized
affinity >= 0.5; its best patch always). Candidates are the semantic queries
(score = sigmoid of their own stuff logit) and the instance queries (score =
best thing probability); those above `score_thresh` whose best affinity
passes `affinity_thresh` compete per pixel by score (Mask2Former-style
fusion), and a candidate that keeps less than `overlap_thresh` of its mask is
dropped. Stuff is one segment per class: one semantic query per stuff class.
With a region classifier (`samcp.open_vocab`) and `kappa` > 0, every class
probability is first ensembled with the frozen CLIP's for the query's mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from samcp.model.affinity_decoder import normalized_affinity
from samcp.open_vocab import ensemble


@dataclass(frozen=True)
class PostprocessConfig:
    # Thresholds tuned for PQ with the shipped head on train-split images 5000..5099 (docs/models.md).
    score_thresh: float = 0.1
    affinity_thresh: float = 0.1
    overlap_thresh: float = 0.5
    max_segments: int = 100
    merge_instances: bool = True  # False: each instance query keeps only its own patch (ablation)
    # Weight of the frozen CLIP classifier in the class ensemble (open vocabulary); None: 0.4 when
    # the CLIP model has trained weights (a checkpoint), 0 for a randomly initialised one.
    kappa: float | None = None


def default_kappa(clip_checkpoint: str | None) -> float:
    """0.4 (the paper's best) when the CLIP model has trained weights, 0 for a random one."""
    return 0.4 if clip_checkpoint else 0.0


@dataclass
class PanopticResult:
    """id_map: (H, W) int32 segment ids (0 = void). segments: dicts with id, category_index
    (into the vocabulary's classes), isthing, score, area."""

    id_map: torch.Tensor
    segments: list[dict]


def claimed_patches(affinity: torch.Tensor) -> torch.Tensor:
    """Affinity logits (Q, N) -> (Q, N) bool: the patches each query claims (min-max normalized
    affinity >= 0.5; its best patch always)."""
    padding = torch.zeros((1, affinity.shape[1]), dtype=torch.bool, device=affinity.device)
    return normalized_affinity(affinity[None], padding)[0] >= 0.5


def query_masks(claims: torch.Tensor, patch_masks: torch.Tensor) -> torch.Tensor:
    """Union of claimed patches: claims (Q, N) bool, patch masks (N, H, W) -> (Q, H, W) bool."""
    covered = claims.float() @ patch_masks.flatten(1).float()
    return (covered > 0).reshape(len(claims), *patch_masks.shape[1:])


def clip_votes(masks: torch.Tensor, claims: torch.Tensor, can_pass: torch.Tensor,
               region_probs: Callable[[torch.Tensor], torch.Tensor],
               patch_probs: torch.Tensor | None = None) -> torch.Tensor | None:
    """CLIP's class probabilities (Q, C) for the query masks (Q, H, W), asked once per distinct
    claimed patch set (Q, N) and only for the queries that `can_pass` (Q,) the thresholds; a set
    of one patch takes that patch's row of `patch_probs` (N, C) when given. The other rows are
    uniform. None when no query can pass."""
    needed = can_pass.nonzero()[:, 0]
    if len(needed) == 0:
        return None
    distinct, inverse = torch.unique(claims[needed], dim=0, return_inverse=True)
    representative = needed.new_zeros(len(distinct)).scatter_(0, inverse, needed)  # one query per set
    single = (distinct.sum(-1) == 1) & (patch_probs is not None)
    asked = region_probs(masks[representative[~single]])  # CLIP takes an empty batch too
    computed = asked.new_empty((len(distinct), asked.shape[-1]))
    computed[~single] = asked
    if single.any():
        computed[single] = patch_probs[distinct[single].float().argmax(-1)]
    votes = computed.new_full((len(masks), computed.shape[-1]), 1 / computed.shape[-1])
    votes[needed] = computed[inverse]
    return votes


def panoptic(affinity: torch.Tensor, stuff_logits: torch.Tensor, thing_logits: torch.Tensor,
             patch_masks: torch.Tensor, stuff_classes: list[int], thing_classes: list[int],
             cfg: PostprocessConfig,
             region_probs: Callable[[torch.Tensor], torch.Tensor] | None = None,
             patch_probs: torch.Tensor | None = None) -> PanopticResult:
    """One image. affinity (S + N, N) logits, stuff_logits (S,), thing_logits (N, K), patch_masks
    (N, H, W) bool; stuff_classes / thing_classes map rows and columns to vocabulary indices.
    region_probs: query masks (S + N, H, W) -> (S + N, C) CLIP probabilities over the vocabulary,
    ensembled with the head's by `cfg.kappa`; patch_probs: (N, C) the same for the patch masks,
    when already known (a query claiming one patch then needs no new CLIP pass)."""
    s = len(stuff_logits)
    claims = claimed_patches(affinity)
    if not cfg.merge_instances:
        claims[s:] = torch.eye(len(patch_masks), dtype=torch.bool, device=claims.device)
    masks = query_masks(claims, patch_masks)
    stuff_prob, thing_probs = stuff_logits.sigmoid(), thing_logits.sigmoid()
    best_affinity = affinity.sigmoid().amax(-1)
    nonempty = masks.flatten(1).any(-1)
    if region_probs is not None and cfg.kappa:
        # The ensemble never lifts a probability above p_head^(1 - kappa): CLIP is asked only
        # about the queries that can still pass the thresholds.
        head_best = torch.cat([stuff_prob, thing_probs.amax(-1) if thing_probs.shape[-1] else
                               thing_probs.new_zeros(len(thing_probs))])
        can_pass = ((head_best.clamp_min(1e-8) ** (1 - cfg.kappa) > cfg.score_thresh)
                    & (best_affinity > cfg.affinity_thresh) & nonempty)
        clip = clip_votes(masks, claims, can_pass, region_probs, patch_probs)
        if clip is not None:  # None: no query can pass the thresholds either way
            stuff_prob = ensemble(stuff_prob, clip[torch.arange(s), stuff_classes], cfg.kappa)
            thing_probs = ensemble(thing_probs, clip[s:][:, thing_classes], cfg.kappa)
    if thing_logits.shape[-1]:
        thing_prob, thing_label = thing_probs.max(-1)
    else:  # a vocabulary of stuff only
        thing_prob = thing_logits.new_zeros(len(thing_logits))
        thing_label = torch.zeros(len(thing_logits), dtype=torch.long)
    scores = torch.cat([stuff_prob, thing_prob])
    classes = torch.tensor(stuff_classes + [thing_classes[i] for i in thing_label.tolist()], dtype=torch.long)
    isthing = torch.arange(len(scores)) >= s
    keep = (scores > cfg.score_thresh) & (best_affinity > cfg.affinity_thresh) & nonempty
    candidates = keep.nonzero()[:, 0]
    candidates = candidates[scores[candidates].argsort(descending=True)][:cfg.max_segments]

    h, w = patch_masks.shape[1:]
    id_map = torch.zeros((h, w), dtype=torch.int32)
    segments: list[dict] = []
    if len(candidates) == 0:
        return PanopticResult(id_map, segments)
    weighted = scores[candidates, None, None] * masks[candidates].float()
    best, winner = weighted.max(0)  # max, not argmax: the same first index, ~10x faster on CPU
    claimed = best > 0
    for rank, q in enumerate(candidates.tolist()):
        region = (winner == rank) & claimed & masks[q]
        area = int(region.sum())
        if area == 0 or area < cfg.overlap_thresh * int(masks[q].sum()):
            continue
        segment_id = len(segments) + 1
        id_map[region] = segment_id
        segments.append({"id": segment_id, "category_index": int(classes[q]), "isthing": bool(isthing[q]),
                         "score": float(scores[q]), "area": area})
    return PanopticResult(id_map, segments)
