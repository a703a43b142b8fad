"""What the SAM-CP head adds to SAM: time per image of SAM patching vs head + post-processing + RLE.

    python bench/head_cost.py                      # shipped tiny models, 256 px synthetic images
    python bench/head_cost.py --sam-model vit_h --sam-checkpoint none --image-size 1024 \
        --points-per-side 32 --autocast bf16       # ViT-H cost (random weights), on a GPU

Times SAM patching and the rest of `samcp.Labeler` on the same images in one run
(after a warm-up batch) and prints the head's share of the SAM patching time;
then labels the same images once more under torch's profiler and splits the time
into the stages the code marks with `record_function` (SAM encoder, SAM decoding
of the point grid, SAM-CP head, panoptic post-processing, RLE).
Writes bench/results/head_cost-<sam model>-<cpu|gpu>.json.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.profiler import ProfilerActivity, profile

from samcp.config import LabelerConfig
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.flags import add_config_arguments, config_from_args
from samcp.labeler import Labeler
from samcp.provenance import provenance, write_result

STAGES = ("sam.encode", "sam.decode", "samcp.head", "samcp.postprocess", "samcp.rle")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=256)
    add_config_arguments(parser.add_argument_group("models"), LabelerConfig)
    return parser


def stage_profile(labeler: Labeler, images: list, batch_size: int, on_gpu: bool) -> dict[str, dict]:
    """{stage: host ms per image (+ device ms on a GPU), share of the stages' host total} from one
    profiled labeling pass (the profiler adds overhead: shares, not absolute times, are the point)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        for i in range(0, len(images), batch_size):
            labeler.label_batch(images[i:i + batch_size])
    averages = prof.key_averages()
    events = {e.key: e for e in averages if e.key in STAGES}
    host = {k: events[k].cpu_time_total / 1000 / len(images) if k in events else 0.0 for k in STAGES}
    total = sum(host.values())
    stages = {k: {"host_ms_per_image": round(v, 2), "share": round(v / total, 3) if total else None}
              for k, v in host.items()}
    if on_gpu:
        for k in STAGES:
            if k in events:
                stages[k]["device_ms_per_image"] = round(events[k].device_time_total / 1000 / len(images), 2)
    # The operators that cost the most (self time: on the device where there is one), for the profile.
    self_ms = (lambda e: e.self_device_time_total) if on_gpu else (lambda e: e.self_cpu_time_total)
    top = sorted((e for e in averages if e.key not in STAGES), key=self_ms, reverse=True)[:15]
    stages["top_operators_self_ms_per_image"] = {e.key: round(self_ms(e) / 1000 / len(images), 2)
                                                 for e in top}
    return stages


def main() -> None:
    args = build_parser().parse_args()

    cfg = config_from_args(LabelerConfig, args)
    labeler = Labeler.from_config(cfg)
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], height=args.image_size,
                                             width=args.image_size))
    images = [corpus[i].image for i in range(args.images)]

    def now() -> float:
        if labeler.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    labeler.label_batch(images[:args.batch_size])  # warm-up
    sam_s = head_s = 0.0
    patches_total = 0
    for i in range(0, len(images), args.batch_size):
        start = now()
        patch_sets = labeler.generator(images[i:i + args.batch_size])
        sam_s += now() - start
        start = now()
        labeler.label_patches(patch_sets, images[i:i + args.batch_size])  # head, post-processing, RLE
        patches_total += sum(len(p) for p in patch_sets)
        head_s += now() - start
    n = len(images)
    on_gpu = labeler.device.type == "cuda"
    device = torch.cuda.get_device_name() if on_gpu else f"cpu ({os.cpu_count()} cores)"
    results = {"sam_model": args.sam_model, "sam_checkpoint": args.sam_checkpoint,
               "image_size": args.image_size, **{name: getattr(labeler.generator.config, name) for name in
                  ("points_per_side", "pred_iou_thresh", "stability_score_thresh")},
               "autocast": args.autocast,
               "sam_ms_per_image": round(1000 * sam_s / n, 1),
               "head_ms_per_image": round(1000 * head_s / n, 1),
               "head_share_of_sam": round(head_s / sam_s, 3),
               "model_only_images_per_s": round(n / (sam_s + head_s), 2),
               "mean_patches": round(patches_total / n, 1),
               "images": n, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
               "device": device, "stages": stage_profile(labeler, images, args.batch_size, on_gpu)}
    print(f"SAM patching {results['sam_ms_per_image']} ms/img, head + post-processing + RLE "
          f"{results['head_ms_per_image']} ms/img = {results['head_share_of_sam']:.1%} of SAM "
          f"({results['mean_patches']} patches per image); model only "
          f"{results['model_only_images_per_s']} img/s on {device}")
    for stage in STAGES:
        row = results["stages"][stage]
        print(f"  {stage:18s} {row['host_ms_per_image']:8.2f} ms/img (profiled)  {row['share'] or 0:6.1%}"
              + (f"  device {row['device_ms_per_image']:.2f} ms/img" if "device_ms_per_image" in row else ""))
    print("  top operators (self time, ms/img):")
    for name, ms in results["stages"]["top_operators_self_ms_per_image"].items():
        print(f"    {ms:8.2f}  {name}")
    results["provenance"] = provenance(cfg.checkpoint_files(), vars(args), "val", range(args.images))
    kind = "gpu" if on_gpu else "cpu"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        f"head_cost-{args.sam_model}-{kind}.json")
    write_result(path, results)


if __name__ == "__main__":
    main()
