"""The search worker: one Ray actor that runs trials of a study until it holds exactly N finished.

Exactly N, with any number of workers and processes: before a worker creates a trial it takes a
PostgreSQL advisory lock for the study (held only until its trial exists), counts finished, running
and waiting trials, and starts a trial only while ``finished + running < N`` or a retry is waiting.
A worker that finds all N slots taken but not finished waits, and meanwhile fails stale trials
(``optuna.storages.fail_stale_trials``), so the retry of a killed worker's trial still runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from emotune.search import _storage as st
from emotune.search._data import load_space
from emotune.search._objective import TrialData, TrialInterrupted, make_objective, set_user_attrs, worker_id
from emotune.search._study import StudyError
from emotune.spaces import make_pruner

if TYPE_CHECKING:
    import optuna

# How long a worker keeps retrying an unreachable storage (a restart) before it gives up.
# (The CLI checks $EMOTUNE_STORAGE_PATIENCE_S as the default of --storage-patience; here a malformed
# value must not break importing the module.)
try:
    STORAGE_PATIENCE_S = float(os.environ.get("EMOTUNE_STORAGE_PATIENCE_S", "180"))
except ValueError:
    STORAGE_PATIENCE_S = 180.0


def slot_key(study_name: str) -> int:
    """The advisory-lock key of a study's trial slots (a signed 64-bit int)."""
    return int.from_bytes(
        hashlib.sha256(f"emotune-slot:{study_name}".encode()).digest()[:8], "big", signed=True
    )


def _count_states(cur: Any, study_id: int, *, lock: int | None = None) -> dict[str, int]:
    """Trials of the study per state; with ``lock``, first take that advisory lock (one round trip)."""
    sql = "SELECT state, count(*) FROM trials WHERE study_id = %s GROUP BY state"
    if lock is None:
        cur.execute(sql, (study_id,))
    else:  # two statements, one round trip: psycopg2 returns the last one's rows
        cur.execute("SELECT pg_advisory_lock(%s); " + sql, (lock, study_id))
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    for state, n in cur.fetchall():
        counts[str(state).split(".")[-1]] = int(n)
    if not any(counts.values()):  # a study starts with its defaults queued: none may mean deleted
        cur.execute("SELECT study_name FROM studies WHERE study_id = %s", (study_id,))
        if cur.fetchone() is None:
            raise st.StudyGone(f"study #{study_id} was deleted while this search ran")
    return counts


