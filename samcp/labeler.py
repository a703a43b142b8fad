"""Label one image (or a batch) with no cluster: SAM patches -> SAM-CP head -> panoptic segments.

    from samcp import Labeler
    segments = Labeler().label(image).segments   # shipped tiny models, built-in synthetic vocabulary
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.profiler import record_function

from samcp.data.coco import encode_rle
from samcp.masks import mask_bbox
from samcp.model.factory import build_head, random_head
from samcp.model.inputs import head_inputs
from samcp.open_vocab import RegionClassifier, head_region_encoder, region_encoder
from samcp.patches import PatchConfig, PatchGenerator, PatchSet
from samcp.postprocess import PostprocessConfig, panoptic
from samcp.sam import build_sam
from samcp.text_encoder import TextEncoder
from samcp.vocab import Vocabulary, load_vocabulary


@dataclass
class LabeledImage:
    """Panoptic result of one image: id_map (H, W) int32 (0 = void) and one dict per segment
    with id, category_id, category, isthing, score, area, bbox (x, y, w, h) and rle."""

    id_map: np.ndarray
    segments: list[dict]
    num_patches: int


@dataclass
class HeadOutputs:
    """The head's last layer on one image of N patches, S stuff and K thing classes: affinity
    (S + N, N) logits, stuff_logits (S,), thing_logits (N, K); region_probs: query masks
    (M, H, W) -> (M, C) CLIP probabilities (None without the CLIP classifier); patch_probs (N, C)
    the same for the patch masks, when the head already encoded them."""

    affinity: torch.Tensor
    stuff_logits: torch.Tensor
    thing_logits: torch.Tensor
    region_probs: Callable[[torch.Tensor], torch.Tensor] | None
    patch_probs: torch.Tensor | None


class Labeler:
    """SAM + SAM-CP head + vocabulary, built by name like `build_sam` / `build_head`.

    Defaults are the package's shipped small models (SAM, head and the CLIP whose text
    embeddings the head was trained with) and the built-in synthetic vocabulary; patch
    settings default to those tuned for `sam_model`. `clip_checkpoint=None` keeps the
    CLIP's fixed-seed random initialisation, `head_checkpoint=None` a fixed-seed random head
    that fits the SAM (speed tests). `autocast` runs SAM in that dtype (bf16/fp16, GPU).
    """

    def __init__(self, sam_model: str = "tiny", sam_checkpoint: str | None = "shipped",
                 head_checkpoint: str | None = "shipped", vocab: Vocabulary | str = "builtin:synthetic",
                 clip_model: str = "samcp-clip-tiny", clip_checkpoint: str | None = "shipped",
                 patch_config: PatchConfig | None = None, postprocess: PostprocessConfig | None = None,
                 device: str | None = None, storage_options: dict | None = None,
                 autocast: torch.dtype | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.sam = build_sam(sam_model, sam_checkpoint, storage_options).to(self.device)
        self.vocab = load_vocabulary(vocab) if isinstance(vocab, str) else vocab
        encoder = TextEncoder(clip_model, clip_checkpoint, storage_options, device=self.device)
        sam_width = self.sam.prompt_encoder.embed_dim
        head = (random_head(sam_width, encoder.dim) if head_checkpoint is None
                else build_head(head_checkpoint, storage_options))
        if (head.config.feature_dim, head.config.text_dim) != (sam_width, encoder.dim):
            raise ValueError(f"the SAM-CP head reads {head.config.feature_dim}-channel SAM embeddings and "
                             f"{head.config.text_dim}-wide text embeddings, but SAM {sam_model!r} gives "
                             f"{sam_width} and CLIP {clip_model!r} {encoder.dim}: use a head trained with "
                             "these models (jobs/train_samcp.py), or none (random weights) for speed tests")
        self.head = head.to(self.device)
        text = encoder.embed(self.vocab).to(self.device)
        is_thing = torch.tensor([c.isthing for c in self.vocab.classes])
        self.stuff_text, self.thing_text = text[~is_thing], text[is_thing]
        self.stuff_index = (~is_thing).nonzero()[:, 0].tolist()
        self.thing_index = is_thing.nonzero()[:, 0].tolist()
        self.generator = PatchGenerator(self.sam, patch_config or PatchConfig.for_model(sam_model),
                                        autocast_dtype=autocast)
        self.clip_trained = bool(clip_checkpoint)
        self.postprocess = (postprocess or PostprocessConfig()).with_default_kappas(self.clip_trained)
        trained = set(self.head.trained_classes)
        self.seen = torch.tensor([c.name in trained for c in self.vocab.classes])  # (C,) bool
        # One CLIP image tower on regions: the head's patch inputs (if it reads them) and the
        # ensemble's classifier (if a kappa > 0), so a query of one patch reuses that patch's embedding.
        self.region_encoder = head_region_encoder(self.head.config.clip_dim, encoder)
        self.region_classifier = None
        if self.postprocess.uses_clip():
            regions = self.region_encoder or region_encoder(encoder)
            self.region_classifier = RegionClassifier(regions, text)

    def label(self, image: np.ndarray) -> LabeledImage:
        """One RGB (H, W, 3) uint8 image."""
        return self.label_batch([image])[0]

    @torch.no_grad()
    def label_batch(self, images: list[np.ndarray]) -> list[LabeledImage]:
        patch_sets = self.generator(images)
        return [self.label_patches(p, image) for p, image in zip(patch_sets, images)]

    @torch.no_grad()
    def label_patches(self, patches: PatchSet, image: np.ndarray) -> LabeledImage:
        """The image's SAM patches -> its panoptic segments (the image itself for the CLIP classifier)."""
        return self.label_outputs(patches, self.head_outputs(patches, image))

    @torch.no_grad()
    def head_outputs(self, patches: PatchSet, image: np.ndarray) -> HeadOutputs | None:
        """The SAM-CP head's last layer on one image's patches (None when it has none): what
        post-processing reads, whatever its settings."""
        if len(patches) == 0:
            return None
        pixels = None  # for the CLIP stages only; a copy: the image may be a read-only view (Ray)
        if self.region_encoder is not None or self.region_classifier is not None:
            pixels = torch.tensor(image)
        with record_function("samcp.head"):
            clip = (None if self.region_encoder is None
                    else [self.region_encoder(pixels, patches.masks, patches.boxes)])
            inputs = head_inputs([patches], self.sam.image_encoder.img_size, self.head.config.roi_size, clip)
            last = self.head(inputs, self.stuff_text, self.thing_text, last_only=True)[0]
        region_probs = patch_probs = None
        if self.region_classifier is not None:
            region_probs = partial(self.region_classifier, pixels)
            if clip is not None:  # the head's region encoder is the classifier's
                patch_probs = self.region_classifier.probs(clip[0])
        return HeadOutputs(last["affinity"][0].float(), last["stuff_logits"][0].float(),
                           last["thing_logits"][0].float(), region_probs, patch_probs)

    @torch.no_grad()
    def label_outputs(self, patches: PatchSet, outputs: HeadOutputs | None,
                      postprocess: PostprocessConfig | None = None) -> LabeledImage:
        """Post-processing with `postprocess` (default: `self.postprocess`): head outputs ->
        panoptic segments with RLE. The head outputs do not depend on it, so one forward pass can
        serve several settings."""
        cfg = (postprocess or self.postprocess).with_default_kappas(self.clip_trained)
        if cfg.uses_clip() and self.region_classifier is None:
            raise ValueError("a kappa > 0 needs the CLIP region classifier: build the Labeler with "
                             "trained CLIP weights and a kappa > 0")
        h, w = patches.image_size
        if outputs is None:
            return LabeledImage(np.zeros((h, w), np.int32), [], 0)
        with record_function("samcp.postprocess"):
            result = panoptic(outputs.affinity, outputs.stuff_logits, outputs.thing_logits, patches.masks,
                              self.stuff_index, self.thing_index, cfg,
                              outputs.region_probs, outputs.patch_probs, self.seen)
            id_map = result.id_map.cpu().numpy()
        segments = []
        with record_function("samcp.rle"):
            for seg in result.segments:
                cls = self.vocab.classes[seg["category_index"]]
                mask = id_map == seg["id"]
                segments.append({"id": seg["id"], "category_id": cls.id, "category": cls.name,
                                 "isthing": cls.isthing, "score": seg["score"], "area": seg["area"],
                                 "bbox": mask_bbox(mask), "rle": encode_rle(mask)})
        return LabeledImage(id_map, segments, len(patches))
