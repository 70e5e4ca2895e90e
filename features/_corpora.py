"""Corpus readers: audio files -> labelled rows, from each corpus's own file naming.

Supported layouts (a user's copy as it is usually laid out; every label comes from the names):

- RAVDESS ``MM-VV-EE-II-SS-RR-AA.wav`` (speech and song), in ``Actor_XX`` folders or flat.
- TESS ``<OAF|YAF>_<word>_<emotion>.wav`` (``ps`` = pleasant surprise; the ``OA_`` typo is OAF).
- SAVEE ``DC/a01.wav`` speaker folders or flat ``DC_a01.wav``.
- EmoDB ``03a01Fa.wav`` (speaker, text code, emotion letter, version).
- CREMA-D ``1001_DFA_ANG_XX.wav``; genders from ``VideoDemographics.csv`` in the folder or its parent.
- generic: ``<label>/<file>`` folders, or a labels CSV with ``path,label[,speaker][,gender]``.

Scanning reads names only (no audio is opened), so it takes milliseconds for thousands of files.

One scanning rule for every command that reads audio (:func:`scan` for the cache and the commands
built on it, :func:`collect_audio` for ``predict``): only regular files (or links to them) are audio.
A FIFO, a device, a socket, or a link to one of them (``x.wav -> /dev/zero``) is one failed path with
its reason and is never opened; a dangling link or a link loop likewise. :func:`file_problem` states
the rule for one path; the readers in :mod:`emotune.features._audio` check it again on the open
file, so a path swapped in between is refused too.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emotune.features._errors import FeatureError
from emotune.features._labels import canonical_emotion, is_emotion_word

CORPORA: tuple[str, ...] = ("ravdess", "tess", "savee", "emodb", "cremad", "generic")
AUDIO_EXTENSIONS: frozenset[str] = frozenset({".wav", ".aif", ".aiff", ".flac", ".ogg", ".mp3"})
# The limits of a file read whole (see emotune.features._audio): 10 minutes of 16-bit stereo at
# 96 kHz fit in the bytes, and any emotional-speech corpus's longest file many times over.
MAX_FILE_BYTES = 256 * 1024 * 1024
# Seconds of audio a file read whole may hold: decoding it and computing every feature set from it
# peaks at about 1.4 GB (measured); predict --window reads longer recordings window by window.
MAX_SECONDS = 600.0


@dataclass(frozen=True)
class Row:
    """One audio file of a corpus and what its name says about it.

    Attributes:
        path: Absolute path of the file.
        corpus: One of :data:`CORPORA`.
        speaker: Corpus-qualified speaker id (``"ravdess:01"``, ``"tess:OAF"``, ``"generic:unknown"``).
        gender: ``"male"``, ``"female"`` or ``None`` when unknown.
        emotion: Canonical 8-class emotion, or ``None`` when the corpus label has no counterpart
            (EmoDB boredom, an unrecognised generic label).
        native: The corpus's own label, unmapped (``"boredom"``, ``"pleasant_surprise"``, ``"anger"``).
        intensity: RAVDESS ``"normal"``/``"strong"``; CREMA-D ``"low"``/``"medium"``/``"high"``.
        statement: What is said: RAVDESS ``"kids"``/``"dogs"`` (or the code), the TESS word, the
            EmoDB/CREMA-D text code, the SAVEE sentence number.
        channel: ``"speech"`` or ``"song"`` (``None`` for generic corpora).
    """

    path: str
    corpus: str
    speaker: str
    gender: str | None
    emotion: str | None
    native: str
    intensity: str | None = None
    statement: str | None = None
    channel: str | None = None


@dataclass
class ScanResult:
    """What :func:`scan` found: labelled rows and the files it could not label, both sorted by path."""

    rows: list[Row] = field(default_factory=list)
    unparsed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    # Paths that cannot be used at all: symlink loops, dangling links, folders that cannot be listed.
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def corpora(self) -> dict[str, int]:
        """Number of rows per corpus, in :data:`CORPORA` order."""
        counts = Counter(row.corpus for row in self.rows)
        return {name: counts[name] for name in CORPORA if counts[name]}


# A parser reads one file name: (absolute path, stem, name of the folder holding it) ->
# a Row, a reason (the name has the corpus's shape but a field is invalid), or None (not this corpus).
_Parsed = Row | str | None
_Parser = Callable[[str, str, str], _Parsed]

_TITLES = {
    "ravdess": "RAVDESS",
    "tess": "TESS",
    "savee": "SAVEE",
    "emodb": "EmoDB",
    "cremad": "CREMA-D",
    "generic": "generic",
}
_PATTERNS = {
    "ravdess": "MM-VV-EE-II-SS-RR-AA",
    "tess": "<OAF|YAF>_<word>_<emotion>",
    "savee": "<DC|JE|JK|KL>/<code><NN> or <speaker>_<code><NN>",
    "emodb": "<speaker><text><emotion letter><version>, e.g. 03a01Fa",
    "cremad": "<actor>_<sentence>_<emotion>_<level>, e.g. 1001_DFA_ANG_XX",
    "generic": "<label>/<file>",
}

# RAVDESS ------------------------------------------------------------------------------------------

_RAVDESS = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
_RAVDESS_MODALITIES = frozenset({"01", "02", "03"})  # full AV, video-only, audio-only
_RAVDESS_CHANNELS = {"01": "speech", "02": "song"}
_RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
_RAVDESS_INTENSITIES = {"01": "normal", "02": "strong"}
_RAVDESS_STATEMENTS = {"01": "kids", "02": "dogs"}


def _parse_ravdess(path: str, stem: str, folder: str) -> _Parsed:
    match = _RAVDESS.fullmatch(stem)
    if match is None:
        return None
    modality, channel, emotion, intensity, statement, _repetition, actor = match.groups()
    if modality not in _RAVDESS_MODALITIES:
        return f"RAVDESS name with modality {modality} (valid: 01-03)"
    if channel not in _RAVDESS_CHANNELS:
        return f"RAVDESS name with vocal channel {channel} (valid: 01 speech, 02 song)"
    if emotion not in _RAVDESS_EMOTIONS:
        return f"RAVDESS name with emotion {emotion} (valid: 01-08)"
    if intensity not in _RAVDESS_INTENSITIES:
        return f"RAVDESS name with intensity {intensity} (valid: 01 normal, 02 strong)"
    if actor == "00":
        return "RAVDESS name with actor 00 (actors start at 01)"
    name = _RAVDESS_EMOTIONS[emotion]
    return Row(
        path=path,
        corpus="ravdess",
        speaker=f"ravdess:{actor}",
        gender="male" if int(actor) % 2 else "female",
        emotion=name,
        native=name,
        intensity=_RAVDESS_INTENSITIES[intensity],
        statement=_RAVDESS_STATEMENTS.get(statement, statement),
        channel=_RAVDESS_CHANNELS[channel],
    )


# TESS ---------------------------------------------------------------------------------------------

_TESS = re.compile(r"(OAF|YAF|OA)_([A-Za-z]+)_([A-Za-z_]+)")
_TESS_EMOTIONS = {  # file-name word -> native label
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "ps": "pleasant_surprise",
    "pleasant_surprise": "pleasant_surprise",
    "pleasant_surprised": "pleasant_surprise",
}


def _parse_tess(path: str, stem: str, folder: str) -> _Parsed:
    match = _TESS.fullmatch(stem)
    if match is None:
        return None
    speaker, word, emotion = match.groups()
    native = _TESS_EMOTIONS.get(emotion.lower())
    if native is None:
        return f"TESS name with emotion {emotion!r} (valid: {', '.join(sorted(set(_TESS_EMOTIONS)))})"
    return Row(
        path=path,
        corpus="tess",
        speaker="tess:OAF" if speaker == "OA" else f"tess:{speaker}",  # OA_bite_neutral.wav: a typo of OAF
        gender="female",
        emotion=canonical_emotion(native),
        native=native,
        statement=word.lower(),
        channel="speech",
    )


# SAVEE --------------------------------------------------------------------------------------------

_SAVEE_SPEAKERS = frozenset({"DC", "JE", "JK", "KL"})
_SAVEE_EMOTIONS = {
    "a": "anger",
    "d": "disgust",
    "f": "fear",
    "h": "happiness",
    "n": "neutral",
    "sa": "sadness",
    "su": "surprise",
}
_SAVEE_FLAT = re.compile(r"(DC|JE|JK|KL)_(a|d|f|h|n|sa|su)(\d\d)")
_SAVEE_IN_FOLDER = re.compile(r"(a|d|f|h|n|sa|su)(\d\d)")


def _parse_savee(path: str, stem: str, folder: str) -> _Parsed:
    match = _SAVEE_FLAT.fullmatch(stem)
    if match is not None:
        speaker, code, number = match.groups()
    else:
        match = _SAVEE_IN_FOLDER.fullmatch(stem) if folder in _SAVEE_SPEAKERS else None
        if match is None:
            return None
        speaker = folder
        code, number = match.groups()
    native = _SAVEE_EMOTIONS[code]
    return Row(
        path=path,
        corpus="savee",
        speaker=f"savee:{speaker}",
        gender="male",
        emotion=canonical_emotion(native),
        native=native,
        statement=number,
        channel="speech",
    )


# EmoDB --------------------------------------------------------------------------------------------

_EMODB = re.compile(r"(\d\d)([a-z]\d\d)([A-Z])([a-z])")
_EMODB_EMOTIONS = {
    "W": "anger",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happiness",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}
_EMODB_GENDERS = {
    **dict.fromkeys(("03", "10", "11", "12", "15"), "male"),
    **dict.fromkeys(("08", "09", "13", "14", "16"), "female"),
}


def _parse_emodb(path: str, stem: str, folder: str) -> _Parsed:
    match = _EMODB.fullmatch(stem)
    if match is None:
        return None
    speaker, text, letter, _version = match.groups()
    if speaker not in _EMODB_GENDERS:
        return f"EmoDB name with speaker {speaker} (EmoDB speakers: {', '.join(sorted(_EMODB_GENDERS))})"
    native = _EMODB_EMOTIONS.get(letter)
    if native is None:
        return f"EmoDB name with emotion letter {letter} (valid: {''.join(_EMODB_EMOTIONS)})"
    return Row(
        path=path,
        corpus="emodb",
        speaker=f"emodb:{speaker}",
        gender=_EMODB_GENDERS[speaker],
        emotion=canonical_emotion(native),
        native=native,
        statement=text,
        channel="speech",
    )


# CREMA-D ------------------------------------------------------------------------------------------

_CREMAD = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")
_CREMAD_EMOTIONS = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
_CREMAD_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": None}
_CREMAD_DEMOGRAPHICS = "VideoDemographics.csv"


class _CremaD:
    """CREMA-D parser; reads each folder's ``VideoDemographics.csv`` (or its parent's) once per scan."""

    def __init__(self) -> None:
        self._genders: dict[str, dict[str, str] | None] = {}

    def __call__(self, path: str, stem: str, folder: str) -> _Parsed:
        match = _CREMAD.fullmatch(stem)
        if match is None:
            return None
        actor, sentence, emotion, level = match.groups()
        native = _CREMAD_EMOTIONS.get(emotion)
        if native is None:
            return f"CREMA-D name with emotion {emotion} (valid: {', '.join(_CREMAD_EMOTIONS)})"
        if level not in _CREMAD_LEVELS:
            return f"CREMA-D name with level {level} (valid: {', '.join(_CREMAD_LEVELS)})"
        genders = self._genders_near(os.path.dirname(path))
        return Row(
            path=path,
            corpus="cremad",
            speaker=f"cremad:{actor}",
            gender=genders.get(actor) if genders else None,
            emotion=canonical_emotion(native),
            native=native,
            intensity=_CREMAD_LEVELS[level],
            statement=sentence,
            channel="speech",
        )

    def _genders_near(self, directory: str) -> dict[str, str] | None:
        if directory not in self._genders:
            found = None
            for candidate in (directory, os.path.dirname(directory)):
                csv_path = os.path.join(candidate, _CREMAD_DEMOGRAPHICS)
                if os.path.isfile(csv_path):
                    found = _read_demographics(csv_path)
                    break
            self._genders[directory] = found
        return self._genders[directory]


def _read_demographics(csv_path: str) -> dict[str, str]:
    """ActorID -> "male"/"female" from CREMA-D's VideoDemographics.csv (ActorID,Age,Sex,Race,Ethnicity)."""
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"ActorID", "Sex"} - set(reader.fieldnames or ())
        if missing:
            raise FeatureError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}")
        genders: dict[str, str] = {}
        for record in reader:
            sex = (record["Sex"] or "").strip().lower()
            if sex in ("male", "female"):
                genders[(record["ActorID"] or "").strip()] = sex
    return genders


