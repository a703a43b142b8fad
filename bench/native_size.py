"""Labels at the image's own size: agreement with the model's size, and the labeling memory.

    python bench/native_size.py                        # shipped tiny models
    python bench/native_size.py --images 100 --scale 4

Agreement: validation images (synthetic, 256 px) upscaled `--scale` times (bilinear) are
encoded as PNG and decoded as the labeling job decodes them (`--max-side` 256: the model
sees them at about their first size); each is labeled once (SAM and the head once) and its
segments drawn both at the model's size and at the image's own (`samcp.native`). Reported:
each native segment's mask, downscaled to the model's size (mean of its pixels >= 0.5),
against the same segment at the model's size (IoU: minimum, mean, share >= 0.95), and the PQ
of each against the ground truth at its size (upscaled nearest for the native labels).

Memory: a 4000x3000 JPEG and a 12000x9000 PNG (a training image upscaled) are each decoded
and labeled (`--max-side` 2048) in a fresh process, with labels at the native size and, as
the control, at the model's size only; the process's peak resident memory (ru_maxrss) and
the time are reported. Writes bench/results/native_size-cpu.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
LARGE = {"jpeg-4000x3000": ("JPEG", 4000, 3000), "png-12000x9000": ("PNG", 12000, 9000)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="validation images for the agreement")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--folder", default="/tmp/native_size", help="where the large images are written")
    parser.add_argument("--child", nargs=2, metavar=("IMAGE", "MODE"), help=argparse.SUPPRESS)
    return parser


def encoded(image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {"compress_level": 1}))
    return buffer.getvalue()


def agreement(images: int, scale: int) -> dict:
    import numpy as np
    from PIL import Image

    from samcp import Labeler
    from samcp.data.decode import DecodeConfig, decode
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
    from samcp.eval.evaluator import PanopticEvaluator

    labeler = Labeler.from_config()
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))
    at_model, at_native = PanopticEvaluator(corpus.categories), PanopticEvaluator(corpus.categories)
    ious, seconds = [], {"model": 0.0, "native": 0.0}
    for index in range(images):
        sample = corpus[index]
        h, w = sample.image.shape[:2]
        big = Image.fromarray(sample.image).resize((w * scale, h * scale), Image.BILINEAR)
        decoded = decode(encoded(big, "PNG"), DecodeConfig(max_side=max(h, w)))
        pixels = decoded.pixels
        patches = labeler.generator([pixels])
        outputs = labeler.head_outputs(patches, [pixels])
        started = time.perf_counter()
        model, = labeler.label_outputs(patches, outputs)
        seconds["model"] += time.perf_counter() - started
        started = time.perf_counter()
        native, = labeler.label_outputs(patches, outputs, native_sizes=[decoded.native_size])
        seconds["native"] += time.perf_counter() - started
        segments_info = sample.metadata()["segments_info"]
        at_model.update(sample.panoptic, segments_info, model.id_map, model.segments)
        truth = np.asarray(Image.fromarray(sample.panoptic.astype(np.int32)).resize(
            decoded.native_size[::-1], Image.NEAREST))
        at_native.update(truth, segments_info, native.id_map.astype(np.int32), native.segments)
        mh, mw = pixels.shape[:2]
        for segment in native.segments:
            mask = native.id_map == segment["id"]
            small = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((mw, mh), Image.BOX)) >= 0.5
            reference = model.id_map == segment["id"]
            union = (small | reference).sum()
            ious.append(float((small & reference).sum() / union) if union else 1.0)
    ious = np.array(ious)
    pq_model, pq_native = (e.summary()["pq"]["All"]["pq"] for e in (at_model, at_native))
    return {"images": images, "scale": scale, "segments": len(ious),
            "iou_min": round(float(ious.min()), 4), "iou_mean": round(float(ious.mean()), 4),
            "share_iou_at_least_0.95": round(float((ious >= 0.95).mean()), 4),
            "pq_model_size": round(pq_model, 2), "pq_native_size": round(pq_native, 2),
            "pq_difference": round(pq_native - pq_model, 2),
            "postprocess_seconds_per_image": {k: round(v / images, 4) for k, v in seconds.items()}}


def large_images(folder: str) -> dict[str, str]:
    """The large test images, written once from a training image upscaled."""
    from PIL import Image

    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus

    os.makedirs(folder, exist_ok=True)
    paths = {}
    source = None
    for name, (fmt, width, height) in LARGE.items():
        paths[name] = os.path.join(folder, f"{name}.{fmt.lower()}")
        if not os.path.exists(paths[name]):
            source = source or Image.fromarray(
                SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["train"], height=192, width=256))[0].image)
            with open(paths[name], "wb") as f:
                f.write(encoded(source.resize((width, height), Image.BILINEAR), fmt))
    return paths


def child(path: str, mode: str) -> None:
    """Decode and label one image in this fresh process; print its sizes, time and peak memory."""
    from samcp import Labeler
    from samcp.data.decode import DecodeConfig, decode

    labeler = Labeler.from_config()
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    with open(path, "rb") as f:
        decoded = decode(f.read(), DecodeConfig(max_side=2048))
    result = labeler.label(decoded.pixels, decoded.native_size if mode == "native" else None)
    print(json.dumps({"native_size": list(decoded.native_size), "model_size": list(decoded.pixels.shape[:2]),
                      "mask_size": list(result.id_map.shape), "segments": len(result.segments),
                      "seconds": round(time.perf_counter() - started, 2),
                      "peak_rss_mib_models_loaded": round(loaded),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    from samcp.config import LabelerConfig
    from samcp.provenance import provenance, write_result

    memory = {}
    for name, path in large_images(args.folder).items():
        for mode in ("native", "model"):
            done = subprocess.run([sys.executable, __file__, "--child", path, mode], capture_output=True,
                                  text=True, check=True)
            memory[f"{name}-{mode}"] = json.loads(done.stdout.strip().splitlines()[-1])
            print(name, mode, memory[f"{name}-{mode}"], flush=True)
    agreed = agreement(args.images, args.scale)
    print(json.dumps(agreed, indent=1))
    result = {"device": f"cpu x {os.cpu_count()}", "agreement": agreed, "memory": memory,
              "provenance": provenance(LabelerConfig().checkpoint_files(), vars(args), "val",
                                       range(args.images))}
    write_result(os.path.join(RESULTS, "native_size-cpu.json"), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
