"""predict reads audio by the one scanning rule (issue 17, defect 5): special files are reported and
never opened, long recordings are refused whole (naming the limit) or read window by window."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from test_predict import model  # noqa: F401  (the module-scoped model directory fixture, same folder)

from emotune.features import feature_params
from emotune.features._audio import MAX_SECONDS
from emotune.search.vote._predict import (
    MIN_WINDOW_SECONDS,
    PredictError,
    collect_files,
    extract_for,
    predict,
    windows_of,
)

ONE = "ravdess/Actor_02/03-01-05-02-01-01-02.wav"


def _long_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        t = np.arange(rate * 60) / rate
        minute = (np.sin(2 * np.pi * 180 * t) * 6000).astype("<i2").tobytes()
        for _ in range(int(seconds // 60)):
            w.writeframes(minute)
    return path


@pytest.fixture
def odd(data_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "odd" / "Actor_02"
    folder.mkdir(parents=True)
    shutil.copy(data_dir / ONE, folder)
    os.mkfifo(folder / "03-01-04-01-01-01-02.wav")
    (folder / "03-01-06-01-01-01-02.wav").symlink_to("/dev/zero")
    return folder.parent


def test_a_window_shorter_than_the_minimum_is_refused_naming_it(tmp_path: Path):
    with pytest.raises(PredictError, match=rf"the smallest window is {MIN_WINDOW_SECONDS:g} s"):
        predict(tmp_path / "no-model-needed", [tmp_path], window=0.001)


def test_special_files_are_errors_and_the_real_file_is_read(odd: Path):
    files, errors = collect_files([odd])
    assert [Path(f).name for f in files] == [Path(ONE).name]
    assert sorted(Path(p).name for p, _ in errors) == ["03-01-04-01-01-01-02.wav", "03-01-06-01-01-01-02.wav"]
    inputs = {"classic": {"feature_params": feature_params("classic")}}
    feats, spans = extract_for(files[0], inputs)
    assert feats["classic"].shape == (1, 180) and len(spans) == 1


def test_long_recordings_without_a_window_are_refused_with_the_limit(tmp_path: Path):
    long = _long_wav(tmp_path / "long.wav", MAX_SECONDS + 60)
    inputs = {"classic": {"feature_params": feature_params("classic")}}
    from emotune.features import AudioError

    with pytest.raises(AudioError, match=rf"limit for a file read whole is {MAX_SECONDS:.0f} s.*--window"):
        extract_for(str(long), inputs)
    feats, spans = extract_for(str(long), inputs, window=60.0)
    assert feats["classic"].shape == (int(MAX_SECONDS // 60) + 1, 180)
    assert spans[0] == (0.0, 60.0) and spans[-1][1] == pytest.approx(MAX_SECONDS + 60)


_MEASURED = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
sys.stderr.write(proc.stderr)
sys.stdout.write(proc.stdout)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, proc.returncode, file=sys.stderr)
"""


def test_cli_predict_on_a_folder_with_a_fifo_and_dev_zero(model, odd: Path):  # noqa: F811
    emotune = str(Path(sys.executable).parent / "emotune")
    # Address space capped as the acceptance check caps it: a regression fails, not the machine.
    cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))  # noqa: E731
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, emotune, "predict", str(model.out), str(odd), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=cap,
    )
    *lines, last = proc.stderr.strip().splitlines()
    mib, rc = map(int, last.split())
    assert rc == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [Path(r["path"]).name for r in rows] == [Path(ONE).name]
    assert len([line for line in lines if "not a regular file" in line]) == 2, lines
    assert mib < 3072


def test_cli_predict_window_limits(model, tmp_path: Path, run_cli):  # noqa: F811
    long = _long_wav(tmp_path / "long.wav", MAX_SECONDS + 60)
    whole = run_cli("predict", model.out, long, "--json")
    assert whole.returncode == 1 and f"{MAX_SECONDS:.0f} s" in whole.stderr and "--window" in whole.stderr
    windowed = run_cli("predict", model.out, long, "--json", "--window", "120")
    assert windowed.returncode == 0, windowed.stderr
    (row,) = json.loads(windowed.stdout)
    assert len(row["windows"]) == len(windows_of(int((MAX_SECONDS + 60) * 8000), 8000, 120.0))
    tiny = run_cli("predict", model.out, long, "--window", "0.001")
    assert tiny.returncode != 0 and f"{MIN_WINDOW_SECONDS:g} s" in tiny.stderr
    assert "Traceback" not in tiny.stderr + whole.stderr
