"""SAM patches: batched automatic mask generation that returns a `PatchSet` per image.

Same masks as segment-anything's `SamAutomaticMaskGenerator` (point grid,
multimask output, predicted-IoU and stability filters, box NMS; no crop
layers), but it encodes a batch of images in one forward pass, decodes each
image's whole point grid in large batches with the image-side work shared by the
prompts (`samcp.point_decoder`), upsamples only the masks that pass the IoU
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
    build_point_grid,
    calculate_stability_score,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torch.profiler import record_function
from torchvision.ops import batched_nms

from samcp.point_decoder import PointGridDecoder
from samcp.sam import patch_defaults

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
    min_patch_area: int = 0
    max_patches: int | None = 256

    @classmethod
    def for_model(cls, architecture: str, **overrides) -> PatchConfig:
        """Defaults tuned for a SAM architecture (see `samcp.sam.patch_defaults`), then `overrides`."""
        return cls(**{**patch_defaults(architecture), **overrides})


@dataclass
class PatchSet:
    """The SAM patches of one image, best predicted IoU first.

    masks: (N, H, W) bool at image resolution. boxes: (N, 4) xyxy float in pixels.
    predicted_iou, stability_score: (N,). points: (N, 2) xy of the prompting grid point.
    embedding: (C, h, w) SAM image embedding; `input_size` is the (height, width)
    the image was resized to before padding to the encoder's square input.
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    predicted_iou: torch.Tensor
    stability_score: torch.Tensor
    points: torch.Tensor
    embedding: torch.Tensor
    image_size: tuple[int, int]
    input_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def to(self, device: torch.device | str) -> PatchSet:
        tensors = {k: getattr(self, k).to(device) for k in
                   ("masks", "boxes", "predicted_iou", "stability_score", "points", "embedding")}
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
        self.grid = build_point_grid(self.config.points_per_side)  # (P, 2) in [0, 1]

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> list[PatchSet]:
        if not images:
            return []
        inputs, input_sizes = [], []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an RGB (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
            resized = torch.as_tensor(self.transform.apply_image(image), device=self.device)
            input_sizes.append(tuple(resized.shape[:2]))
            inputs.append(self.sam.preprocess(resized.permute(2, 0, 1).float()))
        with self._autocast(), record_function("sam.encode"):
            embeddings = self.sam.image_encoder(torch.stack(inputs))
        with record_function("sam.decode"):
            return [self._patches(embeddings[i:i + 1], image.shape[:2], input_sizes[i])
                    for i, image in enumerate(images)]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                              enabled=self.autocast_dtype is not None)

    def _patches(self, embedding: torch.Tensor, image_size: tuple[int, int],
                 input_size: tuple[int, int]) -> PatchSet:
        cfg = self.config
        points = self.grid * np.array(image_size)[None, ::-1]
        kept: dict[str, list[torch.Tensor]] = {k: [] for k in ("masks", "iou", "stability", "points")}
        # Big batches feed a GPU; on a CPU they only add memory traffic (measured in bench/).
        per_batch = cfg.points_per_batch or (1024 if self.device.type == "cuda" else 64)
        for start in range(0, len(points), per_batch):
            low_res, iou, origin = self._decode(embedding, points[start:start + per_batch], image_size)
            # Only masks that pass the IoU filter are upsampled, a bounded number at a time.
            for first in range(0, len(iou), cfg.upsample_batch):
                chunk = slice(first, first + cfg.upsample_batch)
                logits = self._upsample(low_res[chunk], input_size, image_size)
                stability = calculate_stability_score(logits, self.sam.mask_threshold,
                                                      cfg.stability_score_offset)
                stable = (stability >= cfg.stability_score_thresh if cfg.stability_score_thresh > 0
                          else torch.ones_like(stability, dtype=torch.bool))
                kept["masks"].append(logits[stable] > self.sam.mask_threshold)
                kept["iou"].append(iou[chunk][stable])
                kept["stability"].append(stability[stable])
                kept["points"].append(origin[chunk][stable])
        return self._select(kept, embedding[0], image_size, input_size)

    def _upsample(self, low_res: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int]
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
        """The masks of P point prompts (xy pixels) whose predicted IoU passes the filter:
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

    def _select(self, kept: dict[str, list[torch.Tensor]], embedding: torch.Tensor,
                image_size: tuple[int, int], input_size: tuple[int, int]) -> PatchSet:
        cfg = self.config
        h, w = image_size
        if kept["masks"]:
            masks, iou = torch.cat(kept["masks"]), torch.cat(kept["iou"])
            stability, points = torch.cat(kept["stability"]), torch.cat(kept["points"])
        else:
            masks = torch.zeros((0, h, w), dtype=torch.bool, device=self.device)
            iou = stability = torch.zeros(0, device=self.device)
            points = torch.zeros((0, 2), device=self.device)
        boxes = batched_mask_to_box(masks).float()
        order = batched_nms(boxes, iou, torch.zeros_like(iou), iou_threshold=cfg.box_nms_thresh)
        if cfg.min_patch_area > 0:
            order = order[masks[order].flatten(1).sum(1) >= cfg.min_patch_area]
        if cfg.max_patches is not None:
            order = order[:cfg.max_patches]
        return PatchSet(masks=masks[order], boxes=boxes[order], predicted_iou=iou[order],
                        stability_score=stability[order], points=points[order],
                        embedding=embedding, image_size=(h, w), input_size=input_size)
