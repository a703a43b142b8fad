"""The quality floor: PQ of each shipped preset (a shipped SAM with its shipped head) and oracle
PQ of that SAM's patches on a fixed subset of validation images, and how much they move with what
should not change them.

    python bench/quality_floor.py                  # both presets -> bench/results/quality_floor-cpu.json
    python bench/quality_floor.py --preset tiny8   # one preset; the other's record is kept

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
# preset (the SAM model; its shipped head comes with it) -> the subset: validation images 0..N-1
# (256 px); `tiny8` costs about 5x `tiny` on a CPU, so it is checked on fewer images.
PRESETS = {"tiny": range(16), "tiny8": range(8)}
RESULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "quality_floor-cpu.json")


def measure(sam_model: str = "tiny", batch_size: int = 4) -> dict:
    """{"pq": PQ of `Labeler.from_config()` with `sam_model` and the shipped head for it, "oracle_pq":
    the best PQ any merging of its SAM patches could reach} on the preset's validation images."""
    from samcp.config import LabelerConfig
    from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
    from samcp.eval.evaluator import PanopticEvaluator
    from samcp.eval.patch_quality import PatchQuality
    from samcp.labeler import Labeler

    indices = PRESETS[sam_model]
    labeler = Labeler.from_config(LabelerConfig(sam_model=sam_model), device="cpu")
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


def record(sam_model: str) -> dict:
    """The preset's baseline, its four runs, their spread and the margin, with provenance."""
    from samcp.config import LabelerConfig
    from samcp.provenance import provenance

    runs = []
    for threads in (1, 2):
        for batch in (1, 4):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            out = subprocess.run([sys.executable, __file__, "--one", sam_model, str(batch)], env=env,
                                 check=True, capture_output=True, text=True).stdout
            runs.append({"threads": threads, "batch_size": batch, **json.loads(out.strip().splitlines()[-1])})
            print(sam_model, runs[-1], flush=True)
    baseline = runs[-1]  # 2 threads, batches of 4: what the test runs
    spread = max(max(r[k] for r in runs) - min(r[k] for r in runs) for k in ("pq", "oracle_pq"))
    indices = PRESETS[sam_model]
    return {"baseline": {"pq": baseline["pq"], "oracle_pq": baseline["oracle_pq"]},
            "runs": runs, "spread": spread, "margin": min(2.0, max(0.25, 4 * spread)),
            "provenance": provenance(LabelerConfig(sam_model=sam_model).checkpoint_files(),
                                     {"sam_model": sam_model, "threads": [1, 2], "batch_sizes": [1, 4]},
                                     SPLIT, indices)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", choices=sorted(PRESETS), default=sorted(PRESETS),
                        help="the presets to measure again (default: all)")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "BATCH"), help=argparse.SUPPRESS)  # a child
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], batch_size=int(args.one[1]))))
        return
    recorded = {"presets": {}}
    if os.path.exists(RESULT):
        with open(RESULT) as f:
            recorded["presets"] = json.load(f).get("presets", {})  # the presets not measured again
    for sam_model in args.preset:
        recorded["presets"][sam_model] = result = record(sam_model)
        print(f"{sam_model}: baseline PQ {result['baseline']['pq']:.2f}, oracle PQ "
              f"{result['baseline']['oracle_pq']:.2f}, spread {result['spread']:.4f}, margin "
              f"{result['margin']:.2f}")
    with open(RESULT, "w") as f:
        json.dump(recorded, f, indent=1)
    print(f"-> {RESULT}")


if __name__ == "__main__":
    main()
