"""Hungarian matching of instance queries to things, and the SAM-CP losses.

Instance queries (one per patch) are matched one-to-one to ground-truth
things (scipy's linear_sum_assignment) on cost = class focal + affinity focal
+ affinity dice + L1 + GIoU of the merged box. Losses on every decoder layer:
sigmoid focal on classes (matched queries -> their thing, others -> none),
affinity focal and dice over patches for matched queries and present stuff
classes, and each semantic query's own-class focal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

from samcp.model.affinity_decoder import claimed_union_boxes, normalized_affinity
from samcp.train.assign import SegmentTargets


@dataclass(frozen=True)
class CriterionConfig:
    cost_class: float = 4.0
    cost_affinity: float = 2.0
    cost_dice: float = 2.0
    cost_l1: float = 2.0
    cost_giou: float = 2.0
    loss_class: float = 2.0
    loss_affinity: float = 1.0
    loss_dice: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def _focal_cost(logits: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Cost of calling each logit positive rather than negative (DETR-style), elementwise."""
    p = logits.sigmoid()
    pos = alpha * (1 - p) ** gamma * -F.logsigmoid(logits)
    neg = (1 - alpha) * p ** gamma * -F.logsigmoid(-logits)
    return pos - neg


def _dice(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairwise dice loss (Q, G) between prob (Q, N) and target (G, N)."""
    inter = prob @ target.T
    return 1 - (2 * inter + 1) / (prob.sum(-1)[:, None] + target.sum(-1)[None] + 1)


@torch.no_grad()
def match(thing_logits: torch.Tensor, affinity: torch.Tensor, boxes: torch.Tensor,
          targets: SegmentTargets, cfg: CriterionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One image: thing_logits (N, K), affinity (N, N) instance-query logits over valid patches,
    boxes (N, 4) normalized xyxy patch boxes. Returns matched (query indices, thing indices),
    on the logits' device."""
    g = len(targets.thing_labels)
    if g == 0 or len(thing_logits) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=thing_logits.device)
        return empty, empty
    cls = _focal_cost(thing_logits, cfg.focal_alpha, cfg.focal_gamma)[:, targets.thing_labels]
    member = targets.thing_membership.clamp(min=0).float()  # (G, N)
    positives = member.sum(-1).clamp(min=1)
    pos_cost = _focal_cost(affinity, cfg.focal_alpha, cfg.focal_gamma)  # (Q, N)
    neg_cost = sigmoid_focal_loss(affinity, torch.zeros_like(affinity), cfg.focal_alpha,
                                  cfg.focal_gamma, reduction="none")
    aff = (pos_cost @ member.T + neg_cost.sum(-1, keepdim=True)) / positives[None]
    dice = _dice(affinity.sigmoid(), member)
    padding = torch.zeros(1, affinity.shape[1], dtype=torch.bool, device=affinity.device)
    claims = normalized_affinity(affinity[None], padding)[0] >= 0.5
    merged = claimed_union_boxes(claims[None], boxes[None])[0]
    l1 = torch.cdist(merged, targets.thing_boxes, p=1)
    giou = -generalized_box_iou(merged, targets.thing_boxes)
    cost = (cfg.cost_class * cls + cfg.cost_affinity * aff + cfg.cost_dice * dice
            + cfg.cost_l1 * l1 + cfg.cost_giou * giou)
    rows, cols = linear_sum_assignment(cost.float().cpu().numpy())
    return (torch.as_tensor(rows, dtype=torch.long, device=thing_logits.device),
            torch.as_tensor(cols, dtype=torch.long, device=thing_logits.device))


