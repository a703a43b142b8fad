"""From the head's last-layer outputs to non-overlapping panoptic segments.

Each query's mask is the union of the patches it claims (min-max normalized
affinity >= 0.5; its best patch always). Candidates are the semantic queries
(score = sigmoid of their own stuff logit) and the instance queries (score =
best thing probability); those above `min_score` whose best affinity
passes `affinity_thresh` compete per pixel by score (Mask2Former-style
fusion), and a candidate that keeps less than `overlap_thresh` of its mask is
dropped. Stuff is one segment per class: one semantic query per stuff class.
With a region classifier (`samcp.clip.region`), every class probability is first
ensembled with the frozen CLIP's for the query's mask, with one weight for the
classes the head was trained on (`kappa_seen`) and one for the names it never
saw (`kappa`), as FC-CLIP weighs in- and out-of-vocabulary classes apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from samcp.clip.region import ensemble
from samcp.masks import nonempty
from samcp.model.affinity_decoder import normalized_affinity


@dataclass(frozen=True)
class PostprocessConfig:
    # Thresholds tuned for PQ with the shipped head on train-split images 5000..5099 (docs/models.md).
    min_score: float = 0.1
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
        if not 0 <= self.min_score < 1:
            raise ValueError(f"min_score must be in [0, 1), got {self.min_score}")
        for name in ("kappa", "kappa_seen"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")

    def with_default_kappas(self, clip_trained: bool) -> PostprocessConfig:
        """The kappas left None set: 0.4 and 0.2 (unseen, seen classes) when the CLIP model has
        trained weights, 0 (the head alone) for a randomly initialised one."""
        return replace(self, kappa=(0.4 if clip_trained else 0.0) if self.kappa is None else self.kappa,
                       kappa_seen=(0.2 if clip_trained else 0.0) if self.kappa_seen is None
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
    (into the vocabulary's classes), isthing, score, area. candidates: the fused candidates best
    score first, as (the patches it claims, its segment id or 0 when it was dropped): what draws
    the segments again at another size (`samcp.native`)."""

    id_map: torch.Tensor
    segments: list[dict]
    candidates: list[tuple[list[int], int]] = field(default_factory=list)


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


