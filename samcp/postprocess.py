"""From the head's last-layer outputs to non-overlapping panoptic segments.

Each query's mask is the union of the patches it claims (min-max normalized
affinity >= 0.5; its best patch always). Candidates are the semantic queries
(score = sigmoid of their own stuff logit) and the instance queries (score =
best thing probability); those above `score_thresh` whose best affinity
passes `affinity_thresh` compete per pixel by score (Mask2Former-style
fusion), and a candidate that keeps less than `overlap_thresh` of its mask is
dropped. Stuff is one segment per class: one semantic query per stuff class.
With a region classifier (`samcp.open_vocab`), every class probability is first
ensembled with the frozen CLIP's for the query's mask, with one weight for the
classes the head was trained on (`kappa_seen`) and one for the names it never
saw (`kappa`), as FC-CLIP weighs in- and out-of-vocabulary classes apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from samcp.masks import nonempty
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
    # Weights of the frozen CLIP classifier in the class ensemble: `kappa` for the class names the
    # head was never trained on (open vocabulary; the paper's 0.4), `kappa_seen` for those its
    # checkpoint records as trained (tuned on training-split images, docs/models.md). A head that
    # records no vocabulary has no seen classes. None: see `with_default_kappas`.
    kappa: float | None = None
    kappa_seen: float | None = None

    def __post_init__(self):
        if not 0 <= self.score_thresh < 1:
            raise ValueError(f"score_thresh must be in [0, 1), got {self.score_thresh}")
        for name in ("kappa", "kappa_seen"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")

    def with_default_kappas(self, clip_trained: bool) -> PostprocessConfig:
        """The kappas left None set: 0.4 and 0.1 (unseen, seen classes) when the CLIP model has
        trained weights, 0 (the head alone) for a randomly initialised one."""
        return replace(self, kappa=(0.4 if clip_trained else 0.0) if self.kappa is None else self.kappa,
                       kappa_seen=(0.1 if clip_trained else 0.0) if self.kappa_seen is None
                       else self.kappa_seen)

    def uses_clip(self) -> bool:
        return bool(self.kappa or self.kappa_seen)

    def class_kappas(self, seen: torch.Tensor) -> torch.Tensor:
        """(C,) bool: the vocabulary classes the head was trained on -> (C,) ensemble weights."""
        if (self.kappa is None and not seen.all()) or (self.kappa_seen is None and seen.any()):
            raise ValueError("set kappa and kappa_seen first (with_default_kappas)")
        return torch.where(seen, self.kappa_seen or 0.0, self.kappa or 0.0)


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
    count = claims.sum(-1)
    masks = patch_masks[claims.float().argmax(-1)] if len(patch_masks) else (
        patch_masks.new_zeros((len(claims), *patch_masks.shape[1:])))  # each query's first patch
    masks[count == 0] = False
    for q in (count > 1).nonzero()[:, 0].tolist():  # most queries claim one patch
        masks[q] = patch_masks[claims[q]].view(torch.uint8).amax(0)
    return masks


def clip_votes(masks: torch.Tensor, claims: torch.Tensor,
               region_probs: Callable[[torch.Tensor], torch.Tensor],
               patch_probs: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's class probabilities (Q, C) for the masks (Q, H, W) of claimed patch sets (Q, N); a
    set of one patch takes that patch's row of `patch_probs` (N, C) when given."""
    single = (claims.sum(-1) == 1) & (patch_probs is not None)
    asked = region_probs(masks[~single])  # CLIP takes an empty batch too
    votes = asked.new_empty((len(claims), asked.shape[-1]))
    votes[~single] = asked
    if single.any():
        votes[single] = patch_probs[claims[single].float().argmax(-1)]
    return votes


