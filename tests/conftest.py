"""Session-wide services for the tests: everything listens on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass

import pytest

# One torch thread per process: two test workers (and the Ray workers and subprocesses they start)
# share the machine's cores, and oversubscribed torch threads slow each other many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Ray must bind to loopback and never phone home; set before anything imports ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray 2.60 clusters require a token; the CLI, drivers and `ray start` of the tests share this one.
if "RAY_AUTH_TOKEN_PATH" not in os.environ:
    os.environ["RAY_AUTH_TOKEN_PATH"] = os.path.join(tempfile.mkdtemp(prefix="samcp-ray-auth-"), "auth_token")
    with open(os.environ["RAY_AUTH_TOKEN_PATH"], "w") as f:
        f.write(secrets.token_hex(32))
os.environ.setdefault("RAY_AUTH_MODE", "token")
# No test may reach real AWS: credentials are fake and the endpoint is local.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # closed port until the S3 server starts


def pytest_collection_modifyitems(items):
    """The slow tests first: the two xdist workers take them while plenty of short ones are left to
    even out the end, instead of each finishing on a long one (a stable sort: the same order in every
    worker, as xdist requires)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1; AWS_ENDPOINT_URL points at it for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh, empty bucket named after the test; yields its name."""
    import s3fs

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:8]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir(name)
    fs.invalidate_cache()
    yield name
    fs.rm(name, recursive=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RayCluster:
    address: str  # for ray.init / --ray-address
    dashboard: str  # for ray job submit --address
    temp_dir: str  # its session files and logs


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint):
    """A real Ray head (`ray start --head`, dashboard included) on 127.0.0.1 with 2 CPUs.

    Its processes get the test environment (loopback-only Ray, the local S3
    endpoint, fake credentials). It has a temp dir of its own, by which its
    processes are found and stopped afterwards: other Ray instances on the
    machine are left alone (`ray stop` would stop them all).
    """
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    temp_dir = tempfile.mkdtemp(prefix="samcp-ray-", dir="/tmp")  # short: Ray's socket paths live here
    port, dashboard = free_port(), free_port()
    # Ports of its own for every server Ray would otherwise start on a fixed default (the job agent
    # on 52365, the client server on 10001), so that the clusters of two test workers never meet.
    ports = [f"--{name}={free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port")]
    started = subprocess.run(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", *ports,
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        capture_output=True, text=True, timeout=120)
    try:
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{started.stdout}\n{started.stderr}")
        yield RayCluster(address=f"127.0.0.1:{port}", dashboard=f"http://127.0.0.1:{dashboard}",
                         temp_dir=temp_dir)
    finally:
        stop_processes_using(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_processes_using(marker: str, timeout: float = 5) -> None:
    """Terminate (then kill) every process whose command line names `marker`, with its children."""
    import psutil

    roots = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    processes = {p for root in roots for p in [root, *root.children(recursive=True)]}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


@pytest.fixture(scope="session")
def browser_images():
    """A function: HTML page path -> (images loaded, images broken), as the page's own script counted
    them in headless Chromium (pages of `pipeline.report`). None without Chromium, so that a test
    skips only its browser check; on CI, whose `.ci/run` installs
    it, a missing Chromium fails."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium on the CI machine: .ci/run should have installed it")
        return None

    def images(page: str) -> tuple[int, int]:
        done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                               "--virtual-time-budget=10000", "--dump-dom", f"file://{os.path.abspath(page)}"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        found = re.search(r'data-images-loaded="(\d+)" data-images-broken="(\d+)"', done.stdout)
        assert found, done.stdout[:2000]
        return int(found[1]), int(found[2])

    return images
