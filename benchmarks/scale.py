"""Scale benchmark: what a trial costs as one study grows to thousands of trials.

Run: ``.venv/bin/python benchmarks/scale.py`` (PostgreSQL at $EMOTUNE_BENCH_PG, default
postgresql://postgres@127.0.0.1:5432/test). About 5-10 minutes on two cores.

Two arms drive one study each to ``--trials`` (3,000) finished trials of the trivial space
(benchmarks/_trivial_space.py: a DummyClassifier through emotune's 3-fold objective, which reports
each fold, records its attributes and stores out-of-fold probabilities) on the PostgreSQL server,
with ``--workers`` (8) processes and the default sampler (TPE, seeded per worker):

- farm: ``emotune.search.run`` with W Ray workers (slot lock, counting, heartbeats);
- optuna: plain ``study.optimize`` of the same objective in W processes, the same sampler, no
  heartbeats (Optuna's default), stopped once the study holds N finished trials.

Per-trial cost of a window of finished trials (1-100, 1,450-1,550, 2,900-3,000, in order of
completion) = the time between the window's first and last completion x W / the trials in between:
worker-milliseconds per trial, everything included (sampling, objective, storage, the farm's
counting). TPE reads every trial at every suggest, so Optuna's own cost grows with the study
(optuna#3053); what is judged is the farm beside it: ``vs_optuna_late`` = farm late / optuna late.

The most connections held at once: ``pg_stat_activity`` sampled every 0.2 s, counting the
connections of this run only (every process of an arm runs with its own ``PGAPPNAME``, which libpq
sends as ``application_name``).

Last line: ``late_vs_early=.. optuna_late_vs_early=.. vs_optuna_late=.. max_connections=.. workers=..``
(max_connections is the farm's).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
import types
import uuid
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".emotune" / "numba"))
PG = os.environ.get("EMOTUNE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
TRIVIAL = str(ROOT / "benchmarks" / "_trivial_space.py")
WINDOWS = ((1, 100), (1450, 1550), (2900, 3000))
SEED = 0


def _data():
    """Small random training data with 3 folds: the trivial model ignores the features anyway."""
    import numpy as np

    from emotune.search._objective import TrialData

    rng = np.random.default_rng(0)
    n = 120
    y = np.arange(n) % 4
    idx = np.arange(n)
    folds = [(idx[idx % 3 != k], idx[idx % 3 == k]) for k in range(3)]
    return TrialData(
        X=rng.normal(size=(n, 16)), y=y, folds=folds, classes=list("abcd"), hashes=[str(i) for i in idx]
    )


class _ConnectionSampler(threading.Thread):
    """Samples ``pg_stat_activity`` for the connections of one application name; keeps the maximum."""

    def __init__(self, url: str, app: str) -> None:
        super().__init__(daemon=True)
        self.url, self.app, self.max = url, app, 0
        self.halt = threading.Event()

    def run(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.url.replace("postgresql+psycopg2://", "postgresql://"))
        conn.autocommit = True
        cur = conn.cursor()
        while not self.halt.wait(0.2):
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (self.app,))
            self.max = max(self.max, int(cur.fetchone()[0]))
        conn.close()

    def stop(self) -> int:
        self.halt.set()
        self.join()
        return self.max


def _create(name: str) -> None:
    import optuna

    from emotune.search import _storage as st

    st.ensure_schema(PG)
    storage = st.make_storage(PG, heartbeat=False)
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    storage.engine.dispose()


def _farm(name: str, trials: int, workers: int) -> None:
    from emotune.search._search import Prepared, run
    from emotune.spaces import get

    space = get(TRIVIAL)
    spec = types.SimpleNamespace(space=space.NAME, space_path=TRIVIAL, seed=SEED, metric="uar")
    prep = Prepared(name, PG, space, spec, None, _data(), True)  # type: ignore[arg-type]
    run(prep, n_trials=trials, workers=workers, num_cpus=workers, progress=False)


def _plain_worker(name: str, index: int, n: int, app: str) -> None:
    """One plain Optuna process: ``study.optimize`` with no limit; :func:`_plain` stops it at N."""
    os.environ["PGAPPNAME"] = app
    import optuna

    from emotune.search import _storage as st
    from emotune.search import make_objective, make_pruner
    from emotune.search._worker import _limit_threads, make_sampler
    from emotune.spaces import get

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _limit_threads()
    space = get(TRIVIAL)
    data = _data()
    storage = st.make_storage(PG, heartbeat=False)
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler("tpe", SEED + index),
        pruner=make_pruner("auto", space, len(data.folds)),
    )
    blob_eng = st.engine(PG)

    def save_oof(number: int, payload: bytes) -> None:
        st.save_blob(blob_eng, name, "oof", payload, number)

    objective = make_objective(space, data, metric="uar", seed=SEED, save_oof=save_oof)
    study.optimize(objective, n_trials=n, gc_after_trial=False)


def _plain(name: str, trials: int, workers: int, app: str) -> None:
    """W processes until the study holds N finished trials, then they are stopped.

    Stopped from outside (a count every 0.5 s), not with ``MaxTrialsCallback``, which would add a
    read of every trial to each of their trials; fixed quotas of N / W would leave a ragged end
    where fewer processes run.
    """
    import psycopg2

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_plain_worker, args=(name, i, trials, app)) for i in range(workers)]
    for p in procs:
        p.start()
    conn = psycopg2.connect(PG)
    conn.autocommit = True
    cur = conn.cursor()
    try:
        while True:
            cur.execute(
                "SELECT count(*) FROM trials t JOIN studies s USING (study_id) "
                "WHERE s.study_name = %s AND t.state IN ('COMPLETE', 'PRUNED')",
                (name,),
            )
            if int(cur.fetchone()[0]) >= trials:
                break
            if any(p.exitcode not in (None, 0) for p in procs):
                raise SystemExit("a plain optuna process failed")
            time.sleep(0.5)
    finally:
        conn.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


def _windows(name: str) -> tuple[list[float], dict[str, int]]:
    """Worker-ms per trial in each window, and the study's trials by state."""
    import optuna

    from emotune.search import _storage as st

    storage = st.make_storage(PG, heartbeat=False)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ends = sorted(t.datetime_complete.timestamp() for t in trials if t.state in done)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    storage.engine.dispose()
    return [(ends[b - 1] - ends[a - 1]) * 1000 / (b - a) for a, b in WINDOWS if b <= len(ends)], states


