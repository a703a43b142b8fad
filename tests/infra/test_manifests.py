"""The deployment files parse, agree with each other, and run commands the job accepts."""

from __future__ import annotations

import os
import re
import shlex

import ray
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INFRA = os.path.join(REPO, "infra")


def load(*parts: str) -> dict:
    with open(os.path.join(INFRA, *parts)) as f:
        return yaml.safe_load(f)


def label_corpus_parser():
    from pipeline.commands.corpus import parse_args

    return parse_args


def dockerfile() -> str:
    with open(os.path.join(INFRA, "Dockerfile")) as f:
        return f.read()


def test_every_manifest_parses():
    for folder, _, files in os.walk(INFRA):
        for name in files:
            if name.endswith((".yaml", ".yml")):
                with open(os.path.join(folder, name)) as f:
                    assert list(yaml.safe_load_all(f)), name


def test_the_image_runs_this_ray_and_installs_the_package_as_the_readme_says():
    text = dockerfile()
    base = re.search(r"^FROM rayproject/ray:(\S+)-py(\d)(\d+)-gpu$", text, re.M)
    assert base and base.group(1) == ray.__version__
    assert "pip install --no-cache-dir -c constraints.txt ." in text
    for folder in ("samcp", "pipeline", "jobs"):
        assert re.search(rf"^COPY .*\b{folder} {folder}$", text, re.M), folder


def test_kuberay_cluster_has_autoscaled_gpu_workers_on_the_image():
    cluster = load("kuberay", "raycluster.yaml")
    assert cluster["kind"] == "RayCluster" and cluster["spec"]["rayVersion"] == ray.__version__
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    gpu, = cluster["spec"]["workerGroupSpecs"]
    worker = gpu["template"]["spec"]["containers"][0]
    assert head["image"] == worker["image"] == "samcp-labeler:0.1.0"
    assert "docker build -f infra/Dockerfile -t samcp-labeler:0.1.0 ." in dockerfile()
    assert gpu["minReplicas"] < gpu["maxReplicas"]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_rayjob_runs_label_corpus_with_flags_it_accepts_on_the_gpus_the_cluster_has():
    job, cluster = load("kuberay", "rayjob.yaml"), load("kuberay", "raycluster.yaml")
    assert job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/label_corpus.py"] and os.path.exists(os.path.join(REPO, argv[1]))
    args = label_corpus_parser()(argv[2:])  # every flag exists and every value parses
    assert args.input == ["s3://my-corpus/shards/shard-{000000..009999}.tar"]  # quoted: one brace pattern
    gpu, = cluster["spec"]["workerGroupSpecs"]
    per_worker = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    gpus = gpu["maxReplicas"] * int(per_worker)
    assert 0 < args.num_gpus_per_actor and args.actors * args.num_gpus_per_actor <= gpus


def test_cluster_launcher_has_gpu_workers_on_the_same_image():
    launcher = load("aws", "cluster.yaml")
    assert launcher["provider"]["type"] == "aws"
    assert launcher["docker"]["image"].endswith("/samcp-labeler:0.1.0")
    workers = launcher["available_node_types"]["gpu_worker"]
    assert workers["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS GPU families
    assert workers["min_workers"] < workers["max_workers"] <= launcher["max_workers"]
    assert launcher["head_node_type"] in launcher["available_node_types"]
