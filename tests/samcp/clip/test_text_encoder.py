import logging

from samcp.clip.text_encoder import TextEncoder

RANDOM_INIT = "initialized randomly"


def test_random_initialisation_is_reported_only_when_it_stays(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        TextEncoder(checkpoint="shipped", cache_dir=str(tmp_path))
    assert RANDOM_INIT not in caplog.text  # the shipped weights replace it
    with caplog.at_level(logging.WARNING):
        TextEncoder(cache_dir=str(tmp_path))
    assert RANDOM_INIT in caplog.text
    logging.getLogger().warning("after")
    assert "after" in caplog.text  # the root logger is left as it was
