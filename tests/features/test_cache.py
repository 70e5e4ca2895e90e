"""The feature cache: content addressing, incremental and warm rebuilds, failures, atomicity, prune.

Builds run on the session's Ray cluster (``ray_address``) and on real RAVDESS files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emotune.features import (
    AUDIO_SETS,
    FeatureError,
    _cache,
    build,
    extract_file,
    feature_params,
    file_hashes,
    prune,
    scan,
)
from emotune.features._cache import params_key

OLD = 1_600_000_000  # a modification time far in the past: stat entries are recorded at once


@pytest.fixture(scope="module", autouse=True)
def _disconnect_ray():
    """Builds here attach this process to the session's Ray; detach before the cluster stops."""
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


def entries(cache: Path) -> dict[tuple[str, str], tuple[str, str, bytes]]:
    """Every feature entry of a cache: (key, sha) -> (dtype, shape, bytes)."""
    with sqlite3.connect(cache / "index.db") as db:
        rows = db.execute("SELECT key, sha, dtype, shape, data FROM features").fetchall()
    return {(k, s): (d, sh, bytes(b)) for k, s, d, sh, b in rows}


def integrity(cache: Path) -> str:
    with sqlite3.connect(cache / "index.db") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_tree(src: Path, dst: Path) -> Path:
    """Copy keeping modification times (old files: their stat entries are trusted at once)."""
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def with_gain(data: bytes, gain: float) -> bytes:
    """A RAVDESS WAV (16-bit PCM, data chunk last) with scaled samples: new content, same layout."""
    start = data.index(b"data") + 8
    size = int.from_bytes(data[start - 4 : start], "little")
    pcm = np.frombuffer(data[start : start + size], "<i2").astype(np.float64) * gain
    return data[:start] + np.clip(np.rint(pcm), -32768, 32767).astype("<i2").tobytes() + data[start + size :]


