"""The deploy files parse, agree with the installed Ray, take the storage URL from a Secret, and are
closed by default: ports published on 127.0.0.1 only, Ray token authentication on everywhere, no
password written in them or defaulted."""

from __future__ import annotations

import os
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
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
                "name": "emotune-ray-token",
                "key": "auth_token",
            }
    for path in K8S.glob("*.yaml"):
        assert not re.search(r"postgres(ql)?://[^\s\"']*:[^\s\"'@]+@", path.read_text()), path
        assert "disabled" not in path.read_text().replace("# ", ""), path


def test_rayjob_runs_one_emotune_search_on_the_raycluster():
    job = _load(K8S / "rayjob.yaml")
    cluster = _load(K8S / "raycluster.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    entry = job["spec"]["entrypoint"].split()
    assert entry[:2] == ["emotune", "search"] and "--study" in entry and "--trials" in entry
    assert "--storage" not in entry  # the URL comes from the cluster's Secret, never the command line
    # The submitter talks to the head's dashboard, which asks for the token.
    (submitter,) = job["spec"]["submitterPodTemplate"]["spec"]["containers"]
    env = {e["name"]: e for e in submitter["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "emotune-ray-token"


def test_ray_launcher_installs_emotune_from_the_checkout_with_the_same_ray():
    text = (ROOT / "deploy" / "ray-cluster.yaml").read_text()
    doc = yaml.safe_load(text)
    assert "|| true" not in text and "example.invalid" not in text
    assert doc["file_mounts"] == {"~/emotune": ".", "~/.ray/auth_token": "~/.ray/auth_token"}
    setup = " ".join(doc["setup_commands"])
    assert "pip install" in setup and "~/emotune " in setup and f"ray[tune]=={ray.__version__}" in setup
    # Every node starts with token authentication (the token file copied above); none turns it off.
    starts = [
        c for c in doc["head_start_ray_commands"] + doc["worker_start_ray_commands"] if "ray start" in c
    ]
    assert len(starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ") for c in starts)
    assert "RAY_AUTH_MODE=disabled" not in text


def _compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: str(v) for k, v in env.items()}


# ${NAME:?message}: compose refuses to start while NAME is unset or empty.
_REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z_][A-Z0-9_]*):\?[^}]*\}$")


def test_compose_file_is_valid():
    doc = _load(ROOT / "docker-compose.yml")
    assert {"postgres", "ray-head", "ray-worker", "dashboard"} <= set(doc["services"])
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        proc = subprocess.run([docker, "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode != 0 and "EMOTUNE_PG_PASSWORD" in proc.stderr  # no password: refused
        env = {**os.environ, "EMOTUNE_PG_PASSWORD": "x", "EMOTUNE_RAY_TOKEN_FILE": __file__}
        proc = subprocess.run(
            [docker, "compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr


def test_compose_publishes_on_localhost_only_with_ray_token_auth_and_no_default_password():
    doc = _load(ROOT / "docker-compose.yml")
    services = doc["services"]
    published = []
    for name, service in services.items():
        for port in service.get("ports") or []:
            published.append(port)
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"
    assert len(published) == 4  # postgres, Ray's GCS and dashboard, optuna-dashboard
    # Every emotune container runs Ray with token authentication, the token a secret file.
    for name in ("ray-head", "ray-worker", "dashboard"):
        env = _compose_env(services[name])
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray-token", name
        assert "RAY_AUTH_TOKEN" not in env, name  # never the token itself in the file
        assert services[name]["secrets"] == ["ray-token"], name
    token_file = _REQUIRED.match(doc["secrets"]["ray-token"]["file"])
    assert token_file and token_file["name"] == "EMOTUNE_RAY_TOKEN_FILE"
    # The database password: one variable, required, no default; the same one in the storage URL.
    password = _REQUIRED.match(_compose_env(services["postgres"])["POSTGRES_PASSWORD"])
    assert password and password["name"] == "EMOTUNE_PG_PASSWORD"
    for name in ("ray-head", "ray-worker", "dashboard"):
        url = re.fullmatch(
            r"postgresql://emotune:(?P<pw>\$\{[^}]*\})@postgres:5432/emotune",
            _compose_env(services[name])["EMOTUNE_STORAGE"],
        )
        assert url, name
        required = _REQUIRED.match(url["pw"])
        assert required and required["name"] == "EMOTUNE_PG_PASSWORD", name
    text = (ROOT / "docker-compose.yml").read_text()
    assert ":-" not in text.split("x-emotune:")[1].replace("${EMOTUNE_DATA:-./data}", "")
    # The dashboards listen on the containers' interfaces, published on 127.0.0.1 (above).
    assert services["dashboard"]["command"][-4:] == ["--host", "0.0.0.0", "--port", "8080"]
    assert "RAY_AUTH_MODE: disabled" not in text


def test_systemd_unit_binds_localhost_and_holds_no_password():
    text = (ROOT / "deploy" / "emotune-dashboard.service").read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert "--host 127.0.0.1" in exec_start
    assert not re.search(r"postgres(ql)?://[^\s:@]*:[^\s@]+@", text)
