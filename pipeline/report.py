"""A static HTML report of a labeling output: overlays of chosen or sampled images, the class
histogram, the score distribution and the error list, in one folder that opens in a browser
with no server.

    OUT/index.html            the report (inline CSS, relative image links): which models,
                              vocabulary and thresholds made the labels, then the images
    OUT/overlays/NNNN.png     one overlay per shown image at its full size (each thumbnail links
                              to it): segments tinted by class, outlined, named with their scores

The statistics cover every row of the output, read one shard file at a time; only the
shown rows are kept in memory, and only their shards are read again for the images.
"""

from __future__ import annotations

import glob
import html
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from pipeline.labels import row_id_map
from pipeline.output import LabelOutput
from pipeline.reader import source_images
from pipeline.words import plural
from samcp.viz import overlay_panoptic, vocabulary_categories

SCORE_BINS = 20


class LabelStats:
    """Counts over every row: class histogram, segment scores, errors, and the rows to show."""

    def __init__(self, keys: Sequence[str] | None, sample: int, seed: int):
        self.keys, self.sample = set(keys or ()), sample
        self.random = random.Random(seed)
        self.rows = self.ok = 0
        self.classes: Counter[str] = Counter()
        self.score_counts = np.zeros(SCORE_BINS, np.int64)
        self.errors: list[dict] = []
        self.shown: list[dict] = []
        self._seen_ok = 0

    def add(self, row: dict) -> None:
        self.rows += 1
        if row["status"] != "ok":
            self.errors.append({"key": row["key"], "shard": row["shard"], "reason": row["error"]})
            return
        self.ok += 1
        self.classes.update(s["category"] for s in row["segments"])
        scores = np.clip([s["score"] for s in row["segments"]], 0, 1 - 1e-9)
        self.score_counts += np.bincount((scores * SCORE_BINS).astype(int), minlength=SCORE_BINS)
        if self.keys:
            if row["key"] in self.keys:
                self.shown.append(row)
            return
        # Reservoir sampling: every ok row has the same chance, in one pass over any number of rows.
        self._seen_ok += 1
        if len(self.shown) < self.sample:
            self.shown.append(row)
        elif (slot := self.random.randrange(self._seen_ok)) < self.sample:
            self.shown[slot] = row

    def missing_keys(self) -> list[str]:
        return sorted(self.keys - {row["key"] for row in self.shown})


def render_report(labels: str, out_dir: str, keys: Sequence[str] | None = None, sample: int = 24,
                  seed: int = 0, storage_options: dict | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Write the report of `labels` to `out_dir`, showing `keys` (else `sample` random ok rows).

    Returns counts: rows, ok, errors, shown (overlays written) and not_shown (keys asked for but
    not labeled ok, or whose image could not be read, with the reason).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--output {out_dir} is a file, not a folder")
    output = LabelOutput(labels, storage_options)
    categories = vocabulary_categories(output.vocabulary())
    stats = LabelStats(keys, sample, seed)
    for table in output.shard_tables():
        for row in table.to_pylist():
            stats.add(row)
    not_shown = {key: "not labeled ok in this output" for key in stats.missing_keys()}
    os.makedirs(os.path.join(out_dir, "overlays"), exist_ok=True)
    for stale in glob.glob(os.path.join(out_dir, "overlays", "[0-9][0-9][0-9][0-9].png")):
        os.remove(stale)  # an earlier report's overlays: the page links only this one's
    shown_rows = sorted(stats.shown, key=lambda r: (r["shard"], r["key"]))
    figures = []
    for shard in sorted({r["shard"] for r in shown_rows}):
        rows = [r for r in shown_rows if r["shard"] == shard]
        images, problem = source_images(shard, {r["key"]: (r["height"], r["width"]) for r in rows},
                                        storage_options)
        for row in rows:
            if row["key"] not in images:
                not_shown[row["key"]] = f"image not readable: {problem}"
                continue
            name = f"overlays/{len(figures):04d}.png"
            overlay = overlay_panoptic(images[row["key"]], row_id_map(row), row["segments"], categories)
            Image.fromarray(overlay).save(os.path.join(out_dir, name))
            figures.append((name, row))
        log(f"[render] {len(figures)}/{len(shown_rows)} overlays drawn")
    with open(os.path.join(out_dir, "index.html"), "w") as f:
        f.write(report_html(output.uri, stats, figures, not_shown, output.manifest()["labeling"]))
    return {"rows": stats.rows, "ok": stats.ok, "errors": len(stats.errors), "shown": len(figures),
            "not_shown": not_shown}


def _bars(items: Sequence[tuple[str, int]]) -> str:
    """Horizontal bars as an HTML table (label, bar scaled to the largest count, count)."""
    top = max((count for _, count in items), default=0) or 1
    return "<table class=bars>" + "".join(
        f"<tr><td>{html.escape(label)}</td><td><div style='width:{300 * count / top:.0f}px'></div></td>"
        f"<td>{count}</td></tr>" for label, count in items) + "</table>"


def made_with(labeling: dict) -> str:
    """What made the labels, as an HTML list: models (checkpoint and sha256 prefix), vocabulary,
    the post-processing thresholds and the longest side the model saw."""
    def model(part: str) -> str:
        info = labeling[part]
        digest = f" (sha256 {info['sha256'][:12]}…)" if info.get("sha256") else ""
        return f"{info['model']}, weights {info.get('checkpoint') or 'random'}{digest}"

    vocab = labeling["vocabulary"]
    post = labeling.get("postprocess", {})
    names = ("min_score", "affinity_thresh", "overlap_thresh", "kappa", "kappa_seen")
    thresholds = ", ".join(f"{name} {post[name]}" for name in names if name in post)
    items = [("SAM", model("sam")), ("SAM-CP head", model("head")), ("CLIP", model("clip")),
             ("vocabulary", f"{vocab['name']} ({plural(len(vocab['classes']), 'class', 'classes')}, "
                            f"from {vocab['source']})"),
             ("thresholds", thresholds or "not recorded"),
             ("model input", f"longer side {labeling.get('decode', {}).get('max_side', '?')} px")]
    return "<ul class=made>" + "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(str(value))}</li>"
                                       for name, value in items) + "</ul>"


