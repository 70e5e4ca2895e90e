"""A local Ray cluster dies with the command that started it, even on ``kill -9``.

``ray.init()`` ties its raylet and GCS to the driver (the kernel kills them when it dies), but the
raylet's agents (dashboard agent, runtime-env agent: about 180 MB) notice a dead raylet only after
about a minute, and anything the driver could not shut down stays until then.

:func:`reap_with_parent` starts one small watchdog process (the standard library only, about 10 MB)
that holds the read end of a pipe whose write end only this process holds. Every second it notes
the processes of the local cluster: the driver's children whose command line names the cluster's
session folder, and all of their descendants (with their start times, so that a reused pid is never
touched). When the driver is gone, however it ended, the pipe reads end-of-file and the watchdog
kills every noted process still alive and removes the session folder (unless
``$EMOTUNE_KEEP_RAY_LOGS`` is set, as on a clean exit), then exits. After a clean exit there is
nothing left to kill.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

__all__ = ["reap_local_cluster", "reap_with_parent"]

_WATCHDOGS: dict[str, Any] = {}  # session folder -> its watchdog's Popen (kept: its pipe stays open)

_SCRIPT = r"""
import os, select, signal, sys

driver, session = int(sys.argv[1]), sys.argv[2]


def stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[1]), int(fields[19])  # ppid, start time
    except (OSError, IndexError, ValueError):
        return None


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def snapshot(known):
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = stat(int(name))
            if s:
                table[int(name)] = s
    roots = [p for p, (ppid, _) in table.items() if ppid == driver and session in cmdline(p)]
    todo, seen = list(roots) + [p for p in known if p in table], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid == os.getpid():
            continue
        seen.add(pid)
        known.setdefault(pid, table[pid][1])
        todo.extend(c for c, (ppid, _) in table.items() if ppid == pid)
    return known


known = {}
while True:
    known = snapshot(known)
    ready, _, _ = select.select([sys.stdin], [], [], 1.0)
    if ready and not os.read(sys.stdin.fileno(), 4096):
        break  # the driver is gone
for pid, start in known.items():
    s = stat(pid)
    if s and s[1] == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
if known and not os.environ.get("EMOTUNE_KEEP_RAY_LOGS"):  # as a clean exit does (ray_shutdown)
    import shutil, time

    time.sleep(0.5)  # the killed processes' last writes
    shutil.rmtree(session, ignore_errors=True)
    latest = os.path.join(os.path.dirname(session), "session_latest")
    try:
        if os.path.islink(latest) and os.path.realpath(latest) == os.path.realpath(session):
            os.unlink(latest)
    except OSError:
        pass
"""


def reap_with_parent(session_dir: str) -> None:
    """Have the local Ray cluster of ``session_dir`` killed when this process ends (Linux only).

    Args:
        session_dir: The cluster's session folder (its processes' command lines name it).
    """
    if session_dir in _WATCHDOGS or not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return
    _WATCHDOGS[session_dir] = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _SCRIPT, str(os.getpid()), session_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the command's group leaves it to see the end
    )


def reap_local_cluster() -> None:
    """:func:`reap_with_parent` for the local cluster ``ray.init()`` just started (a no-op elsewhere)."""
    import contextlib

    import ray

    with contextlib.suppress(Exception):  # Ray's private API: a best effort, never an error
        node: Any = ray._private.worker._global_node
        if node is not None and node.head:
            reap_with_parent(node.get_session_dir_path())
