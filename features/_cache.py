"""The feature cache: content-addressed, incremental, atomic, built with parallel Ray tasks.

Layout. One SQLite database, ``index.db`` in the cache folder (WAL mode), holds everything:

``stat``      path, size, mtime_ns -> sha256 of the file's bytes. Lets a warm rebuild skip reading
              files: an unchanged (path, size, mtime) pair is trusted to hold the same bytes.
``features``  (key, sha256) -> one array (dtype, shape, raw bytes, digest). ``key`` hashes the
              feature params (:func:`feature_params`, canonical JSON), the versions of the
              libraries that compute them and this cache's schema: anything that changes the
              numbers. ``digest`` (BLAKE2b of the bytes; absent in entries written before it
              existed) and the length the shape implies are checked whenever an entry is used: a
              truncated or corrupted entry is deleted and computed again, never read as data.
``failures``  (key, sha256) -> why that content is no audio, so a rebuild reports it without
              decoding it again.
``audio``     sha256 -> duration in seconds (length-outlier dropping happens at load time).
``params``    key -> the params JSON (what a key means, for humans and tools).

Atomicity. Every batch of results is one transaction: a build killed at any moment (kill -9
included) leaves only whole, committed entries; a later build computes what is missing. Two
builds on one folder at once both finish with a correct cache (they may compute the same entries
twice; the rows they write are identical). SQLite's WAL needs a local filesystem: keep the cache off
NFS. A stat entry whose file was modified less than a second before it was read is marked racy (as
git does for "racily clean" files): prune trusts it, the next build hashes the file again, so a
file rewritten within one timestamp tick is never mistaken for the one that was hashed. A path that
is not valid UTF-8 (a file name of arbitrary bytes) is stored as ``hex:`` and its bytes in hex
(SQLite text is UTF-8; absolute paths start with ``/``, so the two forms never meet).

Work. The driver stats every file. Paths it has not seen before are sampled: when the sampled
content is not cached, the files are taken as new and only the workers hash them (they read them
anyway); otherwise, and for seen paths with a new timestamp, the driver hashes them so that moved,
copied or touched files are not computed again. A warm rebuild therefore reads no audio, imports no
audio library and starts no Ray. Missing entries are computed by Ray tasks in batches (largest
files first, so the last batches are short), each reading, hashing, decoding once and computing
every requested set from one STFT; the driver commits each batch as it arrives. On a one-node
cluster tasks get paths; on a multi-node cluster (or through Ray Client) they get the files' bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotune.features._corpora import Row, scan
from emotune.features._errors import AudioError, EmotuneError, FeatureError
from emotune.features._home import default_cache_dir

__all__ = ["BuildInterrupted", "BuildReport", "build", "file_hashes", "params_key", "prune"]

_SCHEMA = 2
_DB_NAME = "index.db"
# Libraries whose versions can change the numbers (decoding, resampling, transforms, filterbanks).
_LIBRARIES = ("numpy", "scipy", "librosa", "soundfile", "soxr")
# Libraries that only some sets use: in those sets' keys only, so the other sets' keys stay as they were.
_SET_LIBRARIES: dict[str, tuple[str, ...]] = {
    "vgg16_bottleneck": ("torch",),
    "ssl": ("torch", "transformers"),
}
# Params that do not change the numbers (where a model lies), left out of the key.
_UNKEYED: dict[str, tuple[str, ...]] = {"ssl": ("model",)}
# A stat entry of a file modified less than this long before it was read is "racy": trusted by
# prune, but the next build hashes the file again (git's "racily clean" rule).
_RACY_NS = 1_000_000_000
_SQL_CHUNK = 900  # bound parameters per IN (...) query
_BATCH_MAX = 48  # files per Ray task at most (~0.2 s of classic work): an even finish, few tasks
_SAMPLE = 8  # unknown files hashed by the driver to tell new content from moved or touched files
_DDL = (
    "CREATE TABLE stat (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
    " sha TEXT NOT NULL, racy INTEGER NOT NULL)",
    "CREATE INDEX stat_sha ON stat (sha)",
    "CREATE TABLE features (key TEXT NOT NULL, sha TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL,"
    " data BLOB NOT NULL, digest TEXT, PRIMARY KEY (key, sha))",
    "CREATE TABLE failures (key TEXT NOT NULL, sha TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (key, sha))",
    "CREATE TABLE audio (sha TEXT PRIMARY KEY, duration REAL NOT NULL)",
    "CREATE TABLE params (key TEXT PRIMARY KEY, json TEXT NOT NULL)",
)


# --------------------------------------------------------------------------------------------------
# Keys


def library_versions() -> dict[str, str]:
    """Versions of the libraries every set's cache key includes, without importing them."""
    return _versions(_LIBRARIES)


