"""The headline numbers hold: for each shipped preset (`tiny` on validation images 0..15, `tiny8`
on 0..7), the PQ of the shipped SAM with its shipped head and that SAM's oracle PQ stay within the
measured margin of the recorded baseline (bench/results/quality_floor-cpu.json, made by
bench/quality_floor.py)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RECORDED = json.loads((ROOT / "bench" / "results" / "quality_floor-cpu.json").read_text())["presets"]


@pytest.mark.parametrize("sam_model", ["tiny", "tiny8"])
def test_each_shipped_preset_stays_above_its_recorded_floor(sam_model):
    spec = importlib.util.spec_from_file_location("quality_floor", ROOT / "bench" / "quality_floor.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    recorded = RECORDED[sam_model]
    assert 0 < recorded["margin"] <= 2
    assert recorded["provenance"]["indices"] == f"0..{len(bench.PRESETS[sam_model]) - 1}"
    measured = bench.measure(sam_model)
    for key in ("pq", "oracle_pq"):
        floor = recorded["baseline"][key] - recorded["margin"]
        assert measured[key] >= floor, f"{sam_model} {key} {measured[key]:.2f} fell below {floor:.2f} " \
                                       f"(baseline {recorded['baseline'][key]:.2f} - margin {recorded['margin']:.2f})"
