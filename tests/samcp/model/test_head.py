import pytest
import torch

from samcp.model.affinity_decoder import claimed_union_boxes, normalized_affinity
from samcp.model.classifier import TextClassifier
from samcp.model.head import HeadConfig, SamCPHead
from samcp.model.inputs import head_inputs
from samcp.model.patch_encoder import mask_roi_grid
from samcp.sam.patches import PatchSet


def random_patch_set(n: int, seed: int, size: int = 64) -> PatchSet:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros((n, size, size), dtype=torch.bool)
    boxes = []
    for i in range(n):
        x0, y0 = torch.randint(0, size // 2, (2,), generator=g).tolist()
        x1, y1 = x0 + 8 + i, y0 + 6 + i
        masks[i, y0:y1, x0:x1] = True
        masks[i, y0:(y0 + y1) // 2, (x0 + x1) // 2:x1] = False  # L-shaped: the mask is not its box
        boxes.append([x0, y0, x1 - 1, y1 - 1])
    return PatchSet(masks=masks, boxes=torch.tensor(boxes, dtype=torch.float),
                    predicted_iou=torch.ones(n), stability_score=torch.ones(n), points=torch.zeros(n, 2),
                    embedding=torch.randn((128, 16, 16), generator=g), image_size=(size, size),
                    input_size=(256, 256))


def test_normalized_affinity():
    logits = torch.tensor([[[0.0, 2.0, -1.0, 5.0]]])
    padding = torch.tensor([[False, False, False, True]])
    scaled = normalized_affinity(logits, padding)
    assert scaled[0, 0, 1] == 1 and scaled[0, 0, 2] == 0 and scaled[0, 0, 3] == 0
    assert 0 < scaled[0, 0, 0] < 1
    single = normalized_affinity(torch.tensor([[[0.3]]]), torch.tensor([[False]]))
    assert single.item() == 1  # a query's best patch always survives


def test_claimed_union_boxes():
    boxes = torch.tensor([[[0.1, 0.1, 0.2, 0.2], [0.5, 0.4, 0.6, 0.9]]])
    claims = torch.tensor([[[True, True], [False, True], [False, False]]])
    union = claimed_union_boxes(claims, boxes)
    torch.testing.assert_close(union[0], torch.tensor(
        [[0.1, 0.1, 0.6, 0.9], [0.5, 0.4, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]]))


def test_mask_roi_grid():
    masks = torch.zeros((2, 32, 32), dtype=torch.bool)
    masks[0, 4:12, 4:12] = True
    masks[1, 4:12, 4:8] = True  # left half of its box
    boxes = torch.tensor([[4.0, 4, 12, 12], [4.0, 4, 12, 12]])
    grid = mask_roi_grid(masks, boxes, 4)
    assert grid[0].sum() == 16
    assert grid[1, :, :2].sum() == 8 and grid[1, :, 2:].sum() == 0


def test_head_shapes_and_padding_invariance():
    torch.manual_seed(0)
    head = SamCPHead(HeadConfig()).eval()
    small, large = random_patch_set(3, seed=1), random_patch_set(7, seed=2)
    stuff, things = torch.randn(5, 64), torch.randn(8, 64)
    with torch.no_grad():
        together = head(head_inputs([small, large], 256, 7), stuff, things)
        alone = head(head_inputs([small], 256, 7), stuff, things)
    assert len(together) == HeadConfig().decoder_layers
    with torch.no_grad():
        (last_only,) = head(head_inputs([small, large], 256, 7), stuff, things, last_only=True)
    for key, value in together[-1].items():
        torch.testing.assert_close(last_only[key], value, atol=0, rtol=0)
    last = together[-1]
    assert last["affinity"].shape == (2, 5 + 7, 7)
    assert last["stuff_logits"].shape == (2, 5) and last["thing_logits"].shape == (2, 7, 8)
    # The small image's own rows do not change when it is padded next to a larger one.
    rows = list(range(5)) + [5 + i for i in range(3)]
    torch.testing.assert_close(together[-1]["affinity"][0, rows][:, :3], alone[-1]["affinity"][0],
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(together[-1]["thing_logits"][0, :3], alone[-1]["thing_logits"][0],
                               atol=1e-4, rtol=1e-4)


def test_ablation_switches_change_the_model():
    torch.manual_seed(0)
    inputs = head_inputs([random_patch_set(6, seed=3)], 256, 7)
    stuff, things = torch.randn(4, 64), torch.randn(8, 64)
    results = {}
    for name, config in {"full": HeadConfig(), "no_dca": HeadConfig(use_dca=False),
                         "no_ar": HeadConfig(use_affinity_refine=False),
                         "no_mask_roi": HeadConfig(use_mask_roi=False),
                         "omega0": HeadConfig(encoder_layers=0)}.items():
        torch.manual_seed(0)
        head = SamCPHead(config).eval()
        if name != "omega0":
            head.load_state_dict(SamCPHead(HeadConfig()).state_dict())
        with torch.no_grad():
            results[name] = head(inputs, stuff, things)[-1]["affinity"]
    for name in ("no_dca", "no_ar", "no_mask_roi", "omega0"):
        assert not torch.allclose(results[name], results["full"]), name


def test_classifier_follows_the_vocabulary_order():
    torch.manual_seed(0)
    classifier = TextClassifier(16, 8)
    queries, text = torch.randn(1, 3, 16), torch.randn(5, 8)
    order = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(classifier(queries, text[order]), classifier(queries, text)[..., order])


def test_a_head_with_clip_dim_reads_each_patch_region_embedding():
    torch.manual_seed(0)
    head = SamCPHead(HeadConfig(clip_dim=64)).eval()
    patch_sets = [random_patch_set(3, seed=1), random_patch_set(5, seed=2)]
    clip = [torch.randn(3, 64), torch.randn(5, 64)]
    stuff, things = torch.randn(4, 64), torch.randn(8, 64)
    inputs = head_inputs(patch_sets, 256, 7, clip)
    assert inputs.clip.shape == (2, 5, 64) and not inputs.clip[0, 3:].any()  # padded with zeros
    with torch.no_grad():
        first = head(inputs, stuff, things)[-1]["thing_logits"]
        other = head(head_inputs(patch_sets, 256, 7, [clip[0], -clip[1]]), stuff, things)[-1]["thing_logits"]
    torch.testing.assert_close(first[0], other[0], atol=1e-4, rtol=1e-4)  # image 0's own inputs only
    assert not torch.allclose(first[1], other[1])
    with pytest.raises(ValueError, match="CLIP region embedding"):
        head(head_inputs(patch_sets, 256, 7), stuff, things)
    with pytest.raises(ValueError, match="every image or for none"):
        head_inputs(patch_sets, 256, 7, [clip[0], None])