# generic ------------------------------------------------------------------------------------------

_UNKNOWN_SPEAKER = "unknown"


def _generic_row(path: str, label: str, speaker: str | None = None, gender: str | None = None) -> Row:
    return Row(
        path=path,
        corpus="generic",
        speaker=f"generic:{speaker or _UNKNOWN_SPEAKER}",
        gender=gender,
        emotion=canonical_emotion(label),
        native=label,
    )


def _parse_generic(path: str, stem: str, folder: str) -> _Parsed:
    """``<label>/<file>``: the folder holding the file is its label."""
    return _generic_row(path, folder) if folder else None


# scanning -----------------------------------------------------------------------------------------

_NAMED_CORPORA = ("ravdess", "tess", "savee", "emodb", "cremad")  # tried in this order; names never overlap


def scan(
    paths: Sequence[str | Path] | str | Path,
    *,
    corpus: str | None = None,
    labels: str | Path | None = None,
) -> ScanResult:
    """Find the audio files under ``paths`` and label each from its corpus's file naming.

    Folders are walked recursively (hidden files and folders skipped, symlinks followed once); audio
    files are recognised by extension (:data:`AUDIO_EXTENSIONS`, any case). Without ``corpus`` each
    file's corpus is detected from its name, so a folder holding several corpora yields all of them;
    a file whose name fits no corpus is a generic ``<label>/<file>`` row when its folder is named
    after an emotion (``angry/``, ``Sadness/``), else it goes to ``unparsed``. Nothing is guessed:
    a name that does not parse is listed with a reason, never labelled.

    Args:
        paths: Files and folders to scan (a single path is accepted too).
        corpus: Force one corpus (one of :data:`CORPORA`); files whose names do not follow it are
            unparsed. ``"generic"`` makes every file's folder its label, whatever the folder's name.
        labels: A CSV with header ``path,label`` and optional ``speaker`` and ``gender`` columns;
            relative paths resolve against the CSV's folder, else against the folder in ``paths`` that
            holds them (a CSV kept outside the data). Its files become generic rows; audio files under
            ``paths`` that it does not list are unparsed. With no ``paths``, every listed file is used.

    Returns:
        Rows and unparsed ``(path, reason)`` pairs, each sorted by absolute path.

    Raises:
        FeatureError: A path does not exist, ``corpus`` is unknown, or the labels CSV is malformed.

    Example:
        >>> result = scan(["data/"])  # doctest: +SKIP
        >>> result.corpora  # doctest: +SKIP
        {'ravdess': 240, 'tess': 142, 'emodb': 107}
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if corpus is not None and corpus not in CORPORA:
        raise FeatureError(f"unknown corpus {corpus!r}; valid corpora: {', '.join(CORPORA)}")
    if labels is not None and corpus not in (None, "generic"):
        raise FeatureError(
            f"a labels CSV describes a generic corpus; it cannot be combined with corpus {corpus!r}"
        )

    roots = [os.path.abspath(os.fspath(path)) for path in paths]
    files, unparsed, failed = _collect(roots)
    if labels is not None:
        rows, more = _rows_from_labels(os.path.abspath(os.fspath(labels)), roots, files)
    else:
        rows, more = _rows_from_names(files, corpus)
    unparsed.extend(more)
    rows.sort(key=lambda row: row.path)
    unparsed.sort()
    return ScanResult(rows=rows, unparsed=unparsed, failed=sorted(failed))


def _is_audio(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _collect(
    roots: Iterable[str], *, any_named_file: bool = False
) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """The audio files under ``roots`` (absolute, unique), the non-audio ones, the unusable paths.

    ``any_named_file``: a regular file named in ``roots`` is taken whatever its extension.
    """
    files: dict[str, None] = {}  # ordered set
    unparsed: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    visited: set[str] = set()
    for root in roots:
        if os.path.isdir(root):
            _walk(root, files, failed, visited)
            continue
        if not os.path.lexists(root):
            raise FeatureError(f"{root}: no such file or folder")
        problem = file_problem(root)
        if problem is not None:
            failed.append((root, problem))
        elif any_named_file or _is_audio(root):
            files[root] = None
        else:
            unparsed.append((root, f"not an audio file (extensions: {', '.join(sorted(AUDIO_EXTENSIONS))})"))
    return list(files), unparsed, failed


def collect_audio(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """The files :func:`scan` would read under ``paths``, for commands that need no labels (predict).

    Folders are walked as :func:`scan` walks them (audio extensions only); a regular file named in
    ``paths`` is taken whatever its extension (its content decides whether it is audio).

    Returns:
        The files, spelled as ``paths`` spell them (a relative folder gives relative paths; in the
        order of ``paths``, sorted within each folder), and ``(path, reason)`` for each path that
        cannot be read: missing, not a regular file (a FIFO, a device, a socket, a link to one), a
        dangling link or a loop, a folder that cannot be listed, a folder without audio files.
    """
    files: dict[str, None] = {}
    errors: list[tuple[str, str]] = []
    for p in paths:
        text = os.fspath(p)
        try:
            found, _, failed = _collect([text], any_named_file=True)
        except FeatureError:
            errors.append((text, "no such file or folder"))
            continue
        if not found and not failed and os.path.isdir(text):
            errors.append((os.fspath(p), "no audio files in this folder"))
        files.update(dict.fromkeys(sorted(found)))
        errors += sorted(failed)
    return list(files), errors


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a regular file that can be read as audio; None when it is one.

    Links are followed (a link to a regular file is fine). The path is never opened.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            return _link_problem(os.fspath(path))
        return f"cannot read ({exc.strerror or exc})"
    except ValueError:  # a name the OS refuses (a NUL byte)
        return "cannot read (invalid file name)"
    return not_regular(st.st_mode, path)


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def not_regular(mode: int, path: str | os.PathLike[str] | None = None) -> str | None:
    """Why a file of ``mode`` (from ``stat``) is refused as audio; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    if path is not None and os.path.islink(path):
        kind += f" (the link leads to {os.path.realpath(path)})"
    return f"{kind}, not a regular file: only regular files are read as audio"