@functools.lru_cache(maxsize=8)
def _versions(names: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return versions


def canonical_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A params dict re-validated by :func:`feature_params` (so equal settings give equal keys)."""
    from emotune.features._sets import feature_params

    if not isinstance(params, Mapping) or "set" not in params:
        raise FeatureError(f"feature params must be a dict from feature_params(), got {params!r}")
    return feature_params(params["set"], **{k: v for k, v in params.items() if k != "set"})


def params_key(params: Mapping[str, Any]) -> str:
    """The cache key of one feature set's params: params + library versions + cache schema.

    The libraries are :data:`_LIBRARIES`, plus torch for ``vgg16_bottleneck`` and torch and transformers
    for ``ssl`` (:data:`_SET_LIBRARIES`). ``ssl``'s ``model`` reference is left out: its weights' content
    hash is in the params, so the same weights in another folder share the key.

    Args:
        params: A dict from :func:`feature_params`.

    Returns:
        32 hex digits.
    """
    canonical = canonical_params(params)
    canonical = {k: v for k, v in canonical.items() if k not in _UNKEYED.get(canonical["set"], ())}
    libraries = {**library_versions(), **_versions(_SET_LIBRARIES.get(canonical["set"], ()))}
    blob = json.dumps(
        {"params": canonical, "libraries": libraries, "schema": _SCHEMA},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------------
# The index database


class _Index:
    """The cache folder's SQLite database. Writes happen in short ``BEGIN IMMEDIATE`` transactions."""

    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(cache_dir / _DB_NAME, timeout=120, isolation_level=None)
            # Only takes effect on a new, empty database (before WAL and the first table): lets prune
            # give freed pages back to the filesystem without rewriting the whole file.
            self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise FeatureError(f"feature cache {cache_dir}: cannot open ({exc})") from None
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            self._create()
        elif version != _SCHEMA:
            raise FeatureError(
                f"feature cache {cache_dir} has layout version {version}, this emotune uses {_SCHEMA}: "
                "use another --cache folder or delete this one"
            )
        if not self._has_digests():
            with self.write() as db:  # a cache written before entries had digests: same keys, one column more
                if not self._has_digests():
                    db.execute("ALTER TABLE features ADD COLUMN digest TEXT")

    def _has_digests(self) -> bool:
        return any(row[1] == "digest" for row in self.conn.execute("PRAGMA table_info(features)"))

    def _create(self) -> None:
        with self.write() as db:
            if db.execute("PRAGMA user_version").fetchone()[0] == _SCHEMA:
                return  # another process created it meanwhile
            for statement in _DDL:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={_SCHEMA}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; committed on success, rolled back on any error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def select_in(self, sql: str, values: Sequence[Any], *head: Any) -> Iterator[tuple[Any, ...]]:
        """Run ``sql`` (holding one ``IN ({})``) over ``values`` in chunks, after ``head`` parameters."""
        for i in range(0, len(values), _SQL_CHUNK):
            chunk = values[i : i + _SQL_CHUNK]
            yield from self.conn.execute(sql.format(",".join("?" * len(chunk))), (*head, *chunk))

    def stats(self, paths: Sequence[str]) -> dict[str, tuple[int, int, str, int]]:
        """path -> (size, mtime_ns, sha, racy) of the stat entries of ``paths``."""
        sql = "SELECT path, size, mtime_ns, sha, racy FROM stat WHERE path IN ({})"
        return {_fs_path(row[0]): row[1:] for row in self.select_in(sql, [_db_path(p) for p in paths])}

    def present(self, key: str, shas: Sequence[str]) -> set[str]:
        """The shas among ``shas`` that have a sound entry (features or failure) under ``key``.

        Feature entries are checked (length and digest, see :func:`read_entries`); a damaged one is
        deleted, so that it is computed again.
        """
        found = set(read_entries(self, key, shas))
        found |= {
            sha
            for (sha,) in self.select_in("SELECT sha FROM failures WHERE key = ? AND sha IN ({})", shas, key)
        }
        return found

    def failures(self, keys: Sequence[str], shas: Sequence[str]) -> dict[str, str]:
        """sha -> failure reason, for shas that failed under any of ``keys``."""
        out: dict[str, str] = {}
        for key in keys:
            sql = "SELECT sha, reason FROM failures WHERE key = ? AND sha IN ({})"
            for sha, reason in self.select_in(sql, shas, key):
                out.setdefault(sha, reason)
        return out

    def close(self) -> None:
        self.conn.close()


@contextmanager
def open_index(cache_dir: str | os.PathLike[str] | None) -> Iterator[_Index]:
    """The cache folder's index (default :func:`default_cache_dir`), closed on exit."""
    index = _Index(Path(cache_dir).expanduser().absolute() if cache_dir else default_cache_dir())
    try:
        yield index
    finally:
        index.close()


# --------------------------------------------------------------------------------------------------
# Hashing through the stat cache


@dataclass
class _FileState:
    """What the driver knows about one file before building."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    sha: str | None = None
    error: str | None = None  # cannot stat or read
    racy: bool = True  # (size, mtime_ns) too recent to prove the content (see _RACY_NS)
    seen: bool = False  # the path has a stat entry (for other content, or an older timestamp)


def _stat_all(index: _Index, paths: Sequence[str]) -> tuple[list[_FileState], list[_FileState]]:
    """Stat every path and take the sha from the stat cache where (size, mtime) still match.

    Returns:
        All states (in ``paths`` order) and those still needing a hash.
    """
    known = index.stats(paths)
    now = time.time_ns()
    states, unknown = [], []
    for path in paths:
        state = _FileState(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            state.error = f"cannot read ({exc.strerror or exc})"
            states.append(state)
            continue
        state.size, state.mtime_ns = st.st_size, st.st_mtime_ns
        state.racy = now - st.st_mtime_ns < _RACY_NS  # for a sha the workers will compute
        entry = known.get(path)
        state.seen = entry is not None
        if entry is not None and entry[:2] == (st.st_size, st.st_mtime_ns) and not entry[3]:
            state.sha = entry[2]
        else:
            unknown.append(state)
        states.append(state)
    return states, unknown


def _hash_one(state: _FileState) -> None:
    """Hash a file's bytes, noting whether its timestamp is too recent to trust. Thread-safe."""
    from emotune.features._audio import _open_regular

    for _ in range(2):
        started = time.time_ns()
        try:
            st = os.stat(state.path)
            digest = hashlib.sha256()
            with _open_regular(state.path) as f:  # never a FIFO or a device (see _corpora)
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                after = os.fstat(f.fileno())
        except AudioError as exc:
            state.error = exc.reason
            return
        except OSError as exc:
            state.error = f"cannot read ({exc.strerror or exc})"
            return
        if (st.st_size, st.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            state.size, state.mtime_ns, state.sha = st.st_size, st.st_mtime_ns, digest.hexdigest()
            state.racy = started - st.st_mtime_ns < _RACY_NS
            state.error = None
            return
        state.error = "the file changed while it was read"


def _hash_states(states: Sequence[_FileState], threads: int = 2) -> None:
    if len(states) <= 2 or threads <= 1:
        for state in states:
            _hash_one(state)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(_hash_one, states))


def _record_stats(db: sqlite3.Connection, states: Iterable[_FileState]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO stat (path, size, mtime_ns, sha, racy) VALUES (?, ?, ?, ?, ?)",
        [(_db_path(s.path), s.size, s.mtime_ns, s.sha, int(s.racy)) for s in states if s.sha],
    )


def _db_path(path: str) -> str:
    """A path as the index stores it: itself, or ``hex:`` + its bytes when it is no valid UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "hex:" + os.fsencode(path).hex()
    return path


def _fs_path(stored: str) -> str:
    """The path a stored one stands for (see :func:`_db_path`)."""
    return os.fsdecode(bytes.fromhex(stored[4:])) if stored.startswith("hex:") else stored


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_hashes(
    paths: Iterable[str | os.PathLike[str]], *, cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """sha256 of each file's bytes, through the stat cache: unchanged files are not read.

    Args:
        paths: Files (absolute or relative; keys of the result are absolute).
        cache_dir: The cache folder (default :func:`default_cache_dir`).

    Returns:
        Absolute path -> hex sha256, for every path.

    Raises:
        AudioError: A file cannot be read (the first one, by path order given).
    """
    absolute = [os.path.abspath(os.fspath(p)) for p in paths]
    with open_index(cache_dir) as index:
        states = resolve_hashes(index, absolute)
    for state in states:
        if state.error:
            raise AudioError(state.path, state.error)
    return {s.path: str(s.sha) for s in states}


def resolve_hashes(index: _Index, paths: Sequence[str]) -> list[_FileState]:
    """States of ``paths`` (in order) with their shas: from the stat cache, else hashed and recorded."""
    states, unknown = _stat_all(index, list(dict.fromkeys(paths)))
    if unknown:
        _hash_states(unknown)
        with index.write() as db:
            _record_stats(db, unknown)
    by_path = {s.path: s for s in states}
    return [by_path[p] for p in paths]


# --------------------------------------------------------------------------------------------------
# Reading entries (used by load)


def read_entries(
    index: _Index, key: str, shas: Sequence[str]
) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """sha -> (dtype, shape, raw bytes) of the sound entries under ``key``.

    An entry whose bytes are not as long as its dtype and shape say, or whose digest does not match
    them (a truncated or corrupted entry), is left out and deleted from the index (unless it was
    replaced meanwhile), so that the next build computes it again.
    """
    import numpy as np

    sql = "SELECT sha, dtype, shape, data, digest FROM features WHERE key = ? AND sha IN ({})"
    out = {}
    damaged = []
    for sha, dtype, shape, data, digest in index.select_in(sql, list(dict.fromkeys(shas)), key):
        dims = tuple(int(n) for n in shape.split(",") if n)
        try:
            expected = math.prod(dims) * np.dtype(dtype).itemsize
        except TypeError:
            expected = -1
        if (
            not isinstance(data, bytes)
            or len(data) != expected
            or (digest is not None and digest != _digest(data))
        ):
            damaged.append((key, sha, digest))
            continue
        out[sha] = (dtype, dims, data)
    if damaged:
        try:
            with index.write() as db:
                db.executemany("DELETE FROM features WHERE key = ? AND sha = ? AND digest IS ?", damaged)
        except sqlite3.Error:  # a read-only cache: the entries are still left out, never read
            pass
    return out


def durations(index: _Index, shas: Sequence[str]) -> dict[str, float]:
    """sha -> duration in seconds, as measured when the file was built."""
    sql = "SELECT sha, duration FROM audio WHERE sha IN ({})"
    return dict(index.select_in(sql, list(dict.fromkeys(shas))))


# --------------------------------------------------------------------------------------------------
# The Ray task


def _stft_groups(params: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Indices of params that can share one decode and one STFT (same sr, n_fft, hop_length)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault((p["sr"], p["n_fft"], p["hop_length"]), []).append(i)
    return list(groups.values())


def _extract_batch(
    items: list[tuple[str, bytes | None]], params: list[dict[str, Any]], vgg16_weights: str | None = None
) -> tuple[list[tuple[Any, ...]], float]:
    """Read, hash, decode and extract a batch of files (runs inside a Ray worker).

    Every set but a batched one (``vgg16_bottleneck``) is computed file by file; a batched set's
    inputs (``melspec`` images) are gathered from the files that decoded, then its network runs over
    them in a few forward passes (one torch thread, as the task holds one CPU; CUDA when visible).
    Only a task given a batched set imports torch.

    Args:
        items: ``(path, bytes)`` pairs; ``bytes`` is None when the worker can read the path itself.
        params: Validated feature params, one per set.
        vgg16_weights: The weights file of ``vgg16_bottleneck`` on this worker's machine (None:
            ``$EMOTUNE_VGG16_WEIGHTS``); the driver checked it against the params' sha256.

    Returns:
        One tuple per file: ``(path, sha, arrays, reason, duration)`` where ``arrays`` is a list of
        ``(dtype, shape, bytes)`` per params (None on failure) and ``reason`` says why it failed
        (None on success); ``sha`` is None when the file could not be read. Then the CPU seconds
        the task used (imports of a fresh worker included).

    Raises:
        FeatureError: the weights file of a batched set is missing or not the params' one: the
            build fails (it is no fault of a file).
    """
    started = time.process_time()
    import numpy as np

    from emotune.features._audio import decode_bytes, read_bytes
    from emotune.features._ray import guard_numba_cache
    from emotune.features._sets import BATCHED_SETS, extract_inputs, finish_batch

    guard_numba_cache()

    groups = _stft_groups(params)
    out: list[tuple[Any, ...]] = []
    for path, data in items:
        if data is None:
            try:
                data = read_bytes(path)
            except AudioError as exc:
                out.append((path, None, None, exc.reason, None))
                continue
        sha = hashlib.sha256(data).hexdigest()
        arrays: list[Any] = [None] * len(params)
        duration = None
        try:
            for group in groups:
                sr = params[group[0]]["sr"]
                y = decode_bytes(data, sr=sr, path=path)
                if duration is None:
                    duration = y.shape[0] / sr
                for i, array in zip(group, extract_inputs(y, sr, [params[i] for i in group]), strict=True):
                    arrays[i] = array
        except AudioError as exc:
            out.append((path, sha, None, exc.reason, None))
            continue
        except FeatureError as exc:  # params were validated by the driver: this is about the signal
            out.append((path, sha, None, str(exc), None))
            continue
        except Exception as exc:  # a bug: fail loudly, but say which file triggered it
            raise RuntimeError(f"extracting features of {path} failed: {exc!r}") from exc
        out.append((path, sha, arrays, None, duration))
    done = [arrays for _, _, arrays, _, _ in out if arrays is not None]
    for i, p in enumerate(params):
        if p["set"] in BATCHED_SETS and done:
            batch = finish_batch(
                np.stack([arrays[i] for arrays in done]),
                p,
                vgg16_weights=vgg16_weights,
                n_threads=1,
            )
            for arrays, array in zip(done, batch, strict=True):
                arrays[i] = array
    for arrays in done:
        arrays[:] = [(a.dtype.str, ",".join(map(str, a.shape)), a.tobytes()) for a in arrays]
    return out, time.process_time() - started


# --------------------------------------------------------------------------------------------------
# build


@dataclass
class BuildReport:
    """What :func:`build` did. Counts are files, not file x set.

    Attributes:
        files: Audio files considered (``built + cached + len(failed)``).
        built: Files with at least one set computed now.
        cached: Files whose every set was already in the cache.
        failed: ``{"path", "reason"}`` per file that is no usable audio, and per path that cannot be
            used at all (symlink loop, dangling link, folder that cannot be listed); nothing is cached
            for them.
        cache: The cache folder.
        unparsed: ``(path, reason)`` of audio files whose names gave no label (not built).
        hashes: path -> sha256 of its bytes, for every file that could be read.
        timings: Seconds spent per phase: ``scan``, ``hash``, ``ray_start`` (importing Ray
            included), ``compute`` (from Ray being up until the last result is committed), ``total``; ``worker_cpu`` sums the
            CPU seconds of the Ray tasks. Phases that did not happen are absent.
        sets: The names of the feature sets built, in order.
        nodes: Files computed now per Ray node (its node name: the node's IP address unless
            ``ray start --node-name`` says otherwise); empty when nothing was computed.
    """

    files: int
    built: int
    cached: int
    failed: list[dict[str, str]]
    cache: str
    unparsed: list[tuple[str, str]] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)


def _resolve_params(
    sets: Sequence[str] | str,
    params: Sequence[Mapping[str, Any]] | None,
    vgg16_weights: str | os.PathLike[str] | None = None,
    ssl_model: str | os.PathLike[str] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Validated params of the sets to build; ``"all"`` means every set computed from the audio alone.

    Returns:
        The params, and the weights file of ``vgg16_bottleneck`` entries (``vgg16_weights``, else
        ``$EMOTUNE_VGG16_WEIGHTS``), found and checked against their ``weights_sha256`` here, before
        any work (None when no entry needs one).
    """
    from emotune.features._sets import AUDIO_SETS, default_params
    from emotune.features._vgg import checked_weights

    if params is not None:
        if isinstance(params, Mapping):
            params = [params]
        plist = [canonical_params(p) for p in params]
    else:
        names = [sets] if isinstance(sets, str) else list(sets)
        if "all" in names:
            names = [*AUDIO_SETS, *(n for n in names if n != "all")]
        plist = [
            default_params(name, vgg16_weights=vgg16_weights, ssl_model=ssl_model)
            for name in dict.fromkeys(names)
        ]
    if not plist:
        raise FeatureError("no feature set to build: give at least one (--set NAME)")
    weights = None
    for p in plist:
        if p["set"] == "vgg16_bottleneck":
            weights = str(checked_weights(p["weights_sha256"], vgg16_weights))
        if p["set"] == "ssl":  # the encoder found and its weights checked before any work
            from emotune.features._ssl import checked_model_dir

            checked_model_dir(p, ssl_model)
    return plist, weights


