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
from samcp.storage import member, open_uri


def id_to_rgb(id_map: np.ndarray) -> np.ndarray:
    """(H, W) integer ids in [0, 2**24) -> (H, W, 3) uint8 COCO panoptic colours (R = id % 256,
    G = id // 256 % 256, B = id // 256**2 % 256): the low three bytes of each little-endian id."""
    ids = np.ascontiguousarray(id_map, dtype="<u4")
    return np.ascontiguousarray(ids.view(np.uint8).reshape(*ids.shape, 4)[..., :3])


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 COCO panoptic colours -> (H, W) int32 ids (R + 256 G + 256**2 B)."""
    padded = np.zeros((*rgb.shape[:2], 4), np.uint8)
    padded[..., :3] = rgb
    return padded.view("<i4").reshape(rgb.shape[:2]).astype(np.int32, copy=False)


def decode_id_png(data: bytes) -> np.ndarray:
    """COCO panoptic PNG bytes -> (H, W) int32 segment ids."""
    with Image.open(io.BytesIO(data)) as png:
        return rgb_to_id(np.asarray(png.convert("RGB")))


class PanopticDataset:
    """A COCO panoptic dataset at local paths or fsspec URIs: its json, the folder of its id PNGs
    (default: the json's path without `.json`, COCO's layout) and the folder of its images.

        COCO 2017:  PanopticDataset("coco/annotations/panoptic_val2017.json", image_root="coco/val2017")
        ADE20K-150 as detectron2 prepares it:
                    PanopticDataset("ADEChallengeData2016/ade20k_panoptic_val.json",
                                    image_root="ADEChallengeData2016/images/validation")
        the folders this project writes (`export_coco`):  PanopticDataset.folder(path)

    `annotations` maps each PNG's file name to its json entry (`segments_info`, `image_id`);
    `images` maps image ids to theirs (`file_name`, `width`, `height`). File names come from the
    json, which is someone else's data: one that leads outside its folder is refused.
    """

    def __init__(self, json_uri: str, png_root: str | None = None, image_root: str | None = None,
                 storage_options: dict | None = None):
        try:
            with open_uri(json_uri, "rb", storage_options) as f:
                self.json = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"no COCO panoptic json at {json_uri}") from None
        except ValueError as error:
            raise ValueError(f"{json_uri} is not a COCO panoptic json: {error}") from None
        missing = [k for k in ("annotations", "categories") if k not in self.json]
        if missing:
            raise ValueError(f"{json_uri} is not a COCO panoptic json: no {' or '.join(missing)}")
        self.png_root = png_root or json_uri.removesuffix(".json")
        self.image_root = image_root
        self.storage_options = storage_options
        self.categories = [Category(c["id"], c["name"], bool(c["isthing"]), tuple(c.get("color", (0, 0, 0))))
                           for c in self.json["categories"]]
        self.annotations = {a["file_name"]: a for a in self.json["annotations"]}
        self.images = {i["id"]: i for i in self.json.get("images", [])}

    @classmethod
    def folder(cls, path: str, storage_options: dict | None = None) -> PanopticDataset:
        """A folder with `panoptic.json`, `panoptic/` and `images/`, as `export_coco` writes it."""
        if "://" not in path and not os.path.isfile(os.path.join(path, "panoptic.json")):
            raise FileNotFoundError(f"no panoptic.json in {path}")
        return cls(f"{path.rstrip('/')}/panoptic.json", f"{path.rstrip('/')}/panoptic",
                   f"{path.rstrip('/')}/images", storage_options)

    def png(self, file_name: str) -> bytes:
        """The bytes of one annotation's id PNG."""
        with open_uri(member(self.png_root, file_name), "rb", self.storage_options) as f:
            return f.read()

    def ids(self, file_name: str) -> np.ndarray:
        """(H, W) int32 segment ids of one annotation's PNG."""
        return decode_id_png(self.png(file_name))

    def image(self, annotation: dict) -> tuple[dict, bytes]:
        """(its `images` entry, encoded bytes) of the image an annotation describes."""
        if self.image_root is None:
            raise ValueError("this panoptic dataset was opened without its image folder")
        entry = self.images.get(annotation["image_id"])
        if entry is None:
            raise ValueError(f"annotation {annotation['file_name']!r}: no image with id "
                             f"{annotation['image_id']!r} in the json")
        with open_uri(member(self.image_root, entry["file_name"]), "rb", self.storage_options) as f:
            return entry, f.read()


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
