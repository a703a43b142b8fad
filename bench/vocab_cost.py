"""What the vocabulary's size costs: the SAM-CP head's time and memory per image with 13, 133, 150
and 1,203 classes (the synthetic corpus, COCO panoptic, ADE20K, an LVIS-sized list).

    python bench/vocab_cost.py                     # shipped tiny models, 256 px synthetic images
    python bench/vocab_cost.py --sizes 13 1203 --images 8

Each size runs in a fresh process on the same images: SAM cuts them into patches once, then the
head, post-processing and RLE (`Labeler.label_patches`) are timed after a warm-up batch, and the
memory that stage adds at its peak is read from the process's peak resident set (reset before the
stage and its warm-up, Linux) or, on a GPU, from torch's peak allocation. The text embeddings
are computed once per vocabulary and model and cached (`samcp.clip.text_encoder`); their
one-time cost is reported too. Sizes without a built-in vocabulary get generated class names
("category 1", ...), a fifth of them stuff. Ratios are against the first size, measured in the
same run.
Writes bench/results/vocab_cost-<cpu|gpu>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

BUILTIN_SIZES = {13: "builtin:synthetic", 133: "builtin:coco_panoptic", 150: "builtin:ade20k"}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def build_parser() -> argparse.ArgumentParser:
    from samcp.config import LabelerConfig
    from samcp.flags import add_config_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[13, 133, 150, 1203])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one size, in this process
    add_config_arguments(parser.add_argument_group("models"), LabelerConfig, only=(
        "sam_model", "sam_checkpoint", "head_checkpoint", "clip_model", "clip_checkpoint", "points_per_side",
        "autocast"))
    return parser


def vocabulary_spec(size: int, folder: str) -> str:
    """`builtin:NAME` for the sizes of a built-in vocabulary, else a generated YAML file's path."""
    if size in BUILTIN_SIZES:
        return BUILTIN_SIZES[size]
    classes = [{"id": i, "name": f"category {i}", "isthing": i % 5 != 0} for i in range(1, size + 1)]
    path = os.path.join(folder, f"generated-{size}.json")  # JSON is YAML
    with open(path, "w") as f:
        json.dump({"name": f"generated-{size}", "classes": classes}, f)
    return path


def resident_mib(field: str) -> float:
    """VmRSS or VmHWM (peak) of this process, in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:")) / 1024


def measure(args: argparse.Namespace, vocab: str) -> dict:
    """One size, in this process: head stage ms per image and the memory it adds at its peak."""
    import torch

    from samcp.clip.text_encoder import TextEncoder
    from samcp.config import LabelerConfig
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
    from samcp.flags import config_from_args
    from samcp.labeler import Labeler
    from samcp.vocab import load_vocabulary

    cfg = dataclasses.replace(config_from_args(LabelerConfig, args), vocab=vocab)
    labeler = Labeler.from_config(cfg)
    on_gpu = labeler.device.type == "cuda"
    started = time.perf_counter()
    TextEncoder(cfg.clip_model, cfg.clip_checkpoint, cache_dir=None, device=labeler.device).embed(
        load_vocabulary(vocab))
    embed_s = time.perf_counter() - started
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], height=args.image_size,
                                             width=args.image_size))
    images = [corpus[i].image for i in range(args.images)]
    batches = [images[i:i + args.batch_size] for i in range(0, len(images), args.batch_size)]
    patch_sets = [labeler.generator(batch) for batch in batches]

    def now() -> float:
        if on_gpu:
            torch.cuda.synchronize()
        return time.perf_counter()

    # The peak is taken from before the warm-up: memory the allocator keeps after it is reused.
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # peak resident set := current
        before = resident_mib("VmRSS")
    labeler.label_patches(patch_sets[0], batches[0])  # warm-up
    segments, start = 0, now()
    for patches, batch in zip(patch_sets, batches):
        segments += sum(len(labeled.segments) for labeled in labeler.label_patches(patches, batch))
    head_s = now() - start
    peak_mib = ((torch.cuda.max_memory_allocated() - before) / 2**20 if on_gpu
                else resident_mib("VmHWM") - before)
    return {"classes": len(labeler.vocab.classes),
            "vocab": vocab if vocab.startswith("builtin:") else "generated",
            "head_ms_per_image": round(1000 * head_s / len(images), 2),
            "head_peak_mib": round(peak_mib, 1), "text_embed_s": round(embed_s, 2),
            "segments_per_image": round(segments / len(images), 2),
            "mean_patches": round(sum(len(p) for ps in patch_sets for p in ps) / len(images), 1),
            "device": torch.cuda.get_device_name() if on_gpu else f"cpu ({os.cpu_count()} cores)",
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    args = build_parser().parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.child is not None:
            print(json.dumps(measure(args, vocabulary_spec(args.child, folder))))
            return
        rows = []
        for size in args.sizes:
            command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", str(size)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"size {size} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = rows[0]
    for row in rows:
        row["head_time_ratio"] = round(row["head_ms_per_image"] / first["head_ms_per_image"], 2)
        print(f"{row['classes']:5d} classes ({row['vocab']}): head + post-processing + RLE "
              f"{row['head_ms_per_image']:7.2f} ms/img ({row['head_time_ratio']:.2f}x), peak +"
              f"{row['head_peak_mib']:.1f} MiB, text embeddings once {row['text_embed_s']:.2f} s, "
              f"{row['segments_per_image']} segments/img")
    from samcp.config import LabelerConfig
    from samcp.flags import config_from_args
    from samcp.provenance import provenance, write_result

    cfg = config_from_args(LabelerConfig, args)
    result = {"rows": rows, "images": args.images, "batch_size": args.batch_size,
              "image_size": args.image_size,
              "provenance": provenance(cfg.checkpoint_files(), vars(args), "val", range(args.images))}
    kind = "gpu" if "cpu (" not in first["device"] else "cpu"
    path = os.path.join(RESULTS, f"vocab_cost-{kind}.json")
    write_result(path, result)


if __name__ == "__main__":
    main()
