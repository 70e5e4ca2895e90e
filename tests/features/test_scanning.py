"""One scanning rule for every command that reads audio (issue 17, defects 5 and 8).

Regular files only: a FIFO, a device or a link to one is one failed path, never opened for
reading (so never a hang); a size and duration limit named in the message; long recordings read
window by window or only their beginning, in bounded memory; file names that are not UTF-8 build.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from emotune.features import AudioError, build, load, prune, read_audio, scan
from emotune.features._audio import (
    MAX_SECONDS,
    decode_bytes,
    read_bytes,
    read_head,
    read_windows,
    windows_of,
)
from emotune.features._corpora import collect_audio, file_problem

ONE = "ravdess/Actor_02/03-01-05-02-01-01-02.wav"


def _wav(path: Path, seconds: float, *, rate: int = 8000, channels: int = 1) -> Path:
    """A 16-bit PCM WAV of a 220 Hz tone, written in blocks (no whole signal in memory)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        block = rate * 60
        t = np.arange(block) / rate
        tone = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2")
        frames = np.repeat(tone, channels) if channels > 1 else tone
        left = int(seconds * rate)
        while left > 0:
            n = min(left, block)
            w.writeframes(frames[: n * channels].tobytes())
            left -= n
    return path


@pytest.fixture
def odd(data_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """A RAVDESS-named folder with one real file, a FIFO, a link to /dev/zero and a socket."""
    folder = tmp_path / "odd" / "Actor_02"
    folder.mkdir(parents=True)
    real = folder / Path(ONE).name
    shutil.copy(data_dir / ONE, real)
    fifo = folder / "03-01-04-01-01-01-02.wav"
    os.mkfifo(fifo)
    zero = folder / "03-01-06-01-01-01-02.wav"
    zero.symlink_to("/dev/zero")
    sock_path = folder / "03-01-07-01-01-01-02.wav"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    yield {"real": real, "fifo": fifo, "zero": zero, "socket": sock_path}
    sock.close()


def test_scan_reports_fifos_devices_and_sockets_as_failed_paths(odd: dict[str, Path]):
    result = scan([odd["real"].parent.parent])
    assert [r.path for r in result.rows] == [str(odd["real"])]
    failed = dict(result.failed)
    assert "a FIFO, not a regular file" in failed[str(odd["fifo"])]
    assert "a character device (the link leads to /dev/zero)" in failed[str(odd["zero"])]
    assert "a socket, not a regular file" in failed[str(odd["socket"])]
    # Named explicitly, the same rule (not "no such file").
    named = scan([odd["fifo"], odd["zero"], odd["real"]])
    assert [r.path for r in named.rows] == [str(odd["real"])] and len(named.failed) == 2


def test_collect_audio_is_the_same_rule_for_predict(odd: dict[str, Path], tmp_path: Path):
    files, errors = collect_audio([odd["real"].parent, tmp_path / "missing.wav"])
    assert files == [str(odd["real"])]
    reasons = dict(errors)
    assert set(reasons) == {
        str(odd["fifo"]),
        str(odd["zero"]),
        str(odd["socket"]),
        str(tmp_path / "missing.wav"),
    }
    assert reasons[str(tmp_path / "missing.wav")] == "no such file or folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert collect_audio([empty]) == ([], [(str(empty), "no audio files in this folder")])


def test_collect_audio_keeps_the_callers_spelling(odd: dict[str, Path], monkeypatch):
    monkeypatch.chdir(odd["real"].parent.parent)
    files, errors = collect_audio(["Actor_02", f"Actor_02/{odd['real'].name}"])
    assert files == [f"Actor_02/{odd['real'].name}"]  # named twice, listed once, relative as given
    assert sorted(p for p, _ in errors) == sorted(
        f"Actor_02/{odd[k].name}" for k in ("fifo", "zero", "socket")
    )


def test_readers_refuse_special_files_without_blocking(odd: dict[str, Path]):
    t0 = time.monotonic()
    for name in ("fifo", "zero", "socket"):
        for reader in (read_audio, read_bytes):
            with pytest.raises(AudioError, match="not a regular file"):
                reader(odd[name])
        with pytest.raises(AudioError, match="not a regular file"):
            next(read_windows(odd[name], seconds=1.0))
        with pytest.raises(AudioError, match="not a regular file"):
            read_head(odd[name], seconds=1.0)
    assert time.monotonic() - t0 < 5  # a FIFO without a writer would block open() forever
    assert file_problem(odd["real"]) is None


def test_a_fifo_swapped_in_after_the_check_is_refused_on_the_open_descriptor(tmp_path: Path, monkeypatch):
    from emotune.features import _audio

    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    monkeypatch.setattr(_audio, "file_problem", lambda path: None)  # the path passed the check, then changed
    with pytest.raises(AudioError, match="a FIFO, not a regular file"):
        read_bytes(fifo)


def test_size_and_duration_limits_are_named(tmp_path: Path, data_dir: Path):
    with pytest.raises(AudioError, match=r"too large: .* the limit for a file read whole is 0 MiB"):
        read_bytes(data_dir / ONE, max_bytes=1000)
    data = (data_dir / ONE).read_bytes()
    with pytest.raises(
        AudioError, match=r"too long: 3\.\d s of audio, the limit for a file read whole is 1 s"
    ):
        decode_bytes(data, max_seconds=1.0)
    long = _wav(tmp_path / "long.wav", MAX_SECONDS + 30)
    with pytest.raises(
        AudioError, match=rf"the limit for a file read whole is {MAX_SECONDS:.0f} s.*--window"
    ):
        read_audio(long)
    flac = tmp_path / "long.flac"
    import soundfile as sf

    with sf.SoundFile(flac, "w", samplerate=8000, channels=1, format="FLAC") as f:
        for _ in range(int(MAX_SECONDS // 60) + 1):
            f.write(np.zeros(8000 * 60, dtype=np.float32))
    with pytest.raises(AudioError, match="too long"):  # through libsndfile: checked before decoding
        read_audio(flac)


def test_read_windows_follows_windows_of_and_equals_read_audio_for_one_window(data_dir: Path, tmp_path: Path):
    path = data_dir / ONE
    whole = read_audio(path, sr=22050)
    (start, end, y), *rest = list(read_windows(path, sr=22050, seconds=60.0))
    assert rest == [] and start == 0.0 and end == pytest.approx(len(whole) / 22050, abs=1e-3)
    np.testing.assert_array_equal(y, whole)  # one window: exactly what read_audio returns
    spans = [(a, b) for a, b, _ in read_windows(path, sr=16000, seconds=1.0)]
    with wave.open(str(path)) as w:
        rate, frames = w.getframerate(), w.getnframes()
    assert spans == [(a / rate, b / rate) for a, b in windows_of(frames, rate, 1.0)]
    # libsndfile's path (FLAC): same windows.
    import soundfile as sf

    flac = tmp_path / "x.flac"
    sf.write(flac, sf.read(path)[0], rate, format="FLAC")
    assert [(a, b) for a, b, _ in read_windows(flac, sr=16000, seconds=1.0)] == spans
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(AudioError, match="truncated"):
        next(read_windows(cut, seconds=1.0))


# VmHWM: this process's own peak (ru_maxrss would include the pytest parent's at fork).
_RSS = """
import sys
from emotune.features._audio import read_head, read_windows
if sys.argv[2] == "windows":
    n = sum(1 for _ in read_windows(sys.argv[1], sr=22050, seconds=10.0))
else:
    y, duration = read_head(sys.argv[1], sr=22050, seconds=30.0)
    n = round(duration)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(n, int(hwm.split()[1]) // 1024)
"""


def test_an_hour_long_recording_is_read_in_bounded_memory(tmp_path: Path):
    hour = _wav(tmp_path / "hour.wav", 3600, rate=16000, channels=2)  # 230 MB, 460 MB as float32
    for mode, expected in (("windows", 360), ("head", 3600)):
        out = subprocess.run([sys.executable, "-c", _RSS, str(hour), mode], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        n, mib = map(int, out.stdout.split())
        assert n == expected and mib < 200, (mode, n, mib)


def test_read_head_reads_the_beginning_and_says_how_long_the_file_is(tmp_path: Path):
    path = _wav(tmp_path / "two-minutes.wav", 120, rate=8000)
    y, duration = read_head(path, sr=8000, seconds=30.0)
    assert duration == 120.0 and len(y) == 30 * 8000
    np.testing.assert_array_equal(y, read_audio(path, sr=8000)[: 30 * 8000])
    short, duration = read_head(path, sr=8000, seconds=500.0)
    assert duration == 120.0 and len(short) == 120 * 8000


def test_special_files_are_failed_files_of_a_build(odd: dict[str, Path], tmp_path: Path, ray_address: str):
    report = build([odd["real"].parent], cache_dir=tmp_path / "cache", progress=False)
    assert (report.files, report.built) == (4, 1)
    assert {f["path"] for f in report.failed} == {str(odd[k]) for k in ("fifo", "zero", "socket")}


def test_a_name_that_is_not_utf8_builds_loads_and_prunes(data_dir: Path, tmp_path: Path, ray_address: str):
    folder = tmp_path / "bytes" / "angry"
    folder.mkdir(parents=True)
    shutil.copy(data_dir / "ravdess/Actor_01/03-01-05-01-01-01-01.wav", folder / "a.wav")
    odd_name = os.fsdecode(b"bad\xff.wav")
    shutil.copy(data_dir / "ravdess/Actor_03/03-01-05-01-01-01-03.wav", folder / odd_name)
    for f in folder.iterdir():
        os.utime(f, (1_600_000_000, 1_600_000_000))  # old: the stat entries are trusted at once
    cache = tmp_path / "cache"
    cold = build([folder.parent], cache_dir=cache, progress=False)
    assert (cold.files, cold.built, cold.failed) == (2, 2, [])
    warm = build([folder.parent], cache_dir=cache, progress=False)
    assert (warm.built, warm.cached) == (
        0,
        2,
    ) and "ray_start" not in warm.timings  # the stat entry round-trips
    rows = scan([folder.parent]).rows
    assert load(rows, "classic", cache_dir=cache).X.shape == (2, 180)
    assert prune(cache) == 0  # the stat entry of the odd name still proves its file lives
    assert prune(cache, keep_paths=[folder.parent]) == 0


def test_cli_build_reports_a_non_utf8_name_with_path_hex(data_dir: Path, tmp_path: Path, run_cli):
    folder = tmp_path / "bytes" / "angry"
    folder.mkdir(parents=True)
    shutil.copy(data_dir / "ravdess/Actor_01/03-01-05-01-01-01-01.wav", folder / "a.wav")
    (folder / os.fsdecode(b"bad\xfe.wav")).write_bytes(b"no audio here")
    proc = run_cli("features", "build", folder.parent, "--cache", tmp_path / "cache", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    import json

    out = json.loads(proc.stdout)
    assert (out["files"], out["built"]) == (2, 1)
    (failed,) = out["failed"]
    assert bytes.fromhex(failed["path_hex"]) == os.fsencode(str(folder / os.fsdecode(b"bad\xfe.wav")))
    text = run_cli("features", "build", folder.parent, "--cache", tmp_path / "cache")
    assert text.returncode == 0 and "Traceback" not in text.stderr and "failed: " in text.stderr
