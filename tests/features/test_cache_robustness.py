"""The cache and the build under damage and interruption (issue 17, defects 10, 11 and 14).

A truncated or corrupted entry is detected and computed again, never read as data; a Ray address
where nothing listens fails in seconds; SIGTERM of a build says how to resume and keeps what was
built.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emotune.features import FeatureError, build, load, scan
from emotune.features._cache import params_key
from emotune.features._ray import check_reachable, ray_init
from emotune.features._sets import feature_params

EMOTUNE = str(Path(sys.executable).parent / "emotune")


@pytest.fixture(scope="module", autouse=True)
def _disconnect_ray():
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


def _checkpoint(cache: Path) -> None:
    """Move the WAL into index.db, so that what is on disk is the database file alone."""
    with sqlite3.connect(cache / "index.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_truncated_and_corrupted_entries_are_rebuilt_not_read(
    data_dir: Path, tmp_path: Path, ray_address: str
):
    folder = data_dir / "ravdess" / "Actor_01"
    files = sorted(folder.glob("*.wav"))[:6]
    cache = tmp_path / "cache"
    rows = scan(files).rows
    assert build(rows, cache_dir=cache, progress=False).built == 6
    before = load(rows, "classic", cache_dir=cache).X
    key = params_key(feature_params("classic"))
    hashes = build(rows, cache_dir=cache, progress=False).hashes
    cut, flipped = hashes[str(files[1])], hashes[str(files[4])]
    with sqlite3.connect(cache / "index.db") as db:  # an entry cut short (a torn write)
        db.execute("UPDATE features SET data = substr(data, 1, 100) WHERE key = ? AND sha = ?", (key, cut))
        (blob,) = db.execute("SELECT data FROM features WHERE key = ? AND sha = ?", (key, flipped)).fetchone()
    _checkpoint(cache)
    # One byte flipped inside another entry, in the database file itself: SQLite reads it happily.
    raw = bytearray((cache / "index.db").read_bytes())
    at = raw.find(bytes(blob))
    assert at > 0 and raw.find(bytes(blob), at + 1) < 0
    raw[at + 40] ^= 0x55
    (cache / "index.db").write_bytes(bytes(raw))
    with sqlite3.connect(cache / "index.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # invisible to SQLite

    with pytest.raises(FeatureError, match="not in the cache"):  # never read as data
        load(rows, "classic", cache_dir=cache)
    again = build(rows, cache_dir=cache, progress=False)
    assert (again.built, again.cached) == (2, 4)  # the two damaged entries, computed again
    np.testing.assert_array_equal(load(rows, "classic", cache_dir=cache).X, before)


def test_a_cache_without_digests_gets_the_column_and_keeps_its_entries(
    data_dir: Path, tmp_path: Path, ray_address: str
):
    files = sorted((data_dir / "ravdess" / "Actor_01").glob("*.wav"))[:2]
    cache = tmp_path / "cache"
    build(files, cache_dir=cache, progress=False)
    with sqlite3.connect(cache / "index.db") as db:  # as written before entries had digests
        db.execute("ALTER TABLE features DROP COLUMN digest")
    again = build(files, cache_dir=cache, progress=False)
    assert (again.built, again.cached) == (0, 2)  # length-checked, kept
    with sqlite3.connect(cache / "index.db") as db:
        assert db.execute("SELECT count(*) FROM features WHERE digest IS NULL").fetchone()[0] == 2


def test_an_address_where_nothing_listens_fails_in_seconds(tmp_path: Path, data_dir: Path, run_cli):
    t0 = time.monotonic()
    with pytest.raises(FeatureError, match=r"no Ray cluster at 127\.0\.0\.1:1: cannot connect"):
        check_reachable("127.0.0.1:1")
    with pytest.raises(FeatureError, match="expected host:port"):
        check_reachable("nonsense")
    assert time.monotonic() - t0 < 10
    t0 = time.monotonic()
    wav = data_dir / "ravdess" / "Actor_01" / "03-01-01-01-01-01-01.wav"
    proc = run_cli(
        "features", "build", wav, "--cache", tmp_path / "c", "--ray-address", "127.0.0.1:1", timeout=60
    )
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "127.0.0.1:1" in proc.stderr, proc.stderr
    env = {**os.environ, "RAY_ADDRESS": "ray://127.0.0.1:1"}
    proc = run_cli("features", "build", wav, "--cache", tmp_path / "c", env=env, timeout=60)
    assert proc.returncode == 1 and "ray://127.0.0.1:1" in proc.stderr and "Traceback" not in proc.stderr


def test_ray_init_checks_the_address_before_ray_does():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    t0 = time.monotonic()
    with pytest.raises(FeatureError, match="127.0.0.1:1"):
        ray_init("127.0.0.1:1")
    assert time.monotonic() - t0 < 10 and not ray.is_initialized()


def test_sigterm_of_a_build_keeps_what_was_built_and_says_how_to_resume(data_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local cluster
    cmd = [EMOTUNE, "features", "build", str(data_dir / "ravdess"), "--cache", str(cache), "--num-cpus", "1"]
    proc = subprocess.Popen(
        [*cmd, "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    committed = 0
    while committed == 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            with sqlite3.connect(cache / "index.db", timeout=5) as db:
                committed = db.execute("SELECT count(*) FROM features").fetchone()[0]
        except sqlite3.Error:
            continue
    assert committed > 0 and proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [err.strip()], err  # one line, no Ray crash dump
    assert "interrupted" in err and "run the same command again to resume" in err and str(cache) in err
    with sqlite3.connect(cache / "index.db") as db:
        kept = db.execute("SELECT count(*) FROM features").fetchone()[0]
    assert 0 < kept < 240
    resumed = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    import json

    report = json.loads(resumed.stdout)
    assert report["cached"] == kept and report["built"] == 240 - kept
