"""Label schemes: how a corpus row becomes a class label for one prediction target.

Every corpus reader maps its own labels onto the eight canonical :data:`EMOTIONS` (RAVDESS's set).
The schemes derive their classes from that emotion and the speaker's gender, except ``corpus_native``,
which keeps each corpus's own, unmapped label. A row without a label under a scheme (EmoDB boredom
under ``emotion``, an unknown gender under ``emotion_gender``) gets ``None`` from :func:`label_of`,
and :func:`drop_reason` says why, for the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from emotune.features._errors import FeatureError

if TYPE_CHECKING:
    from emotune.features._corpora import Row

EMOTIONS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
GENDERS: tuple[str, ...] = ("male", "female")
SCHEMES: tuple[str, ...] = ("emotion", "emotion_gender", "valence_gender", "emotion6", "corpus_native")

# Emotion words of the supported corpora and common folder names, normalised (lower case, "_" for
# spaces and hyphens), mapped onto the canonical emotions. None: a known emotion with no counterpart.
_EMOTION_WORDS: dict[str, str | None] = {
    **{name: name for name in EMOTIONS},
    "anger": "angry",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "fear": "fearful",
    "disgusted": "disgust",
    "surprise": "surprised",
    "ps": "surprised",
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
    "boredom": None,
    "bored": None,
}

_VALENCE: dict[str, str] = {
    "happy": "positive",
    "calm": "positive",
    "surprised": "positive",
    "sad": "negative",
    "angry": "negative",
    "fearful": "negative",
    "disgust": "negative",
    "neutral": "neutral",
}
_VALENCES: tuple[str, ...] = ("positive", "negative", "neutral")

_EMOTION6: dict[str, str] = {
    "fearful": "fear",
    "surprised": "surprise",
    "sad": "sadness",
    "angry": "negative",
    "disgust": "negative",
    "happy": "positive",
    "calm": "positive",
    "neutral": "neutral",
}
_EMOTION6_CLASSES: tuple[str, ...] = ("fear", "surprise", "sadness", "negative", "positive", "neutral")

_FIXED_CLASSES: dict[str, tuple[str, ...]] = {
    "emotion": EMOTIONS,
    "emotion_gender": tuple(f"{e}_{g}" for e in EMOTIONS for g in GENDERS),
    "valence_gender": tuple(f"{v}_{g}" for v in _VALENCES for g in GENDERS),
    "emotion6": _EMOTION6_CLASSES,
}
_GENDERED = frozenset({"emotion_gender", "valence_gender"})


def _normalise(word: str) -> str:
    return word.strip().lower().replace(" ", "_").replace("-", "_")


def is_emotion_word(word: str) -> bool:
    """Whether ``word`` names an emotion of a supported corpus (``"Anger"``, ``"ps"``, ``"boredom"``)."""
    return _normalise(word) in _EMOTION_WORDS


def canonical_emotion(word: str) -> str | None:
    """Map an emotion word onto the canonical 8-class name; ``None`` when it has no counterpart.

    Examples:
        >>> canonical_emotion("Anger"), canonical_emotion("ps"), canonical_emotion("boredom")
        ('angry', 'surprised', None)
    """
    return _EMOTION_WORDS.get(_normalise(word))


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise FeatureError(f"unknown label scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)}")


def label_of(row: Row, scheme: str) -> str | None:
    """The class of ``row`` under ``scheme``, or ``None`` when the row has none (see :func:`drop_reason`).

    Args:
        row: A corpus row from :func:`emotune.features.scan`.
        scheme: One of :data:`SCHEMES`.

    Raises:
        FeatureError: ``scheme`` is not one of :data:`SCHEMES`.
    """
    _check_scheme(scheme)
    if scheme == "corpus_native":
        return row.native
    emotion = row.emotion
    if emotion is None:
        return None
    if scheme == "emotion":
        return emotion
    if scheme == "emotion6":
        return _EMOTION6[emotion]
    if row.gender is None:
        return None
    if scheme == "emotion_gender":
        return f"{emotion}_{row.gender}"
    return f"{_VALENCE[emotion]}_{row.gender}"


def drop_reason(row: Row, scheme: str) -> str | None:
    """Why ``row`` has no label under ``scheme`` (one short phrase), or ``None`` when it has one.

    Examples: ``"boredom has no counterpart in 'emotion'"``, ``"gender unknown"``.

    Raises:
        FeatureError: ``scheme`` is not one of :data:`SCHEMES`.
    """
    _check_scheme(scheme)
    if scheme == "corpus_native":
        return None
    if row.emotion is None:
        return f"{row.native} has no counterpart in {scheme!r}"
    if scheme in _GENDERED and row.gender is None:
        return "gender unknown"
    return None


def class_names(scheme: str, rows: Sequence[Row] | None = None) -> list[str]:
    """The classes of ``scheme`` in their canonical order.

    The fixed schemes always list every class (``emotion``: 8, ``emotion_gender``: 16,
    ``valence_gender``: 6, ``emotion6``: 6), whatever the rows hold. ``corpus_native`` has no fixed
    classes: it lists the sorted native labels of ``rows``.

    Args:
        scheme: One of :data:`SCHEMES`.
        rows: The rows whose native labels make the ``corpus_native`` classes (ignored otherwise).

    Raises:
        FeatureError: ``scheme`` is unknown, or it is ``corpus_native`` and no rows are given.
    """
    _check_scheme(scheme)
    if scheme != "corpus_native":
        return list(_FIXED_CLASSES[scheme])
    if rows is None:
        raise FeatureError("label scheme 'corpus_native' takes its classes from the data: pass the rows")
    return sorted({row.native for row in rows})
