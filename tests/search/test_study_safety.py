"""A study is never half-deleted or half-created: delete refuses a running search unless --force, and
settings are checked before a study exists (issue 17: defects 7, 9, 11, 12 and 14)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg2
import pytest

from emotune.search import _storage as st

EMOTUNE = str(Path(sys.executable).parent / "emotune")
ANSI = re.compile(r"\x1b\[")


def _lines(stderr: str) -> list[str]:
    """The lines a person reads (progress-bar frames end in a carriage return, not in a line)."""
    return [line.split("\r")[-1] for line in stderr.splitlines() if line.split("\r")[-1].strip()]


def _one_line(stderr: str) -> str:
    lines = _lines(stderr)
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and not ANSI.search(stderr), stderr
    return lines[0]


def _sql(pg_url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(pg_url.replace("postgresql://", "postgres://", 1), connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('studies') IS NOT NULL")
            if not cur.fetchone()[0]:
                return []
            cur.execute(query, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def _study_rows(pg_url: str, name: str) -> tuple[int, int]:
    """(studies named ``name``, blobs of ``name``)."""
    studies = _sql(pg_url, "SELECT count(*) FROM studies WHERE study_name = %s", name)[0][0]
    blobs = _sql(pg_url, "SELECT count(*) FROM emotune_blobs WHERE study_name = %s", name)[0][0]
    return int(studies), int(blobs)  # type: ignore[call-overload]


# --- settings from the environment --------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("EMOTUNE_HEARTBEAT_S", "abc"),
        ("EMOTUNE_HEARTBEAT_S", "0"),
        ("EMOTUNE_HEARTBEAT_S", "2.5"),
        ("EMOTUNE_GRACE_S", "-1"),
        ("EMOTUNE_GRACE_S", "1"),  # not above the default interval of 5 s
        ("EMOTUNE_STORAGE_PATIENCE_S", "abc"),
        ("EMOTUNE_STORAGE_PATIENCE_S", "-3"),
    ],
)
def test_a_bad_heartbeat_variable_is_one_line_before_any_study_exists(
    var, value, pg_url, ravdess, study_name, tmp_path
):
    env = {**os.environ, "EMOTUNE_HOME": str(tmp_path / "home"), var: value}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [EMOTUNE, "search", "logreg", "--study", study_name, "--data", str(ravdess), "--trials", "2"]
        + ["--storage", pg_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    line = _one_line(proc.stderr)
    assert var in line and value in line, line
    assert _sql(pg_url, "SELECT 1 FROM studies WHERE study_name = %s", study_name) == []
    assert not (tmp_path / "home").exists(), "nothing (no cache, no Ray session) is made first"


def test_heartbeat_settings_accept_whole_seconds_with_a_grace_above_the_interval(monkeypatch):
    monkeypatch.setenv("EMOTUNE_HEARTBEAT_S", " 2 ")
    monkeypatch.delenv("EMOTUNE_GRACE_S", raising=False)
    assert st.heartbeat_settings() == (2, 8)
    monkeypatch.setenv("EMOTUNE_GRACE_S", "3")
    assert st.heartbeat_settings() == (2, 3)


# --- studies delete while a search runs ---------------------------------------------------------


def test_delete_refuses_while_a_worker_of_the_study_lives_between_trials(make_study, pg_url, run_cli):
    """No trial is RUNNING: only a live session of the study's search (a worker between two trials,
    a driver before its workers start) says it runs. The refusal does not depend on timing."""
    name = f"test-live-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    make_study("logreg", name, 0)
    eng = st.engine(pg_url)
    conn = st.autocommit_connection(eng)
    try:
        st.hold_presence(conn, name)
        assert st.search_activity(pg_url, name, grace=20) == {"live": 1, "running": 0}
        proc = run_cli("studies", "delete", name, "--storage", pg_url)
        assert proc.returncode == 1
        line = _one_line(proc.stderr)
        assert name in line and "--force" in line and "1 live" in line, line
        assert _study_rows(pg_url, name) == (1, 1), "the study and its dataset record are kept"
    finally:
        conn.close()
        eng.dispose()
    # The mark goes with the session: a killed worker leaves nothing stale behind.
    assert st.search_activity(pg_url, name, grace=20) == {"live": 0, "running": 0}
    run_cli("studies", "delete", name, "--storage", pg_url, check=True)
    assert _study_rows(pg_url, name) == (0, 0)


def test_a_study_deleted_before_its_workers_start_ends_the_run_with_one_error(
    make_study, pg_url, ray_address
):
    from emotune.search import delete_study, run

    name = f"test-gone-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    prep = make_study("logreg", name, 0)
    delete_study(pg_url, name)
    with pytest.raises(st.StudyGone, match=f"study '{name}' was deleted while this search ran"):
        run(prep, n_trials=2, workers=1, ray_address=ray_address, progress=False)


def _start_search(
    args: list[object], *, env: dict[str, str], pg_url: str, study: str, err: Path
) -> subprocess.Popen[bytes]:
    """``emotune search ARGS`` (2 workers, many trials) in the background, stderr to the file ``err``,
    once a trial of it runs."""
    with err.open("wb") as sink:
        search = subprocess.Popen(
            [EMOTUNE, "search", *map(str, args), "--trials", "500", "--workers", "2", "--timeout", "240"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=env,
            start_new_session=True,
        )
    deadline = time.time() + 240
    while not st.search_activity(pg_url, study, grace=3)["running"]:
        if time.time() > deadline or search.poll() is not None:
            search.kill()
            search.wait()
            pytest.fail(f"the search ran no trial: {err.read_text()[-2000:]}")
        time.sleep(0.5)
    return search


def test_delete_of_a_running_search_refuses_then_force_deletes_it_whole_and_the_search_ends_in_one_line(
    ravdess, feature_cache, search_env, pg_url, study_name, run_cli, tmp_path
):
    args = ["mlp", "--study", study_name, "--data", ravdess, "--cache", feature_cache, "--storage", pg_url]
    search = _start_search(args, env=search_env, pg_url=pg_url, study=study_name, err=tmp_path / "err")
    try:
        refused = run_cli("studies", "delete", study_name, "--storage", pg_url, env=search_env)
        assert refused.returncode == 1, refused.stderr
        assert "--force" in _one_line(refused.stderr)
        listed = run_cli("studies", "--json", "--storage", pg_url, env=search_env, check=True)
        assert study_name in listed.stdout
        assert _study_rows(pg_url, study_name)[0] == 1
        assert "dataset" in _blob_kinds(pg_url, study_name), "the dataset record is kept"

        forced = run_cli("studies", "delete", study_name, "--force", "--storage", pg_url, env=search_env)
        assert forced.returncode == 0, forced.stderr
        search.wait(timeout=120)
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    err = (tmp_path / "err").read_text()
    assert search.returncode == 1, err
    last = _lines(err)[-1]
    assert "was deleted while this search ran" in last and study_name in last, err
    assert "Traceback" not in err and "could not stop" not in err, err
    time.sleep(3)  # a worker that was mid-trial has stopped by now: it must not have written after
    assert _study_rows(pg_url, study_name) == (0, 0), "no trial, attribute or blob of it is left"
    orphans = _sql(
        pg_url,
        "SELECT count(*) FROM trials t LEFT JOIN studies s ON s.study_id = t.study_id WHERE s.study_id IS NULL",
    )
    assert orphans[0][0] == 0


def _blob_kinds(pg_url: str, name: str) -> set[str]:
    return {
        str(k) for (k,) in _sql(pg_url, "SELECT DISTINCT kind FROM emotune_blobs WHERE study_name = %s", name)
    }


# --- duplicates and the test split ----------------------------------------------------------------


def _copies_data(n: int, copies: int, *, classes: int = 3) -> tuple[list[str], list[str], list[str]]:
    """``n`` distinct contents, the first ``copies`` of them twice: hashes, labels, speakers."""
    hashes = [f"{i:04x}" * 16 for i in range(n)] + [f"{i:04x}" * 16 for i in range(copies)]
    labels = [f"c{i % classes}" for i in range(n)] + [f"c{i % classes}" for i in range(copies)]
    speakers = [f"s{i % 6}" for i in range(n)] + [f"s{i % 6}" for i in range(copies)]
    return hashes, labels, speakers


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_split_keeps_every_copy_on_its_originals_side(seed):
    from emotune.search._study import duplicate_count, make_folds, make_split

    hashes, labels, speakers = _copies_data(60, 20)
    assert duplicate_count(hashes) == 20
    test = make_split(hashes, labels, speakers, [None] * len(hashes), protocol="random", seed=seed)
    sides = {}
    for h, t in zip(hashes, test, strict=True):
        assert sides.setdefault(h, bool(t)) == bool(t), "a copy is on the other side of the split"
    assert 0.15 < test.mean() < 0.3
    train = np.flatnonzero(~test)
    folds = make_folds([labels[i] for i in train], [speakers[i] for i in train], protocol="random",
                       folds=5, seed=seed, hashes=[hashes[i] for i in train])  # fmt: skip
    for _tr, va in folds:
        held = {hashes[train[i]] for i in va}
        assert not held & {hashes[train[i]] for i in _tr}, "a copy validates a model its twin trained"


def test_without_copies_the_random_split_is_the_one_studies_were_made_with():
    """Existing studies keep their split: with distinct files it is the plain stratified split of
    files in content-hash order (what every study made before this change holds)."""
    from sklearn.model_selection import train_test_split

    from emotune.search._study import make_split

    hashes, labels, speakers = _copies_data(50, 0)
    order = sorted(range(len(hashes)), key=lambda i: hashes[i])
    _, pos = train_test_split(np.arange(50), test_size=0.2, random_state=3, shuffle=True,
                              stratify=np.asarray(labels)[order])  # fmt: skip
    before = np.zeros(50, dtype=bool)
    before[np.asarray(order)[pos]] = True
    now = make_split(hashes, labels, speakers, [None] * 50, protocol="random", seed=3)
    assert (now == before).all()


@pytest.mark.parametrize("protocol", ["random", "actor"])
def test_evaluate_outer_folds_keep_every_copy_in_one_fold(protocol):
    from emotune.search.vote._evaluate import outer_folds

    hashes, labels, speakers = _copies_data(60, 20)
    hashes[5] = hashes[10]  # two speakers (s5, s4) share a file too
    folds = outer_folds(labels, speakers, ["female", "male"] * 40, hashes, protocol=protocol, k=3, seed=0)
    fold_of: dict[str, int] = {}
    for f, idx in enumerate(folds):
        for i in idx:
            assert fold_of.setdefault(hashes[i], f) == f, "a copy is tested on while its twin trains"
    assert sorted(i for idx in folds for i in idx) == list(range(len(hashes)))


def test_actor_split_treats_speakers_that_share_a_file_as_one():
    from emotune.search._study import linked_groups, make_split

    hashes = [f"h{i}" for i in range(40)]
    speakers = [f"s{i % 8}" for i in range(40)]
    genders = ["male" if i % 2 else "female" for i in range(8)]
    hashes[9] = hashes[0]  # s1 holds a copy of a file of s0
    assert set(linked_groups(speakers, hashes)) == {f"s{i}" for i in range(8)} - {"s1"}
    for seed in range(12):
        test = make_split(hashes, ["a", "b"] * 20, speakers, [genders[i % 8] for i in range(40)],
                          protocol="actor", seed=seed)  # fmt: skip
        assert test[0] == test[9] and all(
            test[i] == test[0] for i in range(40) if speakers[i] in {"s0", "s1"}
        )


def test_a_folder_copied_under_two_paths_is_counted_and_never_straddles_the_split(
    ravdess, feature_cache, ray_address, pg_url, study_name, tmp_path, capfd
):
    import shutil

    from emotune.search import delete_study, prepare

    copy = tmp_path / "copy" / "Actor_01"
    shutil.copytree(ravdess / "Actor_01", copy)
    n_copies = len(list(copy.glob("*.wav")))
    prep = prepare("logreg", study_name, [ravdess, tmp_path / "copy"], url=pg_url, protocol="random",
                   cache_dir=feature_cache, ray_address=ray_address, progress=False)  # fmt: skip
    try:
        err = capfd.readouterr().err
        assert f"{n_copies} file(s) are byte-identical copies" in err, err
        sides: dict[str, bool] = {}
        for h, t in zip(prep.data.hashes, prep.data.test, strict=True):
            assert sides.setdefault(h, bool(t)) == bool(t)
        assert len(prep.data.hashes) == len(set(prep.data.hashes)) + n_copies
    finally:
        delete_study(pg_url, study_name)


# --- the data is checked before a study exists; failed trials say why ---------------------------


def _corpus(tmp_path: Path, ravdess: Path, pattern: str, actors: str = "0[1-4]") -> Path:
    import shutil

    root = tmp_path / "corpus"
    for wav in sorted(ravdess.glob(f"Actor_{actors}/{pattern}")):
        (root / wav.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, root / wav.parent.name / wav.name)
    return root


def _search(run_cli, data: Path, name: str, pg_url: str, cache: Path, env: dict[str, str], *extra: str):
    return run_cli("search", "logreg", "--study", name, "--data", data, "--trials", "2", "--cache", cache,
                   "--storage", pg_url, *extra, env=env)  # fmt: skip


def test_one_class_is_one_line_naming_it_before_anything_is_built(
    ravdess, search_env, pg_url, study_name, tmp_path, run_cli
):
    data = _corpus(tmp_path, ravdess, "03-01-05-*.wav")  # angry only
    proc = _search(run_cli, data, study_name, pg_url, tmp_path / "cache", search_env)
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert "'angry'" in line and "at least 2 classes" in line, line
    assert not (tmp_path / "cache").exists(), "no cache entry before the data is known usable"
    assert _sql(pg_url, "SELECT 1 FROM studies WHERE study_name = %s", study_name) == []


def test_a_class_with_one_file_is_one_line_naming_it_before_the_study_exists(
    ravdess, feature_cache, search_env, pg_url, study_name, tmp_path, run_cli
):
    data = _corpus(tmp_path, ravdess, "03-01-0[45]-*.wav")  # sad and angry
    keep = sorted((data / "Actor_02").glob("03-01-04-*.wav"))[0]
    for wav in data.glob("Actor_*/03-01-04-*.wav"):
        if wav != keep:
            wav.unlink()
    for protocol in ("actor", "random"):
        proc = _search(run_cli, data, study_name, pg_url, feature_cache, search_env, "--protocol", protocol)
        assert proc.returncode == 1, proc.stderr
        line = _lines(proc.stderr)[-1]
        assert "Traceback" not in proc.stderr
        assert "class 'sad'" in line, line
        assert _sql(pg_url, "SELECT 1 FROM studies WHERE study_name = %s", study_name) == []


def test_evaluate_checks_the_classes_before_it_builds(ravdess, search_env, pg_url, tmp_path, run_cli):
    data = _corpus(tmp_path, ravdess, "03-01-05-*.wav")  # angry only
    proc = run_cli("evaluate", data, "--spaces", "logreg", "--cache", tmp_path / "cache", "--storage", pg_url,
                   env=search_env)  # fmt: skip
    assert proc.returncode == 1
    assert "at least 2 classes" in _one_line(proc.stderr)
    assert not (tmp_path / "cache").exists()


def test_corpus_native_on_mixed_corpora_is_one_line(
    data_dir, search_env, pg_url, study_name, tmp_path, run_cli
):
    proc = run_cli("search", "logreg", "--study", study_name, "--data", data_dir / "ravdess", data_dir / "emodb",
                   "--target", "corpus_native", "--trials", "2", "--cache", tmp_path / "cache", "--storage",
                   pg_url, env=search_env)  # fmt: skip
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert "corpus_native" in line and "emodb" in line and "ravdess" in line, line
    assert not (tmp_path / "cache").exists()


def test_a_non_finite_feature_names_the_file_and_feature():
    from emotune.search._data import check_finite
    from emotune.search._study import StudyError

    X = np.ones((3, 2, 4), dtype=np.float32)
    X[1, 1, 2] = np.nan
    rows = [{"path": f"/data/f{i}.wav"} for i in range(3)]
    check_finite(rows, X[[0, 2]], "classic")
    with pytest.raises(StudyError, match=r"^/data/f1.wav: feature 6 of classic is nan \(1 file"):
        check_finite(rows, X, "classic")


_FAILING_SPACE = """
NAME = "always_fails"
FEATURES = "classic"


