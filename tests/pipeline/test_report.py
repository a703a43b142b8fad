"""jobs/render.py's report: overlays of chosen or sampled rows, statistics over every row, and a
page that a real browser (headless Chromium) renders with every image loaded."""

import re

import numpy as np
import pytest
from PIL import Image

from pipeline.commands.render import main as render_main
from pipeline.report import render_report


def test_sampled_report_counts_every_row_and_draws_the_sample(labeled, tmp_path):
    root, images = labeled
    counts = render_report(str(root / "labels"), str(tmp_path), sample=3, log=lambda _: None)
    assert (counts["rows"], counts["ok"], counts["errors"], counts["shown"]) == (5, 4, 1, 3)
    overlays = sorted((tmp_path / "overlays").glob("*.png"))
    assert len(overlays) == 3
    keys = {im.key: im for im in images}
    page = (tmp_path / "index.html").read_text()
    shown = re.findall(r"<img src='(overlays/\d+\.png)' alt='([^']+)'", page)
    assert len(shown) == 3 and all(key in keys for _, key in shown)
    for name, key in shown:  # each overlay is drawn over its own image
        overlay = np.asarray(Image.open(tmp_path / name), float)
        assert overlay.shape == keys[key].image.shape
        others = [np.abs(overlay - im.image).mean() for k, im in keys.items() if k != key]
        assert np.abs(overlay - keys[key].image).mean() < min(others)
    assert "corrupt image: cut" in page and "broken" in page  # the error list


def test_render_cli_shows_the_keys_asked_for_and_names_those_it_cannot(labeled, tmp_path):
    root, images = labeled
    assert render_main(["--labels", str(root / "labels"), "--output", str(tmp_path / "a"),
                        "--keys", images[1].key, images[3].key]) == 0
    assert len(list((tmp_path / "a" / "overlays").glob("*.png"))) == 2
    assert render_main(["--labels", str(root / "labels"), "--output", str(tmp_path / "b"),
                        "--keys", images[0].key, "broken", "nope"]) == 1
    page = (tmp_path / "b" / "index.html").read_text()
    assert "nope: not labeled ok in this output" in page and "broken: not labeled ok" in page
    assert render_main(["--labels", str(tmp_path / "no_such_output"), "--output", str(tmp_path / "c")]) == 2


def test_report_renders_in_headless_chromium_with_every_image_loaded(labeled, tmp_path, browser_images):
    if browser_images is None:
        pytest.skip("no chromium on this machine (apt-get install chromium; CI installs it)")
    root, _ = labeled
    render_report(str(root / "labels"), str(tmp_path), log=lambda _: None)
    assert browser_images(str(tmp_path / "index.html")) == (4, 0)
    (tmp_path / "overlays" / "0002.png").unlink()  # the check sees a missing image
    assert browser_images(str(tmp_path / "index.html")) == (3, 1)