def _rows_or_paths(
    rows_or_paths: Any, corpus: str | None, labels: str | os.PathLike[str] | None
) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    if isinstance(rows_or_paths, str | os.PathLike | Row):
        rows_or_paths = [rows_or_paths]
    items = list(rows_or_paths)
    if items and all(isinstance(item, Row) for item in items):
        return list(dict.fromkeys(row.path for row in items)), [], []
    if any(isinstance(item, Row) for item in items):
        raise FeatureError("build() takes rows or paths, not a mix of both")
    if not items and labels is None:
        raise FeatureError("nothing to build: give at least one file or folder")
    scanned = scan([os.fspath(p) for p in items], corpus=corpus, labels=labels)
    return [row.path for row in scanned.rows], list(scanned.unparsed), list(scanned.failed)


def build(
    rows_or_paths: Sequence[Row] | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    sets: Sequence[str] | str = ("classic",),
    params: Sequence[Mapping[str, Any]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    strict: bool = False,
    corpus: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    vgg16_weights: str | os.PathLike[str] | None = None,
    ssl_model: str | os.PathLike[str] | None = None,
) -> BuildReport:
    """Bring the cache up to date for some files: compute only what is missing, in parallel.

    A rebuild of unchanged files reads no audio, imports no audio library and starts no Ray. Files
    that are no usable audio (unreadable, empty, truncated, not audio) are listed in ``failed``; the
    rest still builds. Operating limits: the cache folder must be on a local filesystem (SQLite
    WAL); files are read by the driver and, on a one-node cluster, by the workers by path, else
    shipped to the workers as bytes.

    Args:
        rows_or_paths: Rows from :func:`scan`, or files and folders to scan.
        sets: Feature set names (``"all"`` for every set computed from the audio alone, i.e. all but
            ``vgg16_bottleneck``); ignored when ``params`` is given.
        params: Dicts from :func:`feature_params`, for non-default settings.
        cache_dir: The cache folder (default :func:`default_cache_dir`).
        ray_address: A Ray cluster to use (default ``$RAY_ADDRESS``, else a local cluster).
        num_cpus: CPUs of a local cluster (default: all).
        progress: Show a progress bar on stderr.
        strict: Raise :class:`FeatureError` after building when any file failed.
        corpus: Force a corpus when scanning paths (see :func:`scan`).
        labels: A labels CSV when scanning paths (see :func:`scan`).
        vgg16_weights: The torchvision ``vgg16`` state_dict file of ``vgg16_bottleneck`` (default
            ``$EMOTUNE_VGG16_WEIGHTS``): its sha256 fills the set's ``weights_sha256`` (from ``sets``)
            or must equal it (from ``params``). The Ray tasks read it at the same path: on a cluster
            of several machines, put it at that path on each of them.
        ssl_model: The encoder of ``ssl`` (a local folder or a model id in the local Hugging Face
            cache; default ``$EMOTUNE_SSL_MODEL``, else, from ``params``, their ``model``): its
            weights fill or must equal the params' ``weights``. Built by an actor pool
            (:mod:`emotune.features._ssl_build`); on several machines, the same folder or cache on each.

    Returns:
        A :class:`BuildReport`.

    Raises:
        FeatureError: Bad sets/params, an unusable cache folder, ``strict`` with failures, a
            missing or other VGG16 weights file, or a ``ray_address`` where nothing answers (all
            checked before any work but the last).

    Example:
        >>> report = build(["data/ravdess"], sets=["classic", "mfcc_seq"])  # doctest: +SKIP
        >>> report.files == report.built + report.cached + len(report.failed)  # doctest: +SKIP
        True
    """
    t0 = time.perf_counter()
    plist, weights = _resolve_params(sets, params, vgg16_weights, ssl_model)
    keys = [params_key(p) for p in plist]
    if ray_address:  # a cluster named explicitly must answer, even when nothing is left to compute
        from emotune.features._ray import check_reachable

        check_reachable(ray_address)
    paths, unparsed, broken = _rows_or_paths(rows_or_paths, corpus, labels)
    timings = {"scan": time.perf_counter() - t0}
    with open_index(cache_dir) as index:
        run = _Build(index, plist, keys, ray_address, num_cpus, progress, timings, weights)
        run.ssl_model = None if ssl_model is None else os.fspath(ssl_model)
        try:
            with _sigterm_as_interrupt():
                report = run.run(paths)
        except BuildInterrupted:
            raise
        except KeyboardInterrupt:  # before any task ran (scanning, hashing): nothing half-written
            raise BuildInterrupted(len(run.built), len(paths), str(index.dir)) from None
        except EmotuneError as exc:
            # A task's error arrives as Ray's RayTaskError (an instance of the cause's class, its
            # message the remote traceback): raise the cause's one line instead.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, EmotuneError) and cause is not exc:
                raise cause from None
            raise
    report.unparsed = unparsed
    # Symlink loops, dangling links, folders that cannot be listed: failures like unreadable audio.
    report.failed.extend({"path": path, "reason": reason} for path, reason in broken)
    report.files += len(broken)
    report.timings["total"] = time.perf_counter() - t0
    if strict and report.failed:
        first = report.failed[0]
        raise FeatureError(
            f"{len(report.failed)} file(s) failed; first: {first['path']}: {first['reason']} (strict)"
        )
    return report


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile (in the main thread; elsewhere nothing changes)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class BuildInterrupted(KeyboardInterrupt):
    """A build stopped by Ctrl-C or SIGTERM; what was committed before stays in the cache.

    Attributes:
        built: Files computed and committed before the interruption.
        jobs: Files that were to be computed.
        cache: The cache folder.
    """

    def __init__(self, built: int, jobs: int, cache: str) -> None:
        super().__init__(f"interrupted after {built} of {jobs} files were computed (kept in {cache})")
        self.built, self.jobs, self.cache = built, jobs, cache


class _Build:
    """One run of :func:`build` against an open index."""

    def __init__(
        self,
        index: _Index,
        plist: list[dict[str, Any]],
        keys: list[str],
        ray_address: str | None,
        num_cpus: int | None,
        progress: bool,
        timings: dict[str, float],
        vgg16_weights: str | None = None,
    ) -> None:
        self.index, self.plist, self.keys = index, plist, keys
        self.vgg16_weights = vgg16_weights
        self.ssl_model: str | None = (
            None  # the ssl encoder given to build() (see emotune.features._ssl_build)
        )
        self.ray_address, self.num_cpus, self.progress = ray_address, num_cpus, progress
        self.timings = timings
        self.failed: dict[str, str] = {}  # path -> reason
        self.built: set[str] = set()
        self.nodes: dict[str, int] = {}  # Ray node name -> files computed there

    def run(self, paths: list[str]) -> BuildReport:
        t = time.perf_counter()
        states, unknown = _stat_all(self.index, paths)
        unhashed = self._hash(unknown)
        with self.index.write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO params (key, json) VALUES (?, ?)",
                [(k, json.dumps(p, sort_keys=True)) for k, p in zip(self.keys, self.plist, strict=True)],
            )
            _record_stats(db, (s for s in unknown if s.sha))
        for s in states:
            if s.error:
                self.failed[s.path] = s.error
        jobs = self._jobs([s for s in states if s.sha], [s for s in unhashed if not s.error])
        self.timings["hash"] = time.perf_counter() - t
        if jobs:
            self._compute(jobs)
        self._collect_failures(states)
        failed = [{"path": p, "reason": r} for p, r in sorted(self.failed.items())]
        built = len(self.built - set(self.failed))
        return BuildReport(
            files=len(states),
            built=built,
            cached=len(states) - built - len(failed),
            failed=failed,
            cache=str(self.index.dir),
            hashes={s.path: s.sha for s in states if s.sha},
            timings=self.timings,
            sets=[p["set"] for p in self.plist],
            nodes=dict(sorted(self.nodes.items())),
        )

    def _hash(self, unknown: list[_FileState]) -> list[_FileState]:
        """Hash the files the stat cache does not know, unless they are evidently new.

        Paths seen before (touched or modified since) are hashed here. Of the paths never seen, a
        sample spread over them is hashed first: when none of it is cached, they are taken as new,
        and the workers hash them as they read them anyway, so the driver does not (and Ray starts
        at once). Otherwise every one is hashed here, so that content already cached under another
        path (a moved or copied corpus) is not computed again.

        Returns:
            The files left for the workers to hash.
        """
        _hash_states([s for s in unknown if s.seen])
        new = [s for s in unknown if not s.seen]
        if not new:
            return []
        step = max(1, len(new) // _SAMPLE)
        sample = new[::step][:_SAMPLE]
        _hash_states(sample)
        if len(new) > len(sample) and self._all_new([s for s in sample if s.sha]):
            return [s for s in new if s.sha is None and not s.error]
        _hash_states([s for s in new if s.sha is None and not s.error])
        return []

    def _all_new(self, states: Sequence[_FileState]) -> bool:
        shas = list(dict.fromkeys(str(s.sha) for s in states))
        return all(not self.index.present(key, shas) for key in self.keys)

    def _jobs(self, hashed: Sequence[_FileState], unhashed: Sequence[_FileState]) -> list[_Job]:
        """One job per distinct content lacking an entry under some key, plus one per unhashed file."""
        shas = list(dict.fromkeys(str(s.sha) for s in hashed))
        present = [self.index.present(key, shas) for key in self.keys]
        by_sha: dict[str, list[_FileState]] = {}
        for s in hashed:
            by_sha.setdefault(str(s.sha), []).append(s)
        jobs = []
        for sha, states in by_sha.items():
            missing = tuple(i for i, have in enumerate(present) if sha not in have)
            if missing:
                jobs.append(_Job(states[0].path, sha, states, missing))
        everything = tuple(range(len(self.keys)))
        jobs += [_Job(s.path, None, [s], everything) for s in unhashed]
        return jobs

    def _compute(self, jobs: list[_Job]) -> None:
        from emotune.features._ray import ray_init
        from emotune.features._ssl_build import compute_ssl, split_ssl

        total = len(jobs)
        jobs, ssl_jobs = split_ssl(self.plist, jobs)
        t = time.perf_counter()
        ray_init(self.ray_address, num_cpus=self.num_cpus)
        self.timings["ray_start"] = time.perf_counter() - t
        # SIGTERM as Ctrl-C again (ray.init installed its own, which prints a crash dump of the
        # driver's stack): the batches committed so far stay.
        try:
            with _sigterm_as_interrupt():
                if ssl_jobs:  # the encoders run in an actor pool, each holding the model once
                    compute_ssl(self, ssl_jobs)
                if jobs:
                    self._run_tasks(jobs)
        except KeyboardInterrupt:
            raise BuildInterrupted(len(self.built), total, str(self.index.dir)) from None

    def _run_tasks(self, jobs: list[_Job]) -> None:
        import ray

        from emotune.features._ray import is_single_node
        from emotune.features._sets import BATCHED_SETS

        t = time.perf_counter()
        cpus = max(int(ray.cluster_resources().get("CPU", 1)), 1)
        size = max(1, min(_BATCH_MAX, math.ceil(len(jobs) / (cpus * 6))))
        by_sets: dict[tuple[int, ...], list[_Job]] = {}
        # Largest files first, so that the batches finishing last are the short ones.
        for job in sorted(jobs, key=lambda j: -j.states[0].size):
            by_sets.setdefault(job.sets, []).append(job)
        batches = [group[i : i + size] for group in by_sets.values() for i in range(0, len(group), size)]
        ship_bytes = not is_single_node()
        task = ray.remote(num_cpus=1, max_retries=2)(_extract_batch_here)
        params_refs = {sets: ray.put([self.plist[i] for i in sets]) for sets in by_sets}
        # A task with a network to run (vgg16_bottleneck) gets its share of the cluster's GPUs, if
        # any: Ray hides the GPUs from tasks that ask for none.
        gpus = ray.cluster_resources().get("GPU", 0.0)
        share = min(1.0, gpus / cpus) if gpus else 0.0
        tasks = {
            sets: task.options(num_gpus=share)
            if share and any(self.plist[i]["set"] in BATCHED_SETS for i in sets)
            else task
            for sets in by_sets
        }
        bar = _progress(len(jobs), self.progress)
        pending: dict[Any, list[_Job]] = {}
        try:
            for batch in batches:
                while len(pending) >= 2 * cpus:
                    self._drain(pending, bar)
                items = [(job.path, _read_or_none(job.path) if ship_bytes else None) for job in batch]
                sets = batch[0].sets
                pending[tasks[sets].remote(items, params_refs[sets], self.vgg16_weights)] = batch
            while pending:
                self._drain(pending, bar)
        finally:
            bar.close()
        self.timings["compute"] = time.perf_counter() - t

    def _drain(self, pending: dict[Any, list[_Job]], bar: Any) -> None:
        """Wait for one task and commit its results."""
        import ray

        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            batch = pending.pop(ref)
            results, cpu, node = ray.get(ref)
            self._commit(batch, results)
            self.nodes[node] = self.nodes.get(node, 0) + len(batch)
            self.timings["worker_cpu"] = self.timings.get("worker_cpu", 0.0) + cpu
            bar.update(len(batch))

    def _commit(self, batch: list[_Job], results: list[tuple[Any, ...]]) -> None:
        features, failures, audio, stats = [], [], [], []
        for job, (path, sha, arrays, reason, duration) in zip(batch, results, strict=True):
            assert path == job.path
            if sha is None:
                for s in job.states:
                    self.failed[s.path] = reason
                continue
            if job.sha is None:
                # The worker hashed what it read. The stat was taken before, so should the file have
                # changed in between, its entry maps the old (size, mtime) and is never matched again.
                job.states[0].sha = sha
                stats += job.states
            elif sha != job.sha:
                for s in job.states:
                    self.failed[s.path] = "the file changed during the build; run it again"
                continue
            keys = [self.keys[i] for i in job.sets]
            if arrays is None:
                failures += [(key, sha, reason) for key in keys]
                continue
            features += [(key, sha, *a, _digest(a[2])) for key, a in zip(keys, arrays, strict=True)]
            audio.append((sha, duration))
            self.built.update(s.path for s in job.states)
        with self.index.write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO features (key, sha, dtype, shape, data, digest) VALUES (?, ?, ?, ?, ?, ?)",
                features,
            )
            db.executemany("INSERT OR REPLACE INTO failures (key, sha, reason) VALUES (?, ?, ?)", failures)
            db.executemany("INSERT OR REPLACE INTO audio (sha, duration) VALUES (?, ?)", audio)
            _record_stats(db, stats)

    def _collect_failures(self, states: Sequence[_FileState]) -> None:
        """Files whose content failed (now or in an earlier build) are failed, with the reason."""
        shas = list(dict.fromkeys(s.sha for s in states if s.sha))
        reasons = self.index.failures(self.keys, shas)
        for s in states:
            if s.sha in reasons and s.path not in self.failed:
                self.failed[s.path] = reasons[s.sha]