def _walk(root: str, files: dict[str, None], failed: list[tuple[str, str]], visited: set[str]) -> None:
    """Every audio file under ``root``; each path that cannot be used is one ``(path, reason)``.

    One bad entry (a symlink loop, a dangling link, a folder that cannot be listed) costs only
    itself: the rest of its folder is still found. Links are followed once.
    """
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in visited:  # the same folder reached twice (overlapping paths, symlink loops)
            if os.path.islink(folder) and _under(os.path.realpath(os.path.dirname(folder)), [real]):
                failed.append((folder, f"symlink loop: leads back to {real}, a folder above it"))
            continue
        visited.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            failed.append((folder, f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):  # hidden: .emotune caches, macOS ._* resource forks
                continue
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                elif _is_audio(entry.name) and entry.is_file():
                    files[entry.path] = None
                elif entry.is_symlink() and not os.path.exists(entry.path):
                    failed.append((entry.path, _link_problem(entry.path)))
                elif _is_audio(entry.name):  # a FIFO, a device, a socket, or a link to one
                    reason = not_regular(entry.stat().st_mode, entry.path) or "cannot read"
                    failed.append((entry.path, reason))
            except OSError as exc:
                reason = _link_problem(entry.path) if entry.is_symlink() else exc.strerror or str(exc)
                failed.append((entry.path, reason))


def _link_problem(path: str) -> str:
    """Why a symlink leads nowhere: a loop (named as one) or a missing target."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop: following the link leads back to it"
        if exc.errno == errno.ENOENT:
            return f"dangling symlink: its target {os.readlink(path)!r} does not exist"
        return f"cannot follow this symlink: {exc.strerror or exc}"
    except ValueError:  # a name the OS refuses
        return "cannot follow this symlink"
    return "not an audio file or folder"


def _rows_from_names(files: Iterable[str], corpus: str | None) -> tuple[list[Row], list[tuple[str, str]]]:
    parsers: dict[str, _Parser] = {
        "ravdess": _parse_ravdess,
        "tess": _parse_tess,
        "savee": _parse_savee,
        "emodb": _parse_emodb,
        "cremad": _CremaD(),
        "generic": _parse_generic,
    }
    rows: list[Row] = []
    unparsed: list[tuple[str, str]] = []
    for path in files:
        folder_path, name = os.path.split(path)
        stem = os.path.splitext(name)[0]
        folder = os.path.basename(folder_path)
        if corpus is not None:
            result = parsers[corpus](path, stem, folder)
            if result is None:
                result = f"name does not follow the {_TITLES[corpus]} naming {_PATTERNS[corpus]}"
        else:
            result = _detect(parsers, path, stem, folder)
        if isinstance(result, Row):
            rows.append(result)
        else:
            unparsed.append((path, result))
    return rows, unparsed


def _detect(parsers: dict[str, _Parser], path: str, stem: str, folder: str) -> Row | str:
    for name in _NAMED_CORPORA:
        result = parsers[name](path, stem, folder)
        if result is not None:
            return result
    if is_emotion_word(folder):
        return _generic_row(path, folder)
    return (
        f"name fits no known corpus and its folder {folder!r} is no emotion label "
        "(use corpus 'generic' or a labels CSV)"
    )


# labels CSV ---------------------------------------------------------------------------------------

_GENDER_WORDS = {"male": "male", "m": "male", "female": "female", "f": "female"}


@dataclass(frozen=True)
class _Listed:
    label: str
    speaker: str | None
    gender: str | None
    line: int


def _read_labels(csv_path: str, folders: Sequence[str] = ()) -> dict[str, _Listed]:
    """Absolute path -> label entry of a ``path,label[,speaker][,gender]`` CSV."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            return _parse_labels(csv.reader(handle), csv_path, folders)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FeatureError(f"{csv_path}: cannot read labels CSV ({reason})") from exc


def _parse_labels(
    reader: Iterator[list[str]], csv_path: str, folders: Sequence[str] = ()
) -> dict[str, _Listed]:
    name = os.path.basename(csv_path)
    base = os.path.dirname(csv_path)
    header = [column.strip().lower() for column in next(reader, [])]
    if "path" not in header or "label" not in header:
        raise FeatureError(
            f"{csv_path}: header must be path,label[,speaker][,gender], got {','.join(header)!r}"
        )
    columns = {
        column: header.index(column) for column in ("path", "label", "speaker", "gender") if column in header
    }
    listed: dict[str, _Listed] = {}
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) < len(header):
            raise FeatureError(f"{name} line {line}: {len(record)} fields, the header has {len(header)}")
        values = {column: record[index].strip() for column, index in columns.items()}
        if not values["path"] or not values["label"]:
            raise FeatureError(f"{name} line {line}: empty path or label")
        gender = values.get("gender", "").lower()
        if gender and gender not in _GENDER_WORDS:
            raise FeatureError(f"{name} line {line}: gender {values['gender']!r} (valid: male, female, m, f)")
        entry = _Listed(values["label"], values.get("speaker") or None, _GENDER_WORDS.get(gender), line)
        path = _resolve_listed(values["path"], base, folders)
        previous = listed.get(path)
        if previous is not None and previous.label != entry.label:
            raise FeatureError(
                f"{name} line {line}: {values['path']} is listed again with another label "
                f"(line {previous.line}: {previous.label!r})"
            )
        listed[path] = entry
    return listed


