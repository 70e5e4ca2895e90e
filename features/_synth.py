"""A synthetic RAVDESS-named corpus of speech-like signals, for demos and tests.

Each file is a source-filter "utterance": a glottal pulse train (Rosenberg pulses with jitter and
aspiration noise) through a spectral-tilt filter and per-syllable formant resonators, cut into
syllables by an envelope, with fricative noise bursts at some onsets. The prosody depends on the
label the way acted emotional speech does (after Scherer 2003; Juslin & Laukka 2003): angry and
happy speech is higher, wider-ranging, faster, louder and brighter; sad and calm speech lower,
flatter, slower, softer and darker; fear is high with jitter and tremor; surprise rises at the end.
Strong intensity pushes every cue further from neutral; male voices are lower in pitch and
formants. Every parameter also varies per actor and per file, so the classes overlap: a classifier
learns them, but not perfectly.

Output is deterministic per seed: each file has its own random stream, keyed by (seed, actor, file).

The corpus is written only into a new or empty folder, or over an earlier synthetic corpus: the
folder is marked (:data:`~emotune.features._outdir.MARKER`, written by ``emotune corpus synth``),
and any other non-empty folder, a real corpus above all, is refused before anything is written.
Each file is written atomically (temporary file + rename).
"""

from __future__ import annotations

import functools
import io
import numbers
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotune.features._errors import FeatureError
from emotune.features._labels import EMOTIONS
from emotune.features._outdir import prepare_output_dir, write_atomic

SYNTH_OWNER = "emotune corpus synth"  # the marker of a synthetic corpus's folder


@dataclass(frozen=True)
class _Style:
    """How one emotion departs from neutral speech."""

    pitch: float  # mean f0 shift, semitones
    range: float  # f0 excursion factor (accents, declination)
    rate: float  # syllable rate factor
    energy: float  # level, dB
    tilt: float  # source brightness: >0 brighter (less low-pass), <0 darker
    jitter: float  # cycle-to-cycle f0 perturbation, fraction
    noise: float  # aspiration noise level, dB relative to the voiced source
    tremor: float = 0.0  # slow f0 modulation depth, semitones
    rise: float = 0.0  # final f0 rise, semitones


_NEUTRAL = _Style(pitch=0.0, range=1.0, rate=1.0, energy=0.0, tilt=0.0, jitter=0.006, noise=-30.0)
_STYLES: dict[str, _Style] = {
    "neutral": _NEUTRAL,
    "calm": _Style(pitch=-1.0, range=0.75, rate=0.88, energy=-3.0, tilt=-0.25, jitter=0.004, noise=-28.0),
    "happy": _Style(pitch=3.0, range=1.5, rate=1.1, energy=3.0, tilt=0.3, jitter=0.008, noise=-30.0),
    "sad": _Style(pitch=-1.5, range=0.6, rate=0.8, energy=-5.0, tilt=-0.45, jitter=0.012, noise=-20.0),
    "angry": _Style(pitch=3.0, range=1.35, rate=1.12, energy=6.0, tilt=0.6, jitter=0.014, noise=-24.0),
    "fearful": _Style(
        pitch=4.0, range=0.9, rate=1.18, energy=0.5, tilt=0.1, jitter=0.022, noise=-22.0, tremor=0.7
    ),
    "disgust": _Style(pitch=-1.0, range=1.1, rate=0.85, energy=0.5, tilt=-0.1, jitter=0.016, noise=-21.0),
    "surprised": _Style(
        pitch=3.5, range=1.6, rate=1.0, energy=2.0, tilt=0.2, jitter=0.008, noise=-28.0, rise=4.0
    ),
}
_EMOTION_CODES = {name: f"{index:02d}" for index, name in enumerate(EMOTIONS, start=1)}  # RAVDESS's order
_STRONG = 1.7  # how much further from neutral strong intensity goes
_LEVEL_DB = -28.0  # RMS of neutral speech re full scale: leaves headroom for loud, bright styles

