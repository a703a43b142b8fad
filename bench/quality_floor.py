"""The quality floor: PQ of the shipped defaults and oracle PQ of the default SAM's patches on a
fixed subset of validation images, and how much they move with what should not change them.

    python bench/quality_floor.py            # writes bench/results/quality_floor-cpu.json

Each measurement runs in a fresh process with 1 or 2 torch threads and label batches of 1 or 4
images (other float summation orders, other padding in the head's batch); the spread between them
is the noise, and the floor test (tests/samcp/eval/test_quality_floor.py) allows a drop of
`margin` = min(2, max(0.25, 4 x spread)) PQ below the recorded baseline before it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SPLIT = "val"
INDICES = range(16)  # the subset: validation images 0..15 (256 px)
RESULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "quality_floor-cpu.json")


def measure(indices: range = INDICES, batch_size: int = 4) -> dict:
    """{"pq": PQ of `Labeler.from_config()` (the shipped defaults), "oracle_pq": the best PQ any
    merging of its SAM patches could reach} on the synthetic split's images `indices`."""
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
    from samcp.eval.evaluator import PanopticEvaluator
    from samcp.eval.patch_quality import PatchQuality
    from samcp.labeler import Labeler

    labeler = Labeler.from_config(device="cpu")
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS[SPLIT]))
    evaluator = PanopticEvaluator(corpus.categories)
    oracle = PatchQuality({c.id: c for c in corpus.categories})
    for first in range(indices.start, indices.stop, batch_size):
        samples = [corpus[i] for i in range(first, min(first + batch_size, indices.stop))]
        images = [s.image for s in samples]
        patch_sets = labeler.generator(images)
        for sample, patches, result in zip(samples, patch_sets, labeler.label_patches(patch_sets, images)):
            oracle.update(patches.masks.cpu().numpy(), sample)
            evaluator.update(sample.panoptic, sample.metadata()["segments_info"], result.id_map,
                             result.segments)
    return {"pq": evaluator.summary()["pq"]["All"]["pq"],
            "oracle_pq": oracle.summary()["oracle_pq"]["All"]["pq"]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", nargs=1, type=int, metavar="BATCH", help=argparse.SUPPRESS)  # a child run
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.one:
        print(json.dumps(measure(batch_size=args.one[0])))
        return
    from samcp.config import LabelerConfig
    from samcp.provenance import provenance

    runs = []
    for threads in (1, 2):
        for batch in (1, 4):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            out = subprocess.run([sys.executable, __file__, "--one", str(batch)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            runs.append({"threads": threads, "batch_size": batch, **json.loads(out.strip().splitlines()[-1])})
            print(runs[-1], flush=True)
    baseline = runs[-1]  # 2 threads, batches of 4: what the test runs
    spread = max(max(r[k] for r in runs) - min(r[k] for r in runs) for k in ("pq", "oracle_pq"))
    result = {"baseline": {"pq": baseline["pq"], "oracle_pq": baseline["oracle_pq"]},
              "runs": runs, "spread": spread, "margin": min(2.0, max(0.25, 4 * spread)),
              "provenance": provenance(LabelerConfig().checkpoint_files(),
                                       {"threads": [1, 2], "batch_sizes": [1, 4]}, SPLIT, INDICES)}
    with open(RESULT, "w") as f:
        json.dump(result, f, indent=1)
    print(f"baseline PQ {baseline['pq']:.2f}, oracle PQ {baseline['oracle_pq']:.2f}, spread {spread:.4f}, "
          f"margin {result['margin']:.2f} -> {RESULT}")


if __name__ == "__main__":
    main()
