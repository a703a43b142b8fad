"""COCO panoptic and COCO instances formats: id maps, RLE, and folder export.

A COCO panoptic PNG stores segment id = R + 256 * G + 256**2 * B per pixel; the
json lists each image's `segments_info`. The instances file holds one
annotation per thing segment, its mask as compressed RLE (pycocotools).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from samcp.data.categories import Category
from samcp.data.imageio import encode_image
from samcp.data.synthetic import SyntheticImage
from samcp.storage import inside


def id_to_rgb(id_map: np.ndarray) -> np.ndarray:
    """(H, W) integer ids -> (H, W, 3) uint8 COCO panoptic colours."""
    ids = id_map.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 256**2 % 256], axis=-1).astype(np.uint8)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 COCO panoptic colours -> (H, W) int32 ids."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def decode_id_png(data: bytes) -> np.ndarray:
    """COCO panoptic PNG bytes -> (H, W) int32 segment ids."""
    with Image.open(io.BytesIO(data)) as png:
        return rgb_to_id(np.asarray(png.convert("RGB")))


class PanopticFolder:
    """A COCO panoptic folder: `panoptic.json` and the id PNGs under `panoptic/`."""

    def __init__(self, folder: str):
        path = os.path.join(folder, "panoptic.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no panoptic.json in {folder}")
        with open(path) as f:
            self.json = json.load(f)
        self.folder = folder
        self.categories = [Category(c["id"], c["name"], bool(c["isthing"]), tuple(c.get("color", (0, 0, 0))))
                           for c in self.json["categories"]]
        self.annotations = {a["file_name"]: a for a in self.json["annotations"]}

    def ids(self, file_name: str) -> np.ndarray:
        """(H, W) int32 segment ids of one annotation's PNG. ValueError for a `file_name` that
        leads outside the folder's `panoptic/` (the json is someone else's data)."""
        with open(inside(os.path.join(self.folder, "panoptic"), file_name), "rb") as f:
            return decode_id_png(f.read())


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool mask -> compressed COCO RLE with `counts` as str."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def instance_annotations(panoptic: np.ndarray, segments_info: Sequence[dict], image_id: int,
                         categories: Sequence[Category], first_id: int) -> list[dict]:
    """COCO instances annotations (RLE) for the thing segments of one panoptic id map (H, W)."""
    things = {c.id for c in categories if c.isthing}
    annotations = []
    for segment in segments_info:
        if segment["category_id"] not in things:
            continue
        rle = encode_rle(panoptic == segment["id"])
        annotations.append({
            "id": first_id + len(annotations),
            "image_id": image_id,
            "category_id": segment["category_id"],
            "segmentation": rle,
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": segment.get("iscrowd", 0),
        })
    return annotations


def export_coco(images: Iterable[SyntheticImage], out_dir: str, categories: Sequence[Category],
                image_format: str = "png") -> dict[str, str]:
    """Write images/, panoptic/ (id PNGs), parts/ (part id PNGs), panoptic.json and instances.json.

    Returns the paths of the two json files. Extra keys (`parts_file_name`,
    `parts_info`, category `parts`) ride along and are ignored by COCO tools.
    """
    for sub in ("images", "panoptic", "parts"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    image_entries, panoptic_entries, instance_entries = [], [], []
    for image_id, sample in enumerate(images, start=1):
        file_name = f"{sample.key}.{image_format}"
        png_name = f"{sample.key}.png"
        with open(os.path.join(out_dir, "images", file_name), "wb") as f:
            f.write(encode_image(sample.image, image_format))
        with open(os.path.join(out_dir, "panoptic", png_name), "wb") as f:
            f.write(encode_image(id_to_rgb(sample.panoptic)))
        with open(os.path.join(out_dir, "parts", png_name), "wb") as f:
            f.write(encode_image(id_to_rgb(sample.part_map)))
        meta = sample.metadata()
        image_entries.append({"id": image_id, "file_name": file_name, "width": sample.width,
                              "height": sample.height})
        panoptic_entries.append({"image_id": image_id, "file_name": png_name,
                                 "segments_info": meta["segments_info"],
                                 "parts_file_name": png_name, "parts_info": meta["parts_info"]})
        instance_entries += instance_annotations(sample.panoptic, meta["segments_info"], image_id,
                                                 categories, first_id=len(instance_entries) + 1)
    panoptic_json = {"images": image_entries, "annotations": panoptic_entries,
                     "categories": [c.to_coco() for c in categories]}
    instances_json = {"images": image_entries, "annotations": instance_entries,
                      "categories": [c.to_coco() for c in categories if c.isthing]}
    paths = {"panoptic": os.path.join(out_dir, "panoptic.json"),
             "instances": os.path.join(out_dir, "instances.json")}
    for name, content in (("panoptic", panoptic_json), ("instances", instances_json)):
        with open(paths[name], "w") as f:
            json.dump(content, f)
    return paths