class Worker:
    """One search worker (a Ray actor): runs trials of one study until it holds N finished ones."""

    def __init__(
        self,
        url: str,
        study_name: str,
        space_ref: str,
        *,
        n_trials: int,
        index: int,
        seed: int,
        metric: str,
        pruner: str,
        sampler: str = "tpe",
        deadline: float | None,
        heartbeat: tuple[int, int],
        patience: float = STORAGE_PATIENCE_S,
    ) -> None:
        self.url, self.study_name, self.space_ref = url, study_name, space_ref
        self.n_trials, self.index, self.seed, self.metric = n_trials, index, seed, metric
        self.pruner, self.sampler, self.deadline = pruner, sampler, deadline
        self.heartbeat, self.patience = heartbeat, patience
        self._stop = threading.Event()

    def whoami(self) -> str:
        return worker_id()

    def node(self) -> str:
        """The Ray node id of this worker."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def stop(self) -> None:
        self._stop.set()

    def run(self, data: TrialData) -> dict[str, Any]:
        """Run trials until the study holds ``n_trials`` finished ones (or the deadline, or stop)."""
        import optuna

        from emotune.features._ray import node_name

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _limit_threads()
        space = load_space(self.space_ref)
        study, storage = self._load_study(space, data)
        # Blobs go through the storage's own pool (trials and heartbeats): 3 connections a worker.
        blob_eng = storage.engine

        def save_oof(number: int, payload: bytes) -> None:
            st.retry_db(st.save_blob, blob_eng, self.study_name, "oof", payload, number)

        objective = make_objective(
            space, data, metric=self.metric, seed=self.seed, save_oof=save_oof, should_stop=self._stop.is_set
        )
        lock = _SlotLock(self.url, slot_key(self.study_name), self.study_name)
        trial_run = _TrialRun(objective, lock, study, node_name())
        try:
            ran = self._loop(study, lock, trial_run)
        finally:
            lock.close()
        return {"worker": worker_id(), "ran": ran}

    def _load_study(self, space: ModuleType, data: TrialData) -> tuple[optuna.Study, Any]:
        """The study with this worker's sampler (seeded by its index) and pruner, and its storage."""
        import optuna

        storage = st.retry_db(st.make_storage, self.url, heartbeat=self.heartbeat)
        sampler = make_sampler(self.sampler, self.seed + self.index)
        pruner = make_pruner(self.pruner, space, len(data.folds))
        try:
            study = st.retry_db(
                optuna.load_study, study_name=self.study_name, storage=storage, sampler=sampler, pruner=pruner
            )
        except KeyError:  # deleted between its creation and this worker's start
            raise st.StudyGone(self._gone_message()) from None
        return study, storage

    def _loop(self, study: optuna.Study, lock: _SlotLock, trial_run: _TrialRun) -> int:
        """Take a slot and run one trial, again and again; wait out a lost storage up to ``patience``.

        Returns:
            How many trials this worker ran.
        """
        ran = failures = 0
        lost_since: float | None = None
        while not self._stop.is_set():
            if self.deadline is not None and time.time() >= self.deadline:
                break
            try:
                outcome = self._round(study, lock, trial_run)
            except st.StudyGone:
                raise st.StudyGone(self._gone_message()) from None
            except StudyError:
                raise
            except Exception as exc:
                lock.release()
                if not st._is_connection_error(exc):
                    if self._gone(lock):
                        raise st.StudyGone(self._gone_message()) from None
                    raise
                # The storage went away (a restart): drop the connection and try again shortly. A trial
                # that was running is failed by heartbeat and retried with its parameters.
                lost_since = lost_since or time.time()
                if time.time() - lost_since > self.patience:
                    raise st.StorageError(
                        f"storage {st.redact(self.url)} unreachable for {self.patience:g} s "
                        f"(--storage-patience): {st.connection_reason(exc)}"
                    ) from None
                lock.reset()
                time.sleep(1.0)
                continue
            finally:
                lock.release()
            if outcome == "done":
                break
            if outcome == "ran":
                lost_since = None
                ran += 1
                failures = failures + 1 if trial_run.failed else 0
                if failures >= 5 and not self._stop.is_set():
                    raise StudyError(
                        f"5 trials in a row failed in worker {worker_id()}; the last: {trial_run.last_error} "
                        "(each failed trial keeps its error as the user attribute `error`)"
                    )
        return ran

    def _gone(self, lock: _SlotLock) -> bool:
        """Whether the study was deleted (an error that is no lost connection may come from that)."""
        try:
            return not lock.exists(self.study_name)
        except Exception:
            return False

    def _gone_message(self) -> str:
        return (
            f"study {self.study_name!r} was deleted while this search ran (`emotune studies delete --force`)"
        )

    def _round(self, study: optuna.Study, lock: _SlotLock, trial_run: _TrialRun) -> str:
        """Under the slot lock, count the study's trials and run one trial if a slot is free.

        Returns:
            ``"done"`` (the study holds ``n_trials`` finished trials), ``"waited"`` (every slot is taken
            by a running trial: stale ones were failed, then half a second passed) or ``"ran"``.
        """
        import optuna

        counts = lock.count(study._study_id)
        finished = counts["COMPLETE"] + counts["PRUNED"]
        if finished >= self.n_trials:
            return "done"
        if counts["WAITING"] == 0 and finished + counts["RUNNING"] >= self.n_trials:
            lock.release()
            optuna.storages.fail_stale_trials(study)
            self._stop.wait(0.5)
            return "waited"
        trial_run.failed = False
        study.optimize(trial_run, n_trials=1, catch=(Exception,), gc_after_trial=False)
        return "ran"


