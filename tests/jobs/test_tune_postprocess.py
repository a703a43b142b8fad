import json

from jobs import tune_postprocess
from samcp.eval.evaluator import evaluate_on_synthetic
from samcp.labeler import Labeler


def test_each_setting_scores_as_labeling_from_scratch_would(tmp_path):
    out = tmp_path / "tune.json"
    results = tune_postprocess.main(["--split", "val", "--start-index", "0", "--num-images", "2",
                                     "--min-score", "0.1", "0.99", "--affinity-thresh", "0.1",
                                     "--overlap-thresh", "0.5", "--kappa", "0.4", "--output", str(out)])
    assert [r["postprocess"]["min_score"] for r in results] == [0.1, 0.99]
    assert json.loads(out.read_text())["settings"] == results
    expected = evaluate_on_synthetic(Labeler.from_config(), "val", 2)  # 0.1 / 0.1 / 0.5, kappas 0.4 / 0.1
    assert results[0]["pq"] == expected["pq"] and results[0]["miou"] == expected["miou"]
    assert results[1]["pq"]["Things"]["pq"] < results[0]["pq"]["Things"]["pq"]  # 0.99 keeps few things
