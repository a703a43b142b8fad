"""The open-vocabulary table: seen vs held-out class PQ per kappa, and CLIP's region accuracy."""

import json

from jobs.evaluate_open_vocab import main


def test_open_vocabulary_table_splits_seen_and_held_out_classes(tmp_path):
    out = tmp_path / "table.json"
    # the shipped head (trained with the plain synthetic classes) on the compositional vocabulary
    assert main(["--head-checkpoint", "shipped", "--clip-checkpoint", "shipped", "--num-images", "3",
                 "--kappas", "0", "1", "--output", str(out)]) == 0
    table = json.loads(out.read_text())
    accuracy = table["clip_region_accuracy"]
    assert set(accuracy) == {"seen_things", "held_out_things", "stuff", "thing_object", "thing_pattern"}
    assert all(0 <= v <= 1 for v in accuracy.values()) and accuracy["stuff"] > 0.8
    assert set(table["results"]) == {"0.0", "1.0"}
    for row in table["results"].values():
        seen, held = row["seen_things"], row["held_out_things"]
        assert seen["n"] + held["n"] <= 24 and row["pq"]["Stuff"]["n"] > 0
        assert all(" " in k or k in ("sky", "grass", "water", "wall", "sand") for k in row["per_class"])
        if seen["pq"]:
            assert abs(row["held_out_over_seen"] - held["pq"] / seen["pq"]) < 1e-9
    assert table["results"]["0.0"]["per_class"] != table["results"]["1.0"]["per_class"]  # kappa matters
