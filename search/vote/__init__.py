"""Voting and prediction: ensembles of the farm's best trials, model directories, predict, evaluate.

Reads studies through :mod:`emotune.search` (the farm) and features through :mod:`emotune.features`;
never imports the command line (:mod:`emotune.search.cli`). The names below load their module (and
scikit-learn) on first use, so that the command line can read :mod:`._defaults` without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emotune.search.vote._ensemble import EnsembleError, EnsembleResult, build_ensemble, fit_and_score
    from emotune.search.vote._evaluate import EvaluateError, EvaluateResult, evaluate, outer_folds
    from emotune.search.vote._modeldir import load as load_model_dir
    from emotune.search.vote._predict import predict
    from emotune.search.vote._stack import VOTERS, StackedVoter, choose_voter
    from emotune.search.vote._voter import SoftVoter, blend, greedy_selection

# Public name -> (module, attribute).
_LAZY = {
    "EnsembleError": ("_ensemble", "EnsembleError"),
    "EnsembleResult": ("_ensemble", "EnsembleResult"),
    "build_ensemble": ("_ensemble", "build_ensemble"),
    "fit_and_score": ("_ensemble", "fit_and_score"),
    "EvaluateError": ("_evaluate", "EvaluateError"),
    "EvaluateResult": ("_evaluate", "EvaluateResult"),
    "evaluate": ("_evaluate", "evaluate"),
    "outer_folds": ("_evaluate", "outer_folds"),
    "load_model_dir": ("_modeldir", "load"),
    "predict": ("_predict", "predict"),
    "VOTERS": ("_defaults", "VOTERS"),
    "StackedVoter": ("_stack", "StackedVoter"),
    "choose_voter": ("_stack", "choose_voter"),
    "SoftVoter": ("_voter", "SoftVoter"),
    "blend": ("_voter", "blend"),
    "greedy_selection": ("_voter", "greedy_selection"),
}

__all__ = [
    "VOTERS",
    "EnsembleError",
    "EnsembleResult",
    "EvaluateError",
    "EvaluateResult",
    "SoftVoter",
    "StackedVoter",
    "blend",
    "build_ensemble",
    "choose_voter",
    "evaluate",
    "fit_and_score",
    "greedy_selection",
    "load_model_dir",
    "outer_folds",
    "predict",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
