"""plot of a long recording draws its first MAX_SECONDS, in bounded memory, and says so (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from emotune.search.viz.recording import MAX_SECONDS, analyse

_MEASURED = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=600)
sys.stderr.write(proc.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, proc.returncode, file=sys.stderr)
"""


def _hour(path: Path, seconds: int = 3600, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        t = np.arange(rate * 60) / rate
        minute = np.repeat((np.sin(2 * np.pi * 150 * t) * 7000).astype("<i2"), 2).tobytes()
        for _ in range(seconds // 60):
            w.writeframes(minute)
    return path


def test_analyse_reads_only_the_beginning(tmp_path: Path):
    r = analyse(_hour(tmp_path / "three-minutes.wav", seconds=180))
    assert r.truncated and r.duration == 180.0
    assert len(r.y) == int(MAX_SECONDS * r.sr) and r.magnitude.shape[1] == len(r.y) // r.hop_length + 1


def test_plot_of_an_hour_long_file_is_bounded_and_said(tmp_path: Path):
    hour = _hour(tmp_path / "hour.wav")
    emotune = str(Path(sys.executable).parent / "emotune")
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, emotune, "plot", str(hour), "--out", str(tmp_path / "fig")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    *lines, last = proc.stderr.strip().splitlines()
    mib, rc = map(int, last.split())
    assert rc == 0, proc.stderr
    assert any(f"3600.0 s long: drawing its first {MAX_SECONDS:.0f} s" in line for line in lines), lines
    assert (tmp_path / "fig" / "recording.png").is_file()
    assert mib < 1536  # 18.6 GB before: the whole hour's spectrogram
