"""The pruners of emotune.spaces._pruners and the ``--pruner`` names that choose them."""

from __future__ import annotations

import types
from typing import Any

import optuna
import pytest

from emotune.spaces import (
    PRUNER_ALIASES,
    PRUNERS,
    FirstFoldOnlyPruner,
    LatestValuePercentilePruner,
    SpaceError,
    get,
    make_pruner,
    median_over_folds,
    median_over_rounds,
    successive_halving_over_epochs,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(reports: list[list[float]], pruner: optuna.pruners.BasePruner, direction: Any = "maximize") -> Any:
    """A study whose finished trials reported ``reports[i][step]`` (as the objective does: running means)."""
    study = optuna.create_study(direction=direction, pruner=pruner)
    for values in reports:
        trial = study.ask()
        for step, value in enumerate(values):
            trial.report(value, step)
        study.tell(trial, values[-1])
    return study


# Running means after folds 0, 1, 2 of five finished trials; the medians are 0.70 and 0.60 at steps 0 and 1.
FINISHED = [[0.60 + 0.05 * i, 0.50 + 0.05 * i, 0.50 + 0.05 * i] for i in range(5)]


def test_latest_value_percentile_pruner_judges_the_current_running_mean() -> None:
    study = _study(FINISHED, LatestValuePercentilePruner(n_startup_trials=5))
    trial = study.ask()
    trial.report(0.90, 0)  # a lucky first fold
    assert not trial.should_prune()
    trial.report(0.55, 1)  # then a poor one: the running mean is below the median at step 1
    assert trial.should_prune()

    # MedianPruner judges the best value so far (0.90), so the lucky fold shields the trial.
    median = _study(FINISHED, optuna.pruners.MedianPruner(n_startup_trials=5))
    trial = median.ask()
    trial.report(0.90, 0)
    trial.report(0.55, 1)
    assert not trial.should_prune()


def test_latest_value_percentile_pruner_waits_for_startup_trials_and_warmup() -> None:
    trial = _study(FINISHED[:4], LatestValuePercentilePruner(n_startup_trials=5)).ask()
    trial.report(0.0, 0)
    assert not trial.should_prune(), "pruned before n_startup_trials finished"

    trial = _study(FINISHED, LatestValuePercentilePruner(n_startup_trials=5, n_warmup_steps=1)).ask()
    trial.report(0.0, 0)
    assert not trial.should_prune(), "pruned during warm-up"
    trial.report(0.0, 1)
    assert trial.should_prune()


def test_latest_value_percentile_pruner_minimize_and_arguments() -> None:
    study = _study(
        [[1.0], [2.0], [3.0]], LatestValuePercentilePruner(n_startup_trials=2), direction="minimize"
    )
    worse, better = study.ask(), study.ask()
    worse.report(2.5, 0)
    better.report(1.5, 0)
    assert worse.should_prune() and not better.should_prune()
    for bad in ({"n_startup_trials": 0}, {"n_warmup_steps": -1}, {"percentile": 101}):
        with pytest.raises(ValueError):
            LatestValuePercentilePruner(**bad)


def test_first_fold_only_pruner_never_prunes_after_the_first_fold() -> None:
    study = _study(
        FINISHED, FirstFoldOnlyPruner(LatestValuePercentilePruner(n_startup_trials=5), max_steps=3)
    )
    in_fold0, later = study.ask(), study.ask()
    in_fold0.report(0.0, 2)
    later.report(0.0, 3)  # step 3 = the second fold's first step
    assert in_fold0.should_prune()
    assert not later.should_prune()


def test_the_spaces_pruners_are_built_from_these() -> None:
    assert isinstance(get("knn").pruner(), LatestValuePercentilePruner)
    assert isinstance(get("xgb").pruner(), LatestValuePercentilePruner)
    deep = get("cnn1d_mfcc").pruner()
    assert isinstance(deep, FirstFoldOnlyPruner)
    assert isinstance(deep._inner, optuna.pruners.SuccessiveHalvingPruner)
    assert median_over_rounds()._n_warmup_steps == 2 and median_over_folds()._n_warmup_steps == 0
    assert successive_halving_over_epochs(40)._max_steps == 40


def _space(**attrs: Any) -> types.ModuleType:
    module = types.ModuleType("a_space")
    module.__dict__.update(attrs)
    return module


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("latest-median", LatestValuePercentilePruner),
        ("best-median", optuna.pruners.MedianPruner),
        ("median", optuna.pruners.MedianPruner),  # the earlier name of best-median
        ("wilcoxon", optuna.pruners.WilcoxonPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_make_pruner_by_name(name: str, kind: type) -> None:
    assert isinstance(make_pruner(name, _space(), 5), kind)


def test_make_pruner_auto_is_the_spaces_own_else_best_median() -> None:
    own = optuna.pruners.ThresholdPruner(lower=0.1)
    assert make_pruner("auto", _space(pruner=lambda: own), 5) is own
    assert isinstance(make_pruner("auto", _space(), 5), optuna.pruners.MedianPruner)


def test_make_pruner_names_every_choice_when_refusing() -> None:
    assert set(PRUNER_ALIASES.values()) <= set(PRUNERS)
    with pytest.raises(SpaceError, match="latest-median.*median"):
        make_pruner("mediam", _space(), 5)
