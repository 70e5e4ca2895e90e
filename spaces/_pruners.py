"""Every pruner a study may use, and the ``--pruner`` names that choose one.

A space's own ``pruner()`` returns one of the factories below; ``make_pruner`` turns a ``--pruner``
name into a pruner for a study. What the objective reports, and so what a pruner judges:

- plain spaces (one fit per fold): after fold ``k``, the running mean of the fold scores so far, at
  step ``k``; a trial may be pruned after every fold but the last;
- iterative spaces (boosting rounds, epochs): inside fold ``k``, a validation score at steps
  ``k * MAX_STEPS + step``; they are pruned inside the first fold only.

Everything here is plain Optuna and picklable: pruners travel to Ray workers.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import optuna

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

# ``--pruner`` names. ``auto``: the space's own ``pruner()``, or ``best-median`` for a space without one.
PRUNERS: tuple[str, ...] = ("auto", "latest-median", "best-median", "wilcoxon", "hyperband", "none")
# Earlier names, still accepted: ``median`` has always been Optuna's MedianPruner.
PRUNER_ALIASES: dict[str, str] = {"median": "best-median"}


class LatestValuePercentilePruner(optuna.pruners.BasePruner):
    """Prune a trial whose latest value falls below the median (or a percentile) of finished trials there.

    Made for the objective's reports: the running mean of fold scores after fold ``k`` (plain spaces), or
    validation accuracy after each block of boosting rounds (iterative spaces). Unlike
    :class:`optuna.pruners.MedianPruner`, which judges the best value so far, it judges the current one,
    so a lucky first fold does not shield a trial whose later folds are poor; the comparison is always
    at the same step, i.e. over the same folds. :class:`optuna.pruners.WilcoxonPruner` suits many folds,
    but a one-sided signed-rank test needs 4 paired folds to reach p < 0.1 (1/2**4), so with the usual
    3-5 folds it saves one fold at most.

    Args:
        n_startup_trials: Complete trials with a value at the step needed before that step prunes.
        n_warmup_steps: Steps below this are never pruned (0: a trial may stop after its first report).
        percentile: Percentile of the finished trials' values a trial must reach (50: the median).
    """

    def __init__(
        self, *, n_startup_trials: int = 5, n_warmup_steps: int = 0, percentile: float = 50.0
    ) -> None:
        if n_startup_trials < 1:
            raise ValueError(f"n_startup_trials must be >= 1, got {n_startup_trials}")
        if n_warmup_steps < 0:
            raise ValueError(f"n_warmup_steps must be >= 0, got {n_warmup_steps}")
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be within [0, 100], got {percentile}")
        self._n_startup_trials = n_startup_trials
        self._n_warmup_steps = n_warmup_steps
        self._percentile = percentile

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        """True when the latest value is worse than the percentile of COMPLETE trials' at the same step."""
        step = trial.last_step
        if step is None or step < self._n_warmup_steps:
            return False
        value = trial.intermediate_values[step]
        if not math.isfinite(value):
            return False
        others = [
            other.intermediate_values[step]
            for other in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if step in other.intermediate_values and math.isfinite(other.intermediate_values[step])
        ]
        if len(others) < self._n_startup_trials:
            return False
        if study.direction == optuna.study.StudyDirection.MAXIMIZE:
            return value < float(np.percentile(others, self._percentile))
        return value > float(np.percentile(others, 100.0 - self._percentile))


class FirstFoldOnlyPruner(optuna.pruners.BasePruner):
    """Prune with ``inner`` on the first fold's epochs only (steps ``< max_steps``); never after.

    The search objective numbers steps ``fold * max_steps + epoch`` and also asks the pruner after
    every fold. Deep trials are pruned on the first fold's learning curve; a trial that survives it
    runs every fold, so its out-of-fold probabilities exist. Without this
    guard, successive halving's later rungs (108, 324 ... steps) would prune survivors mid-CV.
    """

    def __init__(self, inner: optuna.pruners.BasePruner, max_steps: int) -> None:
        self._inner = inner
        self._max_steps = max_steps

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step >= self._max_steps:
            return False
        return self._inner.prune(study, trial)


def median_over_folds() -> LatestValuePercentilePruner:
    """The plain spaces' pruner: stop after a fold when the running mean of fold scores is below the median.

    The median is that of the complete trials after the same fold; judged from the first fold on, once 5
    trials are complete.
    """
    return LatestValuePercentilePruner(n_startup_trials=5, n_warmup_steps=0)


def median_over_rounds() -> LatestValuePercentilePruner:
    """The boosting spaces' pruner: the first fold's validation accuracy after each block of rounds
    (step = block) against the median of complete trials after the same block.

    The first two blocks (20% of the rounds) are never judged: small-eta and DART curves start flat.
    """
    return LatestValuePercentilePruner(n_startup_trials=5, n_warmup_steps=2)


def successive_halving_over_epochs(max_steps: int) -> FirstFoldOnlyPruner:
    """The deep spaces' pruner: successive halving over the first fold's epochs.

    Rungs at ``r, 3r, 9r ...`` epochs with ``r = max_steps // 10``. Chosen over Hyperband for the study
    sizes emotune runs (tens of trials, a few workers): Hyperband spreads trials over brackets that each
    see only a handful, while successive halving compares every trial at every rung.
    ``min_early_stopping_rate=0``: the first rung is early, where a hopeless learning rate already shows.
    A trial is kept at a rung when it is in the top third of the trials that reached it (the first trial
    always is).
    """
    inner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=max(1, max_steps // 10), reduction_factor=3, min_early_stopping_rate=0
    )
    return FirstFoldOnlyPruner(inner, max_steps)


def make_pruner(name: str, space: ModuleType, n_folds: int) -> optuna.pruners.BasePruner:
    """The pruner a ``--pruner`` name stands for, for a study of ``space`` with ``n_folds`` folds.

    Args:
        name: One of :data:`PRUNERS` or :data:`PRUNER_ALIASES`. ``auto`` is the space's own
            ``pruner()``, else ``best-median``; ``latest-median`` is :func:`median_over_folds`;
            ``best-median`` is Optuna's :class:`~optuna.pruners.MedianPruner` (the best value so far
            against the median; 3 trials must have reached the step); ``wilcoxon`` and ``hyperband``
            are Optuna's; ``none`` never prunes.
        space: The space module (its ``pruner()`` and ``MAX_STEPS`` are read).
        n_folds: Folds per trial (Hyperband's maximum resource is ``MAX_STEPS * n_folds``).

    Raises:
        SpaceError: An unknown name.
    """
    name = PRUNER_ALIASES.get(name, name)
    if name == "auto":
        if hasattr(space, "pruner"):
            return space.pruner()  # type: ignore[no-any-return]
        name = "best-median"
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "latest-median":
        return median_over_folds()
    if name == "best-median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0, n_min_trials=3)
    if name == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1)
    if name == "hyperband":
        max_steps = int(getattr(space, "MAX_STEPS", 1)) * n_folds
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_steps, 3))
    from emotune.spaces._registry import SpaceError

    raise SpaceError(f"--pruner {name!r} is not one of {', '.join(PRUNERS + tuple(PRUNER_ALIASES))}")
