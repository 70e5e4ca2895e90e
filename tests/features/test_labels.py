"""Label schemes: class lists, the mapping of every emotion, and rows without a label."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from emotune.features._corpora import Row, scan
from emotune.features._errors import FeatureError
from emotune.features._labels import (
    EMOTIONS,
    SCHEMES,
    canonical_emotion,
    class_names,
    drop_reason,
    is_emotion_word,
    label_of,
)


def row(emotion: str | None, gender: str | None = "female", native: str | None = None) -> Row:
    return Row(
        path=f"/x/{emotion}.wav",
        corpus="generic",
        speaker="generic:s",
        gender=gender,
        emotion=emotion,
        native=native or emotion or "boredom",
    )


def test_schemes_are_the_designed_five() -> None:
    assert SCHEMES == ("emotion", "emotion_gender", "valence_gender", "emotion6", "corpus_native")
    assert EMOTIONS == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def test_fixed_class_lists() -> None:
    assert class_names("emotion") == list(EMOTIONS)
    assert class_names("emotion_gender") == [f"{e}_{g}" for e in EMOTIONS for g in ("male", "female")]
    assert len(class_names("emotion_gender")) == 16
    assert class_names("valence_gender") == [
        "positive_male",
        "positive_female",
        "negative_male",
        "negative_female",
        "neutral_male",
        "neutral_female",
    ]
    assert class_names("emotion6") == ["fear", "surprise", "sadness", "negative", "positive", "neutral"]


@pytest.mark.parametrize(
    ("emotion", "valence", "emotion6"),
    [
        ("neutral", "neutral", "neutral"),
        ("calm", "positive", "positive"),
        ("happy", "positive", "positive"),
        ("surprised", "positive", "surprise"),
        ("sad", "negative", "sadness"),
        ("angry", "negative", "negative"),
        ("fearful", "negative", "fear"),
        ("disgust", "negative", "negative"),
    ],
)
def test_every_emotion_maps_as_designed(emotion: str, valence: str, emotion6: str) -> None:
    for gender in ("male", "female"):
        r = row(emotion, gender)
        assert label_of(r, "emotion") == emotion
        assert label_of(r, "emotion_gender") == f"{emotion}_{gender}"
        assert label_of(r, "valence_gender") == f"{valence}_{gender}"
        assert label_of(r, "emotion6") == emotion6
        assert label_of(r, "corpus_native") == emotion
        assert all(drop_reason(r, scheme) is None for scheme in SCHEMES)


def test_every_label_is_one_of_the_scheme_classes() -> None:
    for emotion, gender, scheme in itertools.product(EMOTIONS, ("male", "female"), SCHEMES[:-1]):
        assert label_of(row(emotion, gender), scheme) in class_names(scheme)


def test_boredom_is_kept_only_under_corpus_native() -> None:
    bored = row(None, "male", native="boredom")
    assert [label_of(bored, scheme) for scheme in SCHEMES] == [None, None, None, None, "boredom"]
    assert drop_reason(bored, "emotion") == "boredom has no counterpart in 'emotion'"
    assert drop_reason(bored, "emotion6") == "boredom has no counterpart in 'emotion6'"
    assert drop_reason(bored, "corpus_native") is None


def test_unknown_gender_is_refused_by_the_gender_schemes_only() -> None:
    unknown = row("angry", gender=None)
    assert label_of(unknown, "emotion") == "angry"
    assert label_of(unknown, "emotion6") == "negative"
    for scheme in ("emotion_gender", "valence_gender"):
        assert label_of(unknown, scheme) is None
        assert drop_reason(unknown, scheme) == "gender unknown"


def test_corpus_native_classes_are_the_sorted_labels_of_the_rows() -> None:
    rows = [row("angry", native="anger"), row(None, native="boredom"), row("angry", native="angry")]
    assert class_names("corpus_native", rows) == ["anger", "angry", "boredom"]
    with pytest.raises(FeatureError, match="corpus_native"):
        class_names("corpus_native")


@pytest.mark.parametrize("call", [lambda: label_of(row("sad"), "valence"), lambda: class_names("valence")])
def test_an_unknown_scheme_names_the_valid_ones(call) -> None:
    with pytest.raises(
        FeatureError, match="unknown label scheme 'valence'; valid schemes: " + ", ".join(SCHEMES)
    ):
        call()
    with pytest.raises(FeatureError, match="valid schemes"):
        drop_reason(row("sad"), "nope")


def test_emotion_words_of_the_corpora() -> None:
    words = {
        "Anger": "angry",
        "happiness": "happy",
        "fear": "fearful",
        "Sadness": "sad",
        "ps": "surprised",
        "pleasant surprise": "surprised",
        "Pleasant-Surprised": "surprised",
        "disgust": "disgust",
        "boredom": None,
    }
    assert {word: canonical_emotion(word) for word in words} == words
    assert all(is_emotion_word(word) for word in words)
    assert not is_emotion_word("frustration") and canonical_emotion("frustration") is None


def test_real_data_under_each_scheme(data_dir: Path) -> None:
    rows = scan([data_dir]).rows
    dropped = [r for r in rows if label_of(r, "emotion") is None]
    assert len(dropped) == 15 and {r.native for r in dropped} == {"boredom"}
    assert {drop_reason(r, "emotion") for r in dropped} == {"boredom has no counterpart in 'emotion'"}
    labelled = {label_of(r, "emotion_gender") for r in rows} - {None}
    assert labelled == set(class_names("emotion_gender"))  # RAVDESS has both genders of every emotion
    assert {label_of(r, "valence_gender") for r in rows if r.corpus == "tess"} == {
        "positive_female",
        "negative_female",
        "neutral_female",
    }
    ravdess = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]
    tess_emodb = ["anger", "boredom", "fear", "happiness", "pleasant_surprise", "sadness"]
    assert class_names("corpus_native", rows) == sorted(ravdess + tess_emodb)