@pytest.fixture(scope="module")
def actor(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of RAVDESS Actor_01 (60 real files)."""
    return copy_tree(data_dir / "ravdess" / "Actor_01", tmp_path_factory.mktemp("ravdess") / "Actor_01")


@pytest.fixture(scope="module")
def reference(data_dir: Path, ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean, uninterrupted build of the 240 real RAVDESS files."""
    cache = tmp_path_factory.mktemp("reference") / "cache"
    report = build([data_dir / "ravdess"], cache_dir=cache, progress=False)
    assert (report.files, report.built, report.failed) == (240, 240, [])
    return cache


def test_build_then_rebuild_is_warm_and_matches_direct_extraction(
    actor: Path, tmp_path: Path, ray_address: str
):
    cache = tmp_path / "cache"
    cold = build([actor], cache_dir=cache, progress=False)
    assert (cold.files, cold.built, cold.cached, cold.failed) == (60, 60, 0, [])
    files = sorted(actor.glob("*.wav"))
    assert cold.hashes == {str(f): sha256(f) for f in files}
    assert "ray_start" in cold.timings and cold.cache == str(cache)

    warm = build([actor], cache_dir=cache, progress=False)
    assert (warm.files, warm.built, warm.cached, warm.failed) == (60, 0, 60, [])
    assert "ray_start" not in warm.timings  # no Ray, no audio read

    key = params_key(feature_params("classic"))
    stored = entries(cache)
    assert len(stored) == 60 and {k for k, _ in stored} == {key}
    dtype, shape, data = stored[(key, sha256(files[3]))]
    expected = extract_file(files[3], [feature_params("classic")])[0]
    np.testing.assert_array_equal(
        np.frombuffer(data, dtype).reshape(tuple(map(int, shape.split(",")))), expected
    )


def test_warm_rebuild_imports_neither_librosa_nor_ray(actor: Path, tmp_path: Path, ray_address: str):
    cache = tmp_path / "cache"
    build([actor], cache_dir=cache, progress=False)
    code = (
        "import sys; from emotune.features import build\n"
        "r = build([sys.argv[1]], cache_dir=sys.argv[2], progress=False)\n"
        "heavy = sorted(m for m in ('librosa', 'ray', 'scipy', 'soundfile', 'numba') if m in sys.modules)\n"
        "print(r.built, r.cached, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(actor), str(cache)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "60", "[]"]


def test_incremental_build_computes_only_new_and_changed_files(actor: Path, tmp_path: Path, ray_address: str):
    corpus = copy_tree(actor, tmp_path / "corpus" / "Actor_01")
    files = sorted(corpus.glob("*.wav"))
    held_back = tmp_path / "later"
    held_back.mkdir()
    for f in files[:10]:
        shutil.move(f, held_back / f.name)
    cache = tmp_path / "cache"
    assert build([corpus], cache_dir=cache, progress=False).built == 50

    for f in files[:10]:
        shutil.move(held_back / f.name, f)
    files[20].write_bytes(with_gain(files[20].read_bytes(), 0.5))  # changed content
    os.utime(files[20], (OLD, OLD))
    os.utime(files[30], (OLD + 5, OLD + 5))  # touched: same content, new mtime
    report = build([corpus], cache_dir=cache, progress=False)
    assert (report.files, report.built, report.cached, report.failed) == (60, 11, 49, [])
    assert report.hashes[str(files[20])] == sha256(files[20])

    again = build([corpus], cache_dir=cache, progress=False)
    assert (again.built, again.cached) == (0, 60) and "ray_start" not in again.timings


def test_content_addressed_copy_elsewhere_is_cached(actor: Path, tmp_path: Path, ray_address: str):
    cache = tmp_path / "cache"
    build([actor], cache_dir=cache, progress=False)
    moved = copy_tree(actor, tmp_path / "elsewhere" / "Actor_01")
    for f in moved.glob("*.wav"):
        os.utime(f, (OLD, OLD))
    report = build([moved], cache_dir=cache, progress=False)
    assert (report.built, report.cached) == (0, 60)
    assert "ray_start" not in report.timings  # the driver hashed them: nothing to compute, no Ray


def bad_corpus(folder: Path, data_dir: Path) -> dict[str, Path]:
    """The 02-features-bad layout: one good file, truncated (before and inside audio), empty, not audio."""
    folder.mkdir(parents=True)
    src = (data_dir / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.wav").read_bytes()
    files = {
        "good": folder / "03-01-05-01-01-01-01.wav",
        "truncated_header": folder / "03-01-05-01-01-02-01.wav",
        "truncated_audio": folder / "03-01-05-01-02-02-01.wav",
        "empty": folder / "03-01-05-01-02-01-01.wav",
        "not_audio": folder / "03-01-05-02-01-01-01.wav",
    }
    files["good"].write_bytes(src)
    files["truncated_header"].write_bytes(src[:1000])
    files["truncated_audio"].write_bytes(src[:200000])
    files["empty"].write_bytes(b"")
    files["not_audio"].write_bytes(b"not audio at all\n")
    return files


def test_bad_files_fail_with_reasons_and_nothing_is_cached_for_them(
    data_dir: Path, tmp_path: Path, ray_address: str
):
    files = bad_corpus(tmp_path / "bad" / "Actor_01", data_dir)
    cache = tmp_path / "cache"
    report = build([tmp_path / "bad"], cache_dir=cache, progress=False)
    failed = {f["path"]: f["reason"] for f in report.failed}
    assert report.files == 5 and report.built == 1 and report.cached == 0
    assert set(failed) == {str(p) for name, p in files.items() if name != "good"}
    assert "truncated" in failed[str(files["truncated_header"])]
    assert "truncated" in failed[str(files["truncated_audio"])]
    assert "empty" in failed[str(files["empty"])]
    assert "not" in failed[str(files["not_audio"])] and all(failed.values())
    assert {sha for _, sha in entries(cache)} == {sha256(files["good"])}

    for f in files.values():  # old enough to trust: the rebuild reads nothing
        os.utime(f, (OLD, OLD))
    build([tmp_path / "bad"], cache_dir=cache, progress=False)
    again = build([tmp_path / "bad"], cache_dir=cache, progress=False)
    assert {f["path"]: f["reason"] for f in again.failed} == failed
    assert (again.built, again.cached) == (0, 1) and "ray_start" not in again.timings

    with pytest.raises(FeatureError, match="4 file"):
        build([tmp_path / "bad"], cache_dir=cache, progress=False, strict=True)


def test_every_set_is_built_from_one_pass_and_equals_extract(actor: Path, tmp_path: Path, ray_address: str):
    files = sorted(actor.glob("*.wav"))[:4]
    cache = tmp_path / "cache"
    report = build(files, sets="all", cache_dir=cache, progress=False)
    assert report.sets == list(AUDIO_SETS)  # "all": every set computed from the audio alone
    assert (report.files, report.built) == (4, 4)
    stored = entries(cache)
    params = [feature_params(name) for name in AUDIO_SETS]
    expected = extract_file(files[1], params)
    for p, array in zip(params, expected, strict=True):
        dtype, shape, data = stored[(params_key(p), sha256(files[1]))]
        assert shape == ",".join(map(str, array.shape))
        np.testing.assert_array_equal(np.frombuffer(data, dtype).reshape(array.shape), array)

    # Adding a set later computes only that set; the others stay as they are.
    more = build(files, params=[feature_params("mfcc_seq", frames=100)], cache_dir=cache, progress=False)
    assert more.built == 4 and len(entries(cache)) == 4 * (len(AUDIO_SETS) + 1)


def test_params_key_covers_params_and_library_versions(monkeypatch: pytest.MonkeyPatch):
    base = params_key(feature_params("mfcc_seq"))
    assert params_key(dict(feature_params("mfcc_seq"))) == base
    assert params_key(feature_params("mfcc_seq", frames=200)) != base
    monkeypatch.setattr(_cache, "library_versions", lambda: {"librosa": "0.0.1"})
    assert params_key(feature_params("mfcc_seq")) != base
    with pytest.raises(FeatureError, match="unknown feature set"):
        params_key({"set": "nope"})


def test_file_hashes_uses_the_stat_cache(actor: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    files = sorted(actor.glob("*.wav"))[:5]
    cache = tmp_path / "cache"
    first = file_hashes(files, cache_dir=cache)
    assert first == {str(f): sha256(f) for f in files}

    def no_reading(state):
        raise AssertionError(f"{state.path} was read again")

    monkeypatch.setattr(_cache, "_hash_one", no_reading)
    assert file_hashes(files, cache_dir=cache) == first


def test_kill_9_mid_build_leaves_only_whole_entries(
    data_dir: Path, reference: Path, tmp_path: Path, ray_address: str
):
    cache = tmp_path / "cache"
    code = "import sys; from emotune.features import build; build([sys.argv[1]], cache_dir=sys.argv[2], progress=False)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(data_dir / "ravdess"), str(cache)])
    committed = 0
    deadline = time.monotonic() + 300
    try:
        while committed == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            if (cache / "index.db").exists():
                try:
                    with sqlite3.connect(cache / "index.db", timeout=5) as db:
                        committed = db.execute("SELECT count(*) FROM features").fetchone()[0]
                except sqlite3.OperationalError:  # created but no tables yet
                    pass
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9, "the build ended before it could be killed"
    partial = entries(cache)
    assert 0 < len(partial) < 240 and integrity(cache) == "ok"
    clean = entries(reference)
    assert all(clean[k] == v for k, v in partial.items())  # whatever is there is whole and right

    report = build([data_dir / "ravdess"], cache_dir=cache, progress=False)
    assert (report.built, report.failed) == (240 - len(partial), [])
    assert entries(cache) == clean


def test_two_builds_at_once_on_one_cache(data_dir: Path, reference: Path, tmp_path: Path, ray_address: str):
    cache = tmp_path / "cache"
    code = (
        "import sys; from emotune.features import build\n"
        "r = build([sys.argv[1]], cache_dir=sys.argv[2], progress=False)\n"
        "print(r.files, r.built + r.cached, len(r.failed))"
    )
    cmd = [sys.executable, "-c", code, str(data_dir / "ravdess"), str(cache)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.split() == ["240", "240", "0"]
    assert integrity(cache) == "ok"
    assert entries(cache) == entries(reference)
    again = build([data_dir / "ravdess"], cache_dir=cache, progress=False)
    assert (again.built, again.cached) == (0, 240)


def test_prune_drops_entries_of_gone_files(actor: Path, tmp_path: Path, ray_address: str):
    corpus = copy_tree(actor, tmp_path / "corpus" / "Actor_01")
    files = sorted(corpus.glob("*.wav"))
    cache = tmp_path / "cache"
    build([corpus], sets=["classic", "mfcc_seq"], cache_dir=cache, progress=False)
    assert prune(cache) == 0

    for f in files[:5]:
        f.unlink()
    assert prune(cache) == 5 * 2
    assert len(entries(cache)) == 55 * 2
    assert build([corpus], sets=["classic", "mfcc_seq"], cache_dir=cache, progress=False).built == 0

    keep = files[5:15]
    assert prune(cache, keep_paths=keep) == 45 * 2
    assert {sha for _, sha in entries(cache)} == {sha256(f) for f in keep}


def test_prune_against_paths_that_yield_no_audio_is_refused(
    actor: Path, tmp_path: Path, ray_address: str, run_cli
):
    """An empty folder, a typo or an unmounted disk never empties the cache without --yes (issue 17)."""
    corpus = copy_tree(actor, tmp_path / "corpus" / "Actor_01")
    cache = tmp_path / "cache"
    build([corpus], sets=["classic", "mfcc_seq"], cache_dir=cache, progress=False)
    before = entries(cache)
    assert len(before) == 60 * 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("no audio here")
    one = sorted(corpus.glob("*.wav"))[0]
    for keep in (
        [tmp_path / "empty"],
        [tmp_path / "notes"],
        [tmp_path / "no-such"],
        [one, tmp_path / "empty"],
    ):
        with pytest.raises(
            FeatureError,
            match=r"^features prune .*: (holds no audio file|does not exist); "
            r"pruning against it would drop \d+ of the 120 entries",
        ) as err:
            prune(cache, keep_paths=keep)
        assert "--yes" in str(err.value) and "\n" not in str(err.value)
        assert entries(cache) == before  # nothing dropped
    with pytest.raises(FeatureError, match="would drop 120 of the 120 entries"):
        prune(cache, keep_paths=[tmp_path / "empty"])

    # The CLI: one line on stderr, exit 1, the cache intact; --yes drops them.
    proc = run_cli("features", "prune", tmp_path / "empty", "--cache", cache)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "would drop 120 of the 120 entries" in proc.stderr and entries(cache) == before

    # Every file the cache knows is gone (the data's disk is not mounted): refused too.
    moved = shutil.move(corpus, tmp_path / "elsewhere")
    with pytest.raises(FeatureError, match="no file the cache knows is still there; this would drop all 120"):
        prune(cache)
    assert entries(cache) == before
    shutil.move(moved, corpus)
    assert prune(cache) == 0  # back in place: nothing to drop

    # Paths that do yield audio prune as asked, even most of the cache (that is what they say).
    assert prune(cache, keep_paths=sorted(corpus.glob("*.wav"))[:3]) == 57 * 2
    proc = run_cli("features", "prune", tmp_path / "empty", "--cache", cache, "--yes", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["dropped"] == 3 * 2
    assert entries(cache) == {}


def test_a_cache_of_another_layout_is_refused(tmp_path: Path):
    cache = tmp_path / "cache"
    file_hashes([], cache_dir=cache)
    with sqlite3.connect(cache / "index.db") as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(FeatureError, match="layout version 99"):
        file_hashes([], cache_dir=cache)


def test_scan_rows_and_paths_build_the_same(actor: Path, tmp_path: Path, ray_address: str):
    rows = scan([actor]).rows
    cache = tmp_path / "cache"
    assert build(rows[:3], cache_dir=cache, progress=False).built == 3
    report = build([actor], cache_dir=cache, progress=False)
    assert (report.built, report.cached) == (57, 3)
    with pytest.raises(FeatureError):
        build([rows[0], str(actor)], cache_dir=cache, progress=False)


# --------------------------------------------------------------------------------------------------
# Ray start-up (features/_ray.py)


def test_auth_mode_is_always_explicit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from emotune.features._ray import auth_mode

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert auth_mode(None) == "disabled"  # a local cluster for one command
    assert auth_mode("10.0.0.5:6379") == "disabled"  # no token anywhere
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("secret")
    assert auth_mode("10.0.0.5:6379") == "token"
    assert auth_mode(None) == "disabled"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert auth_mode("10.0.0.5:6379") == "disabled"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    assert auth_mode("10.0.0.5:6379") == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert auth_mode(None) == "token"  # the user's choice wins


def test_numba_env_defaults_to_emotune_home(monkeypatch: pytest.MonkeyPatch, emotune_home: Path):
    from emotune.features._ray import numba_env

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert numba_env() == {"NUMBA_CACHE_DIR": str(emotune_home / "numba")}
    assert (emotune_home / "numba").is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(emotune_home / "elsewhere"))
    assert numba_env() == {"NUMBA_CACHE_DIR": str(emotune_home / "elsewhere")}


def test_ray_init_rejects_bad_cpus():
    from emotune.features._ray import ray_init

    for bad in (0, -1, 1.5, True):
        with pytest.raises(FeatureError, match="num_cpus"):
            ray_init(num_cpus=bad)  # type: ignore[arg-type]


def test_local_cluster_workers_get_numba_cache_and_normal_priority(tmp_path: Path):
    """A local cluster (no RAY_ADDRESS): explicit auth mode, shared numba cache, workers not reniced."""
    code = (
        "import json, os, ray\n"
        "from emotune.features._ray import is_single_node, ray_init, ray_shutdown\n"
        "ray_init(num_cpus=1)\n"
        "@ray.remote\n"
        "def probe():\n"
        "    return [os.environ.get('NUMBA_CACHE_DIR'), os.environ.get('RAY_AUTH_MODE'), os.nice(0)]\n"
        "print(json.dumps(ray.get(probe.remote()) + [is_single_node()]))\n"
        "ray_shutdown()\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "NUMBA_CACHE_DIR")
    }
    env["EMOTUNE_HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [str(tmp_path / "numba"), "disabled", 0, True]
    assert "Token authentication" not in out.stderr


def test_attached_workers_get_the_numba_cache(actor: Path, tmp_path: Path, ray_address: str):
    import ray

    from emotune.features._ray import numba_env, ray_init

    ray_init()  # attaches to the session's cluster through RAY_ADDRESS
    assert ray.is_initialized()

    @ray.remote
    def probe() -> str | None:
        return os.environ.get("NUMBA_CACHE_DIR")

    assert ray.get(probe.remote()) == numba_env()["NUMBA_CACHE_DIR"]