@dataclass
class _Job:
    """One file to compute: its path, its content's sha when the driver hashed it, every path with
    that content, and the indices of the params to compute."""

    path: str
    sha: str | None
    states: list[_FileState]
    sets: tuple[int, ...]


def _extract_batch_here(
    items: list[tuple[str, bytes | None]], params: list[dict[str, Any]], vgg16_weights: str | None = None
) -> tuple[list[tuple[Any, ...]], float, str]:
    """:func:`_extract_batch` as a Ray task: its results, CPU seconds, and the name of its node."""
    from emotune.features._ray import node_name

    results, cpu = _extract_batch(items, params, vgg16_weights)
    return results, cpu, node_name()


def _read_or_none(path: str) -> bytes | None:
    """The file's bytes for a remote worker; None lets the worker report the read error itself."""
    from emotune.features._audio import read_bytes

    try:
        return read_bytes(path)
    except AudioError:
        return None


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, unit="file", desc="features", file=sys.stderr, disable=not enabled, dynamic_ncols=True
    )


# --------------------------------------------------------------------------------------------------
# prune


def prune(
    cache_dir: str | os.PathLike[str] | None = None,
    keep_paths: Iterable[str | os.PathLike[str]] | None = None,
    *,
    yes: bool = False,
) -> int:
    """Drop cache entries that no known file refers to any more.

    Without ``keep_paths``, a file is known when it has a stat entry and still exists with the same
    size and modification time. With ``keep_paths`` (files and folders), only the audio files under
    them are known: everything else is dropped.

    Nothing is dropped without ``yes`` when the paths look mistaken: a keep path that does not
    exist or yields no audio file (a typo, an empty or unmounted folder), or a prune that would
    drop every entry of the cache (without paths: every known file is gone, as when the data's
    disk is not mounted). The refusal says how many entries would go.

    Args:
        cache_dir: The cache folder (default :func:`default_cache_dir`).
        keep_paths: Files and folders whose features to keep.
        yes: Drop them anyway (the CLI's ``--yes``).

    Returns:
        Number of entries (feature arrays and recorded failures) dropped.

    Raises:
        FeatureError: the prune was refused (one line: the path, and how many entries would go).
    """
    with open_index(cache_dir) as index:
        keep: set[str] | None = None
        empty: list[str] = []
        if keep_paths is not None:
            # Every audio file under the paths, labelled or not (a labels CSV may have named them).
            files = []
            for p in keep_paths:
                found = scan([os.fspath(p)]) if os.path.exists(p) else None
                under = [] if found is None else [r.path for r in found.rows] + [q for q, _ in found.unparsed]
                if not under:
                    empty.append(os.fspath(p))
                files += under
            keep = {s.sha for s in resolve_hashes(index, files) if s.sha}
        # One write transaction from deciding what lives to deleting the rest: entries a concurrent
        # build commits meanwhile wait for it, and are judged with their stat entries.
        with index.write() as db:
            live = _live_shas(db) if keep is None else keep
            db.execute("CREATE TEMP TABLE IF NOT EXISTS live (sha TEXT PRIMARY KEY)")
            db.execute("DELETE FROM live")
            db.executemany("INSERT OR IGNORE INTO live (sha) VALUES (?)", [(s,) for s in live])
            if not yes:
                _refuse_mistaken_prune(db, index.dir, empty)  # raises inside: rolled back, nothing dropped
            dropped = db.execute("DELETE FROM features WHERE sha NOT IN (SELECT sha FROM live)").rowcount
            dropped += db.execute("DELETE FROM failures WHERE sha NOT IN (SELECT sha FROM live)").rowcount
            db.execute("DELETE FROM audio WHERE sha NOT IN (SELECT sha FROM live)")
            db.execute("DELETE FROM stat WHERE sha NOT IN (SELECT sha FROM live)")
            db.execute(
                "DELETE FROM params WHERE key NOT IN (SELECT key FROM features UNION SELECT key FROM failures)"
            )
        index.conn.execute("PRAGMA incremental_vacuum").fetchall()  # one page per step: run them all
        return dropped


