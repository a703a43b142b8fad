"""PointGridDecoder: the same masks and IoUs as segment-anything's MaskDecoder, prompt by prompt."""

import torch

from samcp.sam.build import build_sam
from samcp.sam.point_decoder import PointGridDecoder


def test_matches_the_mask_decoder_and_filters_by_predicted_iou():
    torch.manual_seed(0)
    sam = build_sam("tiny", "shipped").eval()
    size = sam.prompt_encoder.image_embedding_size
    embedding = torch.randn(1, sam.prompt_encoder.embed_dim, *size)
    coords = torch.rand(20, 1, 2) * sam.image_encoder.img_size
    labels = torch.ones(20, 1, dtype=torch.int)
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        pe = sam.prompt_encoder.get_dense_pe()
        want_masks, want_iou = sam.mask_decoder(image_embeddings=embedding, image_pe=pe,
                                                sparse_prompt_embeddings=sparse,
                                                dense_prompt_embeddings=dense, multimask_output=True)
        decoder = PointGridDecoder(sam.mask_decoder)
        masks, iou, index = decoder(embedding, pe, dense[:1], sparse, iou_thresh=0.0)
        assert index.tolist() == list(range(60))  # no filter: every prompt's three masks, in order
        torch.testing.assert_close(iou, want_iou.flatten(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(masks, want_masks.flatten(0, 1), atol=1e-4, rtol=1e-4)

        # A threshold in the widest gap between the middle IoUs: the two decoders' IoUs differ by
        # float rounding, so a threshold within that rounding of one IoU would be a coin toss.
        ranked = want_iou.flatten().sort().values
        widest = 15 + (ranked[16:46] - ranked[15:45]).argmax()
        thresh = ((ranked[widest] + ranked[widest + 1]) / 2).item()
        masks, iou, index = decoder(embedding, pe, dense[:1], sparse, iou_thresh=thresh)
    expected = (want_iou.flatten() > thresh).nonzero()[:, 0]
    assert 0 < len(expected) < 60 and index.tolist() == expected.tolist()
    torch.testing.assert_close(masks, want_masks.flatten(0, 1)[expected], atol=1e-4, rtol=1e-4)
