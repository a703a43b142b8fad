"""The labeling output (`pipeline.output`) in the formats other tools read.

- `coco-panoptic`: `panoptic.json` + `panoptic/<key>.png` (ids as RGB), scoreable by
  `samcp evaluate --predictions` and the COCO panoptic API.
- `coco-instances`: `instances.json` with the thing segments as compressed RLE and
  their scores, loadable by pycocotools.
- `hf-parquet`: a Hugging Face `datasets` folder: `data/train-NNNNN.parquet` (one per
  labeled shard) with `image` (the source image file's own bytes, or an upright PNG when the
  file carries an EXIF rotation or another size than its labels; none if `images=False`),
  `panoptic` (the id map as a COCO panoptic PNG), `segments_info` and the sample's
  `key`, `width`, `height`; the `datasets` features in the files' schema metadata, so
  `datasets.load_dataset("parquet", data_files="DIR/data/*.parquet")` or
  `load_dataset("DIR")` (through the `README.md` dataset card) decode both images.

The COCO formats name each image by its key and the extension of the file it was
labeled from (`file_name`: `IMG_0001.jpg`, or `sub/IMG_0001.jpg` for a folder's
subfolder), reading the source shards for it; `images_dir` receives those files' own
bytes under the same names, so that tools that join an image root and `file_name`
(detectron2, FiftyOne, CVAT) find them. Widths and heights are the labels', which are
at the image's size after EXIF rotation, as those tools read it.

Every format reads the output one shard file at a time, so a large output never
sits in memory whole. Error rows are listed in `errors.json`; a key that comes
back in another shard is exported once and listed there too. A sample whose image file
is no longer in its shard is left out of hf-parquet and of a COCO export with
`images_dir`, and kept in a COCO export without it under its bare key; either way
`errors.json` says so.
"""

from __future__ import annotations

import glob
import html
import io
import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from pipeline.labels import row_id_map
from pipeline.output import LabelOutput
from pipeline.reader import source_files
from samcp.data.coco import id_to_rgb
from samcp.data.decode import DecodeConfig, decode
from samcp.data.imageio import encode_image
from samcp.storage import inside, safe_name

FORMATS = ("coco-panoptic", "coco-instances", "hf-parquet")
EXIF_ORIENTATION = 0x0112

# The `datasets` features of an hf-parquet file (datasets >= 4 serialization).
_VALUE = {"int32": {"dtype": "int32", "_type": "Value"}, "int64": {"dtype": "int64", "_type": "Value"},
          "float32": {"dtype": "float32", "_type": "Value"}, "string": {"dtype": "string", "_type": "Value"},
          "bool": {"dtype": "bool", "_type": "Value"}}
HF_SEGMENT = pa.struct([("id", pa.int32()), ("category_id", pa.int32()), ("category", pa.string()),
                        ("isthing", pa.bool_()), ("score", pa.float32()), ("area", pa.int64()),
                        ("bbox", pa.list_(pa.float32()))])
HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
HF_FEATURES = {
    "key": _VALUE["string"], "width": _VALUE["int32"], "height": _VALUE["int32"],
    "image": {"_type": "Image"}, "panoptic": {"_type": "Image"},
    "segments_info": {"_type": "List", "feature": {
        "id": _VALUE["int32"], "category_id": _VALUE["int32"], "category": _VALUE["string"],
        "isthing": _VALUE["bool"], "score": _VALUE["float32"], "area": _VALUE["int64"],
        "bbox": {"_type": "List", "feature": _VALUE["float32"]}}},
}