def report_html(source: str, stats: LabelStats, figures: Sequence[tuple[str, dict]],
                not_shown: dict[str, str], labeling: dict) -> str:
    """The report page; a script on the page counts the images that loaded (shown at the top,
    and in `body[data-images-loaded]` / `body[data-images-broken]` for automated checks)."""
    gallery = "".join(
        f"<figure><a href='{name}'><img src='{name}' alt='{html.escape(row['key'])}'></a>"
        f"<figcaption>{html.escape(row['key'])}"
        f"<br>{plural(len(row['segments']), 'segment')}: "
        f"{html.escape(', '.join(sorted({s['category'] for s in row['segments']})) or 'none')}"
        f"</figcaption></figure>" for name, row in figures)
    score_bins = [(f"{i / SCORE_BINS:.2f}-{(i + 1) / SCORE_BINS:.2f}", int(c))
                  for i, c in enumerate(stats.score_counts)]
    errors = "".join(f"<tr><td>{html.escape(e['key'])}</td><td>{html.escape(e['shard'])}</td>"
                     f"<td>{html.escape(e['reason'] or '')}</td></tr>" for e in stats.errors)
    missing = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in sorted(not_shown.items()))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>SAM-CP labels: {html.escape(source)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
figure {{ display: inline-block; margin: 0 .6em .8em 0; width: 260px; vertical-align: top; }}
figure img {{ width: 256px; border: 1px solid #ccc; }}
figcaption {{ font-size: 12px; word-break: break-all; }}
table.bars td {{ font-size: 12px; padding: 1px 6px; }}
table.bars div {{ background: #4a7bd0; height: 11px; }}
table.errors td {{ font-size: 12px; padding: 2px 8px; border-bottom: 1px solid #ddd; }}
.columns {{ display: flex; gap: 3em; flex-wrap: wrap; }}
</style></head>
<body>
<h1>SAM-CP labels</h1>
<p>{html.escape(source)}: {plural(stats.rows, 'image')}, {stats.ok:,} labeled,
{plural(len(stats.errors), 'error')};
{len(figures):,} shown (each links to its full-size overlay). <span id="image-status"></span></p>
<h2>Made with</h2>
{made_with(labeling)}
<h2>Images</h2>
<div class="gallery">{gallery}</div>
{f"<p>Not shown:</p><ul>{missing}</ul>" if missing else ""}
<div class="columns">
<div><h2>Segments per class</h2>{_bars(stats.classes.most_common())}</div>
<div><h2>Segment scores</h2>{_bars(score_bins)}</div>
</div>
<h2>Errors ({len(stats.errors)})</h2>
<table class="errors"><tr><th>key</th><th>shard</th><th>reason</th></tr>{errors}</table>
<script>
window.addEventListener("load", () => {{
  const images = Array.from(document.images);
  const broken = images.filter(img => !(img.complete && img.naturalWidth > 0)).length;
  document.body.dataset.imagesLoaded = images.length - broken;
  document.body.dataset.imagesBroken = broken;
  document.getElementById("image-status").textContent =
    broken ? `${{broken}} of ${{images.length}} images failed to load`
           : `all ${{images.length}} images loaded`;
}});
</script>
</body></html>
"""
