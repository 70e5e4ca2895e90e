"""The CLI's error boundary: what the machine causes is one line naming the path, setting or address.

Real errors throughout: ENOSPC from /dev/full, a Ray task that hits it, SQLite refusing a read-only
database, a port really taken, EMOTUNE_HOME really a file. (The full-disk and read-only runs of every
command family are in test_full_disk.py.)
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emotune.features._errors import environment_error
from emotune.search._export import is_loopback

EMOTUNE = str(Path(sys.executable).parent / "emotune")


def _enospc() -> OSError:
    """A real ENOSPC without a file name: a write to /dev/full."""
    try:
        with open("/dev/full", "wb") as f:
            f.write(b"x")
            f.flush()
    except OSError as exc:
        return exc
    raise AssertionError("/dev/full accepted a write")


def test_a_write_that_fills_the_disk_names_the_target(tmp_path):
    line = environment_error(_enospc(), targets=[str(tmp_path / "r.html")])
    assert (
        line
        == f"writing {tmp_path / 'r.html'}: no space left on the device (ENOSPC); free space there or write elsewhere"
    )
    assert (
        environment_error(_enospc())
        == "no space left on the device (ENOSPC); free space there or write elsewhere"
    )


def test_a_temporary_file_beside_the_target_is_named_as_the_target(tmp_path):
    target = tmp_path / "best.json"
    exc = PermissionError(13, "Permission denied", str(tmp_path / ".best.json.x1y2z3"))
    assert environment_error(exc, targets=[str(target)]).startswith(f"{target}: permission denied (EACCES)")
    other = PermissionError(13, "Permission denied", str(tmp_path / "elsewhere"))
    assert environment_error(other, targets=[str(target)]).startswith(f"{tmp_path / 'elsewhere'}: ")


def test_an_error_wrapped_by_a_ray_task_is_found(ray_address):
    import ray

    @ray.remote
    def write_to_full() -> None:
        with open("/dev/full", "wb") as f:
            f.write(b"x" * 10)

    started = not ray.is_initialized()  # other tests of this process may have attached already
    if started:
        ray.init(address=ray_address, log_to_driver=False)
    try:
        with pytest.raises(Exception) as caught:
            ray.get(write_to_full.remote())
    finally:
        if started:
            ray.shutdown()
    assert type(caught.value).__name__.startswith("RayTaskError")
    assert (
        environment_error(caught.value)
        == "no space left on the device (ENOSPC); free space there or write elsewhere"
    )


def test_the_feature_cache_index_on_a_read_only_database_names_the_cache(tmp_path):
    db = tmp_path / "index.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("INSERT INTO t VALUES (1)")
    line = environment_error(caught.value, cache=tmp_path)
    assert line is not None and line.startswith(f"feature cache {tmp_path}: ") and "SQLITE_READONLY" in line
    assert "--cache" in line


def test_a_bug_is_not_an_environment_error():
    assert environment_error(ValueError("a bug")) is None
    assert environment_error(FileNotFoundError(2, "No such file", "x")) is None  # inputs are checked first
    try:
        raise KeyError("k") from ValueError("v")
    except KeyError as exc:
        assert environment_error(exc) is None


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotune: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["features", "build", "DATA"],
        ["search", "knn", "--study", "never-made", "--data", "DATA", "--trials", "2"],
        ["storage", "status"],
        ["studies"],
        ["dashboard", "--port", "PORT"],
    ],
)
def test_emotune_home_that_is_a_file_or_under_one_is_one_line(
    command, tmp_path, ravdess, run_cli, monkeypatch
):
    port = _free_port()
    args = [str(ravdess / "Actor_01") if a == "DATA" else str(port) if a == "PORT" else a for a in command]
    home = tmp_path / "home"
    home.write_text("not a folder\n")
    monkeypatch.delenv("EMOTUNE_STORAGE", raising=False)
    monkeypatch.setenv("EMOTUNE_HOME", str(home))
    line = _one_line(run_cli(*args, timeout=120))
    assert line == f"emotune: error: EMOTUNE_HOME={home}: exists and is not a folder; point it at a folder"
    assert home.read_text() == "not a folder\n"
    monkeypatch.setenv("EMOTUNE_HOME", str(home / "sub"))
    line = _one_line(run_cli(*args, timeout=120))
    assert line.startswith(f"emotune: error: EMOTUNE_HOME={home / 'sub'}: cannot create it (Not a directory)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dashboard_on_a_port_in_use_is_one_line_before_the_storage_is_touched(
    run_cli, emotune_home, monkeypatch
):
    monkeypatch.delenv("EMOTUNE_STORAGE", raising=False)  # the embedded default: would start a server
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line(run_cli("dashboard", "--port", port, timeout=120))
    assert (
        line
        == f"emotune: error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port"
    )
    assert not (emotune_home / "pg").exists()  # no embedded server was started for nothing
    line = _one_line(run_cli("dashboard", "--host", "no-such-host.invalid", "--port", port, timeout=120))
    assert "--host no-such-host.invalid: unknown host" in line


def _dashboard_stderr(host: str, pg_url: str) -> str:
    """Start the dashboard on ``host``, wait until it listens, stop it; its stderr."""
    port = _free_port()
    cmd = [EMOTUNE, "dashboard", "--host", host, "--port", str(port), "--storage", pg_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, "the dashboard did not start"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    return err


def test_dashboard_on_every_interface_warns_that_it_has_no_authentication(pg_url):
    err = _dashboard_stderr("0.0.0.0", pg_url)
    first = err.splitlines()[0]
    assert first.startswith("emotune: warning: optuna-dashboard has no authentication"), err
    assert "127.0.0.1" in first and "ssh -L" in first
    assert "Traceback" not in err


def test_dashboard_on_loopback_starts_without_a_warning(pg_url):
    err = _dashboard_stderr("127.0.0.1", pg_url)
    assert "warning" not in err and "no authentication" not in err, err
    assert err.splitlines()[0].startswith("emotune: optuna-dashboard on ")


def test_is_loopback():
    for host in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.1.2.3", "192.168.0.10", "no-such-host.invalid"):
        assert not is_loopback(host), host


def test_a_failed_command_leaves_no_folder_it_created_and_keeps_one_that_existed(run_cli, tmp_path, ravdess):
    # explore makes its --out folder, then finds too few files to cluster: the new folder goes again.
    few = [str(p) for p in sorted((ravdess / "Actor_01").glob("*.wav"))[:3]]
    new = tmp_path / "a" / "b" / "explore"
    proc = run_cli("explore", *few, "--out", new, "--cache", tmp_path / "cache", timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "a").exists()
    # A folder that existed, with the user's files, is left as it was.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep\n")
    proc = run_cli("explore", *few, "--out", mine, "--cache", tmp_path / "cache", timeout=300)
    assert proc.returncode == 1
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_json_to_a_full_standard_output_is_one_line():
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [EMOTUNE, "spaces", "--json"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120
        )
    line = _one_line(proc)
    assert (
        line
        == "emotune: error: standard output: no space left on the device (ENOSPC); free space there or write elsewhere"
    )


def test_a_failed_command_keeps_a_new_target_that_holds_the_emotune_home(
    run_cli, tmp_path, ravdess, monkeypatch
):
    few = [str(p) for p in sorted((ravdess / "Actor_01").glob("*.wav"))[:3]]
    out = tmp_path / "out"
    monkeypatch.setenv("EMOTUNE_HOME", str(out / "home"))  # the cache (and a server's data) live there
    proc = run_cli("explore", *few, "--out", out, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (out / "home" / "cache").is_dir()
