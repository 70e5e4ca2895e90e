"""Hostile and careless input: secrets stay secret, bad options create nothing, errors are one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from emotune.search import cli
from emotune.search._urls import mask

EMOTUNE = str(Path(sys.executable).parent / "emotune")
ANSI = re.compile(r"\x1b\[")


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and not ANSI.search(stderr), stderr
    return lines[0]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:SEC@RET:PW6@127.0.0.1:5432/test",
        "postgresql://postgres:SECRETPW6@127.0.0.1:port/test",
        "postgresql://postgres:SECRETPW6@127.0.0.1:99999/test",
        "postgresql://postgres:SEC@RETPW6@[::1/test",
        "mysql://postgres:SECRETPW6@127.0.0.1/test",
    ],
)
def test_a_storage_url_that_does_not_parse_is_one_masked_line(run_cli, url, tmp_path):
    proc = run_cli("studies", "--storage", url, env={**os.environ, "EMOTUNE_HOME": str(tmp_path)})
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert line.startswith("emotune: error: storage URL") and "***" in line
    assert not re.search("SEC|RET|PW6", line), line


def test_mask_hides_passwords_in_any_text():
    assert mask("a postgresql://u:p@ss:w@rd@h:5432/db b") == "a postgresql://u:***@h:5432/db b"
    assert mask("postgresql://u@h/db?password=xyz&x=1") == "postgresql://u@h/db?password=***&x=1"
    assert mask("postgresql://u@h/db") == "postgresql://u@h/db"


# One family per command: each option with values it must refuse before anything is created.
_NON_POSITIVE = hs.integers(max_value=0).map(str)
_NOT_A_NUMBER = hs.sampled_from(["x", "", "1.5.2", "nan", "inf", "-inf", "1e999", "0x10"])
_BAD_SECONDS = hs.one_of(hs.floats(max_value=0).map(repr), _NOT_A_NUMBER)
_FAMILIES = {
    "search": (
        ["search", "knn", "--study", "{study}", "--data", "{data}", "--trials", "2", "--storage", "{pg}"],
        {
            "--trials": hs.one_of(_NON_POSITIVE, _NOT_A_NUMBER),
            "--workers": _NON_POSITIVE,
            "--timeout": _BAD_SECONDS,
            "--folds": hs.integers(max_value=1).map(str),
            "--seed": hs.integers(max_value=-1).map(str),
            "--num-cpus": _NON_POSITIVE,
            "--target": hs.sampled_from(["emotions", "x", ""]),
            "--storage-patience": _BAD_SECONDS,
        },
    ),
    "ensemble": (
        ["ensemble", "{study}", "--out", "{tmp}/model", "--storage", "{pg}"],
        {"--top-k": _NON_POSITIVE, "--iterations": hs.one_of(_NON_POSITIVE, _NOT_A_NUMBER)},
    ),
    "features": (
        ["features", "build", "{data}", "--cache", "{tmp}/cache"],
        {"--num-cpus": hs.one_of(_NON_POSITIVE, _NOT_A_NUMBER), "--corpus": hs.sampled_from(["ravdes", "x"])},
    ),
    "predict": (["predict", "{tmp}/model", "{data}"], {"--window": _BAD_SECONDS}),
    "evaluate": (
        ["evaluate", "{data}", "--cache", "{tmp}/cache", "--storage", "{pg}"],
        {
            "--outer-folds": hs.integers(max_value=1).map(str),
            "--inner-folds": hs.integers(max_value=1).map(str),
            "--trials": _NON_POSITIVE,
            "--workers": _NON_POSITIVE,
            "--top-k": _NON_POSITIVE,
            "--timeout": hs.one_of(hs.floats(max_value=-1e-9).map(repr), _NOT_A_NUMBER),
        },
    ),
    "dashboard": (
        ["dashboard", "--storage", "{pg}"],
        {"--port": hs.one_of(hs.integers(max_value=0), hs.integers(min_value=65536)).map(str)},
    ),
    "demo": (["demo", "--out", "{tmp}/demo"], {"--trials": _NON_POSITIVE, "--workers": _NON_POSITIVE}),
    "synth": (
        ["corpus", "synth", "{tmp}/synth"],
        {
            "--actors": hs.one_of(_NON_POSITIVE, hs.integers(min_value=100).map(str)),
            "--seed": _NON_POSITIVE.filter(lambda v: v != "0"),
        },
    ),
}


@hs.composite
def _invocations(draw: hs.DrawFn) -> tuple[str, list[str], str]:
    family = draw(hs.sampled_from(sorted(_FAMILIES)))
    base, options = _FAMILIES[family]
    option = draw(hs.sampled_from(sorted(options)))
    return family, [*base, f"{option}={draw(options[option])}"], option


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(invocation=_invocations())
def test_invalid_options_create_nothing_and_say_one_line(invocation, pg_url, data_dir, monkeypatch, capsys):
    family, argv, option = invocation
    study = f"test-bad-{uuid.uuid4().hex[:10]}"
    ray_was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    with tempfile.TemporaryDirectory(prefix="et-bad-") as tmp, monkeypatch.context() as patch:
        patch.chdir(tmp)  # undone before the folder is removed
        patch.setenv("EMOTUNE_HOME", f"{tmp}/home")
        values = {"study": study, "data": str(data_dir / "ravdess"), "tmp": tmp, "pg": pg_url}
        with pytest.raises(SystemExit) as exit_info:
            cli.main([arg.format(**values) for arg in argv])
        assert exit_info.value.code == 2, (family, argv)
        line = _one_line(capsys.readouterr().err)
        assert option in line, line
        assert os.listdir(tmp) == [], f"{argv} created {os.listdir(tmp)}"
    if "ray" in sys.modules and not ray_was_up:
        assert not sys.modules["ray"].is_initialized(), f"{argv} started Ray"
    assert not _study_exists(pg_url, study)


def _study_exists(pg_url: str, name: str) -> bool:
    import psycopg2

    conn = psycopg2.connect(pg_url.replace("postgresql://", "postgres://", 1), connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('studies') IS NOT NULL")
            if not cur.fetchone()[0]:
                return False
            cur.execute("SELECT 1 FROM studies WHERE study_name = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def test_the_storage_password_reaches_no_file_and_no_output(
    pg_url, ravdess, feature_cache, search_env, study_name, tmp_path
):
    secret = f"Pw{uuid.uuid4().hex[:12]}"
    url = pg_url.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@", 1)
    assert secret in url
    home = tmp_path / "home"
    start = time.time()
    env = {**search_env, "EMOTUNE_HOME": str(home), "EMOTUNE_STORAGE": url}
    outputs = []

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([EMOTUNE, *args], capture_output=True, text=True, env=env, timeout=600)
        outputs.append(proc.stdout + proc.stderr)
        assert not check or proc.returncode == 0, proc.stderr
        return proc

    run("search", "knn", "--study", study_name, "--data", str(ravdess), "--trials", "2", "--workers", "2",
        "--cache", str(feature_cache))  # fmt: skip
    run(
        "ensemble",
        study_name,
        "--out",
        str(tmp_path / "model"),
        "--top-k",
        "1",
        "--cache",
        str(feature_cache),
    )
    bad = run("studies", "--storage", url.replace(":5432/", ":1/"), check=False)
    assert bad.returncode == 1 and "***" in bad.stderr
    port = _free_port()
    dash = subprocess.Popen(
        [EMOTUNE, "dashboard", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        page = _get(f"http://127.0.0.1:{port}/", timeout=120) + _get(f"http://127.0.0.1:{port}/api/studies")
        outputs.append(page)
    finally:
        dash.terminate()
        outputs.append(dash.communicate(timeout=60)[0])
    leaks = [i for i, text in enumerate(outputs) if secret in text]
    assert not leaks, f"the password is in the output of command #{leaks[0]}"
    roots = [home, tmp_path, *Path("/tmp").glob("ray-et-*"), Path("/tmp/ray")]
    for root in roots:
        for path in root.rglob("*") if root.is_dir() else []:
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= start - 1:
                    assert secret.encode() not in path.read_bytes(), f"the password is in {path}"
            except (PermissionError, FileNotFoundError):
                continue


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 30) -> str:
    end = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode(errors="replace"))
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.5)


def test_predict_with_a_wav_first_says_it_is_a_file(run_cli, ravdess, tmp_path):
    wav = ravdess / "Actor_01" / "03-01-01-01-01-01-01.wav"
    proc = run_cli("predict", wav, wav, env={**os.environ, "EMOTUNE_HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert "is a file, not a model directory" in _one_line(proc.stderr)


def test_scikit_learn_user_warnings_do_not_reach_the_terminal(monkeypatch):
    import warnings

    monkeypatch.delenv("EMOTUNE_DEBUG", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.quiet_library_warnings()
        warnings.warn_explicit("noise", UserWarning, "s.py", 1, module="sklearn.model_selection._split")
        warnings.warn_explicit("kept", UserWarning, "e.py", 1, module="emotune.search.x")
    assert [str(w.message) for w in caught] == ["kept"]


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "nosuchspace", "--study", "s", "--data", "{data}", "--trials", "2"],
        ["search", "knn", "--study", "s", "--data", "{tmp}/missing", "--trials", "2"],
        ["evaluate", "{data}", "--spaces", "knn,nope"],
        ["evaluate", "{tmp}/missing", "--spaces", "knn"],
    ],
)
def test_a_bad_space_or_data_path_starts_no_embedded_server(argv, data_dir, monkeypatch, capsys):
    with tempfile.TemporaryDirectory(prefix="et-bad-") as tmp, monkeypatch.context() as patch:
        patch.chdir(tmp)  # undone before the folder is removed
        patch.setenv("EMOTUNE_HOME", f"{tmp}/home")
        patch.delenv("EMOTUNE_STORAGE", raising=False)
        values = {"data": str(data_dir / "ravdess"), "tmp": tmp}
        assert cli.main([arg.format(**values) for arg in argv]) == 1
        assert _one_line(capsys.readouterr().err).startswith("emotune: error:")
        assert os.listdir(tmp) == [], f"{argv} created {os.listdir(tmp)}"


def test_a_file_name_that_is_not_utf8_maps_back_to_its_file_from_json(tmp_path, capsys):
    from emotune.search.cli._common import print_json

    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff.wav"
    Path(os.fsdecode(raw)).write_bytes(b"not audio")
    print_json({"failed": [{"path": os.fsdecode(raw), "reason": "x"}], "ok": [{"path": "plain.wav"}]})
    doc = __import__("json").loads(capsys.readouterr().out)
    assert bytes.fromhex(doc["failed"][0]["path_hex"]) == raw and os.path.isfile(raw)
    assert "path_hex" not in doc["ok"][0]


_USER_SPACE = """
\"\"\"A user's space whose estimator class lives in the module itself (pickled by its module name).\"\"\"
from sklearn.linear_model import LogisticRegression

