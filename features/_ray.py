"""Ray start-up shared by the feature build and the search workers, and numba's shared JIT cache.

Authentication. Ray 2.60 turns token authentication on for a cluster that ``ray.init()`` starts
and warns at every start unless ``RAY_AUTH_MODE`` is set. emotune always sets it before Ray starts:

- A user's ``RAY_AUTH_MODE`` (``token`` or ``disabled``) is respected as it is.
- Local cluster (no address): ``disabled``. It exists for one command only, and token mode costs
  about 3 s more start-up here. Set ``RAY_AUTH_MODE=token`` to have it authenticated anyway.
- Attaching to a cluster (``address`` or ``$RAY_ADDRESS``): ``token`` when a token is available
  (``$RAY_AUTH_TOKEN``, the file ``$RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``), else
  ``disabled``.

A cluster with token authentication shares one token: create it once with
``ray get-auth-token --generate`` (written to ``~/.ray/auth_token``), copy that file to every node and
every machine that runs ``emotune`` against the cluster (or set ``RAY_AUTH_TOKEN`` /
``RAY_AUTH_TOKEN_PATH`` there), and start every node with ``RAY_AUTH_MODE=token ray start ...``. The
mode must be the same on every node and driver.

Priority. Workers of a local cluster run at the driver's priority, not Ray's default niceness 15.

Clean exits. :func:`ray_shutdown` removes the session folder (``/tmp/ray/session_*``: logs, sockets)
of a local cluster this process started, unless ``$EMOTUNE_KEEP_RAY_LOGS`` is set. Variables that
may hold a secret (:data:`SECRET_ENV`) never reach Ray: not its runtime_env, not its workers'
environment.

Addresses. Before ``ray.init`` attaches, the address's GCS port (or Ray Client port for
``ray://``) must accept a TCP connection within :data:`CONNECT_TIMEOUT_S` seconds: a mistyped
address fails in seconds with one line naming it, where Ray itself would retry for minutes.

numba. librosa JIT-compiles helpers with ``cache=True``; ``NUMBA_CACHE_DIR`` (default
``emotune_home()/numba``) points every process at one on-disk cache, so the compilation is paid
once per machine, not once per worker. A local cluster inherits it from the environment; a cluster
we attach to gets it through the job's ``runtime_env``. numba itself saves an entry by reading a
function's index, adding to it and writing it back, with no lock: processes compiling the same
function at once (a build's workers, plot and a search side by side) can leave an index that maps a
signature to another signature's machine code, and every later process that loads it dies with
SIGSEGV. :func:`guard_numba_cache` makes each save an exclusive and each load a shared ``flock`` on
the index's own lock file, so that cannot happen; every process that extracts features (the build's
tasks, predict, plot) calls it before its first compilation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from emotune.features._home import emotune_home

__all__ = [
    "auth_mode",
    "check_reachable",
    "guard_numba_cache",
    "is_single_node",
    "node_name",
    "numba_env",
    "ray_init",
    "ray_shutdown",
]

_AUTH_ENV = "RAY_AUTH_MODE"
# Environment variables that may hold a secret (a storage password, a manifest key): never handed to
# Ray, which logs a runtime_env in plain text and passes its own environment to every worker.
# Set (to anything) to keep the session folder (logs) of a local cluster after the command ends.
KEEP_LOGS_ENV = "EMOTUNE_KEEP_RAY_LOGS"
SECRET_ENV = frozenset({"EMOTUNE_STORAGE", "EMOTUNE_MANIFEST_KEY"})
_NODE_NAMES: dict[str, str] = {}
# Seconds a TCP connection to a cluster's address may take before it is declared unreachable.
CONNECT_TIMEOUT_S = 5.0
# Tries (about a second each) Ray makes to reach the GCS of a cluster it attaches to.
_ATTACH_TRIES = 8
_GUARDED = False


def numba_env() -> dict[str, str]:
    """Environment variables every Ray worker needs.

    Returns:
        ``{"NUMBA_CACHE_DIR": path}``: ``$NUMBA_CACHE_DIR`` when set, else ``emotune_home()/"numba"``
        (created on demand).
    """
    cache = os.environ.get("NUMBA_CACHE_DIR") or str(emotune_home() / "numba")
    Path(cache).mkdir(parents=True, exist_ok=True)
    return {"NUMBA_CACHE_DIR": cache}


def guard_numba_cache() -> None:
    """Serialise numba's cache index updates across processes (see the module docstring).

    Idempotent and cheap after the first call; call it before the first JIT compilation of a
    process. A numba without the expected cache class is left as it is.
    """
    global _GUARDED
    if _GUARDED:
        return
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba comes with librosa
        return
    cls = getattr(caching, "IndexDataCacheFile", None)
    if cls is None or not all(hasattr(cls, name) for name in ("save", "load")):
        return  # pragma: no cover - another numba: nothing to patch
    save, load = cls.save, cls.load

    def locked_save(self: Any, key: Any, data: Any) -> Any:
        with _index_lock(self._index_path, exclusive=True):
            return save(self, key, data)

    def locked_load(self: Any, key: Any) -> Any:
        with _index_lock(self._index_path, exclusive=False):
            return load(self, key)

    cls.save, cls.load = locked_save, locked_load
    _GUARDED = True


@contextlib.contextmanager
def _index_lock(index_path: str, *, exclusive: bool) -> Any:
    """``flock`` on ``<index>.lock`` beside a numba index; no lock where the folder is read-only."""
    import fcntl

    try:
        fd = os.open(index_path + ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:  # a read-only cache: numba cannot save into it either
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_reachable(address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when nothing accepts a TCP connection at a Ray address.

    Args:
        address: ``host:port``, ``ray://host:port`` or ``auto`` (resolved as Ray resolves it).
        timeout: Seconds to wait for the connection.

    Raises:
        FeatureError: the address is malformed, names no running cluster, or its port does not
            accept a connection in time (one line, naming the address).
    """
    import socket

    from emotune.features._errors import FeatureError

    target = address.strip()
    if target == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except Exception as exc:  # ConnectionError: no cluster started on this machine
            raise FeatureError(
                f"--ray-address auto: no running Ray cluster found on this machine ({exc})"
            ) from None
        if not found:
            raise FeatureError("--ray-address auto: no running Ray cluster found on this machine")
        target = found
    hostport = target.split("://", 1)[1] if "://" in target else target
    host, sep, port_text = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise FeatureError(
            f"Ray address {address!r}: expected host:port (e.g. 10.0.0.5:6379) or ray://host:port"
        )
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else (exc.strerror or str(exc))
        raise FeatureError(
            f"no Ray cluster at {address}: cannot connect to {host}:{port_text} ({reason} after at most "
            f"{timeout:g} s); check --ray-address / RAY_ADDRESS"
        ) from None


