"""The voting room's defaults, in a module that imports nothing.

The command line reads them to build its help texts; importing them must not load scikit-learn.
"""

__all__ = [
    "DEFAULT_INNER_FOLDS",
    "DEFAULT_ITERATIONS",
    "DEFAULT_OUTER_FOLDS",
    "DEFAULT_SPACES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TOP_K",
    "DEFAULT_TRIALS",
    "DEFAULT_WORKERS",
    "VOTERS",
]

# ensemble: best trials taken from each study, and greedy selection's rounds.
DEFAULT_TOP_K = 3
DEFAULT_ITERATIONS = 50
# The voters `ensemble --voter` offers: auto chooses greedy or stacked on out-of-fold data.
VOTERS = ("auto", "greedy", "stacked")

# evaluate: the strongest recipe measured on held-out speakers (README, "Accuracy on new speakers").
DEFAULT_SPACES = ("logreg", "svm", "mlp")
DEFAULT_OUTER_FOLDS = 4
DEFAULT_INNER_FOLDS = 3
DEFAULT_TRIALS = 20
DEFAULT_TIMEOUT = 45.0
DEFAULT_WORKERS = 2