NAME = "my_logreg"
FEATURES = "classic"


class MyLogReg(LogisticRegression):
    pass


def suggest(trial):
    return {"C": trial.suggest_float("C", 0.1, 10.0, log=True)}


def build(params, *, seed, **_):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), MyLogReg(C=params["C"], max_iter=300, random_state=seed))
"""


def test_a_model_of_a_user_space_predicts_after_the_space_file_is_gone(
    pg_url, ravdess, feature_cache, search_env, study_name, tmp_path, run_cli
):
    space = tmp_path / "my_space.py"
    space.write_text(_USER_SPACE)
    common = {"env": {**search_env, "EMOTUNE_HOME": str(tmp_path / "home")}, "check": True}
    run_cli("search", space, "--study", study_name, "--data", ravdess, "--trials", "2", "--pruner", "none",
            "--cache", feature_cache, "--storage", pg_url, **common)  # fmt: skip
    model = tmp_path / "model"
    run_cli("ensemble", study_name, "--out", model, "--top-k", "1", "--cache", feature_cache, "--storage", pg_url,
            **common)  # fmt: skip
    assert [p.name for p in model.glob("space-*.py")], "the model directory holds no copy of the space"
    space.unlink()  # predict must not need (or import) the original
    wav = ravdess / "Actor_01" / "03-01-05-01-01-01-01.wav"
    proc = run_cli("predict", model, wav, "--json", **common)
    assert json.loads(proc.stdout)[0]["label"]