def fuse(masks: torch.Tensor, overlap_thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel competition (Mask2Former-style): candidate masks (K, H, W) bool, best score
    first -> (H, W) int32 segment ids (0 = void) and (K,) the pixels each candidate keeps. A pixel
    goes to the first candidate covering it; a candidate that keeps less than `overlap_thresh` of
    its mask is dropped (0 pixels kept, its pixels void); the kept ones get ids 1, 2, ... in order."""
    covered, winner = masks.view(torch.uint8).max(0)  # the index of the first maximum
    claimed = covered.bool()
    won = torch.bincount(winner[claimed], minlength=len(masks))
    area = masks.flatten(1).view(torch.uint8).sum(-1, dtype=torch.int32)  # int32: 2x faster on CPU
    kept = (won > 0) & (won.double() >= overlap_thresh * area.double())
    ids = torch.zeros(len(masks) + 1, dtype=torch.int32, device=masks.device)  # the last: void
    ids[:-1][kept] = torch.arange(1, int(kept.sum()) + 1, dtype=torch.int32, device=masks.device)
    id_map = ids[torch.where(claimed, winner, len(masks))]
    return id_map, torch.where(kept, won, 0)


def panoptic(affinity: torch.Tensor, stuff_logits: torch.Tensor, thing_logits: torch.Tensor,
             patch_masks: torch.Tensor, stuff_classes: list[int], thing_classes: list[int],
             cfg: PostprocessConfig,
             region_probs: Callable[[torch.Tensor], torch.Tensor] | None = None,
             patch_probs: torch.Tensor | None = None, seen: torch.Tensor | None = None) -> PanopticResult:
    """One image. affinity (S + N, N) logits, stuff_logits (S,), thing_logits (N, K), patch_masks
    (N, H, W) bool; stuff_classes / thing_classes map rows and columns to vocabulary indices.
    region_probs: query masks (M, H, W) -> (M, C) CLIP probabilities over the vocabulary,
    ensembled with the head's by `cfg.kappa_seen` for the classes in `seen` ((C,) bool: those the
    head was trained on; None: none) and by `cfg.kappa` for the others; patch_probs: (N, C) the
    same for the patch masks, when already known (a query claiming one patch then needs no new
    CLIP pass)."""
    s = len(stuff_logits)
    claims = claimed_patches(affinity)
    if not cfg.merge_instances:
        claims[s:] = torch.eye(len(patch_masks), dtype=torch.bool, device=claims.device)
    stuff_prob, thing_probs = stuff_logits.sigmoid(), thing_logits.sigmoid()
    num_classes = max(stuff_classes + thing_classes, default=-1) + 1
    kappas = torch.zeros(num_classes)
    if region_probs is not None:
        kappas = cfg.class_kappas(torch.zeros(num_classes, dtype=torch.bool) if seen is None else seen.cpu())
    kappas = kappas.to(stuff_prob)
    stuff_kappa, thing_kappa = kappas[stuff_classes], kappas[thing_classes]
    use_clip = bool(kappas.any())
    # The ensemble never lifts a probability above p_head^(1 - kappa): only the queries under that
    # bound can pass the thresholds, so only their masks are built and only they go to CLIP.
    stuff_bound, thing_bounds = ((stuff_prob.clamp_min(1e-8) ** (1 - stuff_kappa),
                                  thing_probs.clamp_min(1e-8) ** (1 - thing_kappa))
                                 if use_clip else (stuff_prob, thing_probs))
    bound = torch.cat([stuff_bound, thing_bounds.amax(-1) if thing_probs.shape[-1] else
                       thing_probs.new_zeros(len(thing_probs))])
    best_affinity = affinity.sigmoid().amax(-1)
    maybe = ((bound > cfg.score_thresh) & (best_affinity > cfg.affinity_thresh)).nonzero()[:, 0]
    # Queries often claim the same patches (the parts of one object): each distinct set once.
    sets, set_of = torch.unique(claims[maybe], dim=0, return_inverse=True)
    set_masks = query_masks(sets, patch_masks)  # (D, H, W)
    present = nonempty(set_masks)[set_of]
    maybe, set_of = maybe[present], set_of[present]
    if use_clip and len(maybe):
        votes = clip_votes(set_masks, sets, region_probs, patch_probs)[set_of]
        clip = votes.new_full((len(claims), votes.shape[-1]), 1 / votes.shape[-1])
        clip[maybe] = votes
        stuff_prob = ensemble(stuff_prob, clip[torch.arange(s), stuff_classes], stuff_kappa)
        thing_probs = ensemble(thing_probs, clip[s:][:, thing_classes], thing_kappa)
    if thing_logits.shape[-1]:
        thing_prob, thing_label = thing_probs.max(-1)
    else:  # a vocabulary of stuff only
        thing_prob = thing_logits.new_zeros(len(thing_logits))
        thing_label = torch.zeros(len(thing_logits), dtype=torch.long)
    scores = torch.cat([stuff_prob, thing_prob])
    classes = torch.tensor(stuff_classes + [thing_classes[i] for i in thing_label.tolist()], dtype=torch.long)
    keep = (scores[maybe] > cfg.score_thresh).nonzero()[:, 0]
    keep = keep[scores[maybe[keep]].argsort(descending=True)][:cfg.max_segments]
    candidates = maybe[keep]

    h, w = patch_masks.shape[1:]
    if len(candidates) == 0:
        return PanopticResult(torch.zeros((h, w), dtype=torch.int32), [])
    id_map, areas = fuse(set_masks[set_of[keep]], cfg.overlap_thresh)
    kept = areas.nonzero()[:, 0]
    segments = [{"id": i + 1, "category_index": int(classes[q]), "isthing": q >= s,
                 "score": float(scores[q]), "area": int(areas[k])}
                for i, (k, q) in enumerate(zip(kept.tolist(), candidates[kept].tolist()))]
    return PanopticResult(id_map.cpu(), segments)
