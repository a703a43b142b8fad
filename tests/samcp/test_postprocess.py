import pytest
import torch

from samcp.clip.region import ensemble
from samcp.postprocess import PanopticFusion, PanopticResult, PostprocessConfig, claimed_patches, query_masks

BIG = 10.0


def panoptic(affinity, stuff_logits, thing_logits, patch_masks, stuff_classes, thing_classes, cfg,
             region_probs=None, patch_probs=None, seen=None):
    """Both steps of `PanopticFusion` on one image, as `Labeler.label_outputs` runs them; seen:
    (10,) bool, the vocabulary classes the head was trained on (None: none)."""
    kappas = None
    if region_probs is not None:
        kappas = cfg.class_kappas(torch.zeros(10, dtype=torch.bool) if seen is None else seen)
    fusion = PanopticFusion(affinity, stuff_logits, thing_logits, patch_masks, stuff_classes, thing_classes,
                            cfg, kappas, patch_probs)
    return fusion.result(None if fusion.clip_masks is None else region_probs(fusion.clip_masks))


def rect(x0, y0, x1, y1, size=16):
    m = torch.zeros((size, size), dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def scene():
    """Patches: 0 robot head, 1 robot body, 2 ball, 3 sky (everything else)."""
    head, body, ball = rect(2, 2, 6, 5), rect(2, 5, 6, 10), rect(10, 10, 14, 14)
    sky = ~(head | body | ball)
    return torch.stack([head, body, ball, sky])


def outputs():
    """One stuff query (sky) + 4 instance queries; query of patch 0 merges patches 0 and 1."""
    affinity = torch.full((5, 4), -BIG)
    affinity[0, 3] = BIG          # sky query claims the sky patch
    affinity[1, [0, 1]] = BIG     # robot head's query claims head + body
    affinity[2, [0, 1]] = BIG     # robot body's query: a duplicate with a lower score
    affinity[3, 2] = BIG          # ball
    affinity[4, 3] = BIG          # the sky patch as an instance query: no thing class
    thing_logits = torch.full((4, 2), -BIG)
    thing_logits[0, 1] = 3.0      # robot, 0.95
    thing_logits[1, 1] = 1.0      # robot, 0.73
    thing_logits[2, 0] = 2.0      # ball, 0.88
    return affinity, torch.tensor([BIG]), thing_logits


def test_query_masks_are_unions_of_claimed_patches():
    affinity, _, _ = outputs()
    masks = query_masks(claimed_patches(affinity), scene())
    patches = scene()
    assert torch.equal(masks[1], patches[0] | patches[1])
    assert torch.equal(masks[3], patches[2])


def test_panoptic_merges_parts_drops_duplicates_and_labels():
    affinity, stuff_logits, thing_logits = outputs()
    result = panoptic(affinity, stuff_logits, thing_logits, scene(), stuff_classes=[9],
                      thing_classes=[1, 4], cfg=PostprocessConfig())
    by_class = {s["category_index"]: s for s in result.segments}
    assert sorted(by_class) == [1, 4, 9]  # one robot (duplicate dropped), one ball, sky
    patches = scene()
    robot = result.id_map == by_class[4]["id"]
    assert torch.equal(robot, patches[0] | patches[1])
    assert by_class[4]["score"] > 0.9 and by_class[4]["isthing"] and not by_class[9]["isthing"]
    assert (result.id_map > 0).all()  # every pixel claimed once
    assert sum(s["area"] for s in result.segments) == 16 * 16


def test_without_merging_each_patch_is_its_own_instance():
    affinity, stuff_logits, thing_logits = outputs()
    result = panoptic(affinity, stuff_logits, thing_logits, scene(), [9], [1, 4],
                      PostprocessConfig(merge_instances=False))
    robots = [s for s in result.segments if s["category_index"] == 4]
    assert len(robots) == 2  # head and body come out as two robots


def test_low_scores_give_void():
    affinity, stuff_logits, thing_logits = outputs()
    result = panoptic(affinity, -stuff_logits, thing_logits - 20, scene(), [9], [1, 4],
                      PostprocessConfig())
    assert result.segments == [] and (result.id_map == 0).all()


def region_probs_by_size(seen: list):
    """A CLIP that calls a large region "sky" (vocabulary index 9) and any other "ball" (1)."""
    def region_probs(masks):
        seen.append(masks.shape)
        probs = torch.full((len(masks), 10), 0.01)
        large = masks.flatten(1).sum(-1) > 100
        probs[large, 9], probs[~large, 1] = 0.91, 0.91
        return probs
    return region_probs


def test_clip_region_probabilities_enter_by_kappa():
    affinity, stuff_logits, thing_logits = outputs()
    seen = []
    labels = {}
    for kappa in (0.0, 1.0):
        result = panoptic(affinity, stuff_logits, thing_logits, scene(), [9], [1, 4],
                          PostprocessConfig(kappa=kappa), region_probs_by_size(seen))
        labels[kappa] = sorted(s["category_index"] for s in result.segments)
    assert seen == [(3, 16, 16)]  # once per distinct claimed patch set: sky, head + body, ball
    assert labels[0.0] == [1, 4, 9]  # the head alone: ball, robot, sky
    assert labels[1.0] == [1, 1, 9]  # CLIP alone: the robot is a "ball" too


def test_classes_the_head_trained_on_take_kappa_seen_and_the_others_kappa():
    affinity, stuff_logits, thing_logits = outputs()
    cfg = PostprocessConfig(kappa=1.0, kappa_seen=0.0)  # unseen names: CLIP alone; seen: the head alone
    trained = torch.zeros(10, dtype=torch.bool)
    labels = {}
    for name, seen in (("none", None), ("no class", trained), ("all", ~trained)):
        result = panoptic(affinity, stuff_logits, thing_logits, scene(), [9], [1, 4], cfg,
                          region_probs_by_size([]), seen=seen)
        labels[name] = sorted(s["category_index"] for s in result.segments)
    assert labels["none"] == labels["no class"] == [1, 1, 9]
    assert labels["all"] == [1, 4, 9]


def reference_panoptic(affinity, stuff_logits, thing_logits, patch_masks, stuff_classes, thing_classes,
                       cfg, region_probs, trained):
    """The post-processing spelled out: CLIP asked about every query mask, then candidates
    placed one by one in descending score order."""
    s = len(stuff_logits)
    claims = claimed_patches(affinity)
    masks = query_masks(claims, patch_masks)
    clip = region_probs(masks)
    kappas = torch.where(trained, cfg.kappa_seen, cfg.kappa)
    stuff_prob = ensemble(stuff_logits.sigmoid(), clip[torch.arange(s), stuff_classes], kappas[stuff_classes])
    thing_prob, thing_label = ensemble(thing_logits.sigmoid(), clip[s:][:, thing_classes],
                                       kappas[thing_classes]).max(-1)
    scores = torch.cat([stuff_prob, thing_prob])
    classes = stuff_classes + [thing_classes[i] for i in thing_label.tolist()]
    keep = (scores > cfg.min_score) & (affinity.sigmoid().amax(-1) > cfg.affinity_thresh)
    id_map = torch.zeros(patch_masks.shape[1:], dtype=torch.int32)
    segments = []
    for q in sorted(keep.nonzero()[:, 0].tolist(), key=lambda q: -scores[q]):
        region = masks[q] & (id_map == 0)
        area = int(region.sum())
        if area == 0 or area < cfg.overlap_thresh * int(masks[q].sum()):
            continue
        id_map[region] = len(segments) + 1
        segments.append({"id": len(segments) + 1, "category_index": classes[q], "isthing": q >= s,
                         "score": float(scores[q]), "area": area})
    return PanopticResult(id_map, segments)


def test_clip_is_asked_only_for_what_can_pass_and_changes_nothing():
    """Skipping queries that cannot pass the thresholds and repeated masks, and fusing all
    candidates at once, gives the result of asking CLIP about every query mask and placing
    the candidates one by one."""
    torch.manual_seed(3)
    cells = (torch.arange(16)[:, None] // 4) * 3 + (torch.arange(16)[None, :] // 5).clamp(max=2)
    patches = torch.stack([cells == i for i in range(12)])  # 12 blocks tiling the image
    affinity, stuff_logits, thing_logits = torch.randn(14, 12) * 4, torch.randn(2), torch.randn(12, 3) * 3 - 2
    affinity[4:10] = -10.0
    affinity[torch.arange(4, 10), torch.arange(2, 8)] = 10.0  # these instance queries claim one patch
    cfg = PostprocessConfig(kappa=0.4, kappa_seen=0.1, min_score=0.5)
    trained = torch.zeros(10, dtype=torch.bool)
    trained[[2, 9]] = True  # one stuff and one thing class take kappa_seen
    seen = []
    pruned = panoptic(affinity, stuff_logits, thing_logits, patches, [7, 9], [1, 2, 4], cfg,
                      region_probs_by_size(seen), seen=trained)
    known = panoptic(affinity, stuff_logits, thing_logits, patches, [7, 9], [1, 2, 4], cfg,
                     region_probs_by_size(seen), patch_probs=region_probs_by_size([])(patches), seen=trained)
    every = reference_panoptic(affinity, stuff_logits, thing_logits, patches, [7, 9], [1, 2, 4], cfg,
                               region_probs_by_size(seen), trained)
    assert seen[0][0] < seen[-1][0] == 14 and len(pruned.segments) >= 2
    assert seen[1][0] < seen[0][0]  # queries claiming one patch took its known probabilities
    for result in (pruned, known):
        assert result.segments == every.segments and torch.equal(result.id_map, every.id_map)


@pytest.mark.parametrize("given", [dict(kappa=-0.1), dict(kappa=1.5), dict(kappa_seen=-0.2),
                                   dict(kappa_seen=1.01)])
def test_kappas_outside_zero_to_one_are_refused(given):
    with pytest.raises(ValueError, match=next(iter(given))):
        PostprocessConfig(**given)
    assert PostprocessConfig(kappa=0.0, kappa_seen=1.0).class_kappas(torch.tensor([True, False])).tolist() \
        == [1.0, 0.0]