def affinity_losses(logits: torch.Tensor, member: torch.Tensor, cfg: CriterionConfig
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed focal and dice over rows: logits (R, N), member (R, N) in {-1, 0, 1}.

    Ignored entries (-1) carry no loss; each row's focal weights are divided
    by its number of positive patches; dice covers rows with a positive patch."""
    if len(logits) == 0:
        zero = logits.sum() * 0
        return zero, zero
    target = member.clamp(min=0).float()
    weight = (member >= 0).float() / target.sum(-1, keepdim=True).clamp(min=1)
    focal = (sigmoid_focal_loss(logits, target, cfg.focal_alpha, cfg.focal_gamma, reduction="none")
             * weight).sum()
    has_positive = target.sum(-1) > 0
    prob = (logits.sigmoid() * (member >= 0))[has_positive]  # ignored patches count for neither side
    t = target[has_positive]
    dice = (1 - (2 * (prob * t).sum(-1) + 1) / (prob.sum(-1) + t.sum(-1) + 1)).sum()
    return focal, dice


def samcp_loss(outputs: list[dict[str, torch.Tensor]], targets: list[SegmentTargets],
               patch_boxes: torch.Tensor, padding: torch.Tensor, num_stuff: int,
               cfg: CriterionConfig) -> dict[str, torch.Tensor]:
    """Total loss over all decoder layers and images, with its parts for logging.

    outputs: the head's per-layer dicts; patch_boxes (B, N, 4) normalized xyxy; padding (B, N).
    """
    parts = {"class": 0.0, "affinity": 0.0, "dice": 0.0, "stuff_class": 0.0}
    num_matched = max(1, sum(len(t.thing_labels) for t in targets))
    num_stuff_pos = max(1, sum(int(t.stuff_present.sum()) for t in targets))
    for layer in outputs:
        for b, t in enumerate(targets):
            valid = ~padding[b]
            n = int(valid.sum())
            thing_logits = layer["thing_logits"][b, :n]
            instance_affinity = layer["affinity"][b, num_stuff:num_stuff + n, :n]
            rows, cols = match(thing_logits.detach(), instance_affinity.detach(), patch_boxes[b, :n], t,
                               cfg)
            # A thing no patch can cover teaches nothing: its matched query is left out of every loss.
            coverable = (t.thing_membership[cols] == 1).any(-1)
            class_weight = torch.ones_like(thing_logits)
            if t.ignored_patches is not None:  # queries of unlabeled regions are not background
                class_weight[t.ignored_patches[:n]] = 0
            class_weight[rows[~coverable]] = 0
            rows, cols = rows[coverable], cols[coverable]
            class_weight[rows] = 1
            class_target = torch.zeros_like(thing_logits)
            class_target[rows, t.thing_labels[cols]] = 1
            class_loss = sigmoid_focal_loss(thing_logits, class_target, cfg.focal_alpha, cfg.focal_gamma,
                                            reduction="none")
            parts["class"] = parts["class"] + (class_loss * class_weight).sum() / num_matched
            focal, dice = affinity_losses(instance_affinity[rows], t.thing_membership[cols], cfg)
            parts["affinity"] = parts["affinity"] + focal / num_matched
            parts["dice"] = parts["dice"] + dice / num_matched

            stuff_affinity = layer["affinity"][b, :num_stuff, :n]
            present = t.stuff_present
            coverable_stuff = (t.stuff_membership == 1).any(-1)
            # Present but uncoverable: no class loss. Absent: a negative, unless the image has unlabeled
            # pixels (pseudo-labels), where the class may be hiding.
            unlabeled = t.ignored_patches is not None and bool(t.ignored_patches.any())
            stuff_weight = torch.where(present, coverable_stuff.float(), 0.0 if unlabeled else 1.0)
            stuff_class = sigmoid_focal_loss(layer["stuff_logits"][b], (present & coverable_stuff).float(),
                                             cfg.focal_alpha, cfg.focal_gamma, reduction="none")
            parts["stuff_class"] = parts["stuff_class"] + (stuff_class * stuff_weight).sum() / num_stuff_pos
            focal, dice = affinity_losses(stuff_affinity[present], t.stuff_membership[present], cfg)
            parts["affinity"] = parts["affinity"] + focal / num_stuff_pos
            parts["dice"] = parts["dice"] + dice / num_stuff_pos
    total = (cfg.loss_class * (parts["class"] + parts["stuff_class"]) + cfg.loss_affinity * parts["affinity"]
             + cfg.loss_dice * parts["dice"])
    return {"loss": total, **parts}
