"""Segments at the image's own size when the model saw it smaller.

The model labels an image downscaled to at most `--max-side`; its segments are
drawn again at the image's own size the way segment-anything returns masks at
an original size: each patch's low-resolution mask logits are upsampled to the
native frame, then thresholded (never a binary mask blown up). Which queries
become segments, their classes and scores, and their order are those of the
fusion at the model's size (`samcp.postprocess`); the per-pixel competition is
drawn again at native size: in score order, each candidate takes the pixels of
its patches that no better candidate took (those of a candidate the fusion
dropped stay void).

Memory is bounded: one native (H, W) id map of one byte a pixel, and one patch
upsampled at a time, in bands of rows inside that patch's box.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from samcp.sam.patches import PatchSet

DROPPED = 255  # id-map value of pixels won by a candidate the fusion dropped (void at the end)
MAX_SEGMENTS = DROPPED - 1
BAND_PIXELS = 4 * 2**20  # native pixels upsampled at once (16 MiB of float32 logits)


def bilinear_taps(in_size: int, out_size: int, start: int, stop: int) -> tuple[torch.Tensor, ...]:
    """Output coordinates [start, stop) of a bilinear resize from `in_size` to `out_size` samples
    (as `F.interpolate(mode="bilinear", align_corners=False)` computes them): the two input
    indices of each and the weight of the second."""
    scale = in_size / out_size
    source = ((torch.arange(start, stop, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    first = source.floor().long().clamp(max=in_size - 1)
    second = (first + 1).clamp(max=in_size - 1)
    return first, second, (source - first).float()


def resize_window(logits: torch.Tensor, out_size: tuple[int, int], rows: tuple[int, int],
                  cols: tuple[int, int]) -> torch.Tensor:
    """The rows [r0, r1) and columns [c0, c1) of `logits` (h, w) resized bilinearly to `out_size`
    (H, W), without computing the rest: (r1 - r0, c1 - c0)."""
    y0, y1, wy = bilinear_taps(logits.shape[0], out_size[0], *rows)
    x0, x1, wx = bilinear_taps(logits.shape[1], out_size[1], *cols)
    wy, wx = wy.to(logits.device)[:, None], wx.to(logits.device)
    band = logits[y0] * (1 - wy) + logits[y1] * wy
    return band[:, x0] * (1 - wx) + band[:, x1] * wx


class NativePatches:
    """The patches of one image, drawn at its native size `native_size` (H, W) from their
    low-resolution logits (`PatchSet.low_res`), as SAM's `postprocess_masks` would with that
    original size: logits up to the encoder's square input, cropped to the resized input,
    resized to the native size of the crop they came from, thresholded."""

    def __init__(self, patches: PatchSet, native_size: tuple[int, int], encoder_size: int,
                 mask_threshold: float = 0.0):
        if patches.low_res is None:
            raise ValueError("these patches kept no low-resolution logits (PatchGenerator keep_logits)")
        self.patches, self.native_size = patches, tuple(native_size)
        self.encoder_size, self.threshold = encoder_size, mask_threshold
        model_h, model_w = patches.image_size
        self.scale = (native_size[0] / model_h, native_size[1] / model_w)

    def _crop(self, index: int) -> tuple[int, int, int, int]:
        """The native frame's rows and columns (y0, y1, x0, x1) of the crop patch `index` came from."""
        x0, y0, x1, y1 = self.patches.crop_boxes[index].tolist()
        sy, sx = self.scale
        return round(y0 * sy), round(y1 * sy), round(x0 * sx), round(x1 * sx)

    def window(self, index: int) -> tuple[int, int, int, int]:
        """Native rows and columns (y0, y1, x0, x1) that may hold patch `index`: its model-size box
        scaled, wider on each side by one pixel of the logits' grid (and one of the model's),
        inside its crop."""
        cy0, cy1, cx0, cx1 = self._crop(index)
        bx0, by0, bx1, by1 = self.patches.crop_boxes[index].tolist()
        in_h, in_w = self.patches.crop_input_sizes[index].tolist()
        margin = int(np.ceil(max((by1 - by0) / in_h, (bx1 - bx0) / in_w))) + 1  # model pixels
        x0, y0, x1, y1 = self.patches.boxes[index].tolist()  # inclusive last pixel
        sy, sx = self.scale
        return (max(cy0, int(np.floor((y0 - margin) * sy))), min(cy1, int(np.ceil((y1 + 1 + margin) * sy))),
                max(cx0, int(np.floor((x0 - margin) * sx))), min(cx1, int(np.ceil((x1 + 1 + margin) * sx))))

    def bands(self, index: int):
        """Yield ((y0, y1, x0, x1), mask) covering the window of patch `index` in bands of rows:
        mask (y1 - y0, x1 - x0) bool on the CPU."""
        cy0, cy1, cx0, cx1 = self._crop(index)
        h, w = (int(v) for v in self.patches.crop_input_sizes[index].tolist())
        side = self.encoder_size
        logits = F.interpolate(self.patches.low_res[index][None, None].float(), (side, side),
                               mode="bilinear", align_corners=False)[0, 0, :h, :w]
        y0, y1, x0, x1 = self.window(index)
        if y1 <= y0 or x1 <= x0:
            return
        step = max(1, BAND_PIXELS // (x1 - x0))
        for top in range(y0, y1, step):
            bottom = min(y1, top + step)
            band = resize_window(logits, (cy1 - cy0, cx1 - cx0), (top - cy0, bottom - cy0),
                                 (x0 - cx0, x1 - cx0))
            yield (top, bottom, x0, x1), (band > self.threshold).cpu().numpy()


def native_id_map(native: NativePatches, candidates: list[tuple[list[int], int]]) -> np.ndarray:
    """(H, W) uint8 segment ids at native size: `candidates` in score order as (the patches it
    claims, its segment id, or 0 for a candidate the fusion dropped); each takes the pixels of
    its patches that no earlier candidate took."""
    if sum(1 for _, sid in candidates if sid) > MAX_SEGMENTS:
        raise ValueError(f"at most {MAX_SEGMENTS} segments are drawn at native size")
    id_map = np.zeros(native.native_size, np.uint8)
    for patches, segment_id in candidates:
        value = segment_id or DROPPED
        for index in patches:
            for (y0, y1, x0, x1), mask in native.bands(index):
                window = id_map[y0:y1, x0:x1]
                window[mask & (window == 0)] = value
    id_map[id_map == DROPPED] = 0
    return id_map


def segment_rles(id_map: np.ndarray) -> dict[int, dict]:
    """{segment id: {"rle", "area", "bbox"}} for the segments of an (H, W) id map (0 = void), from
    one column-major pass over it: compressed COCO RLE (`counts` as str), area, and the COCO
    (x, y, w, h) box as integers."""
    height, width = id_map.shape
    flat = id_map.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [flat.size]])
    values = flat[starts]
    found = {}
    for segment_id in np.unique(values[values > 0]).tolist():
        chosen = values == segment_id
        s, e = starts[chosen], ends[chosen]
        counts = np.empty(2 * len(s) + 1, np.int64)
        counts[0:-1:2] = s - np.concatenate([[0], e[:-1]])  # void before each run
        counts[1::2] = e - s
        counts[-1] = flat.size - e[-1]  # void after the last
        rle = mask_utils.frPyObjects({"counts": counts[:-1 if counts[-1] == 0 else None].tolist(),
                                      "size": [height, width]}, height, width)
        x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(rle))
        rle["counts"] = rle["counts"].decode("ascii")
        found[segment_id] = {"rle": rle, "area": int(counts[1::2].sum()), "bbox": [x, y, w, h]}
    return found
