"""The README's commands are the ones CI runs, so neither goes stale."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start)


def test_readme_has_exactly_two_quick_start_commands():
    demo, tests = readme_commands()
    assert "samcp corpus --demo" in demo and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


@pytest.mark.xdist_group("default_ray_ports")
@pytest.mark.slow
def test_readme_demo_command_runs(tmp_path, browser_images):
    import shlex
    import subprocess
    import sys

    demo, _ = readme_commands()
    job = shlex.split(demo.rsplit("&&", 1)[1])
    assert job == [".venv/bin/samcp", "corpus", "--demo"]
    samcp = str(Path(sys.executable).parent / "samcp")
    done = subprocess.run([samcp, *job[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "demo_output"
    assert len(list((out / "shards").glob("shard-*.tar"))) == 2
    assert len(list((out / "labels").glob("*.parquet"))) == 3 and (out / "labels" / "_SUCCESS").exists()
    assert len(list((out / "report" / "overlays").glob("*.png"))) == 16 + 4  # synthetic + photos
    assert "[label] shards 3/3  images 20 (ok 20, error 0)" in done.stdout
    assert re.search(r"^All +\d+\.\d", done.stdout, re.M), done.stdout[-2000:]
    if browser_images is None:  # everything else was checked
        pytest.skip("no chromium on this machine (apt-get install chromium): only the browser check left out")
    assert browser_images(str(out / "report" / "index.html")) == (20, 0)  # the report renders whole


def test_every_default_the_readme_states_is_the_codes():
    """"`--flag` ... (default X)" in the README: X is the flag's default in the labeling job's parser
    (for a flag whose default is None, the default of the field it fills)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("label_corpus", ROOT / "jobs" / "label_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    actions = {flag: action for action in module.build_parser()._actions for flag in action.option_strings}
    from samcp.postprocess import PostprocessConfig

    fields = {f"--{name.replace('_', '-')}": value for name, value in vars(PostprocessConfig()).items()}
    stated = re.findall(r"`(--[a-z-]+)`\s*\(default\s+([^):,]+)", (ROOT / "README.md").read_text())
    assert len(stated) >= 5, stated
    for flag, value in stated:
        default = actions[flag].default
        default = fields[flag] if default is None else default
        value = value.split()[0]
        same = float(default) == float(value) if isinstance(default, (int, float)) else str(default) == value
        assert same, f"README: {flag} default {value}, code: {default}"