# Vowel formants (F1, F2, F3 in Hz, adult male) and the vowel sequence of each statement.
_VOWELS = {
    "i": (270.0, 2290.0, 3010.0),
    "e": (530.0, 1840.0, 2480.0),
    "a": (730.0, 1090.0, 2440.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
    "@": (500.0, 1500.0, 2500.0),
}
_STATEMENTS = ("iaeioa@", "oaiia@o")  # "Kids are talking by the door", "Dogs are sitting by the door"
_BANDWIDTHS = (80.0, 100.0, 140.0)
_MALE_F0, _FEMALE_F0 = 115.0, 210.0
_DURATION = (1.5, 2.5)  # seconds, silences included
_CONTROL_STEP = 0.001  # seconds between f0 contour points


def _rosenberg(opening: float = 0.4, closing: float = 0.16, size: int = 4096) -> np.ndarray:
    """One period of Rosenberg's glottal flow pulse as a lookup table over phase [0, 1)."""
    phase = np.arange(size) / size
    rise = 0.5 * (1.0 - np.cos(np.pi * phase / opening))
    fall = np.cos(0.5 * np.pi * np.clip(phase - opening, 0.0, closing) / closing)
    return np.where(phase < opening, rise, np.where(phase < opening + closing, fall, 0.0))


_PULSE = _rosenberg()


def synthesize(
    out: str | Path,
    *,
    actors: int = 4,
    seed: int = 0,
    sr: int = 16000,
    statements: int = 2,
    repetitions: int = 2,
) -> list[Path]:
    """Write a synthetic RAVDESS-named corpus under ``out`` and return its files, sorted.

    Layout and names follow RAVDESS speech: ``out/Actor_XX/03-01-EE-II-SS-RR-AA.wav`` (mono 16-bit
    PCM WAV, 1.5-2.5 s), odd actors male, eight emotions x two intensities (neutral has only normal
    intensity, as in RAVDESS) x ``statements`` x ``repetitions``: 60 files per actor by default.
    ``out`` must be new, empty, or an earlier synthetic corpus (its marker): synthetic files are
    never mixed into a real corpus, and a recording is never overwritten. Besides the WAV files only
    the marker is written; an earlier synthetic corpus's files of the same names are replaced.

    Args:
        out: Folder to write into (created if missing, and marked).
        actors: Number of actors, 1-99.
        seed: Random seed; the same seed gives the same bytes.
        sr: Sample rate in Hz (8000-96000).
        statements: Statements per emotion and intensity, 1 or 2.
        repetitions: Repetitions of each statement, 1-99.

    Raises:
        FeatureError: A parameter is out of range.
        OutputDirError: ``out`` is a file, or a non-empty folder that is not a synthetic corpus.

    Example:
        >>> files = synthesize("synth", actors=2, seed=1)  # doctest: +SKIP
        >>> len(files), files[0].name  # doctest: +SKIP
        (120, '03-01-01-01-01-01-01.wav')
    """
    _check_range("actors", actors, 1, 99)
    _check_range("sr", sr, 8000, 96000)
    _check_range("statements", statements, 1, len(_STATEMENTS))
    _check_range("repetitions", repetitions, 1, 99)
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise FeatureError(f"synth seed must be a non-negative integer, got {seed!r}")
    out = Path(out)
    out = prepare_output_dir(out, owner=SYNTH_OWNER, flag="OUT")

    written: list[Path] = []
    for actor in range(1, actors + 1):
        voice = _Voice.draw(np.random.default_rng([seed, actor]), male=actor % 2 == 1)
        folder = out / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for emotion, intensity, statement, repetition in _takes(statements, repetitions):
            code = _EMOTION_CODES[emotion]
            name = f"03-01-{code}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}"
            rng = np.random.default_rng([seed, actor, int(code), intensity, statement, repetition])
            style = _scaled(_STYLES[emotion], _STRONG if intensity == 2 else 1.0)
            signal = _utterance(rng, voice, style, _STATEMENTS[statement - 1], sr)
            path = folder / f"{name}.wav"
            _write_wav(path, signal, sr)
            written.append(path)
    return sorted(written)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise FeatureError(f"synth {name} must be an integer in {low}-{high}, got {value!r}")


def _takes(statements: int, repetitions: int) -> Iterator[tuple[str, int, int, int]]:
    """(emotion, intensity, statement, repetition) of every file of one actor, in RAVDESS's order."""
    for emotion in EMOTIONS:
        for intensity in (1,) if emotion == "neutral" else (1, 2):
            for statement in range(1, statements + 1):
                for repetition in range(1, repetitions + 1):
                    yield emotion, intensity, statement, repetition


def _scaled(style: _Style, factor: float) -> _Style:
    """``style`` pushed ``factor`` times as far from neutral (jitter and noise included)."""

    def push(value: float, neutral: float) -> float:
        return neutral + factor * (value - neutral)

    return _Style(
        pitch=push(style.pitch, _NEUTRAL.pitch),
        range=push(style.range, _NEUTRAL.range),
        rate=push(style.rate, _NEUTRAL.rate),
        energy=push(style.energy, _NEUTRAL.energy),
        tilt=push(style.tilt, _NEUTRAL.tilt),
        jitter=push(style.jitter, _NEUTRAL.jitter),
        noise=push(style.noise, _NEUTRAL.noise),
        tremor=factor * style.tremor,
        rise=factor * style.rise,
    )


@dataclass(frozen=True)
class _Voice:
    """An actor's own voice: what stays the same across all of their files."""

    f0: float  # Hz
    formant_scale: float  # vocal tract length (female ~1.15 x male)
    rate: float  # syllables per second when neutral
    level: float  # dB
    brightness: float  # tilt offset

    @classmethod
    def draw(cls, rng: np.random.Generator, *, male: bool) -> _Voice:
        return cls(
            f0=(_MALE_F0 if male else _FEMALE_F0) * float(np.exp(rng.normal(0.0, 0.08))),
            formant_scale=(1.0 if male else 1.15) * float(np.exp(rng.normal(0.0, 0.04))),
            rate=float(rng.uniform(3.9, 4.6)),
            level=float(rng.normal(0.0, 1.5)),
            brightness=float(rng.normal(0.0, 0.1)),
        )


def _utterance(rng: np.random.Generator, voice: _Voice, style: _Style, vowels: str, sr: int) -> np.ndarray:
    """One file's samples, float64 in [-1, 1]."""
    jiggle = rng.normal(0.0, 1.0, size=7)  # per-file variation of every cue, so classes overlap
    pitch = style.pitch + 1.3 * jiggle[0]
    excursion = 2.5 * style.range * float(np.exp(0.25 * jiggle[1]))  # semitones
    rate = voice.rate * style.rate * float(np.exp(0.1 * jiggle[2]))
    level = _LEVEL_DB + voice.level + style.energy + 2.0 * jiggle[3]  # dB, RMS of the voiced part
    tilt = voice.brightness + style.tilt + 0.2 * jiggle[4]
    jitter = style.jitter * float(np.exp(0.35 * jiggle[5]))
    noise_db = style.noise + 3.0 * jiggle[6]

    # Syllable timing: irregular syllable lengths, silence before and after; the whole in _DURATION.
    n_syllables = len(vowels)
    lead, tail = rng.uniform(0.12, 0.22, size=2)
    speech = float(np.clip(n_syllables / rate, _DURATION[0] - lead - tail, _DURATION[1] - lead - tail))
    lengths = rng.uniform(0.75, 1.25, size=n_syllables)
    lengths *= speech / lengths.sum()
    starts = lead + np.concatenate(([0.0], np.cumsum(lengths)[:-1]))
    n = int(round((lead + speech + tail) * sr))

    # f0 contour in semitones at a 1 kHz control rate: declination, a random accent per syllable,
    # final rise, tremor, and jitter as an independent random factor per ~glottal period.
    t = np.arange(0.0, n / sr + _CONTROL_STEP, _CONTROL_STEP)
    position = np.clip((t - lead) / speech, 0.0, 1.0)
    syllable = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, n_syllables - 1)
    centre = starts[syllable] + 0.5 * lengths[syllable]
    accents = rng.normal(0.0, excursion, size=n_syllables)[syllable]
    semitones = pitch - 0.8 * excursion * position
    semitones += accents * np.exp(-0.5 * ((t - centre) / (0.3 * lengths[syllable])) ** 2)
    semitones += style.rise * np.clip((position - 0.7) / 0.3, 0.0, 1.0) ** 2
    semitones += style.tremor * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * t + rng.uniform(0, 2 * np.pi))
    period = max(1, round(1.0 / (voice.f0 * _CONTROL_STEP)))
    wobble = np.repeat(rng.normal(0.0, jitter, size=len(t) // period + 1), period)[: len(t)]
    f0 = np.interp(np.arange(n) / sr, t, voice.f0 * 2.0 ** (semitones / 12.0) * (1.0 + wobble))

    # Glottal source: derivative of a Rosenberg pulse, plus aspiration noise gated by the pulses.
    flow = _PULSE[(np.cumsum(f0 / sr) % 1.0 * len(_PULSE)).astype(np.intp)]
    source = np.diff(flow, prepend=0.0)
    source /= np.sqrt(np.mean(source**2)) + 1e-12
    noise = rng.standard_normal(n)
    source += 10.0 ** (noise_db / 20.0) * (0.5 + flow) * noise

    # Per syllable: spectral tilt (a one-pole low-pass whose pole follows the brightness) and formant
    # resonators, applied in the frequency domain, then an attack-release envelope.
    pole = float(np.clip(0.55 - 0.35 * tilt, 0.05, 0.95))
    signal = np.zeros(n)
    for index, vowel in enumerate(vowels):
        begin = int(starts[index] * sr)
        end = min(n, int((starts[index] + lengths[index]) * sr))
        formants = np.array(_VOWELS[vowel]) * voice.formant_scale * np.exp(rng.normal(0.0, 0.05, size=3))
        size = 1 << (end - begin - 1).bit_length()  # zero-padded: linear filtering, fast FFT sizes
        spectrum = np.fft.rfft(source[begin:end], size) * _response(formants, pole, sr, size)
        ramp = np.linspace(0.0, np.pi, end - begin)
        envelope = np.sqrt(np.sin(ramp)) * (1.0 - 0.2 * ramp / np.pi)
        signal[begin:end] = np.fft.irfft(spectrum, size)[: end - begin] * envelope
    signal /= np.sqrt(np.mean(signal[signal != 0.0] ** 2)) + 1e-12

    # Consonants: short fricative noise bursts (first difference of white noise) at some onsets.
    for onset in starts[rng.random(n_syllables) < 0.6]:
        begin = int(onset * sr)
        width = min(int(rng.uniform(0.03, 0.07) * sr), n - begin - 1)
        signal[begin : begin + width] += 0.25 * np.diff(noise[begin : begin + width + 1]) * np.hanning(width)

    signal *= 10.0 ** (level / 20.0)
    signal += 10.0 ** (-70.0 / 20.0) * noise[::-1]  # a faint noise floor: no digital silence
    return np.clip(signal, -1.0, 1.0)


def _response(formants: np.ndarray, pole: float, sr: int, size: int) -> np.ndarray:
    """Frequency response (``rfft`` bins of a ``size``-sample frame) of tilt filter x formant cascade.

    Each formant is a two-pole resonator with unit gain at 0 Hz; the tilt is ``(1 - p) / (1 - p z^-1)``.
    """
    z = _unit_circle(size)
    response = (1.0 - pole) / (1.0 - pole * z)
    for frequency, bandwidth in zip(formants, _BANDWIDTHS, strict=True):
        radius = np.exp(-np.pi * bandwidth / sr)
        c1 = -2.0 * radius * np.cos(2 * np.pi * min(float(frequency), 0.45 * sr) / sr)
        c2 = radius**2
        response *= (1.0 + c1 + c2) / (1.0 + z * (c1 + z * c2))
    return response


@functools.lru_cache(maxsize=8)
def _unit_circle(size: int) -> np.ndarray:
    """``z^-1`` at the ``rfft`` bins of a ``size``-sample frame."""
    return np.exp(-2j * np.pi * np.fft.rfftfreq(size))


def _write_wav(path: Path, signal: np.ndarray, sr: int) -> None:
    """Mono 16-bit PCM WAV with a plain header (no extra chunks), written atomically."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sr)
        handle.writeframes(np.round(signal * 32767.0).astype("<i2").tobytes())
    write_atomic(path, buf.getvalue())
