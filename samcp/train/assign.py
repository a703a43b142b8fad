"""Label assignment: which SAM patches make up which ground-truth segment.

A patch belongs to a thing when it lies inside it: min(box IoP, mask IoP) >=
tau, where IoP = |patch ∩ segment| / |patch|. Patches in the band
[neg_thresh, tau) are ignored in the affinity loss (-1). A patch that is
nearly the whole object (box IoU > 0.5, better than every part already
assigned) is positive too, and a thing no patch lies inside takes its
best-box-IoU patch if that IoU > 0.5. Stuff classes get binary targets:
positive iff min(box IoP, mask IoP) > tau.

Pseudo-labels leave pixels unlabeled (below the score threshold, or never
labeled): a patch lying mostly there (mask IoP > `ignore_iop`) is ignored, not
taught as background: -1 for every segment it is not a member of, and no
classification loss for its query unless it is matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou, masks_to_boxes


@dataclass(frozen=True)
class AssignConfig:
    tau: float = 0.8
    neg_thresh: float = 0.5
    whole_iou: float = 0.5  # box IoU above which a whole-object patch is positive
    low_quality_iou: float = 0.5
    ignore_iop: float = 0.5  # a patch this much inside the ignore region is ignored


@dataclass
class SegmentTargets:
    """Ground truth of one image against its N patches.

    thing_labels: (G,) thing-class indices into the vocabulary's things.
    thing_boxes: (G, 4) xyxy normalized. thing_membership: (G, N) in {-1, 0, 1}.
    stuff_present: (S,) bool per stuff class of the vocabulary.
    stuff_membership: (S, N) in {-1, 0, 1}.
    ignored_patches: (N,) bool, patches in unlabeled pixels (None: every pixel is labeled).
    """

    thing_labels: torch.Tensor
    thing_boxes: torch.Tensor
    thing_membership: torch.Tensor
    stuff_present: torch.Tensor
    stuff_membership: torch.Tensor
    ignored_patches: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> SegmentTargets:
        return SegmentTargets(**{k: None if v is None else v.to(device) for k, v in vars(self).items()})


def intersection_over_patch(patch_masks: torch.Tensor, patch_boxes: torch.Tensor,
                            masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """min(box IoP, mask IoP) (G, N) of N patches (N, H, W) / (N, 4) against G segments (G, H, W) /
    (G, 4); boxes are continuous xyxy."""
    p = patch_masks.flatten(1).float()
    m = masks.flatten(1).float()
    mask_iop = (m @ p.T) / p.sum(1).clamp(min=1)
    lt = torch.maximum(boxes[:, None, :2], patch_boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], patch_boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    patch_area = (patch_boxes[:, 2:] - patch_boxes[:, :2]).prod(-1).clamp(min=1e-6)
    return torch.minimum(mask_iop, inter / patch_area[None])


def thing_membership(overlap: torch.Tensor, box_ious: torch.Tensor, cfg: AssignConfig) -> torch.Tensor:
    """overlap, box_ious: (G, N) -> membership (G, N) in {-1 ignore, 0 no, 1 yes}."""
    member = torch.full_like(overlap, -1, dtype=torch.long)
    member[overlap < cfg.neg_thresh] = 0
    member[overlap >= cfg.tau] = 1
    if member.shape[1] == 0:
        return member
    best_positive = torch.where(member == 1, box_ious, torch.zeros_like(box_ious)).amax(1, keepdim=True)
    member[(box_ious > cfg.whole_iou) & (box_ious > best_positive)] = 1
    has_none = (member == 1).sum(1) == 0
    best_iou, best_patch = box_ious.max(1)
    rescue = has_none & (best_iou > cfg.low_quality_iou)
    member[rescue.nonzero()[:, 0], best_patch[rescue]] = 1
    return member


def assign(patch_masks: torch.Tensor, patch_boxes: torch.Tensor, segment_masks: torch.Tensor,
           segment_classes: list[int], thing_ids: list[int], stuff_ids: list[int],
           cfg: AssignConfig | None = None, ignore: torch.Tensor | None = None) -> SegmentTargets:
    """Targets for one image.

    patch_masks (N, H, W) bool, patch_boxes (N, 4) continuous xyxy pixels; segment_masks (G, H, W)
    bool (non-empty) with category ids `segment_classes`; `thing_ids` / `stuff_ids` are the
    vocabulary's category ids in order (a thing's label is its index in `thing_ids`).
    ignore: (H, W) bool, pixels with no label to learn from (pseudo-labels), or None.
    """
    cfg = cfg or AssignConfig()
    h, w = patch_masks.shape[-2:]
    scale = torch.tensor([w, h, w, h], dtype=torch.float, device=patch_boxes.device)
    seg_boxes = masks_to_boxes(segment_masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    overlap = intersection_over_patch(patch_masks, patch_boxes, segment_masks, seg_boxes)
    is_thing = torch.tensor([c in thing_ids for c in segment_classes], dtype=torch.bool)
    things = is_thing.nonzero()[:, 0]
    thing_member = thing_membership(overlap[things], box_iou(seg_boxes[things], patch_boxes), cfg)
    stuff_present = torch.zeros(len(stuff_ids), dtype=torch.bool)
    stuff_member = torch.zeros((len(stuff_ids), len(patch_boxes)), dtype=torch.long)
    for g in (~is_thing).nonzero()[:, 0].tolist():
        if segment_classes[g] not in stuff_ids:
            continue  # a class outside the vocabulary: no target either way
        s = stuff_ids.index(segment_classes[g])
        stuff_present[s] = True
        stuff_member[s] |= (overlap[g] > cfg.tau).long()
    ignored = None
    if ignore is not None:
        inside = patch_masks.flatten(1).float() @ ignore.flatten().float()
        ignored = inside / patch_masks.flatten(1).sum(1).clamp(min=1) > cfg.ignore_iop
        thing_member[(thing_member == 0) & ignored] = -1
        stuff_member[(stuff_member == 0) & ignored] = -1
    return SegmentTargets(
        thing_labels=torch.tensor([thing_ids.index(segment_classes[g]) for g in things.tolist()],
                                  dtype=torch.long),
        thing_boxes=seg_boxes[things] / scale,
        thing_membership=thing_member,
        stuff_present=stuff_present,
        stuff_membership=stuff_member,
        ignored_patches=ignored,
    )

