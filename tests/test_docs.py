"""Every shell command in README.md and docs/*.md is checked, so none goes stale.

Blocks marked `<!-- docs-test: run -->` run as written, in order, in an empty folder; the block
marked `<!-- docs-test: cluster -->` (the README's local cluster) runs as written with bash. Every
other command is checked against the program it calls: a job's or benchmark's flags parse with its
own argument parser (`build_parser()`), `samcp` with its command's, and files named in
`docker`/`kubectl`/`ray up` commands exist. A command of any other program fails the test, so a
new kind of command in the docs needs a check here.
"""

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_MARK = "<!-- docs-test: run -->"
CLUSTER_MARK = "<!-- docs-test: cluster -->"
PYTHONS = {"python", "python3", ".venv/bin/python"}
# Programs whose commands are checked by the files they name (see check_command).
FILE_ARGUMENTS = {("docker", "build"): "-f", ("kubectl", "apply"): "-f"}
PLAIN_PROGRAMS = {"pip", ".venv/bin/pip", "chromium"}


def doc_blocks() -> list[tuple[str, str | None, str]]:
    """(doc name, its mark: "run", "cluster" or None, block text) for each ```bash block of the docs."""
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for match in re.finditer(r"```bash\n(.*?)\n```", text, re.S):
            before = text[:match.start()].rstrip()
            mark = next((name for name, marker in (("run", RUN_MARK), ("cluster", CLUSTER_MARK))
                         if before.endswith(marker)), None)
            blocks.append((doc.name, mark, match[1]))
    return blocks


def commands(block: str) -> list[list[str]]:
    """The block's commands as argument lists: continuations joined, comments dropped, `&&` split,
    leading VAR=value assignments dropped."""
    result = []
    for line in block.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            end = tokens.index("&&") if "&&" in tokens else len(tokens)
            command, tokens = tokens[:end], tokens[end + 1:]
            command = [t for t in command if t != "&"]
            while command and re.match(r"^[A-Z_]+=", command[0]):
                command = command[1:]
            if command:
                result.append(command)
    return result


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"docs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_python(argv: list[str]) -> None:
    if argv[:2] in (["-m", "pytest"], ["-m", "venv"]):
        return
    script = ROOT / argv[0]
    assert script.parent.name in ("jobs", "bench") and script.exists(), f"no such script: {argv[0]}"
    module = load_script(script)
    assert hasattr(module, "build_parser"), f"{argv[0]} has no build_parser()"
    try:
        module.build_parser().parse_args(argv[1:])
    except SystemExit as exit_:
        pytest.fail(f"{argv[0]} rejects the documented arguments {shlex.join(argv[1:])} (exit {exit_.code})")


def check_command(command: list[str]) -> None:
    program, *args = command
    if program in PYTHONS:
        check_python(args)
    elif program in ("samcp", ".venv/bin/samcp"):
        import importlib

        from pipeline.cli import COMMANDS

        assert args and args[0] in COMMANDS, f"samcp has no command {args[:1]}"
        parser = importlib.import_module(f"pipeline.commands.{COMMANDS[args[0]][0]}").build_parser()
        try:
            parser.parse_args(args[1:])
        except SystemExit as exit_:
            pytest.fail(f"samcp {args[0]} rejects the documented arguments {shlex.join(args[1:])} "
                        f"(exit {exit_.code})")
    elif program == "ray" and args[:2] == ["job", "submit"]:
        assert "--" in args, "ray job submit without `-- python ...`"
        entrypoint = args[args.index("--") + 1:]
        assert entrypoint[0] in PYTHONS
        check_python(entrypoint[1:])
    elif program == "ray" and args[0] in ("up", "down", "dashboard"):
        assert (ROOT / args[1]).exists(), f"no such file: {args[1]}"
    elif program == "ray":
        assert args[0] in ("start", "stop", "get-auth-token", "status"), command
    elif (program, args[0]) in FILE_ARGUMENTS:
        named = args[args.index(FILE_ARGUMENTS[program, args[0]]) + 1]
        assert (ROOT / named).exists(), f"no such file: {named}"
    else:
        assert program in PLAIN_PROGRAMS or (program, args[0]) in {
            ("docker", "tag"), ("docker", "push"), ("kubectl", "create"), ("kubectl", "logs")}, \
            f"no check for this command: {shlex.join(command)}"


CHECKED = [(doc, shlex.join(c)) for doc, mark, block in doc_blocks() if mark is None for c in commands(block)]


@pytest.mark.parametrize("doc,command", CHECKED, ids=[f"{d}:{c[:60]}" for d, c in CHECKED])
def test_documented_command_is_valid(doc, command):
    check_command(shlex.split(command))


def test_the_checks_catch_a_stale_command():
    with pytest.raises(pytest.fail.Exception, match="--outptu"):
        check_command(shlex.split("python jobs/export.py --labels x --format coco-panoptic --outptu y"))
    with pytest.raises(AssertionError):
        check_command(shlex.split("kubectl apply -f infra/kuberay/no_such.yaml"))
    with pytest.raises(AssertionError):
        check_command(shlex.split("curl https://example.com"))


@pytest.mark.xdist_group("default_ray_ports")
@pytest.mark.slow
def test_marked_blocks_run_as_written(tmp_path):
    """README's "Label a corpus on this machine": shards -> labels -> scores -> exports -> report."""
    runs = [c for _, mark, block in doc_blocks() if mark == "run" for c in commands(block)]
    assert len(runs) >= 7
    outputs = []
    samcp = str(Path(sys.executable).parent / "samcp")
    for command in runs:
        assert command[0] == "samcp", command
        done = subprocess.run([samcp, *command[1:]], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stderr[-3000:]}"
        outputs.append((command, done.stdout))
    scores = [out for command, out in outputs if command[1] == "evaluate"]
    assert len(scores) == 2 and re.search(r"^All +\d+\.\d", scores[0], re.M)
    assert scores[0] == scores[1]  # the COCO panoptic export scores the same PQ as the Parquet
    assert len(list((tmp_path / "data" / "labels").glob("*.parquet"))) == 2
    assert len(list((tmp_path / "data" / "hf" / "data").glob("*.parquet"))) == 2
    assert len(list((tmp_path / "data" / "report" / "overlays").glob("*.png"))) == 8


@pytest.mark.xdist_group("default_ray_ports")
def test_the_local_cluster_recipe_runs_as_written(tmp_path):
    """README's one-machine cluster: Ray started from the venv, a job submitted with absolute paths,
    run with bash from a folder whose `.venv` is the tests' own; the job labels both shards. Ray's
    files go to a temp root of its own (RAY_TMPDIR), so no other test's `ray.init()` joins it and it
    is stopped by that name; the tests that start Rays on the default ports run beside it in turn."""
    import os
    import shutil
    import tempfile

    from tests.conftest import stop_processes_using

    blocks = [block for _, mark, block in doc_blocks() if mark == "cluster"]
    assert len(blocks) == 1
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    ray_root = tempfile.mkdtemp(prefix="samcp-recipe-", dir="/tmp")  # short: Ray's socket paths live here
    try:
        done = subprocess.run(["bash", "-euc", blocks[0]], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "RAY_TMPDIR": ray_root})
    finally:
        stop_processes_using(ray_root)
        shutil.rmtree(ray_root, ignore_errors=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    labels = tmp_path / "cluster_data" / "labels"
    assert len(list(labels.glob("*.parquet"))) == 2 and (labels / "_SUCCESS").exists()
    assert "[label] done: 8 images (8 ok, 0 errors)" in done.stdout