def hf_schema(with_images: bool) -> pa.Schema:
    columns = [("key", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
               *([("image", HF_IMAGE)] if with_images else []), ("panoptic", HF_IMAGE),
               ("segments_info", pa.list_(HF_SEGMENT))]
    features = {name: HF_FEATURES[name] for name, _ in columns}
    return pa.schema(columns, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def categories(output: LabelOutput) -> list[dict]:
    """COCO categories of the vocabulary the labels were made with."""
    return [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "supercategory": ""}
            for c in output.vocabulary().classes]


def export(labels: str, out_dir: str, fmt: str, storage_options: dict | None = None,
           images: bool = True, progress: bool = True, images_dir: str | None = None) -> dict:
    """Write `fmt` (one of FORMATS) for the labels under `out_dir`; returns counts.

    `images` (hf-parquet only): include each sample's image file from its source shard.
    `images_dir` (COCO formats only): a folder for the image files, named as `file_name`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--output {out_dir} is a file, not a folder")
    output = LabelOutput(labels, storage_options)
    output.manifest()  # not a labeling output: fails here, before anything is written
    if images_dir is not None and fmt == "hf-parquet":
        raise ValueError("--images DIR is for the COCO formats (hf-parquet holds the images itself)")
    writer = (HFParquetWriter(out_dir, output, storage_options, images) if fmt == "hf-parquet"
              else CocoWriter(out_dir, output, fmt == "coco-panoptic", storage_options, images_dir))
    skipped, seen = [], set()
    with tqdm(unit="img", desc=fmt, disable=not progress) as bar:
        for table in output.shard_tables():
            rows = []
            for row in table.to_pylist():
                if row["status"] != "ok" or row["key"] in seen:
                    reason = (row["error"] if row["status"] != "ok"
                              else "duplicate key: exported from its first shard")
                    skipped.append({"key": row["key"], "shard": row["shard"], "reason": reason})
                else:
                    seen.add(row["key"])
                    rows.append(row)
            skipped += writer.add_shard(rows)
            bar.update(table.num_rows)
    counts = {**writer.close(), "skipped": len(skipped)}
    with open(os.path.join(out_dir, "errors.json"), "w") as f:
        json.dump(skipped + getattr(writer, "unnamed", []), f, indent=1)
    return counts


def panoptic_png(row: dict) -> bytes:
    """An `ok` row's segments as a COCO panoptic PNG (id = R + 256 G + 256² B)."""
    return encode_image(id_to_rgb(row_id_map(row)), "png")


class CocoWriter:
    """COCO panoptic (json + PNGs) or COCO instances (json with RLE), written as rows come."""

    def __init__(self, out_dir: str, output: LabelOutput, panoptic: bool, storage_options: dict | None = None,
                 images_dir: str | None = None):
        self.out_dir, self.panoptic = out_dir, panoptic
        self.storage_options, self.images_dir = storage_options, images_dir
        self.unnamed: list[dict] = []  # rows exported without their file's extension, and why
        if images_dir is not None:
            if os.path.exists(images_dir) and not os.path.isdir(images_dir):
                raise ValueError(f"--images {images_dir} is a file, not a folder")
            os.makedirs(images_dir, exist_ok=True)
        self.coco = {"info": {"description": f"SAM-CP labels of {output.uri}"}, "images": [],
                     "annotations": [], "categories": categories(output)}
        os.makedirs(os.path.join(out_dir, "panoptic") if self.panoptic else out_dir, exist_ok=True)
        if self.panoptic:
            self._remove_earlier_export()

    def _remove_earlier_export(self) -> None:
        """The PNGs an earlier export listed in this folder's panoptic.json (the new json lists
        only its own)."""
        try:
            with open(os.path.join(self.out_dir, "panoptic.json")) as f:
                earlier = [a["file_name"] for a in json.load(f)["annotations"]]
        except (OSError, ValueError, KeyError, TypeError):
            return
        for name in earlier:
            try:
                os.remove(inside(os.path.join(self.out_dir, "panoptic"), name))
            except (OSError, ValueError, TypeError):
                pass

    def add_shard(self, rows: list[dict]) -> list[dict]:
        """Adds the shard's rows; returns the rows left out (their image file is gone from the shard)
        with the reason. Files are named `safe_name(key)` + the source file's extension; each image
        entry keeps its `key`."""
        if not rows:
            return []
        shard = rows[0]["shard"]
        files, problem = source_files(shard, {r["key"] for r in rows}, self.storage_options)
        skipped = []
        for row in rows:
            if row["key"] not in files:
                if self.images_dir is not None:  # its image cannot be copied: left out
                    skipped.append({"key": row["key"], "shard": shard,
                                    "reason": f"image not exported: {problem}"})
                    continue
                reason = f"exported under its key alone, no extension (image file not read: {problem})"
                self.unnamed.append({"key": row["key"], "shard": shard, "reason": reason})
                file_name = safe_name(row["key"])
            else:
                extension, data = files[row["key"]]
                file_name = f"{safe_name(row['key'])}.{extension}"
            if self.images_dir is not None:
                path = inside(self.images_dir, file_name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            image_id = len(self.coco["images"]) + 1
            self.coco["images"].append({"id": image_id, "file_name": file_name,
                                        "key": row["key"], "width": row["width"], "height": row["height"],
                                        "shard": row["shard"]})
            if self.panoptic:
                self._add_panoptic(row, image_id)
            else:
                self._add_instances(row, image_id)
        return skipped

    def close(self) -> dict:
        name = "panoptic.json" if self.panoptic else "instances.json"
        with open(os.path.join(self.out_dir, name), "w") as f:
            json.dump(self.coco, f)
        return {"images": len(self.coco["images"]), "annotations": len(self.coco["annotations"]),
                "unnamed": len(self.unnamed)}

    def _add_panoptic(self, row: dict, image_id: int) -> None:
        file_name = f"{safe_name(row['key'])}.png"
        path = inside(os.path.join(self.out_dir, "panoptic"), file_name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(panoptic_png(row))
        self.coco["annotations"].append({"image_id": image_id, "file_name": file_name, "segments_info": [
            {"id": s["id"], "category_id": s["category_id"], "area": s["area"], "bbox": s["bbox"],
             "iscrowd": 0, "score": s["score"]} for s in row["segments"]]})

    def _add_instances(self, row: dict, image_id: int) -> None:
        for s in row["segments"]:
            if s["isthing"]:
                self.coco["annotations"].append({
                    "id": len(self.coco["annotations"]) + 1, "image_id": image_id,
                    "category_id": s["category_id"],
                    "segmentation": {"size": [row["height"], row["width"]], "counts": s["counts"]},
                    "area": s["area"], "bbox": s["bbox"], "iscrowd": 0, "score": s["score"]})


class HFParquetWriter:
    """A Hugging Face `datasets` folder: one Parquet file per labeled shard plus a dataset card."""

    def __init__(self, out_dir: str, output: LabelOutput, storage_options: dict | None, images: bool):
        self.out_dir, self.output, self.images = out_dir, output, images
        self.storage_options = storage_options
        self.schema = hf_schema(images)
        self.files, self.rows = 0, 0
        os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
        for earlier in glob.glob(os.path.join(out_dir, "data", "train-[0-9][0-9][0-9][0-9][0-9].parquet")):
            os.remove(earlier)  # an earlier export's: `load_dataset` would read them too

    def add_shard(self, rows: list[dict]) -> list[dict]:
        """Writes the shard's rows; returns the rows left out (image unreadable) with the reason."""
        if not rows:
            return []
        skipped, files = [], {}
        if self.images:
            shard = rows[0]["shard"]
            files, problem = source_files(shard, {r["key"] for r in rows}, self.storage_options)
            skipped = [{"key": r["key"], "shard": shard, "reason": f"image not exported: {problem}"}
                       for r in rows if r["key"] not in files]
            rows = [r for r in rows if r["key"] in files]
        files = {r["key"]: upright_file(*files[r["key"]], r["width"], r["height"])
                 for r in rows if r["key"] in files}
        records = [{
            "key": r["key"], "width": r["width"], "height": r["height"],
            **({"image": {"bytes": files[r["key"]][1],
                          "path": f"{safe_name(r['key'])}.{files[r['key']][0]}"}} if self.images else {}),
            "panoptic": {"bytes": panoptic_png(r), "path": f"{safe_name(r['key'])}.panoptic.png"},
            "segments_info": [{k: s[k] for k in HF_SEGMENT.names} for s in r["segments"]],
        } for r in rows]
        if not records:
            return skipped
        pq.write_table(pa.Table.from_pylist(records, schema=self.schema),
                       os.path.join(self.out_dir, "data", f"train-{self.files:05d}.parquet"))
        self.files, self.rows = self.files + 1, self.rows + len(records)
        return skipped

    def close(self) -> dict:
        vocabulary = self.output.vocabulary()
        classes = "\n".join(f"| {c.id} | {markdown_text(c.name)} | {'thing' if c.isthing else 'stuff'} |"
                            for c in vocabulary.classes)
        with open(os.path.join(self.out_dir, "README.md"), "w") as f:
            f.write(DATASET_CARD.format(source=markdown_text(self.output.uri), rows=self.rows,
                                        files=self.files, vocabulary=markdown_text(vocabulary.name),
                                        classes=classes))
        return {"images": self.rows, "files": self.files}


def upright_file(extension: str, data: bytes, width: int, height: int) -> tuple[str, bytes]:
    """An image file as (extension, bytes) that decodes upright at (width, height) without EXIF
    handling: the file itself when it does (no EXIF rotation, that size), else its pixels turned
    upright and resized to it, as PNG (`datasets` decodes images without turning them)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.getexif().get(EXIF_ORIENTATION, 1) == 1 and image.size == (width, height):
                return extension, data
    except Exception:  # noqa: BLE001 - undecodable here: decode() below says why
        pass
    pixels = decode(data, DecodeConfig(max_side=max(width, height, DecodeConfig.max_side))).pixels
    if pixels.shape[:2] != (height, width):
        pixels = np.asarray(Image.fromarray(pixels).resize((width, height), Image.BILINEAR))
    return "png", encode_image(pixels, "png")


def markdown_text(text: str) -> str:
    """`text` as plain text in Markdown: HTML escaped, table bars, backticks and line breaks
    neutralised, so a class name cannot add rows, markup or script to the card."""
    text = html.escape(" ".join(str(text).split()))
    return re.sub(r"([|`*_\[\]\\])", r"\\\1", text)


DATASET_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---
# SAM-CP pseudo-labels

Panoptic labels of {source} made by the SAM-CP batch labeler: {rows} images in {files} files.

```python
import datasets
ds = datasets.load_dataset("parquet", data_files="data/*.parquet", split="train")
ds[0]["image"], ds[0]["panoptic"], ds[0]["segments_info"]   # PIL images and a list of segments
```

`panoptic` holds segment ids as RGB (id = R + 256 G + 256^2 B, 0 = unlabeled); each
entry of `segments_info` gives a segment's `id`, `category_id`, `category`,
`isthing`, `score`, `area` and `bbox` (x, y, w, h).

Vocabulary `{vocabulary}`:

| id | name | kind |
|---|---|---|
{classes}
"""
