"""Search benchmark: orchestration overhead, 2-worker scaling, and what pruning saves.

Run: ``.venv/bin/python benchmarks/search.py`` (PostgreSQL at $EMOTUNE_BENCH_PG, default
postgresql://postgres@127.0.0.1:5432/test; real RAVDESS files from ../shared/data).

(a) Per-trial overhead on a trivial objective (a DummyClassifier through emotune's 3-fold objective,
    which records fold scores, metrics, worker and out-of-fold probabilities): ms per trial from the
    first trial's start to the last trial's end, Ray start-up and actor creation excluded. All three
    arms use the same seeded RandomSampler and no pruner, so the sampler's own cost (TPE's grows
    with the trials) is not counted as orchestration.
    - emotune: one Ray worker (slot lock, counting, heartbeats);
    - plain Optuna: ``study.optimize`` of the same objective in one process on the same PostgreSQL
      with the same heartbeat settings and sampler;
    - Ray Tune: ``OptunaSearch`` with the same budget, running a trivial function (no storage).
(b) Trials/min of ``rf`` on ``classic`` features of the real RAVDESS files with 1 and 2 workers, one
    thread per worker in both arms; one random rf trial (400 trees) enqueued N times; counted in the steady
    state, while every worker is warm (past its first trial and its imports) and busy (see _rate).
Timed arms (a) and (b) run several times (--repeats 5, --scale-repeats 2), alternating, and the best
run of each arm counts: noise from other work on a shared machine only ever makes a run slower.
(c) Pruning on vs off on the same trials (the same enqueued parameters from a seeded RandomSampler),
    ``random`` protocol, 5 folds: the share of fold fits saved and the change in the best CV score.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".emotune" / "numba"))
DATA = Path(os.environ.get("EMOTUNE_TEST_DATA") or ROOT.parent / "shared" / "data")
PG = os.environ.get("EMOTUNE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
TRIVIAL = str(ROOT / "benchmarks" / "_trivial_space.py")


def _span_ms(study) -> float:
    """ms per trial from the first trial's completion to the last's.

    The first trial is left out: in a fresh worker process it also pays one-off imports (scikit-learn
    alone takes about 2 s here), which is start-up, not per-trial overhead.
    """
    import optuna

    ts = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    ends = sorted(t.datetime_complete for t in ts)
    return (ends[-1] - ends[0]).total_seconds() * 1000 / (len(ends) - 1)


def _rate(study) -> float:
    """Finished trials per minute in the steady state: while every worker is warm and busy.

    The window runs from the moment the last worker finishes its first trial (a fresh worker process
    imports scikit-learn first, about 2 s here) to the moment the first worker finishes its last one
    (after that the other runs alone, without contention). Each worker's trials finished within the
    window are counted fractionally at its edges, by linear interpolation between the worker's
    consecutive finishing times, and the workers' counts are summed. Counting whole trials instead
    makes the estimate depend on where the edges fall: up to a trial per worker out of ten or so.
    """
    import numpy as np
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ends: dict[str, list[float]] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state in states:
            ends.setdefault(t.user_attrs.get("worker", ""), []).append(t.datetime_complete.timestamp())
    times = [np.sort(v) for v in ends.values()]
    if any(len(v) < 2 for v in times):
        raise SystemExit("every worker must finish at least two trials: raise --scale-trials")
    start, end = max(v[0] for v in times), min(v[-1] for v in times)
    if end <= start:
        raise SystemExit("the workers never ran at the same time: raise --scale-trials")
    done = sum(np.interp(end, v, np.arange(len(v))) - np.interp(start, v, np.arange(len(v))) for v in times)
    return float(done) / ((end - start) / 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overhead-trials", type=int, default=60)
    ap.add_argument("--tune-trials", type=int, default=12)
    ap.add_argument("--scale-trials", type=int, default=18)
    ap.add_argument("--prune-trials", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5, help="runs of each overhead arm; the best counts")
    ap.add_argument("--scale-repeats", type=int, default=2, help="runs of each scaling arm; the best counts")
    ap.add_argument("--arms", default="abc", help="which arms to run (default abc: all)")
    args = ap.parse_args()

    import optuna
    import ray

    from emotune.features import ray_init

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ray_init(None, num_cpus=os.cpu_count() or 2)
    bench = _Bench()
    arms = {"a": _overhead_arm, "b": _scaling_arm, "c": _pruning_arm}
    rows: list[tuple[str, str, str]] = []
    last: dict[str, str] = {}
    try:
        for key, arm in arms.items():
            if key in args.arms:
                arm_rows, arm_last = arm(bench, args)
                rows += arm_rows
                last |= arm_last
    finally:
        bench.delete_studies()
        ray.shutdown()

    width = max(len(r[0]) for r in rows)
    print(f"{'arm'.ljust(width)}  {'value':>22}  notes")
    for a, v, n in rows:
        print(f"{a.ljust(width)}  {v:>22}  {n}")
    print(" ".join(f"{k}={v}" for k, v in last.items()))


Rows = list[tuple[str, str, str]]


class _Bench:
    """The benchmark's storage, feature cache and studies (deleted at the end)."""

    def __init__(self) -> None:
        from emotune.search import _storage as st

        self.url = st.normalize_url(PG)
        self.tag = uuid.uuid4().hex[:6]
        self.cache = Path(tempfile.mkdtemp(prefix="emotune-bench-cache-"))
        self.made: list[str] = []

    def name(self, prefix: str) -> str:
        """A new study name (remembered for deletion)."""
        name = f"{prefix}-{self.tag}-{len(self.made)}"
        self.made.append(name)
        return name

    def prep(self, space: str, protocol: str = "actor", folds: int = 5) -> Any:
        from emotune.search import _search

        name = self.name(f"bench-{space.rsplit('/', 1)[-1].removesuffix('.py')}-{protocol}")
        return _search.prepare(
            space, name, [DATA / "ravdess"], url=self.url, protocol=protocol, folds=folds, cache_dir=self.cache,
            progress=False,
        )  # fmt: skip

    def delete_studies(self) -> None:
        import optuna

        for name in self.made:
            try:
                optuna.delete_study(study_name=name, storage=self.url)
            except Exception:
                pass