def _resolve_listed(listed: str, base: str, folders: Sequence[str]) -> str:
    """A CSV's relative path: against the CSV's folder, else against the DATA folder that holds it.

    A CSV kept outside the data still names its files; one listed but found nowhere resolves under
    the data (so it is reported as missing) unless its CSV-relative path is there already.
    """
    first = os.path.abspath(os.path.join(base, listed))
    if os.path.isabs(listed) or os.path.exists(first) or not folders:
        return first
    candidates = [os.path.abspath(os.path.join(folder, listed)) for folder in folders]
    found = next((path for path in candidates if os.path.exists(path)), None)
    if found is not None:
        return found
    return first if _under(first, folders) else candidates[0]


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _rows_from_labels(
    csv_path: str, roots: Sequence[str], files: Sequence[str]
) -> tuple[list[Row], list[tuple[str, str]]]:
    listed = _read_labels(csv_path, [root for root in roots if os.path.isdir(root)])
    name = os.path.basename(csv_path)
    rows: list[Row] = []
    unparsed: list[tuple[str, str]] = []
    for path in files:
        if path not in listed:
            unparsed.append((path, f"not listed in {name}"))
    for path, entry in listed.items():
        if roots and not _under(path, roots):
            continue
        if not os.path.isfile(path):
            unparsed.append((path, f"listed in {name} (line {entry.line}) but not found"))
        elif not _is_audio(path):
            unparsed.append((path, f"listed in {name} (line {entry.line}) but not an audio file"))
        else:
            rows.append(_generic_row(path, entry.label, entry.speaker, entry.gender))
    return rows, unparsed
