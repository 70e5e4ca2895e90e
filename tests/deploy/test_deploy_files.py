"""The deploy files parse, agree with the installed Ray, and take the storage URL from a Secret."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _containers(pod_template: dict) -> list[dict]:
    return list(pod_template["spec"]["containers"])


def test_raycluster_matches_the_image_ray_and_reads_the_storage_from_a_secret():
    doc = _load(K8S / "raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert doc["spec"]["rayVersion"] == ray.__version__
    # The image is deploy/Dockerfile: it pins the same Ray.
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"'ray[tune]=={ray.__version__}'" in dockerfile
    groups = [doc["spec"]["headGroupSpec"], *doc["spec"]["workerGroupSpecs"]]
    assert len(groups) >= 2
    for group in groups:
        for container in _containers(group["template"]):
            env = {e["name"]: e for e in container["env"]}
            ref = env["EMOTUNE_STORAGE"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "emotune-storage", "key": "url"}
            assert "value" not in env["EMOTUNE_STORAGE"]
    for path in K8S.glob("*.yaml"):
        assert not re.search(r"postgres(ql)?://[^\s\"']*:[^\s\"'@]+@", path.read_text()), path


def test_rayjob_runs_one_emotune_search_on_the_raycluster():
    job = _load(K8S / "rayjob.yaml")
    cluster = _load(K8S / "raycluster.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    entry = job["spec"]["entrypoint"].split()
    assert entry[:2] == ["emotune", "search"] and "--study" in entry and "--trials" in entry
    assert "--storage" not in entry  # the URL comes from the cluster's Secret, never the command line


def test_ray_launcher_installs_emotune_from_the_checkout_with_the_same_ray():
    text = (ROOT / "deploy" / "ray-cluster.yaml").read_text()
    doc = yaml.safe_load(text)
    assert "|| true" not in text and "example.invalid" not in text
    assert doc["file_mounts"] == {"~/emotune": "."}
    setup = " ".join(doc["setup_commands"])
    assert "pip install" in setup and "~/emotune " in setup and f"ray[tune]=={ray.__version__}" in setup


def test_compose_file_is_valid():
    doc = _load(ROOT / "docker-compose.yml")
    assert {"postgres", "ray-head", "ray-worker", "dashboard"} <= set(doc["services"])
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        proc = subprocess.run([docker, "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