def _overhead_arm(bench: _Bench, args: argparse.Namespace) -> tuple[Rows, dict[str, str]]:
    """(a) ms per trial of a trivial space: emotune with one worker, plain study.optimize, Ray Tune.

    Arms alternate, each run --repeats times; the best run of each counts (timing noise on a shared
    2-core machine is one-sided: other work only ever makes a run slower).
    """
    import optuna

    from emotune.search import _search

    url = bench.url
    ours_runs, plain_runs = [], []
    p = bench.prep(TRIVIAL)
    for _ in range(args.repeats):
        name = bench.name("bench-trivial")
        q = _search.Prepared(name, url, p.space, p.spec, p.data, p.trial_data, True)
        _search.create_or_check(url, name, p.spec, p.data)
        _search.run(
            q, n_trials=args.overhead_trials, workers=1, progress=False, pruner="none", sampler="random"
        )
        ours_runs.append(_span_ms(optuna.load_study(study_name=name, storage=url)))
        plain_runs.append(_plain_span_ms(bench, p.trial_data, args.overhead_trials))
    ours, base = min(ours_runs), min(plain_runs)
    tune_ms = _tune_ms(args.tune_trials)
    rows = [
        ("overhead emotune (1 worker)", f"{ours:.1f} ms/trial", f"best of {_ms(ours_runs)}"),
        ("overhead plain study.optimize", f"{base:.1f} ms/trial", f"best of {_ms(plain_runs)}"),
        (
            "overhead Ray Tune + OptunaSearch",
            f"{tune_ms:.1f} ms/trial",
            f"marginal: {2 * args.tune_trials} vs {args.tune_trials} trials",
        ),
    ]
    return rows, {"overhead_vs_optuna": f"{ours / base:.3f}", "overhead_vs_tune": f"{ours / tune_ms:.4f}"}


def _plain_span_ms(bench: _Bench, trial_data: Any, n_trials: int) -> float:
    """ms per trial of plain ``study.optimize`` with the same objective, storage and out-of-fold saving."""
    import optuna

    from emotune.search import _storage as st
    from emotune.search._objective import make_objective
    from emotune.spaces import get

    plain_name = bench.name("bench-plain")
    plain = optuna.create_study(
        study_name=plain_name,
        storage=st.make_storage(bench.url, heartbeat=True),
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
    )
    eng = st.engine(bench.url)
    objective = make_objective(
        get(TRIVIAL),
        trial_data,
        metric="uar",
        seed=0,
        save_oof=lambda n, b: st.save_blob(eng, plain_name, "oof", b, n),
    )
    plain.optimize(objective, n_trials=n_trials)
    eng.dispose()
    return _span_ms(plain)


