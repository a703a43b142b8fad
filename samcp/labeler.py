"""Label one image (or a batch) with no cluster: SAM patches -> SAM-CP head -> panoptic segments.

    from samcp import Labeler
    segments = Labeler().label(image).segments   # shipped tiny models, built-in synthetic vocabulary
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.profiler import record_function

from samcp.clip.region import RegionClassifier, head_region_encoder, region_encoder
from samcp.clip.text_encoder import TextEncoder
from samcp.data.coco import encode_rle
from samcp.flip_agreement import flip_ious
from samcp.masks import mask_bbox
from samcp.model.factory import build_head, check_head_fits, random_head
from samcp.model.inputs import head_inputs
from samcp.postprocess import PanopticFusion, PanopticResult, PostprocessConfig
from samcp.sam.build import build_sam
from samcp.sam.patches import PatchConfig, PatchGenerator, PatchSet
from samcp.vocab import Vocabulary, load_vocabulary


@dataclass
class LabeledImage:
    """Panoptic result of one image: id_map (H, W) int32 (0 = void) and one dict per segment
    with id, category_id, category, isthing, score, area, bbox (x, y, w, h) and rle (and flip_iou
    from a `Labeler(flip_agreement=True)`)."""

    id_map: np.ndarray
    segments: list[dict]
    num_patches: int


@dataclass
class HeadOutputs:
    """The head's last layer on one image of N patches, S stuff and K thing classes: affinity
    (S + N, N) logits, stuff_logits (S,), thing_logits (N, K); pixels: the (H, W, 3) uint8 image
    for the CLIP classifier (None without one); patch_probs: (N, C) CLIP's probabilities for the
    patch masks, when the head already encoded them."""

    affinity: torch.Tensor
    stuff_logits: torch.Tensor
    thing_logits: torch.Tensor
    pixels: torch.Tensor | None
    patch_probs: torch.Tensor | None


class Labeler:
    """SAM + SAM-CP head + vocabulary, built by name like `build_sam` / `build_head`.

    Defaults are the package's shipped small models (SAM, head and the CLIP whose text
    embeddings the head was trained with) and the built-in synthetic vocabulary; patch
    settings default to those tuned for `sam_model`. `clip_checkpoint=None` keeps the
    CLIP's fixed-seed random initialisation, `head_checkpoint=None` a fixed-seed random head
    that fits the SAM (speed tests). `autocast` runs SAM in that dtype (bf16/fp16, GPU).
    `flip_agreement` also labels each image mirrored left-right (twice the cost) and gives every
    segment a `flip_iou`: its IoU with the same-class segment found there (`samcp.flip_agreement`).
    """

    def __init__(self, sam_model: str = "tiny", sam_checkpoint: str | None = "shipped",
                 head_checkpoint: str | None = "shipped", vocab: Vocabulary | str = "builtin:synthetic",
                 clip_model: str = "samcp-clip-tiny", clip_checkpoint: str | None = "shipped",
                 patch_config: PatchConfig | None = None, postprocess: PostprocessConfig | None = None,
                 device: str | None = None, storage_options: dict | None = None,
                 autocast: torch.dtype | None = None, flip_agreement: bool = False):
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
        check_head_fits(head, sam_model)
        self.head = head.to(self.device)
        text = encoder.embed(self.vocab).to(self.device)
        is_thing = torch.tensor([c.isthing for c in self.vocab.classes])
        self.stuff_text, self.thing_text = text[~is_thing], text[is_thing]
        self.stuff_index = (~is_thing).nonzero()[:, 0].tolist()
        self.thing_index = is_thing.nonzero()[:, 0].tolist()
        self.generator = PatchGenerator(self.sam, patch_config or PatchConfig.for_model(sam_model),
                                        autocast_dtype=autocast)
        self.clip_trained = bool(clip_checkpoint)
        self.flip_agreement = flip_agreement
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
        if not self.flip_agreement:
            return self.label_patches(self.generator(images), images)
        both = images + [np.ascontiguousarray(image[:, ::-1]) for image in images]
        labeled = self.label_patches(self.generator(both), both)
        for image, mirrored in zip(labeled, labeled[len(images):]):
            ious = flip_ious(image.id_map, {s["id"]: s["category_id"] for s in image.segments},
                             mirrored.id_map, {s["id"]: s["category_id"] for s in mirrored.segments})
            for segment in image.segments:
                segment["flip_iou"] = ious[segment["id"]]
        return labeled[:len(images)]

    @torch.no_grad()
    def label_patches(self, patch_sets: list[PatchSet], images: list[np.ndarray]) -> list[LabeledImage]:
        """Each image's SAM patches -> its panoptic segments (the images themselves for the CLIP
        stages); the head runs once on the whole batch."""
        return self.label_outputs(patch_sets, self.head_outputs(patch_sets, images))

    @torch.no_grad()
    def head_outputs(self, patch_sets: list[PatchSet], images: list[np.ndarray]) -> list[HeadOutputs | None]:
        """The SAM-CP head's last layer on a batch of images' patches, in one forward pass (None for
        an image without patches): what post-processing reads, whatever its settings."""
        results: list[HeadOutputs | None] = [None] * len(patch_sets)
        batch = [i for i, p in enumerate(patch_sets) if len(p)]
        if not batch:
            return results
        pixels = {}  # for the CLIP stages only; copies: an image may be a read-only view (Ray)
        if self.region_encoder is not None or self.region_classifier is not None:
            pixels = {i: torch.tensor(images[i]) for i in batch}
        patches = [patch_sets[i] for i in batch]
        with record_function("samcp.head"):
            clip = (None if self.region_encoder is None else
                    self.region_encoder.embed_many([(pixels[i], patch_sets[i].masks, patch_sets[i].boxes)
                                                    for i in batch]))
            inputs = head_inputs(patches, self.sam.image_encoder.img_size, self.head.config.roi_size, clip)
            last = self.head(inputs, self.stuff_text, self.thing_text, last_only=True)[0]
        s = len(self.stuff_index)
        for b, (i, p) in enumerate(zip(batch, patches)):
            n = len(p)  # the image's own rows and columns, without the batch's padding
            patch_probs = None
            if self.region_classifier is not None and clip is not None:  # the head's region encoder
                patch_probs = self.region_classifier.probs(clip[b])   # is the classifier's
            results[i] = HeadOutputs(last["affinity"][b, :s + n, :n].float(), last["stuff_logits"][b].float(),
                                     last["thing_logits"][b, :n].float(), pixels.get(i), patch_probs)
        return results

    @torch.no_grad()
    def label_outputs(self, patch_sets: list[PatchSet], outputs: list[HeadOutputs | None],
                      postprocess: PostprocessConfig | None = None) -> list[LabeledImage]:
        """Post-processing with `postprocess` (default: `self.postprocess`): each image's head
        outputs -> its panoptic segments with RLE, the CLIP classifier asked about the masks of
        all images in one pass. The head outputs do not depend on the settings, so one forward
        pass can serve several."""
        cfg = (postprocess or self.postprocess).with_default_kappas(self.clip_trained)
        if cfg.uses_clip() and self.region_classifier is None:
            raise ValueError("a kappa > 0 needs the CLIP region classifier: build the Labeler with "
                             "trained CLIP weights and a kappa > 0")
        kappas = None if self.region_classifier is None else cfg.class_kappas(self.seen)
        with record_function("samcp.postprocess"):
            fusions = [None if o is None else
                       PanopticFusion(o.affinity, o.stuff_logits, o.thing_logits, p.masks, self.stuff_index,
                                      self.thing_index, cfg, kappas, o.patch_probs)
                       for p, o in zip(patch_sets, outputs)]
            asking = [i for i, f in enumerate(fusions) if f is not None and f.clip_masks is not None]
            probs = self.region_classifier.probs_many([(outputs[i].pixels, fusions[i].clip_masks)
                                                       for i in asking]) if asking else []
            clip_probs = dict(zip(asking, probs))
            results = [None if f is None else f.result(clip_probs.get(i)) for i, f in enumerate(fusions)]
        return [self.labeled_image(p, r) for p, r in zip(patch_sets, results)]

    def labeled_image(self, patches: PatchSet, result: PanopticResult | None) -> LabeledImage:
        """A `PanopticResult` (None: no patches) with the vocabulary's names and each segment's RLE."""
        if result is None:
            return LabeledImage(np.zeros(patches.image_size, np.int32), [], 0)
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
