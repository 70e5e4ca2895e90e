"""Corpus readers: labels from each corpus's own file naming, checked against the real data's index."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest

from emotune.features._corpora import AUDIO_EXTENSIONS, CORPORA, Row, ScanResult, scan
from emotune.features._errors import FeatureError
from emotune.features._labels import drop_reason, label_of

# The index's emotion names -> the canonical 8-class emotion (None: no counterpart), written out
# here rather than taken from the code under test.
INDEX_TO_EMOTION: dict[str, str | None] = {
    "neutral": "neutral",
    "calm": "calm",
    "happy": "happy",
    "happiness": "happy",
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "fear": "fearful",
    "fearful": "fearful",
    "disgust": "disgust",
    "surprised": "surprised",
    "pleasant_surprise": "surprised",
    "ps": "surprised",
    "boredom": None,
}
INDEX_GENDERS = {"M": "male", "F": "female"}


def touch(root: Path, *names: str, text: str = "") -> list[Path]:
    """Create empty files (names only matter to the readers) under ``root``."""
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


def by_name(result: ScanResult) -> dict[str, Row]:
    return {Path(row.path).name: row for row in result.rows}


@pytest.fixture(scope="module")
def index(data_dir: Path) -> list[dict[str, str]]:
    with open(data_dir / "index.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def real(data_dir: Path) -> ScanResult:
    return scan([data_dir])


# --- the real data ---------------------------------------------------------------------------------


def test_every_indexed_file_gets_the_labels_of_the_index(data_dir: Path, index, real: ScanResult) -> None:
    rows = {row.path: row for row in real.rows}
    assert len(index) == 489
    wrong = []
    for entry in index:
        row = rows.get(os.path.abspath(data_dir / entry["path"]))
        if row is None:
            wrong.append(f"{entry['path']}: not found")
            continue
        got = (row.corpus, row.speaker, row.gender, row.emotion, row.native, row.intensity)
        want = (
            entry["corpus"],
            f"{entry['corpus']}:{entry['speaker']}",
            INDEX_GENDERS[entry["gender"]],
            INDEX_TO_EMOTION[entry["emotion"]],
            entry["emotion"],
            entry["intensity"] or None,
        )
        if got != want:
            wrong.append(f"{entry['path']}: got {got}, index says {want}")
    assert not wrong, "\n".join(wrong[:20])


def test_the_data_folder_yields_all_three_corpora_and_nothing_unparsed(real: ScanResult) -> None:
    assert real.corpora == {"ravdess": 240, "tess": 142, "emodb": 107}
    assert len(real.rows) == 489
    assert real.unparsed == []
    paths = [row.path for row in real.rows]
    assert paths == sorted(set(paths))
    assert all(os.path.isabs(path) for path in paths)


def test_ravdess_rows_carry_all_name_fields(real: ScanResult) -> None:
    rows = {str(Path(*Path(row.path).parts[-2:])): row for row in real.rows if row.corpus == "ravdess"}
    calm = rows["Actor_01/03-01-02-01-01-02-01.wav"]
    assert (calm.emotion, calm.intensity, calm.statement, calm.channel) == (
        "calm",
        "normal",
        "kids",
        "speech",
    )
    assert (calm.speaker, calm.gender) == ("ravdess:01", "male")
    surprised = rows["Actor_04/03-01-08-02-02-01-04.wav"]
    assert (surprised.emotion, surprised.intensity, surprised.statement) == ("surprised", "strong", "dogs")
    assert (surprised.speaker, surprised.gender) == ("ravdess:04", "female")


def test_scanning_is_deterministic(data_dir: Path, real: ScanResult) -> None:
    again = scan([str(data_dir / "tess"), data_dir / "ravdess", data_dir / "emodb", data_dir])
    assert again == real  # overlapping paths give each file once, in the same order


def test_a_single_path_is_accepted(data_dir: Path) -> None:
    assert len(scan(data_dir / "emodb").rows) == 107


# --- RAVDESS ---------------------------------------------------------------------------------------


def test_ravdess_flat_layout_and_song(tmp_path: Path) -> None:
    touch(tmp_path, "03-02-06-02-02-01-13.wav", "03-01-01-01-01-01-24.wav", "03-01-07-02-03-02-08.WAV")
    rows = by_name(scan([tmp_path]))
    song = rows["03-02-06-02-02-01-13.wav"]
    assert song == Row(
        path=str(tmp_path / "03-02-06-02-02-01-13.wav"),
        corpus="ravdess",
        speaker="ravdess:13",
        gender="male",
        emotion="fearful",
        native="fearful",
        intensity="strong",
        statement="dogs",
        channel="song",
    )
    assert rows["03-01-01-01-01-01-24.wav"].gender == "female"
    assert rows["03-01-07-02-03-02-08.WAV"].statement == "03"  # unknown statement codes are kept as is


def test_ravdess_names_with_invalid_codes_are_unparsed(tmp_path: Path) -> None:
    touch(tmp_path, "03-01-09-01-01-01-01.wav", "03-03-01-01-01-01-01.wav", "03-01-01-03-01-01-01.wav")
    touch(tmp_path, "03-01-01-01-01-01-00.wav", "04-01-01-01-01-01-01.wav", "03-01-01-01-01-01.wav")
    result = scan([tmp_path])
    assert result.rows == []
    reasons = {Path(path).name: reason for path, reason in result.unparsed}
    assert "emotion 09" in reasons["03-01-09-01-01-01-01.wav"]
    assert "vocal channel 03" in reasons["03-03-01-01-01-01-01.wav"]
    assert "intensity 03" in reasons["03-01-01-03-01-01-01.wav"]
    assert "actor 00" in reasons["03-01-01-01-01-01-00.wav"]
    assert "modality 04" in reasons["04-01-01-01-01-01-01.wav"]
    assert "no known corpus" in reasons["03-01-01-01-01-01.wav"]


def test_scanning_a_full_size_corpus_takes_milliseconds(tmp_path: Path) -> None:
    names = [
        f"Actor_{actor:02d}/03-01-{emotion:02d}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}.wav"
        for actor in range(1, 25)
        for emotion in range(1, 9)
        for intensity in ((1,) if emotion == 1 else (1, 2))
        for statement in (1, 2)
        for repetition in (1, 2)
    ]
    touch(tmp_path, *names)
    started = time.process_time()  # CPU time: other jobs on the machine do not count
    result = scan([tmp_path])
    elapsed = time.process_time() - started
    assert len(result.rows) == 1440 and not result.unparsed
    assert len({row.speaker for row in result.rows}) == 24
    # ~10 ms; reading every file, or comparing names pairwise, costs far more than 0.5 s of CPU
    assert elapsed < 0.5, f"scanning 1,440 files took {elapsed:.3f} s of CPU"


# --- TESS ------------------------------------------------------------------------------------------


def test_tess_folder_cases_pleasant_surprise_and_the_oa_typo(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "OAF_Fear/OAF_back_fear.wav",
        "YAF_pleasant_surprised/YAF_bath_ps.wav",
        "OAF_Pleasant_surprise/OAF_bean_ps.wav",
        "OAF_neutral/OA_bite_neutral.wav",
        "yaf_SAD/YAF_dog_sad.wav",
    )
    result = scan([tmp_path])
    assert not result.unparsed
    rows = by_name(result)
    got = {name: (row.speaker, row.emotion, row.native, row.statement) for name, row in rows.items()}
    assert got == {
        "OAF_back_fear.wav": ("tess:OAF", "fearful", "fear", "back"),
        "YAF_bath_ps.wav": ("tess:YAF", "surprised", "pleasant_surprise", "bath"),
        "OAF_bean_ps.wav": ("tess:OAF", "surprised", "pleasant_surprise", "bean"),
        "OA_bite_neutral.wav": ("tess:OAF", "neutral", "neutral", "bite"),
        "YAF_dog_sad.wav": ("tess:YAF", "sad", "sad", "dog"),
    }
    assert {row.gender for row in rows.values()} == {"female"}
    assert {row.corpus for row in rows.values()} == {"tess"}


def test_tess_names_with_an_unknown_emotion_are_unparsed(tmp_path: Path) -> None:
    touch(tmp_path, "YAF_fear/YAF_back_scared.wav")
    result = scan([tmp_path])
    assert result.rows == []
    assert "TESS name with emotion 'scared'" in result.unparsed[0][1]


# --- SAVEE -----------------------------------------------------------------------------------------


def test_savee_speaker_folders_and_flat_names(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "AudioData/DC/a01.wav",
        "AudioData/JE/sa03.wav",
        "AudioData/JK/su15.wav",
        "AudioData/KL/n30.wav",
    )
    touch(tmp_path, "flat/DC_h05.wav", "flat/KL_f02.wav", "flat/JE_d11.wav")
    result = scan([tmp_path])
    assert not result.unparsed
    rows = by_name(result)
    got = {name: (row.speaker, row.emotion, row.native) for name, row in rows.items()}
    assert got == {
        "a01.wav": ("savee:DC", "angry", "anger"),
        "sa03.wav": ("savee:JE", "sad", "sadness"),
        "su15.wav": ("savee:JK", "surprised", "surprise"),
        "n30.wav": ("savee:KL", "neutral", "neutral"),
        "DC_h05.wav": ("savee:DC", "happy", "happiness"),
        "KL_f02.wav": ("savee:KL", "fearful", "fear"),
        "JE_d11.wav": ("savee:JE", "disgust", "disgust"),
    }
    assert {(row.corpus, row.gender) for row in rows.values()} == {("savee", "male")}


def test_savee_codes_outside_a_speaker_folder_are_unparsed(tmp_path: Path) -> None:
    touch(tmp_path, "XY/a01.wav", "DC/x01.wav", "AB_a01.wav")
    result = scan([tmp_path])
    assert result.rows == []
    assert len(result.unparsed) == 3


# --- EmoDB -----------------------------------------------------------------------------------------


def test_emodb_speakers_genders_and_boredom(tmp_path: Path) -> None:
    names = [
        "03a01Wa",
        "10b02Ab",
        "11a04Nc",
        "12b09Ed",
        "15a05Fb",
        "08a02Tc",
        "09b03Lb",
        "13a07Wa",
        "14b01Aa",
    ]
    touch(tmp_path, *(f"wav/{name}.wav" for name in names + ["16a01Ea"]))
    rows = by_name(scan([tmp_path]))
    genders = {name[:2]: rows[f"{name}.wav"].gender for name in names}
    assert genders == {
        "03": "male",
        "10": "male",
        "11": "male",
        "12": "male",
        "15": "male",
        "08": "female",
        "09": "female",
        "13": "female",
        "14": "female",
    }
    bored = rows["09b03Lb.wav"]
    assert (bored.emotion, bored.native, bored.speaker, bored.statement) == (
        None,
        "boredom",
        "emodb:09",
        "b03",
    )
    disgust = rows["16a01Ea.wav"]
    assert (disgust.emotion, disgust.native, disgust.gender) == ("disgust", "disgust", "female")


def test_emodb_names_with_unknown_speakers_or_letters_are_unparsed(tmp_path: Path) -> None:
    touch(tmp_path, "05a01Wa.wav", "03a01Xa.wav")
    result = scan([tmp_path])
    assert result.rows == []
    reasons = {Path(path).name: reason for path, reason in result.unparsed}
    assert "speaker 05" in reasons["05a01Wa.wav"]
    assert "emotion letter X" in reasons["03a01Xa.wav"]


# --- CREMA-D ---------------------------------------------------------------------------------------

DEMOGRAPHICS = (
    "ActorID,Age,Sex,Race,Ethnicity\n"
    "1001,51,Male,Caucasian,Not Hispanic\n"
    "1002,21,Female,Caucasian,Not Hispanic\n"
)


@pytest.mark.parametrize("csv_at", ["CREMA-D", "CREMA-D/AudioWAV"])
def test_cremad_genders_come_from_video_demographics(tmp_path: Path, csv_at: str) -> None:
    touch(tmp_path, "CREMA-D/AudioWAV/1001_DFA_ANG_XX.wav", "CREMA-D/AudioWAV/1002_IEO_HAP_HI.wav")
    touch(tmp_path, "CREMA-D/AudioWAV/1003_TIE_SAD_LO.wav")
    touch(tmp_path, f"{csv_at}/VideoDemographics.csv", text=DEMOGRAPHICS)
    result = scan([tmp_path])
    assert not result.unparsed
    rows = by_name(result)
    anger = rows["1001_DFA_ANG_XX.wav"]
    assert (anger.corpus, anger.speaker, anger.gender) == ("cremad", "cremad:1001", "male")
    assert (anger.emotion, anger.native, anger.intensity, anger.statement) == ("angry", "anger", None, "DFA")
    happy = rows["1002_IEO_HAP_HI.wav"]
    assert (happy.gender, happy.emotion, happy.native, happy.intensity) == (
        "female",
        "happy",
        "happy",
        "high",
    )
    assert rows["1003_TIE_SAD_LO.wav"].gender is None  # not in the demographics file


def test_cremad_without_demographics_has_unknown_genders(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "AudioWAV/1001_DFA_FEA_MD.wav",
        "AudioWAV/1091_WSI_NEU_XX.wav",
        "AudioWAV/1040_ITS_DIS_XX.wav",
    )
    rows = by_name(scan([tmp_path]))
    assert {row.gender for row in rows.values()} == {None}
    fear = rows["1001_DFA_FEA_MD.wav"]
    assert (fear.emotion, fear.native, fear.intensity) == ("fearful", "fear", "medium")
    assert rows["1040_ITS_DIS_XX.wav"].emotion == "disgust"
    # the gender schemes refuse these rows, and say why
    assert label_of(fear, "emotion") == "fearful"
    assert label_of(fear, "emotion_gender") is None and label_of(fear, "valence_gender") is None
    assert drop_reason(fear, "emotion_gender") == "gender unknown"


def test_cremad_demographics_without_a_sex_column_is_a_one_line_error(tmp_path: Path) -> None:
    touch(tmp_path, "1001_DFA_ANG_XX.wav")
    touch(tmp_path, "VideoDemographics.csv", text="ActorID,Age\n1001,51\n")
    with pytest.raises(FeatureError, match=r"VideoDemographics\.csv: missing column\(s\) Sex"):
        scan([tmp_path])


def test_cremad_names_with_unknown_emotions_are_unparsed(tmp_path: Path) -> None:
    touch(tmp_path, "1001_DFA_SUR_XX.wav", "1001_DFA_ANG_ZZ.wav")
    result = scan([tmp_path])
    assert result.rows == []
    reasons = {Path(path).name: reason for path, reason in result.unparsed}
    assert "emotion SUR" in reasons["1001_DFA_SUR_XX.wav"]
    assert "level ZZ" in reasons["1001_DFA_ANG_ZZ.wav"]


# --- generic ---------------------------------------------------------------------------------------


def test_generic_emotion_folders_are_detected(tmp_path: Path) -> None:
    touch(tmp_path, "mine/angry/take1.wav", "mine/Sadness/b.flac", "mine/boredom/c.ogg", "mine/fear/d.mp3")
    result = scan([tmp_path])
    assert not result.unparsed
    got = {
        Path(row.path).name: (row.corpus, row.emotion, row.native, row.speaker, row.gender)
        for row in result.rows
    }
    assert got == {
        "take1.wav": ("generic", "angry", "angry", "generic:unknown", None),
        "b.flac": ("generic", "sad", "Sadness", "generic:unknown", None),
        "c.ogg": ("generic", None, "boredom", "generic:unknown", None),
        "d.mp3": ("generic", "fearful", "fear", "generic:unknown", None),
    }


def test_any_folder_is_a_label_when_generic_is_forced(tmp_path: Path) -> None:
    touch(tmp_path, "frustrated/a.wav", "Happy/b.wav", "neutral/03-01-05-01-01-01-01.wav")
    assert [reason for _, reason in scan([tmp_path]).unparsed] == [
        "name fits no known corpus and its folder 'frustrated' is no emotion label (use corpus 'generic' or a labels CSV)"
    ]
    rows = by_name(scan([tmp_path], corpus="generic"))
    assert (rows["a.wav"].emotion, rows["a.wav"].native) == (None, "frustrated")
    assert (rows["b.wav"].emotion, rows["b.wav"].native) == ("happy", "Happy")
    assert rows["03-01-05-01-01-01-01.wav"].native == "neutral"  # the forced layout wins over the name


def test_labels_csv_with_relative_paths_and_speakers(tmp_path: Path) -> None:
    touch(tmp_path, "clips/a.wav", "clips/b.wav", "clips/sub/c.wav", "clips/unlisted.wav")
    labels = tmp_path / "meta" / "labels.csv"
    touch(
        tmp_path,
        "meta/labels.csv",
        text=(
            "path,label,speaker,gender\n"
            "../clips/a.wav,Anger,s1,F\n"
            "../clips/b.wav,frustration,s2,\n"
            "../clips/sub/c.wav,ps,s1,male\n"
            "../clips/gone.wav,neutral,s3,\n"
        ),
    )
    listed = scan([], labels=labels)
    got = {
        Path(row.path).name: (row.corpus, row.emotion, row.native, row.speaker, row.gender)
        for row in listed.rows
    }
    assert got == {
        "a.wav": ("generic", "angry", "Anger", "generic:s1", "female"),
        "b.wav": ("generic", None, "frustration", "generic:s2", None),
        "c.wav": ("generic", "surprised", "ps", "generic:s1", "male"),
    }
    assert listed.unparsed == [
        (str(tmp_path / "clips" / "gone.wav"), "listed in labels.csv (line 5) but not found")
    ]

    under = scan([tmp_path / "clips" / "sub", tmp_path / "clips" / "unlisted.wav"], labels=str(labels))
    assert [Path(row.path).name for row in under.rows] == ["c.wav"]
    assert under.unparsed == [(str(tmp_path / "clips" / "unlisted.wav"), "not listed in labels.csv")]


def test_a_labels_csv_outside_the_data_names_its_files_and_the_missing_ones(tmp_path: Path) -> None:
    touch(tmp_path, "data/a.wav", "data/sub/b.wav", "data/unlisted.wav")
    labels = tmp_path / "elsewhere" / "labels.csv"
    touch(tmp_path, "elsewhere/labels.csv", text="path,label\na.wav,angry\nsub/b.wav,sad\ngone.wav,calm\n")
    result = scan([tmp_path / "data"], labels=labels)
    assert {Path(row.path).name: row.emotion for row in result.rows} == {"a.wav": "angry", "b.wav": "sad"}
    assert sorted(result.unparsed) == [
        (str(tmp_path / "data" / "gone.wav"), "listed in labels.csv (line 4) but not found"),
        (str(tmp_path / "data" / "unlisted.wav"), "not listed in labels.csv"),
    ]


def test_labels_csv_without_speaker_column(tmp_path: Path) -> None:
    touch(tmp_path, "x.wav")
    touch(tmp_path, "labels.csv", text="Path,Label\nx.wav,calm\n")
    (row,) = scan([tmp_path], labels=tmp_path / "labels.csv").rows
    assert (row.emotion, row.native, row.speaker, row.gender) == ("calm", "calm", "generic:unknown", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,emotion\nx.wav,calm\n", "header must be path,label"),
        ("path,label\nx.wav,\n", "labels.csv line 2: empty path or label"),
        ("path,label,gender\nx.wav,calm,other\n", "labels.csv line 2: gender 'other'"),
        (
            "path,label\nx.wav,calm\nx.wav,sad\n",
            "labels.csv line 3: x.wav is listed again with another label",
        ),
    ],
)
def test_malformed_labels_csv_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    touch(tmp_path, "x.wav")
    touch(tmp_path, "labels.csv", text=text)
    with pytest.raises(FeatureError, match=message) as error:
        scan([], labels=tmp_path / "labels.csv")
    assert "\n" not in str(error.value)


def test_labels_csv_only_describes_a_generic_corpus(tmp_path: Path) -> None:
    touch(tmp_path, "labels.csv", text="path,label\n")
    with pytest.raises(FeatureError, match="cannot be combined with corpus 'ravdess'"):
        scan([tmp_path], corpus="ravdess", labels=tmp_path / "labels.csv")


# --- detection, errors, odd files ------------------------------------------------------------------


def test_mixed_folders_yield_every_corpus(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "03-01-05-01-01-01-01.wav",
        "03a01Wa.wav",
        "OAF_back_angry.wav",
        "DC_a01.wav",
        "1001_DFA_ANG_XX.wav",
    )
    result = scan([tmp_path])
    assert result.corpora == {"ravdess": 1, "tess": 1, "savee": 1, "emodb": 1, "cremad": 1}
    assert {row.emotion for row in result.rows} == {"angry"}


def test_a_forced_corpus_leaves_other_names_unparsed(tmp_path: Path) -> None:
    touch(tmp_path, "03-01-05-01-01-01-01.wav", "OAF_back_angry.wav")
    result = scan([tmp_path], corpus="tess")
    assert [row.corpus for row in result.rows] == ["tess"]
    assert result.unparsed == [
        (
            str(tmp_path / "03-01-05-01-01-01-01.wav"),
            "name does not follow the TESS naming <OAF|YAF>_<word>_<emotion>",
        )
    ]


def test_unparsed_names_are_never_labelled(tmp_path: Path) -> None:
    touch(tmp_path, "misc/recording.wav", "misc/03-01-05.wav", "misc/OAF_angry.wav", "misc/1001_ANG.wav")
    touch(tmp_path, "Actor_01/03-01-05-01-01-01-01.wav", "Actor_01/notes.wav")
    result = scan([tmp_path])
    assert [Path(row.path).name for row in result.rows] == ["03-01-05-01-01-01-01.wav"]
    unparsed = {Path(path).name for path, _ in result.unparsed}
    assert unparsed == {"recording.wav", "03-01-05.wav", "OAF_angry.wav", "1001_ANG.wav", "notes.wav"}
    assert all(reason for _, reason in result.unparsed)


def test_audio_extensions_hidden_files_and_other_files(tmp_path: Path) -> None:
    assert {".wav", ".aif", ".aiff", ".flac", ".ogg", ".mp3"} == AUDIO_EXTENSIONS
    touch(
        tmp_path, "angry/a.WAV", "angry/b.Aif", "angry/c.AIFF", "angry/d.txt", "angry/e.csv", "angry/.f.wav"
    )
    touch(tmp_path, "angry/._03-01-05-01-01-01-01.wav", ".cache/angry/g.wav")
    result = scan([tmp_path])
    assert sorted(Path(row.path).name for row in result.rows) == ["a.WAV", "b.Aif", "c.AIFF"]
    assert result.unparsed == []
    explicit = scan([tmp_path / "angry" / "d.txt"])
    assert explicit.rows == [] and "not an audio file" in explicit.unparsed[0][1]


def test_symlink_loops_are_walked_once(tmp_path: Path) -> None:
    touch(tmp_path, "data/Actor_01/03-01-05-01-01-01-01.wav")
    (tmp_path / "data" / "Actor_01" / "loop").symlink_to(tmp_path / "data", target_is_directory=True)
    assert len(scan([tmp_path / "data"]).rows) == 1


def test_a_bad_link_costs_only_itself_and_is_a_named_failure(tmp_path: Path) -> None:
    actor = tmp_path / "data" / "Actor_01"
    names = [f"03-01-0{e}-01-01-01-01.wav" for e in range(1, 9)]
    touch(actor, *names)
    (actor / "loopA.wav").symlink_to("loopB.wav")
    (actor / "loopB.wav").symlink_to("loopA.wav")
    (actor / "gone.wav").symlink_to("nowhere.wav")
    (actor / "up").symlink_to(tmp_path / "data", target_is_directory=True)
    result = scan([tmp_path / "data"])
    assert sorted(by_name(result)) == names, "a bad link hid the rest of its folder"
    reasons = {Path(path).name: reason for path, reason in result.failed}
    assert set(reasons) == {"loopA.wav", "loopB.wav", "gone.wav", "up"}
    assert "loop" in reasons["loopA.wav"] and "loop" in reasons["loopB.wav"] and "loop" in reasons["up"]
    assert "dangling" in reasons["gone.wav"] and "nowhere.wav" in reasons["gone.wav"]
    assert result.unparsed == []


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FeatureError, match="no such file or folder"):
        scan([tmp_path / "missing"])
    with pytest.raises(FeatureError, match="unknown corpus 'iemocap'; valid corpora: " + ", ".join(CORPORA)):
        scan([tmp_path], corpus="iemocap")