class PanopticFusion:
    """One image's post-processing in two steps, so that a batch of images can send CLIP all its
    masks in one pass: construction picks the queries that may become segments and builds their
    masks, `clip_masks` (A, H, W) are those CLIP must classify (None without a CLIP ensemble), and
    `result(clip_probs)` takes CLIP's (A, C) probabilities for them, ensembles, scores and fuses.

    affinity (S + N, N) logits, stuff_logits (S,), thing_logits (N, K), patch_masks (N, H, W)
    bool; stuff_classes / thing_classes map rows and columns to vocabulary indices. kappas: (C,)
    CLIP weight per vocabulary class (None: the head alone); patch_probs: (N, C) CLIP's
    probabilities for the patch masks, when already known (a query claiming one patch then needs
    no new CLIP pass).
    """

    def __init__(self, affinity: torch.Tensor, stuff_logits: torch.Tensor, thing_logits: torch.Tensor,
                 patch_masks: torch.Tensor, stuff_classes: list[int], thing_classes: list[int],
                 cfg: PostprocessConfig, kappas: torch.Tensor | None = None,
                 patch_probs: torch.Tensor | None = None):
        self.cfg, self.stuff_classes, self.thing_classes = cfg, stuff_classes, thing_classes
        self.image_size = patch_masks.shape[1:]
        s = len(stuff_logits)
        claims = claimed_patches(affinity)
        if not cfg.merge_instances:
            claims[s:] = torch.eye(len(patch_masks), dtype=torch.bool, device=claims.device)
        self.num_queries = len(claims)
        self.stuff_prob, self.thing_probs = stuff_logits.sigmoid(), thing_logits.sigmoid()
        if kappas is None:
            kappas = self.stuff_prob.new_zeros(max(stuff_classes + thing_classes, default=-1) + 1)
        kappas = kappas.to(self.stuff_prob)
        self.stuff_kappa, self.thing_kappa = kappas[stuff_classes], kappas[thing_classes]
        use_clip = bool(self.stuff_kappa.any() or self.thing_kappa.any())
        # The ensemble never lifts a probability above p_head^(1 - kappa): only the queries under
        # that bound can pass the thresholds, so only their masks are built and only they go to CLIP.
        stuff_bound, thing_bounds = ((self.stuff_prob.clamp_min(1e-8) ** (1 - self.stuff_kappa),
                                      self.thing_probs.clamp_min(1e-8) ** (1 - self.thing_kappa))
                                     if use_clip else (self.stuff_prob, self.thing_probs))
        bound = torch.cat([stuff_bound, thing_bounds.amax(-1) if thing_logits.shape[-1] else
                           thing_logits.new_zeros(len(thing_logits))])
        best_affinity = affinity.sigmoid().amax(-1)
        maybe = ((bound > cfg.min_score) & (best_affinity > cfg.affinity_thresh)).nonzero()[:, 0]
        # Queries often claim the same patches (the parts of one object): each distinct set once.
        sets, set_of = torch.unique(claims[maybe], dim=0, return_inverse=True)
        self.sets = sets
        self.set_masks = query_masks(sets, patch_masks)  # (D, H, W)
        present = nonempty(self.set_masks)[set_of]
        self.maybe, self.set_of = maybe[present], set_of[present]
        self.clip_masks = None
        if use_clip and len(self.maybe):
            # A set of one patch takes that patch's known probabilities.
            self.single = (sets.sum(-1) == 1) & (patch_probs is not None)
            if patch_probs is not None:
                self.single_probs = patch_probs[sets[self.single].float().argmax(-1)]
            self.clip_masks = self.set_masks[~self.single]

    def result(self, clip_probs: torch.Tensor | None = None) -> PanopticResult:
        """clip_probs: (A, C) CLIP's probabilities for `clip_masks` (needed when those are not None)."""
        cfg, s = self.cfg, len(self.stuff_classes)
        stuff_prob, thing_probs, maybe = self.stuff_prob, self.thing_probs, self.maybe
        if self.clip_masks is not None:
            if clip_probs is None or len(clip_probs) != len(self.clip_masks):
                raise ValueError(f"expected CLIP probabilities for {len(self.clip_masks)} masks")
            votes = clip_probs.new_empty((len(self.set_masks), clip_probs.shape[-1]))
            votes[~self.single] = clip_probs
            if self.single.any():
                votes[self.single] = self.single_probs.to(votes)
            clip = votes.new_full((self.num_queries, votes.shape[-1]), 1 / votes.shape[-1])
            clip[maybe] = votes[self.set_of]
            stuff_prob = ensemble(stuff_prob, clip[torch.arange(s), self.stuff_classes], self.stuff_kappa)
            thing_probs = ensemble(thing_probs, clip[s:][:, self.thing_classes], self.thing_kappa)
        if thing_probs.shape[-1]:
            thing_prob, thing_label = thing_probs.max(-1)
            thing_class = [self.thing_classes[i] for i in thing_label.tolist()]
        else:  # a vocabulary of stuff only: no instance query can become a segment (score 0)
            thing_prob = thing_probs.new_zeros(len(thing_probs))
            thing_class = [-1] * len(thing_probs)
        scores = torch.cat([stuff_prob, thing_prob])
        classes = torch.tensor(self.stuff_classes + thing_class, dtype=torch.long)
        keep = (scores[maybe] > cfg.min_score).nonzero()[:, 0]
        keep = keep[scores[maybe[keep]].argsort(descending=True)][:cfg.max_segments]
        candidates = maybe[keep]
        if len(candidates) == 0:
            return PanopticResult(torch.zeros(tuple(self.image_size), dtype=torch.int32), [])
        id_map, areas = fuse(self.set_masks[self.set_of[keep]], cfg.overlap_thresh)
        kept = areas.nonzero()[:, 0]
        segments = [{"id": i + 1, "category_index": int(classes[q]), "isthing": q >= s,
                     "score": float(scores[q]), "area": int(areas[k])}
                    for i, (k, q) in enumerate(zip(kept.tolist(), candidates[kept].tolist()))]
        ids = torch.zeros(len(keep), dtype=torch.long)
        ids[kept.cpu()] = torch.arange(1, len(kept) + 1)
        claimed = [(self.sets[o].nonzero()[:, 0].tolist(), int(i))
                   for o, i in zip(self.set_of[keep].tolist(), ids.tolist())]
        return PanopticResult(id_map.cpu(), segments, claimed)