def _scaling_arm(bench: _Bench, args: argparse.Namespace) -> tuple[Rows, dict[str, str]]:
    """(b) rf trials per minute with 1 and 2 workers, the best of --scale-repeats runs each."""
    import optuna

    from emotune.search import _search
    from emotune.spaces import get

    draft = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    # One trial repeated: the steady-state windows of the two arms cover different trials, so
    # trials of different cost would tilt the ratio (either way) by which ones fall inside.
    one = {**get("rf").suggest(draft.ask()), "n_estimators": 400}
    rates: dict[int, float] = {}
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.scale_repeats):
        for workers in (1, 2):
            p = bench.prep("rf")
            study = optuna.load_study(study_name=p.name, storage=bench.url)
            for _ in range(args.scale_trials):
                study.enqueue_trial(one)
            _search.run(p, n_trials=args.scale_trials, workers=workers, progress=False, pruner="none")
            rate = _rate(optuna.load_study(study_name=p.name, storage=bench.url))
            rates[workers] = max(rates.get(workers, 0.0), rate)
            runs[workers].append(rate)
    rows = [
        (
            f"rf trials/min, {workers} worker(s)",
            f"{rates[workers]:.1f}",
            f"{args.scale_trials} enqueued trials, 1 thread each; best of " + ", ".join(f"{r:.1f}" for r in runs[workers]),
        )
        for workers in (1, 2)
    ]  # fmt: skip
    return rows, {"scale_2w": f"{rates[2] / rates[1]:.2f}"}


def _pruning_arm(bench: _Bench, args: argparse.Namespace) -> tuple[Rows, dict[str, str]]:
    """(c) knn on the same --prune-trials params with pruning off and on: fold fits saved, best value."""
    import optuna

    from emotune.search._objective import make_objective
    from emotune.spaces import get, make_pruner

    p = bench.prep("knn", protocol="random", folds=5)
    knn = get("knn")
    draft = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    prm_list = [knn.suggest(draft.ask()) for _ in range(args.prune_trials)]
    results = {}
    for arm, pruner in (("off", "none"), ("on", "auto")):
        name = f"bench-prune-{arm}-{bench.tag}"
        bench.made.append(name)
        study = optuna.create_study(
            study_name=name, storage=bench.url, direction="maximize", pruner=make_pruner(pruner, knn, 5)
        )
        for prm in prm_list:
            study.enqueue_trial(prm)
        study.optimize(make_objective(knn, p.trial_data, metric="uar", seed=0), n_trials=len(prm_list))
        trials = study.get_trials(deepcopy=False)
        fits = sum(len(t.user_attrs.get("fold_scores", [])) for t in trials)
        results[arm] = (
            fits,
            study.best_value,
            sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        )
    rows = [
        (
            "pruning off: fold fits / best",
            f"{results['off'][0]} / {results['off'][1]:.4f}",
            f"{args.prune_trials} trials, knn, 5 folds",
        ),
        (
            "pruning on: fold fits / best",
            f"{results['on'][0]} / {results['on'][1]:.4f}",
            f"{results['on'][2]} pruned (running-mean median)",
        ),
    ]
    saved = 1 - results["on"][0] / results["off"][0]
    delta = results["on"][1] - results["off"][1]
    return rows, {"prune_saved": f"{saved:.3f}", "prune_best_delta": f"{delta:+.4f}"}


def _ms(runs: list[float]) -> str:
    return ", ".join(f"{r:.0f}" for r in runs) + " ms"


def _tune_ms(n: int) -> float:
    """Marginal ms per trial of Ray Tune + OptunaSearch on a trivial function (Ray already started).

    Runs of n and 2n trials; the difference over n leaves Tune's own per-run set-up out.
    """
    return (_tune_run(2 * n) - _tune_run(n)) * 1000 / n


def _tune_run(n: int) -> float:
    """Wall seconds of ``tuner.fit()`` for n trials, one at a time."""
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config):
        return {"score": config["x"]}

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(
                metric="score", mode="max", sampler=optuna.samplers.RandomSampler(seed=0)
            ),
            num_samples=n,
            max_concurrent_trials=1,
        ),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="emotune-tune-"), verbose=0),
    )
    t0 = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
