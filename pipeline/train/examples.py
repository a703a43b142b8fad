"""Pseudo-labels -> training examples for the SAM-CP head, streamed with Ray Data.

A labeling job's output (one Parquet file per shard, see `pipeline.output`) is
joined by key with the shards it came from, shard by shard, so the join needs
no shuffle. Segments scoring below their threshold are dropped and their
pixels (with every pixel no segment covers) become an ignore region. Images with
real labels (a COCO panoptic folder) can join them, read the same way. The same
SAM that made the labels cuts each image into patches again, and each image
becomes a `samcp.train.head.CachedImage` (patch features + targets, and the patches'
CLIP region embeddings from the labeling CLIP for a head that reads them), serialized.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from pipeline.labels import segment_mask
from pipeline.output import LabelOutput, labeling_vocabulary, shard_file_name
from pipeline.reader import ShardReader
from pipeline.selftrain.selection import ScoreFilter
from samcp.clip.region import head_region_encoder
from samcp.clip.text_encoder import TextEncoder
from samcp.data.coco import PanopticDataset, decode_id_png, encode_rle
from samcp.data.decode import DecodeConfig
from samcp.model.backbone import backbone_pixels
from samcp.sam.build import build_sam
from samcp.sam.patches import AUTOCAST_DTYPES, PatchConfig, PatchGenerator
from samcp.train.head import training_example
from samcp.views import mirror, quarters_for, turn


@dataclass(frozen=True)
class PseudoLabelReader:
    """Callable for `flat_map` over rows `{"shard": URI}`: one row per usable pseudo-labeled sample,
    `{"key", "image": (H, W, 3) uint8, "segments": JSON list of {category_id, counts}}`."""

    labels: str
    scores: ScoreFilter
    storage_options: dict | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __call__(self, row: dict) -> Iterator[dict]:
        output = LabelOutput(self.labels, self.storage_options)
        with output.fs.open(output.path(shard_file_name(row["shard"])), "rb") as f:
            columns = ["key", "status", "width", "height", "segments"]
            table = pq.read_table(io.BytesIO(f.read()), columns=columns)
        labeled = {r["key"]: r for r in table.to_pylist()}
        for sample in samples(ShardReader(self.storage_options, self.decode)(row)):
            label = labeled.get(sample["key"])
            if "skip" in sample:
                yield sample
            elif label is None:
                yield skip(sample, "no row in the labels")
            elif label["status"] != "ok":
                yield skip(sample, "labeled as an error")
            elif (label["height"], label["width"]) != (sample["height"], sample["width"]):
                # the image is not the one labeled (or labels of a version that recorded the model's size)
                yield skip(sample, "labels of another size than the image")
            else:
                kept = [s for s in label["segments"] if self.scores.keep(s)]
                if not kept:
                    yield skip(sample, "no segment kept")
                    continue
                ids = np.zeros((label["height"], label["width"]), np.int32)
                for segment in kept:
                    ids[segment_mask(segment["counts"], label["height"], label["width"])] = segment["id"]
                yield truth_row(sample, ids, kept)


@dataclass(frozen=True)
class GroundTruthReader:
    """Callable for `flat_map` over rows `{"shard": URI}`: the shard's samples that a COCO panoptic
    folder annotates (PNG named `<key>.png`), as rows like `PseudoLabelReader`'s with every segment
    kept; void pixels and crowd segments are ignored by the loss."""

    folder: str  # local (or shared) folder with panoptic.json and panoptic/*.png
    storage_options: dict | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    @cached_property
    def truth(self) -> PanopticDataset:
        """The folder's annotations, read once per reading actor (not once per shard)."""
        return PanopticDataset.folder(self.folder)

    def __call__(self, row: dict) -> Iterator[dict]:
        truth = self.truth
        for sample in samples(ShardReader(self.storage_options, self.decode)(row)):
            annotation = truth.annotations.get(f"{sample['key']}.png")
            if "skip" in sample:
                yield sample
            elif annotation is None:
                yield skip(sample, "no ground truth")
            else:
                yield truth_row(sample, truth.ids(annotation["file_name"]), annotation["segments_info"])


@dataclass(frozen=True)
class ShardTruthReader:
    """Callable for `flat_map` over rows `{"shard": URI}`: the shard's samples that carry their own
    ground truth (`json` with `segments_info`, `panoptic.png`, as `jobs/make_shards.py synthetic` and
    `coco` write them), as rows like `PseudoLabelReader`'s with every segment kept; void pixels and
    crowd segments are ignored by the loss."""

    storage_options: dict | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __call__(self, row: dict) -> Iterator[dict]:
        reader = ShardReader(self.storage_options, self.decode, fields=("json", "panoptic.png"))
        for sample in samples(reader(row)):
            if "skip" in sample:
                yield sample
            elif not (sample["json"] and sample["panoptic.png"]):
                yield skip(sample, "no ground truth")
            else:
                try:
                    ids = decode_id_png(sample["panoptic.png"])
                    segments_info = json.loads(sample["json"])["segments_info"]
                except (ValueError, KeyError, TypeError, OSError):
                    yield skip(sample, "unreadable ground truth")
                else:
                    yield truth_row(sample, ids, segments_info)


class ShardUnreadable(RuntimeError):
    """A shard could not be read to its end: none of its samples is trained on (rerun once fixed)."""


