"""The farm: studies, storage, Ray workers, the objective, export.

``score`` (from :mod:`emotune.features`) and ``make_pruner`` (from :mod:`emotune.spaces`) are
re-exported for callers that drive an objective by hand.

Rooms above it: :mod:`emotune.search.vote` (ensembles, model directories, predict, evaluate) and
:mod:`emotune.search.cli` (the command line). Imports flow one way: ``cli -> vote -> search (farm) ->
spaces -> features``.

Example:
    >>> from emotune.search import prepare, run
    >>> prep = prepare("knn", "my-study", ["data/ravdess"], url=url)   # doctest: +SKIP
    >>> run(prep, n_trials=20, workers=2)                               # doctest: +SKIP
"""

from emotune.features import score
from emotune.search._export import delete_study, export_best, list_studies
from emotune.search._objective import TrialData, make_objective
from emotune.search._search import Prepared, open_study, prepare, run, study_summary
from emotune.search._storage import StorageError, redact, resolve_url
from emotune.search._study import StudyData, StudyError, StudySpec
from emotune.spaces import make_pruner

__all__ = [
    "Prepared",
    "StorageError",
    "StudyData",
    "StudyError",
    "StudySpec",
    "TrialData",
    "delete_study",
    "export_best",
    "list_studies",
    "make_objective",
    "make_pruner",
    "open_study",
    "prepare",
    "redact",
    "resolve_url",
    "run",
    "score",
    "study_summary",
]
