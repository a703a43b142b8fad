"""PQ of a head in training on a few validation images, with the models that made its patch cache."""

from __future__ import annotations

import json

import torch

from pipeline.inputs import expand_inputs
from pipeline.output import labeling_vocabulary
from pipeline.reader import ShardReader
from samcp.clip.text_encoder import TextEncoder
from samcp.data.categories import Category
from samcp.data.coco import decode_id_png
from samcp.eval.evaluator import PanopticEvaluator
from samcp.labeler import Labeler
from samcp.model.head import SamCPHead
from samcp.postprocess import PostprocessConfig
from samcp.sam.build import build_sam
from samcp.sam.patches import AUTOCAST_DTYPES, PatchConfig, PatchGenerator


class Validator:
    """The first `num_images` images of `shards` that carry their ground truth (`json` +
    `panoptic.png`, as `jobs/make_shards.py synthetic` and `coco` write them), read once; `pq(head)`
    labels them with SAM, CLIP and vocabulary of `labeling` (a patch cache's) and the default
    post-processing, and scores them."""

    def __init__(self, labeling: dict, shards: tuple[str, ...], num_images: int,
                 storage_options: dict | None = None, device: torch.device | str = "cpu",
                 batch_size: int = 4):
        sam, clip = labeling["sam"], labeling["clip"]
        self.device, self.batch_size = torch.device(device), batch_size
        self.sam = build_sam(sam["model"], sam["checkpoint"], storage_options).to(self.device)
        self.generator = PatchGenerator(self.sam, PatchConfig(**labeling["patches"]),
                                        autocast_dtype=AUTOCAST_DTYPES[sam.get("autocast", "none")])
        self.text = TextEncoder(clip["model"], clip["checkpoint"], storage_options, device=self.device)
        self.clip_trained = clip["checkpoint"] is not None
        self.vocab = labeling_vocabulary(labeling)
        self.samples = []  # (image, ground-truth ids, segments_info)
        reader = ShardReader(storage_options, fields=("json", "panoptic.png"))
        for shard in expand_inputs(list(shards), storage_options):
            for row in reader({"shard": shard}):
                if len(self.samples) == num_images:
                    break
                if row["kind"] == "sample" and not row["error"] and row["json"] and row["panoptic.png"]:
                    ids = decode_id_png(row["panoptic.png"])
                    if ids.shape == (row["height"], row["width"]):  # labeled at that size
                        self.samples.append((row["image"], ids, json.loads(row["json"])["segments_info"]))
        if not self.samples:
            raise ValueError(f"no validation image with ground truth inside in {', '.join(shards)}")

    @torch.no_grad()
    def pq(self, head: SamCPHead) -> float:
        labeler = Labeler(self.sam, head, self.text, self.vocab, self.generator, PostprocessConfig(),
                          self.clip_trained, device=self.device)
        categories = [Category(c.id, c.name, c.isthing, (0, 0, 0)) for c in self.vocab.classes]
        evaluator = PanopticEvaluator(categories)
        for first in range(0, len(self.samples), self.batch_size):
            batch = self.samples[first:first + self.batch_size]
            labeled = labeler.label_batch([b[0] for b in batch], [b[1].shape for b in batch])
            for (_, ids, segments_info), result in zip(batch, labeled):
                evaluator.update(ids, segments_info, result.id_map, result.segments)
        return round(float(evaluator.summary()["pq"]["All"]["pq"]), 2)

    def __len__(self) -> int:
        return len(self.samples)