def samples(rows: Iterator[dict]) -> Iterator[dict]:
    """The sample rows of a `ShardReader`, each either decoded or `skip`ped with the reason; raises
    ShardUnreadable, after them, when the shard could not be read to its end."""
    for row in rows:
        if row["kind"] == "end":
            if row["shard_error"]:
                raise ShardUnreadable(row["shard_error"])
        elif row["error"]:
            yield skip(row, f"unreadable sample: {row['error']}")
        else:
            yield row


def skip(sample: dict, reason: str) -> dict:
    """The row of a sample that is not trained on, and why."""
    return {"key": sample["key"], "skip": reason}


def truth_row(sample: dict, ids: np.ndarray, segments_info: list[dict]) -> dict:
    """The training row of a decoded sample and its ground truth ((H, W) segment ids at the image's
    native size and their `segments_info`), crowd segments left out, the ids brought to the size
    the image was decoded at (`--max-side`, nearest neighbour); a skip when they do not fit the
    image or no segment is left."""
    if ids.shape != (sample["height"], sample["width"]):
        return skip(sample, "ground truth of another size")
    image_size = sample["image"].shape[:2]
    if ids.shape != image_size:
        ids = np.asarray(Image.fromarray(ids.astype(np.int32)).resize(image_size[::-1], Image.NEAREST))
    segments = [{"category_id": s["category_id"], "counts": encode_rle(ids == s["id"])["counts"]}
                for s in segments_info if not s.get("iscrowd")]
    if not segments:
        return skip(sample, "no segment in the ground truth")
    return {"key": sample["key"], "image": sample["image"], "segments": json.dumps(segments)}


class ExampleBuilder:
    """SAM patches + targets per image and view, serialized: what the patch cache stores.

    `build` turns rows `{"key", "image", "segments"}` (a reader's) into one row per view,
    `{"key", "example": bytes of samcp.train.head.CachedImage}`, or `{"key", "skip": reason}`
    for a view with no patch (it has nothing to teach). With `mirror`, every image also comes
    out mirrored left-right (key `<key>:mirror`, its masks mirrored too); with `turn`, also
    turned counterclockwise by 90, 180 or 270 degrees, picked by its key (key
    `<key>:turn<degrees>`). The examples hold SAM's features, so augmentation happens here,
    with SAM run on each view, or not at all.
    """

    def __init__(self, labeling: dict, roi_size: int, clip_dim: int = 0, storage_options: dict | None = None,
                 torch_threads: int | None = None, mirror: bool = False, turn: bool = False,
                 backbone: str = "sam"):
        """labeling: the models and settings of a labeling manifest (`samcp.model_files.describe_models`);
        clip_dim: the head's `HeadConfig.clip_dim` (0: no CLIP region embeddings); backbone: the head's
        `HeadConfig.backbone` (for "resnet50" the examples hold the image instead of SAM's embedding)."""
        if torch_threads:
            torch.set_num_threads(torch_threads)
        sam, clip = labeling["sam"], labeling["clip"]
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.sam = build_sam(sam["model"], sam["checkpoint"], storage_options).to(device)
        # The labeling job's patches: same SAM, thresholds and dtype (manifests before `autocast`: fp32).
        self.generator = PatchGenerator(self.sam, PatchConfig(**labeling["patches"]),
                                        autocast_dtype=AUTOCAST_DTYPES[sam.get("autocast", "none")])
        self.region_encoder = None
        if clip_dim:
            encoder = TextEncoder(clip["model"], clip["checkpoint"], storage_options, device=device)
            self.region_encoder = head_region_encoder(clip_dim, encoder)
        self.vocab = labeling_vocabulary(labeling)  # as recorded: the file may have changed since
        self.roi_size = roi_size
        self.mirror, self.turn = mirror, turn
        self.pixels = backbone != "sam"

    def views(self, rows: list[dict]) -> list[tuple[str, np.ndarray, torch.Tensor, list[int]]]:
        """(key, (H, W, 3) image, (S, H, W) bool segment masks, S class ids) per image and view."""
        views = []
        for row in rows:
            key, image, segments = str(row["key"]), row["image"], json.loads(row["segments"])
            height, width = image.shape[:2]
            masks = torch.from_numpy(np.stack([segment_mask(s["counts"], height, width) for s in segments]))
            classes = [s["category_id"] for s in segments]
            views.append((key, image, masks, classes))
            if self.mirror:
                views.append((f"{key}:mirror", *mirror(image, masks), classes))
            if self.turn:
                quarters = quarters_for(key)
                views.append((f"{key}:turn{90 * quarters}", *turn(image, masks, quarters), classes))
        return views

    def build(self, rows: list[dict]) -> list[dict]:
        built = []
        views = self.views(rows)
        for (key, image, masks, classes), patches in zip(views, self.generator([v[1] for v in views])):
            if len(patches) == 0:
                built.append({"key": key, "skip": "no SAM patch"})
                continue
            clip = None
            if self.region_encoder is not None:  # a copy: Ray's image is a read-only view
                clip = self.region_encoder(torch.tensor(image), patches.masks, patches.boxes).cpu().half()
            size = self.sam.image_encoder.img_size
            pixels = backbone_pixels(image, size) if self.pixels else None
            example = training_example(patches.to("cpu"), masks, classes, self.vocab, size, self.roi_size,
                                       ignore=~masks.any(0), clip=clip, pixels=pixels)
            built.append({"key": key, "example": example.to_bytes()})
        return built
