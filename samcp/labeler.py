"""Label one image (or a batch) with no cluster: SAM patches -> SAM-CP head -> panoptic segments.

    from samcp import Labeler
    segments = Labeler.from_config().label(image).segments   # shipped tiny models, synthetic vocabulary
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch.profiler import record_function

from samcp.checkpoint import weights_fingerprint
from samcp.clip.region import RegionClassifier, head_region_encoder, region_encoder
from samcp.clip.text_encoder import TextEncoder
from samcp.config import LabelerConfig
from samcp.data.coco import encode_rle
from samcp.flip_agreement import flip_ious
from samcp.masks import mask_bbox
from samcp.model.backbone import backbone_pixels
from samcp.model.factory import build_head, check_head_fits, random_head
from samcp.model.head import SamCPHead
from samcp.model.inputs import head_inputs
from samcp.native import NativePatches, native_id_map, segment_rles
from samcp.postprocess import PanopticFusion, PanopticResult, PostprocessConfig
from samcp.sam.build import build_sam
from samcp.sam.patches import AUTOCAST_DTYPES, PatchGenerator, PatchSet
from samcp.views import mirror
from samcp.vocab import Vocabulary, load_vocabulary


@dataclass
class LabeledImage:
    """Panoptic result of one image: id_map (H, W) integer ids (0 = void; uint8 when drawn at a
    native size, int32 otherwise) and one dict per segment with id, category_id, category,
    isthing, score, area, bbox (x, y, w, h) and rle (and flip_iou from a Labeler with
    `flip_agreement`), all at the image's size, or at its native size when one was given."""

    id_map: np.ndarray
    segments: list[dict]
    num_patches: int
    model_size: tuple[int, int] | None = None  # (height, width) the model saw, when not the id map's


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
    """SAM + SAM-CP head + CLIP text tower + vocabulary: images in, panoptic segments out.

    Built from its parts (each already on `device`), or by name from a `LabelerConfig` with
    `Labeler.from_config`, the one builder:

        labeler = Labeler.from_config()       # the shipped tiny models, built-in synthetic vocabulary
        segments = labeler.label(image).segments

    `generator` makes the SAM patches; `postprocess` turns head outputs into segments (kappas left
    None get the defaults of `clip_trained`, whether the CLIP has trained weights).
    `flip_agreement` also labels each image mirrored left-right (twice the cost) and gives every
    segment a `flip_iou`: its IoU with the same-class segment found there (`samcp.flip_agreement`).
    """

    def __init__(self, sam: Sam, head: SamCPHead, text: TextEncoder, vocab: Vocabulary,
                 generator: PatchGenerator, postprocess: PostprocessConfig, clip_trained: bool,
                 flip_agreement: bool = False, device: torch.device | str = "cpu"):
        sam_width = (sam.prompt_encoder.embed_dim if head.config.reads_sam_embedding
                     else head.config.feature_dim)  # a ResNet backbone's projection
        if (head.config.feature_dim, head.config.text_dim) != (sam_width, text.dim):
            raise ValueError(f"the SAM-CP head reads {head.config.feature_dim}-channel SAM embeddings and "
                             f"{head.config.text_dim}-wide text embeddings, but the SAM gives {sam_width} "
                             f"and CLIP {text.model_name!r} {text.dim}: use a head trained with these "
                             "models (jobs/train_samcp.py), or none (random weights) for speed tests")
        self.device = torch.device(device)
        self.sam, self.head, self.vocab, self.generator = sam, head, vocab, generator
        embeddings = text.embed(vocab).to(self.device)
        self.stuff_text, self.thing_text = vocab.split(embeddings)
        self.stuff_index, self.thing_index = vocab.stuff_index, vocab.thing_index
        self.clip_trained = clip_trained
        self.flip_agreement = flip_agreement
        self.postprocess = postprocess.with_default_kappas(clip_trained)
        trained = set(head.trained_classes)
        self.seen = torch.tensor([c.name in trained for c in vocab.classes])  # (C,) bool
        # One CLIP image tower on regions: the head's patch inputs (if it reads them) and the
        # ensemble's classifier (if a kappa > 0), so a query of one patch reuses that patch's embedding.
        self.region_encoder = head_region_encoder(head.config.clip_dim, text)
        self.region_classifier = None
        if self.postprocess.uses_clip():
            regions = self.region_encoder or region_encoder(text)
            self.region_classifier = RegionClassifier(regions, embeddings)

    @classmethod
    def from_config(cls, cfg: LabelerConfig | None = None, storage_options: dict | None = None,
                    device: str | None = None) -> Labeler:
        """The models `cfg` names (default: `LabelerConfig()`, the shipped ones) on `device`
        (default: cuda when there is one). A head trained on another SAM (architecture or
        weights, as it records them) is refused."""
        cfg = cfg or LabelerConfig()
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        sam = build_sam(cfg.sam_model, cfg.sam_checkpoint, storage_options).to(device)
        text = TextEncoder(cfg.clip_model, cfg.clip_checkpoint, storage_options, device=device)
        head = (random_head(sam.prompt_encoder.embed_dim, text.dim) if cfg.head_checkpoint is None
                else build_head(cfg.head_checkpoint, storage_options, cfg.sam_model))
        generator = PatchGenerator(sam, cfg.patch_config(), autocast_dtype=AUTOCAST_DTYPES[cfg.autocast])
        labeler = cls(sam, head.to(device), text, load_vocabulary(cfg.vocab), generator,
                      cfg.postprocess_config(), clip_trained=bool(cfg.clip_checkpoint),
                      flip_agreement=cfg.flip_agreement, device=device)
        check_head_fits(head, cfg.sam_model, weights_fingerprint(sam.state_dict())
                        if head.sam_weights and cfg.sam_checkpoint is not None else None)
        return labeler

    def label(self, image: np.ndarray, native_size: tuple[int, int] | None = None) -> LabeledImage:
        """One RGB (H, W, 3) uint8 image; `native_size`: the (height, width) of the original it was
        downscaled from, at which to return the segments (`samcp.native`)."""
        return self.label_batch([image], None if native_size is None else [native_size])[0]

    @torch.no_grad()
    def label_batch(self, images: list[np.ndarray],
                    native_sizes: list[tuple[int, int]] | None = None) -> list[LabeledImage]:
        """native_sizes: per image, the size to return its segments at (None: the image's)."""
        if not self.flip_agreement:
            return self.label_patches(self.generator(images), images, native_sizes)
        both = images + [mirror(image)[0] for image in images]
        labeled = self.label_patches(self.generator(both), both, native_sizes and native_sizes * 2)
        for image, mirrored in zip(labeled, labeled[len(images):]):
            ious = flip_ious(image.id_map, {s["id"]: s["category_id"] for s in image.segments},
                             mirrored.id_map, {s["id"]: s["category_id"] for s in mirrored.segments})
            for segment in image.segments:
                segment["flip_iou"] = ious[segment["id"]]
        return labeled[:len(images)]

    @torch.no_grad()
    def label_patches(self, patch_sets: list[PatchSet], images: list[np.ndarray],
                      native_sizes: list[tuple[int, int]] | None = None) -> list[LabeledImage]:
        """Each image's SAM patches -> its panoptic segments (the images themselves for the CLIP
        stages); the head runs once on the whole batch."""
        return self.label_outputs(patch_sets, self.head_outputs(patch_sets, images),
                                  native_sizes=native_sizes)

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
            size = self.sam.image_encoder.img_size
            frames = None if self.head.backbone is None else [backbone_pixels(images[i], size).to(self.device)
                                                              for i in batch]
            inputs = head_inputs(patches, size, self.head.config.roi_size, clip, frames)
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
                      postprocess: PostprocessConfig | None = None,
                      native_sizes: list[tuple[int, int]] | None = None) -> list[LabeledImage]:
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
        native_sizes = native_sizes or [None] * len(patch_sets)
        return [self.labeled_image(p, r, n) for p, r, n in zip(patch_sets, results, native_sizes)]

    def labeled_image(self, patches: PatchSet, result: PanopticResult | None,
                      native_size: tuple[int, int] | None = None) -> LabeledImage:
        """A `PanopticResult` (None: no patches) with the vocabulary's names and each segment's RLE,
        at `native_size` when it is not the patches' own."""
        if native_size is not None and tuple(native_size) != tuple(patches.image_size):
            return self.native_image(patches, result, tuple(native_size))
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

    def native_image(self, patches: PatchSet, result: PanopticResult | None,
                     native_size: tuple[int, int]) -> LabeledImage:
        """The segments of `result` drawn again at `native_size` from the patches' logits
        (`samcp.native`); a segment left without pixels there is dropped."""
        if result is None:
            return LabeledImage(np.zeros(native_size, np.uint8), [], 0, tuple(patches.image_size))
        native = NativePatches(patches, native_size, self.sam.image_encoder.img_size, self.sam.mask_threshold)
        with record_function("samcp.native"):
            id_map = native_id_map(native, result.candidates)
            drawn = segment_rles(id_map)
        segments = []
        for seg in result.segments:
            if seg["id"] in drawn:
                cls = self.vocab.classes[seg["category_index"]]
                segments.append({"id": seg["id"], "category_id": cls.id, "category": cls.name,
                                 "isthing": cls.isthing, "score": seg["score"], **drawn[seg["id"]]})
        return LabeledImage(id_map, segments, len(patches), tuple(patches.image_size))