def _refuse_mistaken_prune(db: sqlite3.Connection, cache: Path, empty: Sequence[str]) -> None:
    """Raise when a prune looks mistaken (see :func:`prune`), naming how many entries would go."""
    total = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("features", "failures"))
    going = sum(
        db.execute(f"SELECT COUNT(*) FROM {t} WHERE sha NOT IN (SELECT sha FROM live)").fetchone()[0]
        for t in ("features", "failures")
    )
    if not going:
        return
    if empty:
        what = "does not exist" if not os.path.exists(empty[0]) else "holds no audio file"
        raise FeatureError(
            f"features prune {empty[0]}: {what}; pruning against it would drop {going} of the {total} "
            f"entries in {cache}: nothing was dropped (check the path, or give --yes to drop them)"
        )
    if going == total:
        raise FeatureError(
            f"features prune: no file the cache knows is still there; this would drop all {total} entries "
            f"in {cache} (is the data's disk mounted?): nothing was dropped (give --yes to drop them)"
        )


def _live_shas(db: sqlite3.Connection) -> set[str]:
    """Shas of stat entries whose file still exists unchanged (racy ones too); stale entries are removed."""
    live, stale = set(), []
    for path, size, mtime_ns, sha in db.execute("SELECT path, size, mtime_ns, sha FROM stat").fetchall():
        try:
            st = os.stat(_fs_path(path))
        except OSError:
            stale.append(path)
            continue
        if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
            live.add(sha)
        else:
            stale.append(path)
    db.executemany("DELETE FROM stat WHERE path = ?", [(p,) for p in stale])
    return live
