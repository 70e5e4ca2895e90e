"""Studies run by Ray workers against one shared PostgreSQL storage.

``prepare`` turns data + space + settings into a study (created once, under a lock, before any
worker starts) and the training arrays; ``run`` starts W Ray workers that each call
``study.optimize`` one trial at a time until the study holds exactly N finished (complete + pruned)
trials.

How a worker keeps the study at exactly N: :mod:`emotune.search._worker`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from emotune.features import EmotuneError
from emotune.search import _storage as st
from emotune.search._data import (
    build_features,
    check_labels,
    check_split,
    class_order,
    feature_sets,
    labelled_rows,
    load_space,
    trial_data,
)
from emotune.search._objective import TrialData, worker_id
from emotune.search._study import (
    FEATURES_PARAM,
    StudyData,
    StudyError,
    StudySpec,
    dataset_digest,
    study_data,
    study_data_from_json,
)
from emotune.search._supervise import WorkerWatch
from emotune.search._worker import STORAGE_PATIENCE_S, Worker, slot_key

if TYPE_CHECKING:
    import optuna


@dataclass
class Prepared:
    """A study ready to be searched: its spec, data and the training arrays."""

    name: str
    url: str
    space: ModuleType
    spec: StudySpec
    data: StudyData
    trial_data: TrialData
    created: bool


def prepare(
    space_ref: str,
    study_name: str,
    data: Sequence[str | Path],
    *,
    url: str,
    target: str = "emotion",
    protocol: str = "actor",
    metric: str = "uar",
    seed: int = 0,
    folds: int = 5,
    feature_set: str | None = None,
    speaker_norm: bool = False,
    corpus: str | None = None,
    labels: str | None = None,
    cache_dir: str | Path | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
) -> Prepared:
    """Scan and label the data, build missing features, and create (or check) the study."""
    import optuna

    from emotune.features import default_params, label_of

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    st.heartbeat_settings()  # the workers' settings, checked before any study exists
    space = load_space(space_ref)
    sets = feature_sets(space, feature_set)
    # vgg16_bottleneck: its params hold the sha256 of $EMOTUNE_VGG16_WEIGHTS
    choices = {name: default_params(name) for name in sets}
    fset, params = sets[0], choices[sets[0]]
    if not data:
        raise StudyError("--data is required to create a study (a folder of a corpus, or several)")
    for d in data:
        if not Path(d).exists():
            raise StudyError(f"--data {d}: no such file or folder")
    rows = labelled_rows(data, target=target, corpus=corpus, labels=labels)
    check_labels(rows, target)
    rows, hashes = build_features(rows, list(choices.values()), cache_dir=cache_dir, ray_address=ray_address,
                                  num_cpus=num_cpus, progress=progress)  # fmt: skip
    labels_ = [str(label_of(r, target)) for r in rows]
    check_labels(rows, target)  # files that failed to build are gone: a class may be gone with them
    sdata = study_data(rows, hashes, labels_, protocol=protocol, seed=seed, folds=folds)
    check_split(sdata, protocol)
    classes = sorted(set(labels_), key=class_order(target, rows))
    spec = StudySpec(
        space=space.NAME,
        feature_set=fset,
        feature_params=params,
        target=target,
        protocol=protocol,
        metric=metric,
        seed=seed,
        folds=folds,
        speaker_norm=speaker_norm,
        roots=sorted(str(Path(d).resolve()) for d in data),
        classes=classes,
        dataset_sha=dataset_digest(sdata.hashes, sdata.labels, [r["speaker"] for r in sdata.rows]),
        space_path=str(Path(space_ref).resolve()) if space_ref.endswith(".py") else None,
        feature_choices=choices if len(choices) > 1 else {},
    )
    arrays = trial_data(spec, sdata, cache_dir=cache_dir)  # checked finite before the study exists
    created = create_or_check(url, study_name, spec, sdata)
    return Prepared(study_name, url, space, spec, sdata, arrays, created)


def create_or_check(url: str, name: str, spec: StudySpec, sdata: StudyData) -> bool:
    """Create the study with its spec and dataset, or check that an existing one matches.

    Returns True when the study was created now. Creation happens under an advisory lock, so two
    commands starting the same study at once create it once.
    """
    import optuna

    st.ensure_schema(url)
    storage = st.make_storage(url, heartbeat=False, pool_size=1)
    eng = st.engine(url, pool_size=2)  # one for the lock, one for the dataset blob
    raw = st.autocommit_connection(eng)
    try:
        with st.advisory_lock(raw, slot_key(name)):
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                study = None
            if study is not None:
                attrs = study.user_attrs
                if attrs.get("emotune") is None:
                    raise StudyError(
                        f"study {name!r} exists but was not made by emotune: choose another --study"
                    )
                old = StudySpec.from_attrs(attrs)
                why = old.mismatch(spec)
                if why:
                    raise StudyError(
                        f"study {name!r} does not match: {why} (use another --study, or `emotune studies delete {name}`)"
                    )
                return False
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
            for k, v in spec.to_attrs().items():
                study.set_user_attr(k, v)
            enqueue_defaults(study, spec)
            st.save_blob(eng, name, "dataset", sdata.to_json())
            return True
    finally:
        raw.close()
        eng.dispose()
        storage.remove_session()
        storage.engine.dispose()


def enqueue_defaults(study: optuna.Study, spec: StudySpec) -> None:
    """Queue the space's ``DEFAULTS`` (well-known good settings) as the study's first trials.

    A search of a few dozen trials starts from a sound point instead of random ones (Optuna's
    ``enqueue_trial``, the warm start auto-sklearn and FLAML use); with a searched feature set each
    default runs on the study's first set.
    """
    space = load_space(spec.space_path or spec.space)
    for params in getattr(space, "DEFAULTS", ()):
        extra = {FEATURES_PARAM: spec.feature_set} if spec.feature_choices else {}
        study.enqueue_trial({**params, **extra}, skip_if_exists=True)


def open_study(url: str, name: str, *, reroot: str | Path | None = None) -> tuple[Any, StudySpec, StudyData]:
    """Load an emotune study: (optuna study, spec, data). No --data needed."""
    import optuna

    storage = st.make_storage(url, heartbeat=False, pool_size=1)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyError(f"no study named {name!r} in {st.redact(url)} (see `emotune studies`)") from None
    attrs = study.user_attrs
    if attrs.get("emotune") is None:
        raise StudyError(f"study {name!r} was not made by emotune")
    spec = StudySpec.from_attrs(attrs)
    eng = st.engine(url)
    try:
        blob = st.load_blob(eng, name, "dataset")
    finally:
        eng.dispose()
    if blob is None:
        raise StudyError(f"study {name!r} has no stored dataset")
    return study, spec, study_data_from_json(blob, spec, reroot=reroot)


def load_oof(url: str, name: str, trial_number: int) -> np.ndarray | None:
    """A finished trial's out-of-fold probabilities (training rows, class order), or None."""
    from emotune.search._objective import oof_from_bytes

    eng = st.engine(url)
    try:
        blob = st.load_blob(eng, name, "oof", trial_number)
    finally:
        eng.dispose()
    return None if blob is None else oof_from_bytes(blob)