class _SlotLock:
    """The study's trial-slot advisory lock, on one autocommit connection (reopened after a loss).

    The same session marks the worker as a live search of the study (:func:`~emotune.search._storage.hold_presence`)
    for as long as it lives, between trials too: ``emotune studies delete`` refuses while it does.
    """

    def __init__(self, url: str, key: int, study: str) -> None:
        self.engine = st.engine(url)
        self.key = key
        self.study = study
        self.conn: Any = None
        self.held = False
        with contextlib.suppress(Exception):  # a storage away now: the first count reconnects
            self._connect()

    def _connect(self) -> Any:
        if self.conn is None:
            conn = st.autocommit_connection(self.engine)
            st.hold_presence(conn, self.study)
            self.conn = conn
        return self.conn

    def exists(self, name: str) -> bool:
        """Whether the study is still in the storage."""
        cur = self._connect().cursor()
        cur.execute("SELECT 1 FROM studies WHERE study_name = %s", (name,))
        return cur.fetchone() is not None

    def count(self, study_id: int) -> dict[str, int]:
        """Take the lock and count the study's trials by state (the lock stays held)."""
        cur = self._connect().cursor()
        self.held = True  # set first: should the count fail, release() is harmless
        return _count_states(cur, study_id, lock=self.key)

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                self.conn.cursor().execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except Exception:
                pass  # a dropped connection released the lock already

    def reset(self) -> None:
        """Drop the connection (the storage went away); the next count opens a new one."""
        self.conn = None
        self.engine.dispose()
        with contextlib.suppress(Exception):  # mark the worker live again as soon as it can
            self._connect()

    def close(self) -> None:
        self.release()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()  # back to the pool, then closed: the presence goes with the session
        self.engine.dispose()


class _TrialRun:
    """The objective as a worker runs it: the slot lock is released once the trial exists, the trial
    records its Ray node, and an interrupted trial is queued again with the same parameters.

    ``failed`` says whether the last trial ended in an error (neither complete nor pruned).
    """

    def __init__(self, objective: Any, lock: _SlotLock, study: optuna.Study, node: str) -> None:
        self.objective, self.lock, self.study, self.node = objective, lock, study, node
        self.failed = False
        self.last_error = ""

    def __call__(self, trial: optuna.trial.Trial) -> float:
        import optuna

        self.lock.release()  # the trial exists now: other workers may count it
        trial.set_user_attr("node", self.node)
        self.failed = True
        try:
            value = float(self.objective(trial))
            self.failed = False
            return value
        except optuna.TrialPruned:
            self.failed = False
            raise
        except TrialInterrupted:
            # Interrupted between folds: it runs again, same parameters, when the study resumes.
            self.study.enqueue_trial(
                trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False
            )
            raise
        except Exception as exc:
            self.last_error = failure_reason(exc)
            # The reason goes with the trial (optuna-dashboard shows user attributes); a storage that is
            # gone cannot take it, and the error that follows says why.
            with contextlib.suppress(Exception):
                set_user_attrs(trial, {"error": self.last_error, "error_trace": failure_trace(exc)})
            raise


def failure_reason(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters), as a failed trial records it.

    >>> failure_reason(ValueError("Input X contains NaN.\nmore"))
    'ValueError: Input X contains NaN.'
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}"[:300].rstrip(": ")


def failure_trace(exc: BaseException, *, frames: int = 4) -> list[str]:
    """The last ``frames`` frames of the traceback, ``file:line in function``, innermost last."""
    import traceback

    tail = traceback.extract_tb(exc.__traceback__)[-frames:]
    return [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in tail]


SAMPLERS = ("tpe", "random")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (Optuna 5's default: multivariate, constant liar) or random search, seeded per worker."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise StudyError(f"--sampler {name!r} is not one of {', '.join(SAMPLERS)}")


def _limit_threads() -> None:
    """One worker = its CPU share: keep BLAS/OpenMP pools from oversubscribing the node."""
    from threadpoolctl import threadpool_limits

    # Ray sets OMP_NUM_THREADS to the actor's CPUs; a malformed value falls back to one thread.
    try:
        n = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        n = 1
    threadpool_limits(n)
