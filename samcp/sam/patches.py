"""SAM patches: batched automatic mask generation that returns a `PatchSet` per image.

Same masks as segment-anything's `SamAutomaticMaskGenerator` (point grid,
multimask output, predicted-IoU and stability filters, box NMS, crop layers),
but it encodes a batch of images and their crops in one forward pass, decodes
each crop's whole point grid in large batches with the image-side work shared by the
prompts (`samcp.sam.point_decoder`), upsamples only the masks that pass the IoU
filter, and never leaves torch (no RLE round trip), so it runs on the GPU end to
end when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.amg import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_masks,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torch.profiler import record_function
from torchvision.ops import batched_nms

from samcp.sam.build import patch_defaults
from samcp.sam.point_decoder import PointGridDecoder

# Names of the dtypes SAM can run in under autocast (GPU), as the CLIs take them.
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16,
                                                   "fp16": torch.float16}


@dataclass(frozen=True)
class PatchConfig:
    """Thresholds of patch generation; defaults as in `SamAutomaticMaskGenerator`
    except `max_patches`, which bounds memory (None: keep all)."""

    points_per_side: int = 32
    points_per_batch: int | None = None  # prompts decoded together; None: 1024 on GPU, 64 on CPU
    upsample_batch: int = 64  # masks upsampled to image resolution together (bounds memory)
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    # Crop layers: layer i also runs SAM on (2^i)^2 overlapping crops of the image (0: whole image only).
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_patch_area: int = 0
    max_patches: int | None = 256

    def __post_init__(self) -> None:
        if self.crop_n_layers < 0 or self.crop_n_points_downscale_factor < 1:
            raise ValueError(f"need crop_n_layers >= 0 and crop_n_points_downscale_factor >= 1, got "
                             f"{self.crop_n_layers}, {self.crop_n_points_downscale_factor}")
        if not 0 <= self.crop_overlap_ratio < 1:
            raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {self.crop_overlap_ratio}")

    @classmethod
    def for_model(cls, architecture: str, **overrides) -> PatchConfig:
        """Defaults tuned for a SAM architecture (see `samcp.sam.build.patch_defaults`), then `overrides`."""
        return cls(**{**patch_defaults(architecture), **overrides})


@dataclass
class PatchSet:
    """The SAM patches of one image, best predicted IoU first.

    masks: (N, H, W) bool at image resolution. boxes: (N, 4) xyxy float in pixels.
    predicted_iou, stability_score: (N,). points: (N, 2) xy of the prompting grid point.
    embedding: (C, h, w) SAM image embedding; `input_size` is the (height, width)
    the image was resized to before padding to the encoder's square input.
    low_res: (N, h', w') the mask decoder's logits of each patch, crop_boxes: (N, 4) xyxy int
    the crop of the image it was found in, crop_input_sizes: (N, 2) the (height, width) that
    crop was resized to: what draws the masks again at another size (`samcp.native`).
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    predicted_iou: torch.Tensor
    stability_score: torch.Tensor
    points: torch.Tensor
    embedding: torch.Tensor
    image_size: tuple[int, int]
    input_size: tuple[int, int]
    low_res: torch.Tensor | None = None
    crop_boxes: torch.Tensor | None = None
    crop_input_sizes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def to(self, device: torch.device | str) -> PatchSet:
        tensors = {k: None if getattr(self, k) is None else getattr(self, k).to(device) for k in
                   ("masks", "boxes", "predicted_iou", "stability_score", "points", "embedding", "low_res",
                    "crop_boxes", "crop_input_sizes")}
        return PatchSet(**tensors, image_size=self.image_size, input_size=self.input_size)


