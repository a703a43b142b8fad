from types import SimpleNamespace

import pytest

from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.eval.evaluator import evaluate_on_synthetic


class GroundTruthLabeler:
    """Answers each image with the ground truth of the same image in `corpus`: a perfect labeler
    for exactly that corpus, and an error for any other image."""

    def __init__(self, corpus: SyntheticCorpus, count: int):
        self.answers = {corpus[i].image.tobytes(): corpus[i] for i in range(count)}

    def label(self, image):
        sample = self.answers[image.tobytes()]
        segments = [{**s, "score": 1.0} for s in sample.metadata()["segments_info"]]
        return SimpleNamespace(id_map=sample.panoptic, segments=segments)


@pytest.mark.parametrize("hues", [(0.0, 1.0), (0.5, 1.0)])
def test_scores_the_corpus_of_the_split_and_hues(hues):
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], thing_hues=hues))
    summary = evaluate_on_synthetic(GroundTruthLabeler(corpus, 3), "val", 3, thing_hues=hues)
    assert summary["pq"]["All"]["pq"] == pytest.approx(100.0)
    shifted = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"], thing_hues=(0.0, 0.5)))
    with pytest.raises(KeyError):  # other colours: other images
        evaluate_on_synthetic(GroundTruthLabeler(shifted, 3), "val", 3, thing_hues=hues)
