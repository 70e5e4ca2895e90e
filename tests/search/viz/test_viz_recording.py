"""`emotune plot`: the figures of one recording, from the feature cache's own analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pngcheck import check_png

from emotune.features._outdir import MARKER, marked_by
from emotune.search.viz import recording

SR = 22050


def _vowel(formants: tuple[float, ...], f0: float, seconds: float = 0.8) -> np.ndarray:
    """A glottal impulse train at ``f0`` through one two-pole resonator per formant."""
    from scipy.signal import lfilter

    y = np.zeros(int(SR * seconds))
    y[:: int(round(SR / f0))] = 1.0
    for f, bw in zip(formants, (90.0, 110.0, 150.0), strict=False):
        r = np.exp(-np.pi * bw / SR)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], y)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize(
    ("formants", "f0"),
    [
        ((730.0, 1090.0, 2440.0), 120.0),
        ((660.0, 1720.0, 2410.0), 140.0),
        ((500.0, 1500.0, 2500.0), 100.0),
    ],
)
def test_formant_peaks_of_a_synthetic_vowel_are_its_resonances(tmp_path, formants, f0):
    import soundfile as sf

    path = tmp_path / "vowel.wav"
    sf.write(path, _vowel(formants, f0), SR)
    found = recording.analyse(path).formants
    for f in formants:
        nearest = min(found, key=lambda p: abs(p - f))
        assert abs(nearest - f) / f < 0.10, f"resonance {f} Hz: nearest peak {nearest:.0f} Hz in {found}"


def test_drawn_arrays_are_the_feature_cache_arrays(data_dir):
    from emotune.features import extract_file, feature_params

    path = data_dir / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.wav"
    r = recording.analyse(path)
    p = feature_params("mfcc_seq")
    (seq,) = extract_file(path, [p])
    n = min(seq.shape[1], r.mfcc.shape[1])
    np.testing.assert_allclose(r.mfcc[:, :n], seq[:, :n], rtol=1e-5, atol=1e-3)
    assert r.magnitude.shape[0] == 1 + p["n_fft"] // 2
    assert r.magnitude.shape[1] == 1 + len(r.y) // p["hop_length"]


def test_plot_writes_every_figure_of_a_real_recording(run_cli, data_dir, tmp_path):
    wav = data_dir / "ravdess" / "Actor_02" / "03-01-05-02-01-01-02.wav"
    proc = run_cli("plot", wav, "--out", tmp_path / "fig", check=True)
    names = [*recording.FIGURES, recording.PAGE]
    assert sorted(Path(line).name for line in proc.stdout.split()) == sorted(f"{n}.png" for n in names)
    for name in recording.FIGURES:
        check_png(tmp_path / "fig" / f"{name}.png", recording.PANEL_SIZE)
    check_png(tmp_path / "fig" / f"{recording.PAGE}.png", recording.PAGE_SIZE)
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == sorted(
        [MARKER, *(f"{n}.png" for n in names)]
    )
    again = run_cli("plot", wav, "--out", tmp_path / "fig")  # its own earlier output: written again
    assert again.returncode == 0 and again.stdout == proc.stdout, again.stderr


def test_plot_and_explore_never_write_into_a_folder_emotune_did_not_write(run_cli, data_dir, tmp_path):
    """A foreign folder is refused with one line, nothing written or deleted in it (issue 17)."""
    wav = data_dir / "ravdess" / "Actor_02" / "03-01-05-02-01-01-02.wav"
    mine = tmp_path / "project"
    (mine / "src").mkdir(parents=True)
    (mine / "src" / "a.py").write_text("print('mine')\n")
    (mine / "waveform.png").write_bytes(b"my own picture")  # a name plot would write
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    for command in (["plot", wav], ["explore", data_dir / "ravdess" / "Actor_01"]):
        proc = run_cli(*command, "--out", mine)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and "not an earlier output of emotune figures" in proc.stderr
        assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before
    (tmp_path / "empty").mkdir()  # an empty folder is fine, and becomes emotune's
    assert run_cli("plot", wav, "--out", tmp_path / "empty").returncode == 0
    assert marked_by(tmp_path / "empty") == "emotune figures"
    here = tmp_path / "here"  # no --out: a new folder emotune-plot, never the current folder itself
    here.mkdir()
    assert run_cli("plot", wav, cwd=here).returncode == 0
    assert [p.name for p in here.iterdir()] == ["emotune-plot"]
    assert marked_by(here / "emotune-plot") == "emotune figures"
    assert (here / "emotune-plot" / "waveform.png").is_file()
    foreign = tmp_path / "there" / "emotune-explore"  # a folder of that name that emotune did not write
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine\n")
    proc = run_cli("explore", data_dir / "ravdess" / "Actor_01", cwd=foreign.parent)
    assert proc.returncode == 1 and "not an earlier output of emotune figures" in proc.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_plot_of_a_non_audio_file_is_one_line_and_writes_nothing(run_cli, tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("these are not samples\n" * 20)
    proc = run_cli("plot", bogus, "--out", tmp_path / "fig")
    assert proc.returncode == 1
    assert proc.stderr.startswith("emotune: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "fig").exists()


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("plot", ["FILE", "--out", "formant", "example:"]),
        ("explore", ["DATA", "--features", "--target", "--out", "purity", "example:"]),
        ("report", ["MODEL_DIR", "--out", "--png-dir", "--storage", "EMOTUNE_STORAGE", "example:"]),
    ],
)
def test_help(run_cli, command, words):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    for word in words:
        assert word in proc.stdout, word
