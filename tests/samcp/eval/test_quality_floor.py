"""The headline numbers hold: on validation images 0..15, the shipped defaults' PQ and the default
SAM's oracle PQ stay within the measured margin of the recorded baseline
(bench/results/quality_floor-cpu.json, made by bench/quality_floor.py)."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_defaults_and_default_sam_stay_above_their_recorded_floor():
    spec = importlib.util.spec_from_file_location("quality_floor", ROOT / "bench" / "quality_floor.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    recorded = json.loads((ROOT / "bench" / "results" / "quality_floor-cpu.json").read_text())
    assert 0 < recorded["margin"] <= 2
    measured = bench.measure()
    for key in ("pq", "oracle_pq"):
        floor = recorded["baseline"][key] - recorded["margin"]
        assert measured[key] >= floor, f"{key} {measured[key]:.2f} fell below {floor:.2f} (baseline " \
                                       f"{recorded['baseline'][key]:.2f} - margin {recorded['margin']:.2f})"
