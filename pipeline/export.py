"""The labeling output (`pipeline.output`) in COCO's formats.

COCO panoptic: `panoptic.json` + `panoptic/<key>.png` (ids as RGB), scoreable by
`jobs/evaluate.py --predictions` and the COCO panoptic API. COCO instances:
`instances.json` with the thing segments as compressed RLE and their scores,
loadable by pycocotools. Both read the output one shard file at a time, so a
large output never sits in memory whole. Error rows are listed in `errors.json`;
a key that comes back in another shard is exported once and listed there too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from tqdm import tqdm

from pipeline.labels import row_id_map
from pipeline.output import MANIFEST, LabelOutput
from samcp.data.coco import id_to_rgb
from samcp.data.imageio import encode_image
from samcp.vocab import load_vocabulary

FORMATS = ("coco-panoptic", "coco-instances")


def label_rows(output: LabelOutput) -> Iterator[dict]:
    """Every row of the output, shard file by shard file."""
    for table in output.shard_tables():
        yield from table.to_pylist()


def categories(output: LabelOutput) -> list[dict]:
    """COCO categories of the vocabulary the labels were made with."""
    manifest = output.read_json(MANIFEST)
    if manifest is None:
        raise FileNotFoundError(f"{output.uri} has no {MANIFEST}: not the output of jobs/label_corpus.py")
    vocab = load_vocabulary(manifest["labeling"]["vocabulary"]["source"])
    return [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "supercategory": ""}
            for c in vocab.classes]


def export(labels: str, out_dir: str, fmt: str, storage_options: dict | None = None,
           progress: bool = True) -> dict:
    """Write `fmt` (one of FORMATS) for the labels under `out_dir`; returns counts."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    output = LabelOutput(labels, storage_options)
    coco = {"info": {"description": f"SAM-CP labels of {output.uri}"}, "images": [], "annotations": [],
            "categories": categories(output)}
    skipped, seen = [], set()
    os.makedirs(os.path.join(out_dir, "panoptic") if fmt == "coco-panoptic" else out_dir, exist_ok=True)
    for row in tqdm(label_rows(output), unit="img", desc=fmt, disable=not progress):
        if row["status"] != "ok" or row["key"] in seen:
            reason = row["error"] if row["status"] != "ok" else "duplicate key: exported from its first shard"
            skipped.append({"key": row["key"], "shard": row["shard"], "reason": reason})
            continue
        seen.add(row["key"])
        image_id = len(coco["images"]) + 1
        coco["images"].append({"id": image_id, "file_name": row["key"], "width": row["width"],
                               "height": row["height"], "shard": row["shard"]})
        if fmt == "coco-panoptic":
            _add_panoptic(coco, row, image_id, out_dir)
        else:
            _add_instances(coco, row, image_id)
    name = "panoptic.json" if fmt == "coco-panoptic" else "instances.json"
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump(coco, f)
    with open(os.path.join(out_dir, "errors.json"), "w") as f:
        json.dump(skipped, f, indent=1)
    return {"images": len(coco["images"]), "annotations": len(coco["annotations"]), "skipped": len(skipped)}


def _add_panoptic(coco: dict, row: dict, image_id: int, out_dir: str) -> None:
    file_name = f"{row['key']}.png"
    with open(os.path.join(out_dir, "panoptic", file_name), "wb") as f:
        f.write(encode_image(id_to_rgb(row_id_map(row)), "png"))
    coco["annotations"].append({"image_id": image_id, "file_name": file_name, "segments_info": [
        {"id": s["id"], "category_id": s["category_id"], "area": s["area"], "bbox": s["bbox"], "iscrowd": 0,
         "score": s["score"]} for s in row["segments"]]})


def _add_instances(coco: dict, row: dict, image_id: int) -> None:
    for s in row["segments"]:
        if s["isthing"]:
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": s["category_id"],
                "segmentation": {"size": [row["height"], row["width"]], "counts": s["counts"]},
                "area": s["area"], "bbox": s["bbox"], "iscrowd": 0, "score": s["score"]})
