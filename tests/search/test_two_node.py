"""A real two-node Ray cluster on this machine: a head and a second node started the way users start
them (``ray start --head``, ``ray start --address=...``), emotune attached with ``--ray-address``.

One cluster for the module (each node 1 CPU); the test that kills the second node runs last.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import psutil
import pytest
import sqlalchemy
from test_search import _counts, _study  # the same helpers, from the one-node search tests

from emotune.search._storage import normalize_url

pytestmark = pytest.mark.two_node

BIN = Path(sys.executable).parent
EMOTUNE = str(BIN / "emotune")
SLOW_SPACE = str(Path(__file__).with_name("slow_space.py"))
S = optuna.trial.TrialState


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TwoNodes:
    """A head node ("head") and a second node ("second"), each 1 CPU, each its own --temp-dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        common = ["--num-cpus=1", "--object-store-memory=200000000", "--disable-usage-stats", "--block"]
        self.head = self._start(
            ["--head", f"--port={self.port}", "--include-dashboard=false"], "head", common
        )
        self._wait(1)
        self.second = self._start(
            [f"--address={self.address}", "--dashboard-agent-listen-port=0"], "second", common
        )
        self._wait(2)

    def _start(self, args: list[str], name: str, common: list[str]) -> subprocess.Popen[bytes]:
        cmd = [str(BIN / "ray"), "start", *args, f"--node-name={name}", f"--temp-dir={self.root / name}"]
        proc = subprocess.Popen(
            cmd + common,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def alive_nodes(self) -> list[str]:
        code = (
            f"import ray; ray.init(address={self.address!r}, log_to_driver=False); "
            "print(sorted(n['NodeName'] for n in ray.nodes() if n['Alive']))"
        )
        probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env)
        return eval(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else []

    def _wait(self, n: int) -> None:
        deadline = time.time() + 180
        while len(self.alive_nodes()) < n:
            if time.time() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                pytest.fail(f"could not start a {n}-node Ray cluster")
            time.sleep(1)

    def kill_second(self) -> int:
        """kill -9 the second node's raylet and every process under it (its workers); returns how many."""
        tree = psutil.Process(self.second.pid).children(recursive=True)
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        return len(tree)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodes]:
    root = Path("/tmp") / f"ray-2n-{uuid.uuid4().hex[:6]}"  # short: Ray's socket paths have a limit
    nodes = TwoNodes(root)
    try:
        yield nodes
    finally:
        nodes.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def two_node_cache(
    cluster: TwoNodes, ravdess: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """The RAVDESS files' classic features, built by `emotune features build` on the two nodes."""
    cache = tmp_path_factory.mktemp("cache2n")
    proc = subprocess.run(
        [
            EMOTUNE,
            "features",
            "build",
            str(ravdess),
            "--cache",
            str(cache),
            "--json",
            "--ray-address",
            cluster.address,
        ],
        capture_output=True,
        text=True,
        env=cluster.env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return cache, json.loads(proc.stdout)


def _features(cache: Path) -> set[tuple]:
    with contextlib.closing(sqlite3.connect(cache / "index.db")) as db:
        return set(db.execute("SELECT key, sha, dtype, shape, data FROM features"))


def _search(cluster: TwoNodes, *args: str, cache: Path) -> list[str]:
    return [
        EMOTUNE,
        "search",
        *args,
        "--cache",
        str(cache),
        "--ray-address",
        cluster.address,
    ]


def _env(cluster: TwoNodes) -> dict[str, str]:
    return {**cluster.env, "EMOTUNE_HEARTBEAT_S": "1", "EMOTUNE_GRACE_S": "3"}


def test_features_build_on_both_nodes_equals_a_one_node_build(two_node_cache, feature_cache):
    cache, report = two_node_cache
    assert report["built"] == report["files"] > 200 and not report["failed"]
    assert set(report["nodes"]) == {"head", "second"}, report["nodes"]
    assert all(n > 0 for n in report["nodes"].values())
    assert sum(report["nodes"].values()) == report["built"]
    # The same numbers as the one-node build (the session's Ray), byte for byte; that cache also holds
    # the sets the search tests need, so the set built here is compared.
    two = _features(cache)
    keys = {row[0] for row in two}
    assert len(keys) == 1 and two == {row for row in _features(feature_cache) if row[0] in keys}


def test_search_runs_workers_on_both_nodes(cluster, two_node_cache, ravdess, pg_url, study_name):
    cache, _ = two_node_cache
    # Trials of a few seconds each, so that both workers (started together) get some.
    args = [SLOW_SPACE, "--study", study_name, "--data", str(ravdess), "--trials", "4", "--workers", "2"]
    proc = subprocess.run(
        _search(cluster, *args, "--storage", pg_url, "--pruner", "none", cache=cache),
        capture_output=True,
        text=True,
        env=_env(cluster),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    study = _study(pg_url, study_name)
    counts = _counts(study)
    assert counts["COMPLETE"] + counts["PRUNED"] == 4 and counts["RUNNING"] == 0, counts
    nodes = {t.user_attrs.get("node") for t in study.trials}
    assert nodes == {"head", "second"}, nodes


def _wait_port(port: int, timeout: float = 120) -> None:
    import socket

    end = time.time() + timeout
    while time.time() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            time.sleep(3)  # the GCS listens: give it a moment to serve
            return
        time.sleep(0.5)
    raise AssertionError(f"no Ray head on port {port}")


def _auth_error(
    cluster_address: str, env: dict[str, str], cache: Path, ravdess: Path, pg_url: str, name: str
) -> str:
    args = ["knn", "--study", name, "--data", str(ravdess), "--trials", "1", "--storage", pg_url]
    cmd = [EMOTUNE, "search", *args, "--cache", str(cache), "--ray-address", cluster_address]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "InvalidAuthToken" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("emotune: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_driver_and_cluster_on_different_token_auth_is_a_one_line_error(
    cluster, two_node_cache, ravdess, pg_url, study_name, tmp_path
):
    cache, _ = two_node_cache
    token = uuid.uuid4().hex
    # A driver with a token, the cluster without authentication.
    env = {**cluster.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    line = _auth_error(cluster.address, env, cache, ravdess, pg_url, study_name)
    assert "set RAY_AUTH_MODE=disabled" in line, line
    # A driver without one, a cluster (one head) that requires it.
    port = _free_port()
    head_env = {**cluster.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    cmd = [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"]
    cmd += [f"--temp-dir={cluster.root / 'token'}", "--object-store-memory=100000000", "--block"]
    head = subprocess.Popen(
        cmd, env=head_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_port(port)
        line = _auth_error(f"127.0.0.1:{port}", cluster.env, cache, ravdess, pg_url, study_name)
        assert "set RAY_AUTH_MODE=token and the cluster's token" in line, line
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def _running_on_second(storage: optuna.storages.RDBStorage, name: str):
    """A RUNNING trial (with params) on the second node; one storage for every poll, so that
    polling holds one small pool, not a new pool each time (PostgreSQL is shared)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False, states=(S.RUNNING,))
    except (KeyError, sqlalchemy.exc.OperationalError):
        return None
    running = [t for t in trials if t.user_attrs.get("node") == "second" and t.params]
    return running[0] if running else None


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retried_trial_number
def test_losing_the_second_node_mid_study_still_reaches_exactly_n(
    cluster, two_node_cache, ravdess, pg_url, study_name
):
    """Runs last: it kills the module's second node."""
    cache, _ = two_node_cache
    args = [SLOW_SPACE, "--study", study_name, "--data", str(ravdess), "--trials", "6", "--workers", "2"]
    cmd = _search(cluster, *args, "--storage", pg_url, "--pruner", "none", cache=cache)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(cluster))
    try:
        end = time.time() + 300
        victim = None
        poll = optuna.storages.RDBStorage(
            normalize_url(pg_url),
            engine_kwargs={"pool_size": 2, "max_overflow": 0},  # Optuna 5 needs 2
        )
        while victim is None and time.time() < end and proc.poll() is None:
            victim = _running_on_second(poll, study_name)
            time.sleep(0.5)
        poll.engine.dispose()
        assert victim is not None, "no trial ever ran on the second node"
        assert cluster.kill_second() > 0
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lost = [ln for ln in err.splitlines() if "lost Ray node 'second'" in ln]
    assert len(lost) == 1, err
    study = _study(pg_url, study_name)
    counts = _counts(study)
    assert counts["COMPLETE"] + counts["PRUNED"] == 6, counts
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 0, counts
    killed = study.trials[victim.number]
    assert killed.state == S.FAIL
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retries = [t for t in study.trials if retried(t) == killed.number]
    assert retries and retries[0].params == killed.params
    assert any(t.state in (S.COMPLETE, S.PRUNED) for t in retries)
