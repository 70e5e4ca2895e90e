"""Accuracy on held-out speakers: `emotune evaluate` defaults beside an untuned baseline and a published recipe.

Nested leave-two-actors-out on the eight RAVDESS dev actors (../shared/data/ravdess, actors 01-04, plus
../shared/devset/ravdess, actors 05-08; 480 files): four outer folds, each holding out one male and one
female actor, the same folds for every arm, in one run:

- ``farm``: ``emotune evaluate`` with its defaults, plain and speaker-normalised (its voter's test UAR);
- ``svm`` / ``svm_sn``: the baseline, exactly ``make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0,
  gamma="scale"))`` fit on the training actors' cached ``classic_stats``, plain and z-scored per speaker
  (each speaker with its own files, as the farm's normalisation);
- ``seed``: the published 180-means recipe (the arm printed as ``seed``): the 180 ``classic`` means unscaled, its tuned MLP (relu, lbfgs,
  1,283 units, alpha 0.385) and XGBoost (gbtree, depth 7, eta 9.3e-6, lossguide, ...), soft vote 1:1.

Prints a table per fold, then one line: ``uar uar_sn seed svm svm_sn vs_svm vs_svm_sn won won_sn minutes``
(``won``: folds where the farm's voter beats the baseline). The farm's time is the whole ``evaluate`` call
(feature loading, Ray start-up, every search and ensemble, both normalisations).

    .venv/bin/python benchmarks/accuracy.py [--storage URL] [--data DIR ...] [--outer-folds 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_DATA = [SHARED / "data" / "ravdess", SHARED / "devset" / "ravdess"]
DEFAULT_PG = os.environ.get("EMOTUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".emotune" / "numba"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def baseline() -> object:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, gamma="scale"))


def seed_recipe() -> object:
    """The published 180-means recipe's voter: its tuned MLP and XGBoost on the unscaled 180 means, soft vote 1:1."""
    from sklearn.ensemble import VotingClassifier
    from sklearn.neural_network import MLPClassifier
    from xgboost import XGBClassifier

    mlp = MLPClassifier(
        hidden_layer_sizes=(1283,),
        activation="relu",
        solver="lbfgs",
        alpha=0.3849486,
        batch_size=163,
        learning_rate="constant",
        max_iter=1000,
        random_state=0,
    )
    xgb = XGBClassifier(
        booster="gbtree",
        reg_lambda=7.2e-8,
        reg_alpha=2.2e-5,
        max_depth=7,
        learning_rate=9.3e-6,
        gamma=1.8e-5,
        grow_policy="lossguide",
        tree_method="hist",
        n_jobs=1,
        random_state=0,
    )
    return VotingClassifier([("mlp", mlp), ("xgb", xgb)], voting="soft", weights=[1, 1])


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=[str(d) for d in DEFAULT_DATA])
    ap.add_argument("--storage", default=DEFAULT_PG)
    ap.add_argument("--outer-folds", type=int, default=4)
    ap.add_argument("--cache", default=None, help="feature cache (default: the emotune home's)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from sklearn.preprocessing import LabelEncoder

    from emotune.features import build, load, scan, speaker_normalize
    from emotune.search._storage import resolve_url
    from emotune.search.vote._evaluate import evaluate

    t0 = time.perf_counter()
    rows = scan(args.data).rows
    build(rows, sets=["classic", "classic_stats"], cache_dir=args.cache, progress=False)
    stats = load(rows, "classic_stats", scheme="emotion", cache_dir=args.cache)
    classic = load(rows, "classic", scheme="emotion", cache_dir=args.cache)
    assert stats.hashes == classic.hashes
    y, groups = stats.y, stats.groups
    X_stats = stats.X.astype(np.float64)
    X_stats_sn = speaker_normalize(X_stats, groups)
    X_classic = classic.X.astype(np.float64)
    codes = LabelEncoder().fit(y)

    print(
        f"farm: emotune evaluate defaults on {len(y)} files of {len(set(groups))} speakers ...",
        file=sys.stderr,
    )
    t_farm = time.perf_counter()
    result = evaluate(args.data, url=resolve_url(args.storage), outer=args.outer_folds, cache_dir=args.cache)
    farm_minutes = (time.perf_counter() - t_farm) / 60

    table = []
    for f in result.folds:
        corpus = rows[0].corpus
        test = np.isin(groups, [f"{corpus}:{s}" if ":" not in s else s for s in f.test_speakers])
        if not test.any():
            test = np.isin(groups, f.test_speakers)
        train = ~test
        arm: dict[str, float] = {}
        for name, X in (("svm", X_stats), ("svm_sn", X_stats_sn)):
            model = baseline().fit(X[train], y[train])
            arm[name] = uar(y[test], model.predict(X[test]))
        seed = seed_recipe().fit(X_classic[train], codes.transform(y[train]))
        arm["seed"] = uar(codes.transform(y[test]), seed.predict(X_classic[test]))
        for r in f.rows:
            if r["model"] == "voter":
                arm["farm_sn" if r["speaker_norm"] else "farm"] = r["test_uar"]
                arm["kind_sn" if r["speaker_norm"] else "kind"] = r["voter_kind"]
        table.append((f.fold, ",".join(f.test_speakers), arm))

    head = f"{'fold':>4}  {'test speakers':<14} {'seed':>6} {'svm':>6} {'farm':>6} {'svm_sn':>7} {'farm_sn':>8}  voters"
    print(head)
    print("-" * len(head))
    for fold, speakers, a in table:
        print(
            f"{fold:>4}  {speakers:<14} {a['seed']:6.3f} {a['svm']:6.3f} {a['farm']:6.3f} {a['svm_sn']:7.3f} "
            f"{a['farm_sn']:8.3f}  {a['kind']}/{a['kind_sn']}"
        )

    def col(key: str) -> np.ndarray:
        return np.array([a[key] for _, _, a in table])

    for key in ("seed", "svm", "farm", "svm_sn", "farm_sn"):
        print(f"{key:>8}: {col(key).mean():.3f} ± {col(key).std():.3f}")
    print(f"minutes: farm {farm_minutes:.1f}, all {(time.perf_counter() - t0) / 60:.1f}")
    won = int((col("farm") > col("svm")).sum())
    won_sn = int((col("farm_sn") > col("svm_sn")).sum())
    print(
        f"uar={col('farm').mean():.3f} uar_sn={col('farm_sn').mean():.3f} seed={col('seed').mean():.3f} "
        f"svm={col('svm').mean():.3f} svm_sn={col('svm_sn').mean():.3f} "
        f"vs_svm={col('farm').mean() - col('svm').mean():+.3f} vs_svm_sn={col('farm_sn').mean() - col('svm_sn').mean():+.3f} "
        f"won={won}/{len(table)} won_sn={won_sn}/{len(table)} minutes={farm_minutes:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
