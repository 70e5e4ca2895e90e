"""Voting and prediction: ensembles of the farm's best trials, model directories, predict, evaluate.

Reads studies through :mod:`emotune.search` (the farm) and features through :mod:`emotune.features`;
never imports the command line (:mod:`emotune.search.cli`).
"""

from emotune.search.vote._ensemble import EnsembleError, EnsembleResult, build_ensemble, fit_and_score
from emotune.search.vote._evaluate import EvaluateError, EvaluateResult, evaluate, outer_folds
from emotune.search.vote._modeldir import load as load_model_dir
from emotune.search.vote._predict import predict
from emotune.search.vote._stack import VOTERS, StackedVoter, choose_voter
from emotune.search.vote._voter import SoftVoter, blend, greedy_selection

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
