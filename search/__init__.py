"""The farm: studies, storage, Ray workers, the objective and pruning, export.

Rooms above it: :mod:`emotune.search.vote` (ensembles, model directories, predict, evaluate) and
:mod:`emotune.search.cli` (the command line). Imports flow one way: ``cli -> vote -> search (farm) ->
spaces -> features``.

Example:
    >>> from emotune.search import prepare, run
    >>> prep = prepare("knn", "my-study", ["data/ravdess"], url=url)   # doctest: +SKIP
    >>> run(prep, n_trials=20, workers=2)                               # doctest: +SKIP
"""

from emotune.search._export import delete_study, export_best, list_studies
from emotune.search._objective import TrialData, make_objective, make_pruner, score
from emotune.search._search import Prepared, open_study, prepare, run, study_summary
from emotune.search._storage import StorageError, redact, resolve_url
from emotune.search._study import StudyData, StudyError, StudySpec

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