class Broken:
    def fit(self, X, y):
        raise ValueError("this estimator refuses every fit (marker 5b1f)")


def suggest(trial):
    return {"a": trial.suggest_int("a", 1, 1000)}


def build(params, *, seed, **_):
    return Broken()
"""


def test_failed_trials_keep_their_error_and_the_search_quotes_it(
    ravdess, feature_cache, search_env, pg_url, study_name, tmp_path, run_cli
):
    import optuna

    space = tmp_path / "failing.py"
    space.write_text(_FAILING_SPACE)
    proc = run_cli("search", space, "--study", study_name, "--data", ravdess, "--trials", "3", "--cache",
                   feature_cache, "--storage", pg_url, "--pruner", "none", env=search_env)  # fmt: skip
    assert proc.returncode == 1
    last = _lines(proc.stderr)[-1]
    assert (
        "5 trials in a row failed" in last
        and "ValueError: this estimator refuses every fit (marker 5b1f)" in last
    )
    assert "Traceback" not in proc.stderr
    study = optuna.load_study(study_name=study_name, storage=st.normalize_url(pg_url))
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) >= 5
    for t in failed:
        assert t.user_attrs["error"] == "ValueError: this estimator refuses every fit (marker 5b1f)"
        assert any("in fit" in frame for frame in t.user_attrs["error_trace"]), t.user_attrs


# --- connections: the workers that fit in what the server allows ----------------------------------


@pytest.fixture
def limited_storage(pg_url: str):
    """``make(limit)``: the URL of a fresh database owned by a new role with ``CONNECTION LIMIT limit``
    (no superuser: the limit applies); both dropped afterwards."""
    import uuid

    admin = pg_url.replace("postgresql://", "postgres://", 1)
    made: list[str] = []

    def run(sql: str) -> None:
        conn = psycopg2.connect(admin, connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def make(limit: int) -> str:
        name = f"emotune_t_{uuid.uuid4().hex[:8]}"
        made.append(name)
        run(f"CREATE ROLE {name} LOGIN NOSUPERUSER CONNECTION LIMIT {limit}")
        run(f"CREATE DATABASE {name} OWNER {name}")
        host = pg_url.split("@", 1)[1].rsplit("/", 1)[0]
        return f"postgresql://{name}@{host}/{name}"

    yield make
    for name in made:
        run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        run(f"DROP ROLE IF EXISTS {name}")


def test_workers_are_lowered_to_the_free_connections_and_the_search_ends_cleanly(
    limited_storage, ravdess, feature_cache, search_env, run_cli
):
    """The arithmetic is an upper bound: with exactly 3 x 1 + 5 connections allowed, two workers
    are lowered to one and the search finishes every trial, rc 0 (it ended "too many clients" after
    8/8 before)."""
    url = limited_storage(st.WORKER_CONNECTIONS + st.DRIVER_CONNECTIONS)
    proc = run_cli("search", "logreg", "--study", "conn", "--data", ravdess, "--trials", "4", "--workers", "2",
                   "--cache", feature_cache, "--storage", url, "--json", env=search_env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 worker(s) need up to 3 x 2 + 5 = 11 connections" in proc.stderr, proc.stderr
    assert "the role's CONNECTION LIMIT 8" in proc.stderr and "using 1 worker(s)" in proc.stderr
    summary = __import__("json").loads(proc.stdout)
    assert summary["workers"] == 1 and summary["complete"] + summary["pruned"] == 4
    assert "too many clients" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_server_without_room_for_one_worker_is_refused_with_the_arithmetic(
    limited_storage, ravdess, feature_cache, search_env, run_cli
):
    url = limited_storage(st.WORKER_CONNECTIONS + st.DRIVER_CONNECTIONS - 1)
    proc = run_cli("search", "logreg", "--study", "conn", "--data", ravdess, "--trials", "4", "--workers", "3",
                   "--cache", feature_cache, "--storage", url, env=search_env)  # fmt: skip
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert "3 worker(s) need up to 3 x 3 + 5 = 14 connections" in line, line
    assert "allows 7 more (the role's CONNECTION LIMIT 7 - 0 in use)" in line and "not even 1 worker" in line
    assert _sql(url, "SELECT 1") == [], "nothing was created in the storage"


# --- kill -9 of a search leaves no local Ray behind -----------------------------------------------


def _descendants(pid: int) -> dict[int, str]:
    """pid -> command name of every process under ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(
                    Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                pass
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for child, parent in parents.items():
            if parent == p and child not in found:
                found[child] = _comm(child)
                todo.append(child)
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is no zombie (a dead child its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def test_kill_9_of_a_search_takes_its_local_ray_with_it(ravdess, feature_cache, pg_url, study_name, tmp_path):
    env = {
        **os.environ,
        "EMOTUNE_HOME": str(tmp_path / "home"),
        "EMOTUNE_HEARTBEAT_S": "1",
        "EMOTUNE_GRACE_S": "3",
    }
    env.pop("RAY_ADDRESS", None)  # a local cluster of its own
    args = ["logreg", "--study", study_name, "--data", ravdess, "--cache", feature_cache, "--storage", pg_url]
    search = _start_search(
        [*args, "--num-cpus", "2"], env=env, pg_url=pg_url, study=study_name, err=tmp_path / "err"
    )
    try:
        time.sleep(3)  # the raylet's agents are up by now
        ray_procs = _descendants(search.pid)
        assert any("raylet" in c for c in ray_procs.values()), ray_procs
        session = _session_dir(ray_procs)
        assert (session / "logs").is_dir(), session
        search.kill()
        search.wait()
        t0 = time.time()
        alive = dict(ray_procs)
        while alive and time.time() - t0 < 60:
            time.sleep(0.5)
            alive = {p: c for p, c in alive.items() if _running(p) and _comm(p) == c}
        took = time.time() - t0
    finally:
        if search.poll() is None:
            search.kill()
    # Before: the dashboard and runtime-env agents (about 180 MB) lived on for about 64 s.
    assert not alive, f"still alive {took:.0f} s after kill -9: {alive}"
    assert took < 15, took
    time.sleep(2)
    assert not session.exists(), f"the session folder {session} is left behind"


def _session_dir(procs: dict[int, str]) -> Path:
    """The Ray session folder named on the command lines of ``procs``."""
    for pid in procs:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for arg in args:
            m = re.search(r"(/\S*/session_[0-9_-]+)", arg)
            if m:
                return Path(m.group(1))
    raise AssertionError(f"no session folder on the command lines of {procs}")