class PatchGenerator:
    """Turns batches of RGB images (H, W, 3) uint8 into `PatchSet`s with one SAM."""

    def __init__(self, sam: Sam, config: PatchConfig | None = None,
                 autocast_dtype: torch.dtype | None = None):
        self.sam = sam.eval()
        self.config = config or PatchConfig()
        self.autocast_dtype = autocast_dtype
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self.decoder = PointGridDecoder(sam.mask_decoder)
        # One (P, 2) grid in [0, 1] per crop layer.
        self.grids = build_all_layer_point_grids(self.config.points_per_side, self.config.crop_n_layers,
                                                 self.config.crop_n_points_downscale_factor)

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> list[PatchSet]:
        if not images:
            return []
        cfg = self.config
        inputs, crops, whole = [], [], []  # crops: (image index, crop box xyxy, layer, input size)
        for index, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an RGB (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
            whole.append(len(crops))  # `generate_crop_boxes` lists the whole image first
            boxes, layers = generate_crop_boxes(image.shape[:2], cfg.crop_n_layers, cfg.crop_overlap_ratio)
            for (x0, y0, x1, y1), layer in zip(boxes, layers):
                resized = torch.as_tensor(self.transform.apply_image(image[y0:y1, x0:x1]), device=self.device)
                crops.append((index, [x0, y0, x1, y1], layer, tuple(resized.shape[:2])))
                inputs.append(self.sam.preprocess(resized.permute(2, 0, 1).float()))
        with self._autocast(), record_function("sam.encode"):
            embeddings = self.sam.image_encoder(torch.stack(inputs))
        found: list[list[dict[str, torch.Tensor]]] = [[] for _ in images]  # per image, per crop
        with record_function("sam.decode"):
            for i, (index, box, layer, input_size) in enumerate(crops):
                found[index].append(self._crop_patches(embeddings[i:i + 1], box, layer, input_size,
                                                       images[index].shape[:2]))
        return [self._select(found[index], embeddings[whole[index]], image.shape[:2], crops[whole[index]][3])
                for index, image in enumerate(images)]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                              enabled=self.autocast_dtype is not None)

    def _crop_patches(self, embedding: torch.Tensor, crop_box: list[int], layer: int,
                      input_size: tuple[int, int], image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The masks of one crop's point grid that pass the filters, deduplicated by box NMS and
        placed in the image frame: masks (K, H, W) bool, boxes (K, 4) xyxy, iou, stability (K,),
        points (K, 2) and the crop's area (K,) for every mask."""
        cfg = self.config
        x0, y0, x1, y1 = crop_box
        crop_size = (y1 - y0, x1 - x0)
        points = self.grids[layer] * np.array(crop_size)[None, ::-1]
        kept: dict[str, list[torch.Tensor]] = {k: [] for k in ("masks", "iou", "stability", "points",
                                                                "low_res")}
        # Big batches feed a GPU; on a CPU they only add memory traffic (measured in bench/).
        per_batch = cfg.points_per_batch or (1024 if self.device.type == "cuda" else 64)
        for start in range(0, len(points), per_batch):
            low_res, iou, origin = self._decode(embedding, points[start:start + per_batch], crop_size)
            # Only masks that pass the IoU filter are upsampled, a bounded number at a time.
            for first in range(0, len(iou), cfg.upsample_batch):
                chunk = slice(first, first + cfg.upsample_batch)
                logits = self.upsample(low_res[chunk], input_size, crop_size)
                stability = calculate_stability_score(logits, self.sam.mask_threshold,
                                                      cfg.stability_score_offset)
                stable = (stability >= cfg.stability_score_thresh if cfg.stability_score_thresh > 0
                          else torch.ones_like(stability, dtype=torch.bool))
                kept["masks"].append(logits[stable] > self.sam.mask_threshold)
                kept["iou"].append(iou[chunk][stable])
                kept["stability"].append(stability[stable])
                kept["points"].append(origin[chunk][stable])
                kept["low_res"].append(low_res[chunk][stable])
        if not kept["masks"]:
            return {}
        found = {k: torch.cat(v) for k, v in kept.items()}
        boxes = batched_mask_to_box(found["masks"])
        image_box = [0, 0, image_size[1], image_size[0]]
        order = batched_nms(boxes.float(), found["iou"], torch.zeros_like(found["iou"]), cfg.box_nms_thresh)
        order = order[~is_box_near_crop_edge(boxes[order], crop_box, image_box)]
        return {"masks": uncrop_masks(found["masks"][order], crop_box, *image_size),
                "boxes": uncrop_boxes_xyxy(boxes[order], crop_box).float(),
                "iou": found["iou"][order], "stability": found["stability"][order],
                "points": found["points"][order] + torch.tensor([x0, y0], device=self.device),
                "crop_area": torch.full((len(order),), float(crop_size[0] * crop_size[1]),
                                        device=self.device),
                "low_res": found["low_res"][order],
                "crop_boxes": torch.tensor([crop_box], device=self.device).expand(len(order), 4),
                "crop_input_sizes": torch.tensor([input_size], device=self.device).expand(len(order), 2)}

    def upsample(self, low_res: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int]
                 ) -> torch.Tensor:
        """Low-res mask logits (K, h, w) -> (K, H, W) at image resolution: SAM's `postprocess_masks`
        without its second resize when the unpadded input already has the image's size (a resize
        to the same size changes nothing but costs twice the first one on a CPU)."""
        side = self.sam.image_encoder.img_size
        logits = F.interpolate(low_res[:, None], (side, side), mode="bilinear", align_corners=False)
        logits = logits[..., :input_size[0], :input_size[1]]
        if tuple(input_size) != tuple(image_size):
            logits = F.interpolate(logits, image_size, mode="bilinear", align_corners=False)
        return logits[:, 0]

    def _decode(self, embedding: torch.Tensor, points: np.ndarray, image_size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The masks of P point prompts (xy pixels of an image or crop of `image_size`) whose
        predicted IoU passes the filter:
        low-res logits (K, h, w), predicted IoU (K,) and the prompting point of each (K, 2)."""
        coords = torch.as_tensor(self.transform.apply_coords(points, image_size),
                                 dtype=torch.float, device=self.device)[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=self.device)
        with self._autocast():
            sparse, dense = self.sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            low_res, iou, index = self.decoder(embedding, self.sam.prompt_encoder.get_dense_pe(), dense[:1],
                                               sparse, self.config.pred_iou_thresh)
        origin = torch.as_tensor(points, dtype=torch.float, device=self.device)[index // 3]
        return low_res.float(), iou.float(), origin

    def _select(self, crops: list[dict[str, torch.Tensor]], embedding: torch.Tensor,
                image_size: tuple[int, int], input_size: tuple[int, int]) -> PatchSet:
        """One image's patches from the masks of its crops: masks found in several crops are
        deduplicated by box NMS preferring the smaller crop (as segment-anything does), then the
        best `max_patches` by predicted IoU of those above `min_patch_area` are kept."""
        cfg = self.config
        h, w = image_size
        crops = [c for c in crops if c]
        if not crops:
            low = self.sam.prompt_encoder.mask_input_size
            return PatchSet(masks=torch.zeros((0, h, w), dtype=torch.bool, device=self.device),
                            boxes=torch.zeros((0, 4), device=self.device),
                            predicted_iou=torch.zeros(0, device=self.device),
                            stability_score=torch.zeros(0, device=self.device),
                            points=torch.zeros((0, 2), device=self.device),
                            embedding=embedding, image_size=(h, w), input_size=input_size,
                            low_res=torch.zeros((0, *low), device=self.device),
                            crop_boxes=torch.zeros((0, 4), dtype=torch.long, device=self.device),
                            crop_input_sizes=torch.zeros((0, 2), dtype=torch.long, device=self.device))
        found = {k: torch.cat([c[k] for c in crops]) for k in crops[0]}
        keep = torch.arange(len(found["iou"]), device=self.device)
        if len(crops) > 1:
            keep = batched_nms(found["boxes"], 1 / found["crop_area"], torch.zeros_like(found["iou"]),
                               cfg.crop_nms_thresh)
        keep = keep[torch.argsort(found["iou"][keep], descending=True, stable=True)]
        if cfg.min_patch_area > 0:
            keep = keep[found["masks"][keep].flatten(1).sum(1) >= cfg.min_patch_area]
        if cfg.max_patches is not None:
            keep = keep[:cfg.max_patches]
        return PatchSet(masks=found["masks"][keep], boxes=found["boxes"][keep],
                        predicted_iou=found["iou"][keep], stability_score=found["stability"][keep],
                        points=found["points"][keep], embedding=embedding, image_size=(h, w),
                        input_size=input_size, low_res=found["low_res"][keep],
                        crop_boxes=found["crop_boxes"][keep],
                        crop_input_sizes=found["crop_input_sizes"][keep])