def auth_mode(address: str | None) -> str:
    """The ``RAY_AUTH_MODE`` emotune uses for a local cluster (``address=None``) or an attach.

    See the module docstring for the rules.
    """
    explicit = os.environ.get(_AUTH_ENV)
    if explicit:
        return explicit
    if address is None:
        return "disabled"
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or (
        Path(token_path).is_file() if token_path else (Path.home() / ".ray" / "auth_token").is_file()
    )
    return "token" if has_token else "disabled"


def ray_init(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Attach to a Ray cluster, or start a local one for this process; a no-op when Ray is up.

    Args:
        address: ``host:port`` of a running cluster (or ``"auto"``). ``None`` uses ``$RAY_ADDRESS``
            when set, else starts a local cluster (no dashboard) with ``num_cpus`` CPUs.
        num_cpus: CPUs of a local cluster (default: all cores). Ignored when attaching: a running
            cluster's resources are what its nodes declared.

    Raises:
        FeatureError: ``num_cpus`` is not a positive integer, or nothing accepts a connection at the
            address within :data:`CONNECT_TIMEOUT_S` seconds (see :func:`check_reachable`).

    Example:
        >>> ray_init(num_cpus=2)  # doctest: +SKIP
    """
    from emotune.features._errors import FeatureError

    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
        raise FeatureError(f"num_cpus={num_cpus!r} must be a positive integer")
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)
    os.environ[_AUTH_ENV] = auth_mode(address)
    # Ray reports usage statistics by default; a library call should not phone home unless asked.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env = numba_env()
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address is None:
        # Workers of a local cluster inherit this process's environment.
        os.environ.update(env)
        # Ray renices its workers to 15 (background work next to a long-lived raylet). Here they are
        # the foreground work the user is waiting for: on a busy machine they would otherwise get a
        # fraction of their CPUs. Same priority as this process.
        kwargs["_system_config"] = {"worker_niceness": 0}
        hidden = {k: os.environ.pop(k) for k in SECRET_ENV if k in os.environ}
        try:
            ray.init(num_cpus=num_cpus, **kwargs)
        finally:
            os.environ.update(hidden)
        from emotune.features._reaper import reap_local_cluster

        reap_local_cluster()  # the cluster dies with this process, on kill -9 too
    else:
        _attach(address, env, kwargs)


_AUTH_HINT = (
    "every node and driver of a cluster needs the same RAY_AUTH_MODE: with token authentication, set "
    "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
)


def _attach(address: str, env: dict[str, str], kwargs: dict[str, Any]) -> None:
    """``ray.init`` on a running cluster, with a token-authentication mismatch as a one-line error.

    A driver without the token is refused by a cluster that requires one: Ray's core logs the refusal
    on stderr (captured here, shown again when it is something else) and ``ray.init`` gives up with a
    ConnectionError. A driver with a token on a cluster without authentication connects, but its
    tasks never run: one empty task tells.
    """
    import ray

    from emotune.features._errors import FeatureError

    mode = os.environ.get(_AUTH_ENV, "")
    # Ray retries a GCS that answers but is not Ray's for about 20 s (one try a second); a running
    # cluster answers the first. The user's own setting is respected.
    wait = "RAY_gcs_server_port_wait_time_s"
    own_wait = wait in os.environ
    os.environ.setdefault(wait, str(_ATTACH_TRIES))
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(log.fileno(), 2)
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, **kwargs)
            error = None
        except ConnectionError as exc:
            error = exc
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not own_wait:
                os.environ.pop(wait, None)
        log.seek(0)
        said = log.read().decode(errors="replace")
    if error is not None:
        if "InvalidAuthToken" in said or "Unauthenticated" in said:
            raise FeatureError(
                f"the Ray cluster at {address} refused this driver (RAY_AUTH_MODE={mode}): {_AUTH_HINT}"
            ) from None
        if os.environ.get("EMOTUNE_DEBUG"):  # Ray's retries, one line a second: not for users
            sys.stderr.write(said)
        raise FeatureError(
            f"cannot attach to the Ray cluster at {address}: {error}".splitlines()[0]
            + f" (something answers there, but no Ray GCS within {_ATTACH_TRIES} tries)"
        ) from None
    sys.stderr.write(said)
    if mode == "token":
        try:
            probe: Any = ray.remote(num_cpus=0)(_Ping)
            actor = probe.remote()
            ray.get(actor.ping.remote(), timeout=300)
            ray.kill(actor)
        except Exception:
            ray.shutdown()
            raise FeatureError(
                f"the Ray cluster at {address} starts no actor of this driver (RAY_AUTH_MODE=token here): if its "
                f"nodes run without authentication, set RAY_AUTH_MODE=disabled; else {_AUTH_HINT}"
            ) from None


class _Ping:
    def ping(self) -> int:
        return 1


def node_name() -> str:
    """The name of the Ray node this process runs on (its IP address unless ``ray start
    --node-name`` named it); ``"?"`` outside Ray."""
    import ray

    if not ray.is_initialized():
        return "?"
    here = ray.get_runtime_context().get_node_id()
    if here not in _NODE_NAMES:  # a process never moves: ask the cluster once
        names = {n["NodeID"]: str(n.get("NodeName") or n.get("NodeManagerAddress")) for n in ray.nodes()}
        _NODE_NAMES[here] = names.get(here) or here
    return _NODE_NAMES[here]


def is_single_node() -> bool:
    """Whether every alive node of the connected cluster is this driver's own node.

    Then workers see this machine's files and paths can be sent instead of file contents. Through
    Ray Client (``ray://``) the driver's machine is no node at all: always False.
    """
    import ray
    import ray.util.client

    if ray.util.client.ray.is_connected():  # Ray Client: this machine is no node of the cluster
        return False
    here = ray.get_runtime_context().get_node_id()
    return all(node["NodeID"] == here for node in ray.nodes() if node.get("Alive"))


def ray_shutdown(*, quiet: bool = False) -> None:
    """Disconnect from Ray, stopping a local cluster this process started, without the slow path.

    ``ray.shutdown()`` gives each of its processes one second to exit after SIGTERM; the autoscaler
    monitor of a local cluster always takes the full second. It holds nothing worth saving, so it
    is killed outright first; everything else goes through ``ray.shutdown()``.

    Args:
        quiet: Silence what Ray's native code logs on stderr meanwhile (after an interruption, its
            complaints about tasks cut short are no news to the user).
    """
    import ray

    if not ray.is_initialized():
        return
    if quiet:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        try:
            ray_shutdown()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        return
    session: str | None = None
    try:  # private API: only an optimisation, never an error
        node = ray._private.worker._global_node
        monitors: list[Any] = node.all_processes.get("monitor", []) if node is not None and node.head else []
        for info in monitors:
            info.process.kill()
        if node is not None and node.head:  # a local cluster this process started
            session = node.get_session_dir_path()
    except Exception:  # pragma: no cover - depends on Ray internals
        pass
    ray.shutdown()
    if session and not os.environ.get(KEEP_LOGS_ENV):
        _remove_session(session)


def _remove_session(session: str) -> None:
    """Delete a local cluster's session folder (logs, sockets; about 1 MB) and its ``session_latest`` link."""
    import shutil

    shutil.rmtree(session, ignore_errors=True)
    latest = Path(session).parent / "session_latest"
    with contextlib.suppress(OSError):
        if latest.is_symlink() and os.path.realpath(latest) == os.path.realpath(session):
            latest.unlink()
