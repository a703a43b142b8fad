"""The README's commands are the ones CI runs, so neither goes stale."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start)


def test_readme_has_exactly_two_quick_start_commands():
    demo, tests = readme_commands()
    assert "jobs/" in demo and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_readme_demo_command_runs(tmp_path, browser_images):
    import shlex
    import subprocess
    import sys

    demo, _ = readme_commands()
    job = shlex.split(demo.rsplit("&&", 1)[1])
    assert job[0] == ".venv/bin/python" and job[1:] == ["jobs/label_corpus.py", "--demo"]
    done = subprocess.run([sys.executable, str(ROOT / job[1]), *job[2:]],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "demo_output"
    assert len(list((out / "shards").glob("shard-*.tar"))) == 2
    assert len(list((out / "labels").glob("*.parquet"))) == 3 and (out / "labels" / "_SUCCESS").exists()
    assert len(list((out / "report" / "overlays").glob("*.png"))) == 16 + 4  # synthetic + photos
    assert browser_images(str(out / "report" / "index.html")) == (20, 0)  # the report renders whole
    assert "[label] shards 3/3  images 20 (ok 20, error 0)" in done.stdout
    assert re.search(r"^All +\d+\.\d", done.stdout, re.M), done.stdout[-2000:]
