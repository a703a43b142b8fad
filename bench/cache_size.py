"""What one cached example weighs: SAM's whole embedding against RoI-pooled patch features.

    python bench/cache_size.py --sam-model vit_h --sam-checkpoint none     # ViT-H shapes, random weights
    python bench/cache_size.py                                             # the shipped tiny SAM

A patch cache example (`samcp.train.head.CachedImage`) stores the image's SAM embedding
(C x h x w, fp16) beside each patch's box, RoI mask, CLIP region embedding and targets.
The alternative is to store each patch's RoI-pooled features instead of the embedding
(N x C x roi x roi, fp16: what the head's MaskRoI reads). This builds real examples of
synthetic images (random SAM weights with the patch thresholds at 0 keep the top
`--max-patches` patches, so N is that number) and reports, per image: the serialized
example, the same in a zstd Parquet file as the cache writes it, the embedding's share,
and the pooled alternative for the same patches, with the patch count from which the
pooled form is the larger. Writes bench/results/cache_size-<sam model>.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam-model", default="tiny")
    parser.add_argument("--sam-checkpoint", default="shipped", help="'none': random weights")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--max-patches", type=int, default=128)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--clip-dim", type=int, default=64)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from pipeline.train.cache import SCHEMA
    from pipeline.train.examples import ExampleBuilder, truth_row
    from samcp.config import LabelerConfig
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
    from samcp.model_files import describe_models
    from samcp.provenance import provenance, write_result
    from samcp.train.head import CachedImage

    random = args.sam_checkpoint.lower() == "none"
    config = LabelerConfig(sam_model=args.sam_model, sam_checkpoint=None if random else args.sam_checkpoint,
                           head_checkpoint=None, points_per_side=args.points_per_side,
                           max_patches=args.max_patches,
                           **({"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0} if random else {}))
    builder = ExampleBuilder(describe_models(config), roi_size=7, clip_dim=args.clip_dim)
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["train"]))
    rows = [truth_row({"key": s.key, "image": s.image, "height": s.image.shape[0], "width": s.image.shape[1]},
                      s.panoptic, s.metadata()["segments_info"])
            for s in (corpus[5000 + i] for i in range(args.images))]
    measured = []
    for row in builder.build(rows):
        example = CachedImage.from_bytes(row["example"])
        features = example.features
        patches, roi = len(features.boxes), features.roi_masks.shape[-1]
        channels = features.embedding.shape[0]
        table = pa.Table.from_pylist([row], schema=SCHEMA)
        parquet = io.BytesIO()
        pq.write_table(table, parquet, compression="zstd")
        pooled = torch.zeros(patches, channels, roi, roi, dtype=torch.float16)
        pooled_bytes = len(CachedImage(type(features)(**{**vars(features), "embedding": pooled}),
                                       example.targets).to_bytes())
        embedding_bytes = features.embedding.numel() * features.embedding.element_size()
        measured.append({"key": row["key"], "patches": patches,
                         "embedding_shape": list(features.embedding.shape),
                         "example_bytes": len(row["example"]), "parquet_bytes": parquet.getbuffer().nbytes,
                         "embedding_bytes": embedding_bytes, "pooled_example_bytes": pooled_bytes,
                         "pooled_larger_from_patches": -(-embedding_bytes // (channels * roi * roi * 2))})
        print(json.dumps(measured[-1]), flush=True)
    result = {"sam_model": args.sam_model, "sam_checkpoint": args.sam_checkpoint, "examples": measured,
              "provenance": provenance(config.checkpoint_files(), vars(args), "train",
                                       range(5000, 5000 + args.images))}
    path = os.path.join(RESULTS, f"cache_size-{args.sam_model}.json")
    write_result(path, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
