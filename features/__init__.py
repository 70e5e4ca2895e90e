"""Audio -> arrays: corpus readers, label schemes, feature sets and the feature cache.

Also the basics every room shares: errors, the emotune home folder, Ray start-up, and the one
scorer (UAR, accuracy, log loss) of the objective, the torch classifier and the voters.

Nothing here imports :mod:`emotune.search`. Heavy libraries (librosa, ray) are imported inside the
functions that need them, so that importing this package is cheap.
"""

from __future__ import annotations

from emotune.features._audio import read_audio
from emotune.features._cache import BuildReport, build, file_hashes, prune
from emotune.features._corpora import Row, ScanResult, scan
from emotune.features._errors import AudioError, EmotuneError, FeatureError
from emotune.features._home import default_cache_dir, emotune_home
from emotune.features._labels import SCHEMES, class_names, label_of
from emotune.features._load import Dataset, load, speaker_normalize
from emotune.features._metrics import METRICS, accuracy, balanced_accuracy, log_loss, score, scores
from emotune.features._ray import numba_env, ray_init
from emotune.features._sets import (
    AUDIO_SETS,
    FEATURE_SETS,
    default_params,
    extract,
    extract_file,
    feature_columns,
    feature_params,
)
from emotune.features._synth import synthesize

__all__ = [
    "AUDIO_SETS",
    "FEATURE_SETS",
    "METRICS",
    "SCHEMES",
    "AudioError",
    "BuildReport",
    "Dataset",
    "EmotuneError",
    "FeatureError",
    "Row",
    "ScanResult",
    "accuracy",
    "balanced_accuracy",
    "build",
    "class_names",
    "default_cache_dir",
    "default_params",
    "emotune_home",
    "extract",
    "extract_file",
    "feature_columns",
    "feature_params",
    "file_hashes",
    "label_of",
    "load",
    "log_loss",
    "numba_env",
    "prune",
    "ray_init",
    "read_audio",
    "scan",
    "score",
    "scores",
    "speaker_normalize",
    "synthesize",
]