# --- workers -------------------------------------------------------------------------------------


def cluster_capacity(resources: dict[str, float]) -> int:
    """How many workers of this size the Ray cluster can hold at once."""
    import ray

    total = ray.cluster_resources()
    fits = []
    for name, need in resources.items():
        if need <= 0:
            continue
        key = {"num_cpus": "CPU", "num_gpus": "GPU"}.get(name, name)
        fits.append(int(total.get(key, 0) // need))
    return max(0, min(fits)) if fits else 1


def run(
    prep: Prepared,
    *,
    n_trials: int,
    workers: int = 1,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    timeout: float | None = None,
    pruner: str = "auto",
    sampler: str = "tpe",
    progress: bool = True,
    patience: float = STORAGE_PATIENCE_S,
) -> dict[str, Any]:
    """Run the study with ``workers`` Ray workers until it holds ``n_trials`` finished trials.

    A storage that goes away is waited for up to ``patience`` seconds (said at once on stderr); then
    the search ends with :class:`~emotune.search._storage.StorageError` naming the storage. The driver
    and every worker mark themselves as a live search of the study for as long as they run.
    """
    _check_run_settings(n_trials=n_trials, workers=workers, timeout=timeout, patience=patience)
    workers = st.fit_workers(prep.url, workers)
    with _Presence(prep.url, prep.name):
        return _run(
            prep, n_trials=n_trials, workers=workers, ray_address=ray_address, num_cpus=num_cpus,
            timeout=timeout, pruner=pruner, sampler=sampler, progress=progress, patience=patience,
        )  # fmt: skip


class _Presence:
    """The driver's mark as a live search of the study (one autocommit connection, for the run)."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.eng: Any = None
        self.conn: Any = None

    def __enter__(self) -> _Presence:
        try:
            self.eng = st.engine(self.url)
            self.conn = st.autocommit_connection(self.eng)
            st.hold_presence(self.conn, self.name)
        except Exception:  # the workers mark it too; a storage away now is handled by them
            self.__exit__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
        if self.eng is not None:
            self.eng.dispose()
            self.eng = None


def _run(
    prep: Prepared,
    *,
    n_trials: int,
    workers: int,
    ray_address: str | None,
    num_cpus: int | None,
    timeout: float | None,
    pruner: str,
    sampler: str,
    progress: bool,
    patience: float,
) -> dict[str, Any]:
    import ray

    from emotune.features import ray_init

    ray_init(ray_address, num_cpus=num_cpus)
    resources = dict(getattr(prep.space, "RESOURCES", {"num_cpus": 1}))
    workers = _workers_that_fit(prep, resources, workers)
    start = _worker_starter(
        prep, resources, n_trials=n_trials, pruner=pruner, sampler=sampler, patience=patience,
        deadline=time.time() + timeout if timeout else None,
    )  # fmt: skip
    actors = [start(i) for i in range(workers)]
    data_ref = ray.put(prep.trial_data)  # once, through the object store
    ids = ray.get([a.whoami.remote() for a in actors])
    watch = WorkerWatch(actors, n_trials=n_trials, url=prep.url, name=prep.name)
    futures = [a.run.remote(data_ref) for a in actors]
    monitor = _Progress(prep.url, prep.name, n_trials, enabled=progress, patience=patience)
    interrupted = False
    old = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _wait_for_workers(actors, futures, start, data_ref, watch, monitor)
    except KeyboardInterrupt:
        interrupted = True
        _stop_workers(actors, futures, prep, ids)
    except Exception as exc:
        try:
            _stop_workers(actors, futures, prep, ids)
        except Exception as stop_exc:  # the original error matters more
            reason = st.connection_reason(stop_exc)
            print(f"emotune: could not stop the workers cleanly: {reason}", file=sys.stderr)
        # A worker's error arrives as Ray's RayTaskError (its message the remote traceback, with
        # colour codes): raise the cause's one line instead.
        cause = getattr(exc, "cause", None)
        if isinstance(cause, EmotuneError) and cause is not exc:
            raise cause from None
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
        monitor.update()
        monitor.close()
        watch.close()
        for a in actors:
            ray.kill(a)
    try:
        summary = st.retry_db(study_summary, prep.url, prep.name)
    except KeyError:
        raise st.StudyGone(f"study {prep.name!r} was deleted while this search ran") from None
    summary["workers"] = workers
    summary["interrupted"] = interrupted
    return summary


def _check_run_settings(*, n_trials: int, workers: int, timeout: float | None, patience: float) -> None:
    if n_trials < 1:
        raise StudyError(f"--trials {n_trials} must be at least 1")
    if workers < 1:
        raise StudyError(f"--workers {workers} must be at least 1")
    if timeout is not None and not timeout > 0:
        raise StudyError(f"--timeout {timeout} must be a positive number of seconds")
    if not patience > 0:
        raise StudyError(f"--storage-patience {patience} must be a positive number of seconds")


def _workers_that_fit(prep: Prepared, resources: dict[str, float], workers: int) -> int:
    """``workers``, or as many as the Ray cluster holds at once (said on stderr)."""
    capacity = cluster_capacity(resources)
    if capacity < 1:
        raise StudyError(f"the Ray cluster cannot hold one {prep.spec.space} worker (needs {resources})")
    if workers > capacity:
        print(
            f"emotune: the cluster holds {capacity} {prep.spec.space} workers ({resources} each): using {capacity}, not {workers}",
            file=sys.stderr,
        )
        return capacity
    return workers


def _worker_starter(
    prep: Prepared,
    resources: dict[str, float],
    *,
    n_trials: int,
    pruner: str,
    sampler: str,
    patience: float,
    deadline: float | None,
) -> Callable[[int], Any]:
    """``start(index)``: a new Ray actor running :class:`Worker` ``index`` of the study."""
    import ray

    from emotune.features import numba_env
    from emotune.features._ray import SECRET_ENV

    space_ref = prep.spec.space_path or prep.spec.space
    actor_cls: Any = ray.remote(Worker)
    # Workers see the driver's emotune settings (weights files, GPU share, heartbeats) and numba cache.
    # Never the storage URL: Ray logs a runtime_env in plain text; the URL travels as an argument.
    env = {
        k: v for k, v in os.environ.items() if k.startswith("EMOTUNE_") and k not in SECRET_ENV
    } | numba_env()
    # A worker process that dies (OOM, kill -9) is restarted and its loop re-run; the trial it was
    # running is failed by heartbeat and retried with the same parameters. max_concurrency=2 lets
    # stop() reach a worker that is busy in run().
    opts: dict[str, Any] = {
        "max_concurrency": 2,
        "max_restarts": 3,
        "max_task_retries": 3,
        "runtime_env": {"env_vars": env},
        **resources,
    }

    def start(index: int) -> Any:
        return actor_cls.options(**opts).remote(  # type: ignore[attr-defined]
            prep.url,
            prep.name,
            space_ref,
            n_trials=n_trials,
            index=index,
            seed=prep.spec.seed,
            metric=prep.spec.metric,
            pruner=pruner,
            sampler=sampler,
            deadline=deadline,
            heartbeat=st.heartbeat_settings(),
            patience=patience,
        )

    return start


def _wait_for_workers(
    actors: list[Any],
    futures: list[Any],
    start: Callable[[int], Any],
    data_ref: Any,
    watch: WorkerWatch,
    monitor: _Progress,
) -> None:
    """Wait until every worker's loop has ended; replace a worker whose process or node is gone.

    ``actors`` and ``futures`` are updated in place (a replacement and its run), so that stopping
    reaches the workers alive now.
    """
    import ray

    pending = dict(zip(futures, range(len(actors)), strict=True))
    while pending:
        done, _ = ray.wait(list(pending), timeout=0.5)
        for ref in done:
            i = pending.pop(ref)
            try:
                ray.get(ref)  # re-raise a worker's error
            except ray.exceptions.RayActorError as exc:  # its process or node is gone for good
                watch.lost(i, exc)
                actors[i] = start(watch.next_index())
                watch.started(i, actors[i])
                ref = actors[i].run.remote(data_ref)
                pending[ref] = i
                futures.append(ref)
            else:
                ray.kill(actors[i])  # done: free its resources for a worker still to be placed
        watch.poll(pending)
        monitor.update()


def _stop_workers(
    actors: list[Any], futures: list[Any], prep: Prepared, ids: list[str], grace: float = 3.0
) -> None:
    """Ask workers to stop, kill those still busy after ``grace`` s, and fail their running trials."""
    import optuna
    import ray

    for a in actors:
        a.stop.remote()
    ray.wait(futures, num_returns=len(futures), timeout=grace)
    for a in actors:
        ray.kill(a)
    storage = st.retry_db(st.make_storage, prep.url, heartbeat=False, pool_size=1, attempts=10)
    try:
        study = optuna.load_study(study_name=prep.name, storage=storage)
    except KeyError:
        return  # deleted (`studies delete --force`): no trial of it is left to fail
    mine = set(ids)
    host = worker_id().split(":")[0]
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        who = str(t.user_attrs.get("worker", ""))
        # Ours: a worker we started, or a restarted one of ours on this host that we just killed.
        if who in mine or (who.startswith(host + ":") and not _pid_alive(int(who.rsplit(":", 1)[1]))):
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            # The interrupted trial runs again (same parameters) when the study resumes.
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Progress:
    """A progress bar of finished trials and the best value, polled from the storage."""

    def __init__(self, url: str, name: str, total: int, *, enabled: bool, patience: float) -> None:
        self.eng = st.engine(url)
        self.url = url
        self.name = name
        self.patience = patience
        self.lost = False
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=f"study {name}", unit="trial", file=sys.stderr, dynamic_ncols=True
            )
        self.last = 0.0

    def update(self) -> None:
        if time.time() - self.last < 1.0:
            return
        self.last = time.time()
        try:
            import sqlalchemy

            q = sqlalchemy.text(
                "SELECT count(*) FILTER (WHERE t.state IN ('COMPLETE','PRUNED')), max(v.value) FILTER (WHERE t.state = 'COMPLETE') "
                "FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "LEFT JOIN trial_values v ON v.trial_id = t.trial_id WHERE s.study_name = :n"
            )
            with self.eng.connect() as c:
                done, best = c.execute(q, {"n": self.name}).one()
        except Exception as exc:
            # The storage may be restarting; the workers wait for it. Say so once, at once.
            if not self.lost and st._is_connection_error(exc):
                self.lost = True
                self._say(
                    f"emotune: storage {st.redact(self.url)} unreachable, waiting up to {self.patience:g} s "
                    f"(--storage-patience): {st.connection_reason(exc)}"
                )
            return
        if self.lost:
            self.lost = False
            self._say(f"emotune: storage {st.redact(self.url)} is reachable again")
        if self.bar is None:
            return
        self.bar.n = min(int(done or 0), self.bar.total or 0)
        if best is not None:
            self.bar.set_postfix_str(f"best={best:.4f}", refresh=False)
        self.bar.refresh()

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        self.last = 0.0
        if self.bar is not None:
            self.bar.close()
        self.eng.dispose()


def study_summary(url: str, name: str) -> dict[str, Any]:
    """Counts by state and the best trial of a study."""
    import optuna

    storage = st.make_storage(url, heartbeat=False, pool_size=1)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    out: dict[str, Any] = {
        "study": name,
        "space": study.user_attrs.get("space"),
        "complete": sum(t.state == states.COMPLETE for t in trials),
        "pruned": sum(t.state == states.PRUNED for t in trials),
        "fail": sum(t.state == states.FAIL for t in trials),
        "running": sum(t.state == states.RUNNING for t in trials),
        "waiting": sum(t.state == states.WAITING for t in trials),
        "best_value": None,
        "best_params": None,
        "best_trial": None,
    }
    if out["complete"]:
        best = study.best_trial
        out.update(best_value=best.value, best_params=best.params, best_trial=best.number)
    storage.engine.dispose()
    return out