def _arm(label: str, name: str, app: str, go, workers: int) -> tuple[list[float], int]:
    os.environ["PGAPPNAME"] = app
    sampler = _ConnectionSampler(PG, app)
    sampler.start()
    t = time.perf_counter()
    try:
        go()
    finally:
        peak = sampler.stop()
        os.environ.pop("PGAPPNAME", None)
    wall = time.perf_counter() - t
    costs, states = _windows(name)
    costs = [c * workers for c in costs]
    shown = "  ".join(f"{a}-{b}: {c:.1f} ms" for (a, b), c in zip(WINDOWS, costs, strict=False))
    print(f"{label:7s} {wall:6.1f} s  {states}  per trial {shown}  max_connections={peak}", flush=True)
    return costs, peak


def main() -> int:
    global WINDOWS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    if args.trials != 3000:  # the same three windows, scaled
        n = args.trials
        WINDOWS = ((1, max(2, n // 30)), (n // 2 - n // 60, n // 2 + n // 60), (n - n // 30, n))
    os.environ.pop("RAY_ADDRESS", None)  # a local Ray of W CPUs, for this run only
    os.environ["EMOTUNE_HEARTBEAT_S"] = os.environ.get("EMOTUNE_HEARTBEAT_S", "5")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from emotune.search import _storage as st

    tag = uuid.uuid4().hex[:8]
    names = {"farm": f"bench-scale-farm-{tag}", "optuna": f"bench-scale-optuna-{tag}"}
    for n in names.values():
        _create(n)
    print(
        f"scale: {args.trials} trials of the trivial space, {args.workers} workers, TPE, on {st.redact(PG)}",
        flush=True,
    )
    try:
        farm, peak = _arm(
            "farm",
            names["farm"],
            f"emotune-scale-farm-{tag}",
            lambda: _farm(names["farm"], args.trials, args.workers),
            args.workers,
        )
        from emotune.features._ray import ray_shutdown

        ray_shutdown()
        plain, plain_peak = _arm(
            "optuna",
            names["optuna"],
            f"emotune-scale-optuna-{tag}",
            lambda: _plain(names["optuna"], args.trials, args.workers, f"emotune-scale-optuna-{tag}"),
            args.workers,
        )
    finally:
        eng = st.engine(PG)
        for n in names.values():
            try:
                optuna.delete_study(study_name=n, storage=st.normalize_url(PG))
                st.delete_blobs(eng, n)
            except Exception as exc:
                print(f"could not delete study {n}: {exc}", file=sys.stderr)
        eng.dispose()
    print(
        f"late_vs_early={farm[-1] / farm[0]:.2f} optuna_late_vs_early={plain[-1] / plain[0]:.2f} "
        f"vs_optuna_late={farm[-1] / plain[-1]:.2f} max_connections={peak} workers={args.workers}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
