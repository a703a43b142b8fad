import torch

from samcp.postprocess import PostprocessConfig, panoptic, query_masks

BIG = 10.0


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
    masks = query_masks(affinity, scene())
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


def test_clip_region_probabilities_enter_by_kappa():
    affinity, stuff_logits, thing_logits = outputs()
    seen = []

    def region_probs(masks):  # a CLIP that calls every region "ball" (vocabulary index 1)
        seen.append(masks.shape)
        probs = torch.full((len(masks), 10), 0.01)
        probs[:, 1], probs[0, 9] = 0.91, 0.91
        return probs

    labels = {}
    for kappa in (0.0, 1.0):
        result = panoptic(affinity, stuff_logits, thing_logits, scene(), [9], [1, 4],
                          PostprocessConfig(kappa=kappa), region_probs)
        labels[kappa] = sorted(s["category_index"] for s in result.segments)
    assert seen == [(5, 16, 16)]  # asked once, for the stuff query and the 4 instance queries
    assert labels[0.0] == [1, 4, 9]  # the head alone: ball, robot, sky
    assert labels[1.0] == [1, 1, 9]  # CLIP alone: the robot is a "ball" too
