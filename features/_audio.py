"""Audio decoding: any file libsndfile reads, by content, to mono float32 at one sample rate.

The result is the same array ``librosa.load(path, sr=sr)`` returns (libsndfile decode, mean of the
channels, soxr ``soxr_hq`` resampling, length fixed to ``ceil(n * sr / native_sr)``), so features
computed from it match those of scripts that call ``librosa.load``. On top of that it:

- reads the file's bytes once (the cache hashes the same bytes; see :func:`decode_bytes`);
- refuses truncated WAV and AIFF files: when the header promises more audio than the file holds,
  libsndfile would silently return the shorter signal, which would then be cached as if complete;
- decodes plain 16-bit PCM WAV/AIFF (what emotional-speech corpora ship) with numpy straight from
  the bytes, bit-identical to libsndfile's float conversion but without its
  virtual-I/O overhead; everything else (FLAC, OGG, 24-bit, float, compressed WAV...) goes through
  libsndfile.

Limits (one rule for every command that reads audio; see :mod:`emotune.features._corpora`):

- only regular files are read: a FIFO, a device or a socket (or a link to one) is refused before it
  is opened, and again on the open descriptor (``O_NONBLOCK``, then ``fstat``), so neither a pipe
  without a writer nor ``/dev/zero`` can hang a command or fill its memory;
- a file holds at most :data:`MAX_FILE_BYTES` bytes and :data:`MAX_SECONDS` seconds of audio to be
  read whole (both checked before anything is decoded), which bounds the memory of one decode and
  of what is computed from it. :func:`read_windows` reads a longer recording window by window, in
  memory bounded by one window, and :func:`read_head` only its first seconds.

Every failure is an :class:`~emotune.features.AudioError` with a short reason.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import struct
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np

from emotune.features._corpora import MAX_FILE_BYTES, MAX_SECONDS, file_problem, not_regular
from emotune.features._errors import AudioError, FeatureError

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_SECONDS",
    "decode_bytes",
    "read_audio",
    "read_bytes",
    "read_head",
    "read_windows",
]


# WAVE format tags (mmreg.h) whose data chunk holds fixed-size frames of block_align bytes.
_WAVE_PCM = 0x0001
_WAVE_FLOAT = 0x0003
_WAVE_EXTENSIBLE = 0xFFFE
# AIFC compression types stored as plain frames of channels * ceil(bits / 8) bytes.
_AIFC_PLAIN = {b"NONE": ">", b"twos": ">", b"sowt": "<", b"fl32": None, b"FL32": None, b"fl64": None}
# libsndfile scales 16-bit PCM by 1 / 0x8000 when reading floats; a power of two, so exact in float32.
_PCM16_SCALE = np.float32(1.0 / 0x8000)


@dataclass(frozen=True)
class _Pcm16:
    """Where a WAV/AIFF file keeps its 16-bit PCM samples: ``frames * channels`` values of
    ``dtype`` ("<i2" or ">i2") from byte ``offset``, at ``rate`` Hz."""

    rate: int
    channels: int
    frames: int
    offset: int
    dtype: str


def read_audio(path: str | os.PathLike[str], *, sr: int = 22050) -> np.ndarray:
    """Read an audio file as mono float32 at ``sr`` Hz, by content (not by extension).

    Args:
        path: Any file libsndfile reads: WAV (extra RIFF chunks ignored), AIFF (also behind a
            ``.wav`` name), FLAC, OGG...
        sr: Target sample rate in Hz. Any native rate is resampled with soxr ``soxr_hq``,
            as ``librosa.load`` does.

    Returns:
        y: [shape=(n,), dtype=float32] the mean of the channels, ``n >= 1``.

    Raises:
        AudioError: unreadable, empty, truncated, not audio, or no samples.
        FeatureError: ``sr`` is not a positive integer.

    Example:
        >>> y = read_audio("ravdess/Actor_01/03-01-05-01-01-01-01.wav")  # doctest: +SKIP
        >>> y.dtype, y.ndim
        (dtype('float32'), 1)
    """
    _check_sr(sr)
    return decode_bytes(read_bytes(path), sr=sr, path=os.fspath(path))


def read_bytes(path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The whole content of a regular file of at most ``max_bytes`` bytes.

    A FIFO, a device or a socket (or a link to one) is refused without being opened for reading.

    Raises:
        AudioError: not a regular file, cannot be read, or larger than ``max_bytes``.
    """
    with _open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise AudioError(os.fspath(path), _too_large(size, max_bytes))
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise AudioError(os.fspath(path), f"cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # it grew while being read
        raise AudioError(os.fspath(path), _too_large(len(data), max_bytes))
    return data


def _too_large(size: int, limit: int) -> str:
    return (
        f"too large: {size / 2**20:.1f} MiB, the limit for a file read whole is {limit / 2**20:.0f} MiB "
        "(predict --window S reads long recordings window by window)"
    )


def _too_long(seconds: float, limit: float) -> str:
    return (
        f"too long: {seconds:.1f} s of audio, the limit for a file read whole is {limit:.0f} s "
        "(predict --window S reads long recordings window by window)"
    )


def _open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """Open a regular file for reading; anything else is refused, never read (and never blocks)."""
    name = os.fspath(path)
    problem = file_problem(path)
    if problem is not None:
        raise AudioError(name, problem)
    try:
        # O_NONBLOCK: should the path have become a FIFO since the check, open() returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise AudioError(name, f"cannot read ({exc.strerror or exc})") from None
    problem = not_regular(os.fstat(fd).st_mode)
    if problem is not None:
        os.close(fd)
        raise AudioError(name, problem)
    os.set_blocking(fd, True)
    return open(fd, "rb", closefd=True)


def decode_bytes(
    data: bytes, *, sr: int = 22050, path: str = "<bytes>", max_seconds: float | None = MAX_SECONDS
) -> np.ndarray:
    """Decode an audio file held in memory; the same result as :func:`read_audio` on its path.

    Meant for callers that already hold the bytes (the feature cache hashes them first), so each
    file is read from disk once.

    Args:
        data: The whole file's content.
        sr: Target sample rate in Hz.
        path: Name used in error messages.
        max_seconds: Refuse a file holding more seconds of audio than this, before decoding it
            (None: no limit).

    Returns:
        y: [shape=(n,), dtype=float32] mono audio at ``sr``, ``n >= 1``.

    Raises:
        AudioError: empty, truncated, not audio, too long, non-finite samples or no samples.
        FeatureError: ``sr`` is not a positive integer.
    """
    _check_sr(sr)
    if not data:
        raise AudioError(path, "empty file")
    pcm16 = _parse_header(data, path)
    if pcm16 is not None:
        if max_seconds is not None and pcm16.frames > max_seconds * pcm16.rate:
            raise AudioError(path, _too_long(pcm16.frames / pcm16.rate, max_seconds))
        y, native_sr = _decode_pcm16(data, pcm16), pcm16.rate
    else:
        y, native_sr = _decode_libsndfile(data, path, max_seconds)
    if y.size == 0:
        raise AudioError(path, "no audio (0 samples)")
    return _resample(y, native_sr, sr)


def _check_sr(sr: object) -> None:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise FeatureError(f"sr={sr!r}: the sample rate must be a positive integer")


# --------------------------------------------------------------------------------------------------
# Header parsing: truncation checks and the 16-bit PCM fast path.


def _parse_header(data: bytes, path: str) -> _Pcm16 | None:
    """Check a RIFF/RIFX/RF64 or FORM (AIFF/AIFC) container against the file's length.

    Returns:
        Where the samples are when they are plain 16-bit PCM at an integer rate, else None: other
        containers and encodings are left to libsndfile.

    Raises:
        AudioError: the header promises more audio than the file holds.
    """
    magic = data[:4]
    if magic in (b"RIFF", b"RIFX", b"RF64"):
        if len(data) < 12:
            raise AudioError(path, f"truncated: {len(data)}-byte file ends inside the RIFF header")
        if data[8:12] != b"WAVE":
            return None
        return _parse_wave(data, path, "<" if magic != b"RIFX" else ">", rf64=magic == b"RF64")
    if magic == b"FORM":
        if len(data) < 12:
            raise AudioError(path, f"truncated: {len(data)}-byte file ends inside the FORM header")
        if data[8:12] not in (b"AIFF", b"AIFC"):
            return None
        return _parse_aiff(data, path, aifc=data[8:12] == b"AIFC")
    return None


def _chunks(data: bytes, endian: str):
    """Yield ``(chunk_id, offset_of_body, declared_size)`` for each chunk after a 12-byte header.

    A chunk header cut off by the end of the file yields ``(None, offset, 0)`` and stops.
    """
    pos, n = 12, len(data)
    fmt = endian + "4sI"
    while pos < n:
        if pos + 8 > n:
            yield None, pos, 0
            return
        cid, size = struct.unpack_from(fmt, data, pos)
        yield cid, pos + 8, size
        pos += 8 + size + (size & 1)  # chunks are padded to an even length


def _truncated_before_audio(path: str, cid: bytes | None, body: int, size: int, n: int) -> AudioError:
    if cid is None:
        return AudioError(path, f"truncated: the file ends at byte {n}, before the audio data")
    name = cid.decode("latin-1")
    return AudioError(path, f"truncated: chunk '{name}' promises {size} bytes, file holds {max(n - body, 0)}")


def _parse_wave(data: bytes, path: str, endian: str, *, rf64: bool) -> _Pcm16 | None:
    n = len(data)
    fmt_chunk: tuple[int, int, int, int, int] | None = None  # tag, channels, rate, block_align, bits
    data_body = data_size = -1
    ds64_data_size: int | None = None
    for cid, body, size in _chunks(data, endian):
        if cid == b"ds64" and body + 16 <= n:
            ds64_data_size = struct.unpack_from("<Q", data, body + 8)[0]
        if cid == b"fmt " and size >= 16 and body + 16 <= n:
            tag, channels, rate, _, block_align, bits = struct.unpack_from(endian + "HHIIHH", data, body)
            if tag == _WAVE_EXTENSIBLE and size >= 40 and body + 26 <= n:
                tag = struct.unpack_from(endian + "H", data, body + 24)[0]  # sub-format GUID's first 2 bytes
            fmt_chunk = (tag, channels, rate, block_align, bits)
        if cid == b"data":
            data_body, data_size = body, size
            if rf64 and size == 0xFFFFFFFF and ds64_data_size is not None:
                data_size = ds64_data_size
            if fmt_chunk is not None:
                break
            continue  # a fmt chunk after the data chunk is legal; keep walking
        if data_body < 0 and (cid is None or body + size > n):
            raise _truncated_before_audio(path, cid, body, size, n)
    if data_body < 0:
        return None  # no data chunk at all: libsndfile says what is wrong
    held = n - data_body
    # 0xFFFFFFFF (and 0 with bytes following) mark a stream whose writer never patched the size.
    if data_size == 0xFFFFFFFF or (data_size == 0 and held > 0):
        return None
    tag, channels, rate, block_align, bits = fmt_chunk or (0, 0, 0, 0, 0)
    plain = tag in (_WAVE_PCM, _WAVE_FLOAT) and channels > 0 and block_align > 0 and rate > 0
    if data_size > held:
        if plain:
            raise AudioError(
                path,
                f"truncated: header promises {data_size // block_align} frames, "
                f"file holds {held // block_align}",
            )
        raise AudioError(path, f"truncated: header promises {data_size} bytes of audio, file holds {held}")
    if not (tag == _WAVE_PCM and bits == 16 and block_align == 2 * channels and rate > 0):
        return None
    return _Pcm16(
        rate=rate, channels=channels, frames=data_size // block_align, offset=data_body, dtype=endian + "i2"
    )


def _parse_aiff(data: bytes, path: str, *, aifc: bool) -> _Pcm16 | None:
    n = len(data)
    comm: tuple[int, int, int, float, bytes] | None = None  # channels, frames, bits, rate, compression
    ssnd_body = ssnd_size = -1
    for cid, body, size in _chunks(data, ">"):
        if cid == b"COMM" and size >= 18 and body + 18 <= n:
            channels, frames, bits = struct.unpack_from(">hIh", data, body)
            compression = data[body + 18 : body + 22] if aifc and size >= 22 else b"NONE"
            comm = (channels, frames, bits, _ieee_extended(data[body + 8 : body + 18]), compression)
        if cid == b"SSND":
            ssnd_body, ssnd_size = body, size
            if comm is not None:
                break
            continue
        if ssnd_body < 0 and (cid is None or body + size > n):
            if comm is not None and comm[1] == 0:
                return None  # a header that promises no audio: "no audio" from the decoder
            raise _truncated_before_audio(path, cid, body, size, n)
    if comm is None:
        return None
    channels, frames, bits, rate, compression = comm
    if ssnd_body < 0:
        if frames > 0:
            raise AudioError(path, f"truncated: header promises {frames} frames, file holds 0")
        return None
    if compression not in _AIFC_PLAIN or channels <= 0 or bits <= 0 or ssnd_body + 8 > n:
        # Compressed AIFC: its frames are not fixed-size; check the chunk size alone.
        if ssnd_size > n - ssnd_body:
            raise AudioError(
                path, f"truncated: header promises {ssnd_size} bytes of audio, file holds {n - ssnd_body}"
            )
        return None
    data_offset = struct.unpack_from(">I", data, ssnd_body)[0]
    start = ssnd_body + 8 + data_offset
    frame_bytes = channels * ((bits + 7) // 8)
    held = max(min(n, ssnd_body + ssnd_size) - start, 0) // frame_bytes
    if frames > held:
        raise AudioError(path, f"truncated: header promises {frames} frames, file holds {held}")
    byte_order = _AIFC_PLAIN[compression]
    if not (byte_order and bits == 16 and math.isfinite(rate) and rate > 0 and rate.is_integer()):
        return None
    return _Pcm16(rate=int(rate), channels=channels, frames=frames, offset=start, dtype=byte_order + "i2")


def _ieee_extended(b: bytes) -> float:
    """The 80-bit IEEE 754 extended float of AIFF's COMM sample rate."""
    expon, mantissa = struct.unpack(">HQ", b)
    sign = -1.0 if expon & 0x8000 else 1.0
    expon &= 0x7FFF
    if expon == 0 and mantissa == 0:
        return 0.0
    if expon == 0x7FFF:
        return math.nan
    return sign * math.ldexp(mantissa, expon - 16383 - 63)


# --------------------------------------------------------------------------------------------------
# Decoding, downmix and resampling.


def _decode_pcm16(data: bytes, where: _Pcm16) -> np.ndarray:
    """16-bit PCM straight from the bytes; identical to libsndfile's float32 read."""
    pcm = np.frombuffer(data, dtype=where.dtype, count=where.frames * where.channels, offset=where.offset)
    y = pcm.astype(np.float32)
    y *= _PCM16_SCALE
    if where.channels > 1:
        # (channels, n) then the mean over channels, exactly as librosa.to_mono does.
        y = np.mean(y.reshape(-1, where.channels).T, axis=0)
    return y


def _decode_libsndfile(data: bytes, path: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        f = sf.SoundFile(io.BytesIO(data))
    except sf.SoundFileError as exc:
        raise AudioError(path, f"not an audio file ({_libsndfile_reason(exc)})") from None
    try:
        with f:
            native_sr, promised = f.samplerate, f.frames
            if max_seconds is not None and promised > max_seconds * native_sr:
                raise AudioError(path, _too_long(promised / native_sr, max_seconds))
            y = f.read(dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:  # e.g. a cut FLAC: "flac decoder lost sync"
        raise AudioError(path, f"cannot decode, truncated or corrupt ({_libsndfile_reason(exc)})") from None
    if 0 < len(y) < promised:
        raise AudioError(path, f"truncated: header promises {promised} frames, file holds {len(y)}")
    return _mono(y, path), int(native_sr)


def _mono(y: np.ndarray, path: str) -> np.ndarray:
    """[shape=(n,)] the mean of the channels of a ``(n, channels)`` float32 block, checked finite."""
    y = y.T
    y = np.mean(y, axis=0) if y.shape[0] > 1 else y[0]
    if y.size and not np.isfinite(y).all():
        raise AudioError(path, "non-finite samples (NaN or inf)")
    return np.ascontiguousarray(y)


def _libsndfile_reason(exc: Exception) -> str:
    """libsndfile's own message, e.g. "Format not recognised." -> "format not recognised"."""
    reason = str(getattr(exc, "error_string", "") or exc).strip().rstrip(".")
    reason = reason.removeprefix("Error : ")
    return reason[:1].lower() + reason[1:]


def _resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``librosa.resample(y, orig_sr=..., target_sr=..., res_type="soxr_hq")`` without its checks."""
    if orig_sr == target_sr:
        return y
    import soxr

    n_out = int(np.ceil(y.shape[-1] * float(target_sr) / orig_sr))
    y_hat = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")
    if y_hat.shape[-1] > n_out:
        y_hat = y_hat[:n_out]
    elif y_hat.shape[-1] < n_out:
        y_hat = np.pad(y_hat, (0, n_out - y_hat.shape[-1]))
    return np.ascontiguousarray(y_hat, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# Long recordings: window by window, or only the beginning.


def windows_of(n_samples: int, sr: int, seconds: float) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` sample ranges: windows of ``seconds``; a short tail joins the last one.

    A tail shorter than half a window joins the window before it.
    """
    size = max(1, int(round(seconds * sr)))
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < n_samples:
        end = min(start + size, n_samples)
        if bounds and end - start < size / 2:
            bounds[-1] = (bounds[-1][0], end)
        else:
            bounds.append((start, end))
        start = end
    return bounds or [(0, n_samples)]


def read_windows(
    path: str | os.PathLike[str], *, sr: int = 22050, seconds: float
) -> Iterator[tuple[float, float, np.ndarray]]:
    """A recording of any length, window by window, in memory bounded by one window.

    The windows are :func:`windows_of` the file's frames at its own rate; each is decoded, mixed to
    mono and resampled to ``sr`` on its own (as :func:`read_audio` would a file holding only that
    window). The file is never read whole: its size is not limited, and a truncated WAV or AIFF is
    refused as :func:`read_audio` refuses it.

    Args:
        path: A regular audio file (any format libsndfile reads).
        sr: Target sample rate in Hz.
        seconds: Window length in seconds (positive).

    Yields:
        ``(start, end, y)``: the window's bounds in seconds and its samples
        [shape=(n,), dtype=float32] at ``sr``.

    Raises:
        AudioError: not a regular file, not audio, truncated, or non-finite samples.
    """
    if not seconds > 0:
        raise FeatureError(f"seconds={seconds!r}: a window must be a positive number of seconds")
    for a, b, rate, _, y in _read_spans(path, sr, lambda frames, rate: windows_of(frames, rate, seconds)):
        yield a / rate, b / rate, y


def read_head(path: str | os.PathLike[str], *, sr: int = 22050, seconds: float) -> tuple[np.ndarray, float]:
    """The first ``seconds`` of a recording of any length, and the whole recording's duration.

    Only those seconds are decoded (see :func:`read_windows`): memory is bounded by ``seconds``.

    Returns:
        ``(y, duration)``: [shape=(n,), dtype=float32] mono samples at ``sr`` and the file's length
        in seconds.

    Raises:
        AudioError: as :func:`read_windows`.
    """
    if not seconds > 0:
        raise FeatureError(f"seconds={seconds!r}: must be a positive number of seconds")
    spans = _read_spans(path, sr, lambda frames, rate: [(0, min(frames, max(1, int(seconds * rate))))])
    _, _, rate, frames, y = next(spans)
    spans.close()
    return y, frames / rate


_Spans = Callable[[int, int], list[tuple[int, int]]]


def _read_spans(
    path: str | os.PathLike[str], sr: int, choose: _Spans
) -> Generator[tuple[int, int, int, int, np.ndarray], None, None]:
    """``(start, end, rate, frames, y)`` for each frame span ``choose(frames, rate)`` picks."""
    _check_sr(sr)
    name = os.fspath(path)
    with _open_regular(path) as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise AudioError(name, "empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pcm16 = _parse_header(mm, name)  # type: ignore[arg-type]  # a mapping reads like bytes
        # The mapping served the header checks only: samples are read span by span with pread, so
        # the resident memory holds one span, not every page of the file once touched.
        if pcm16 is not None:
            yield from _pcm16_spans(f.fileno(), pcm16, name, sr, choose)
        else:
            yield from _libsndfile_spans(f, name, sr, choose)


def _pcm16_spans(
    fd: int, where: _Pcm16, path: str, sr: int, choose: _Spans
) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
    rate, ch, frames = where.rate, where.channels, where.frames
    if frames == 0:
        raise AudioError(path, "no audio (0 samples)")
    for a, b in choose(frames, rate):
        want = (b - a) * ch * 2
        try:
            raw = os.pread(fd, want, where.offset + a * ch * 2)
        except OSError as exc:
            raise AudioError(path, f"cannot read ({exc.strerror or exc})") from None
        if len(raw) < want:
            raise AudioError(
                path, f"truncated: header promises {frames} frames, file holds {a + len(raw) // (2 * ch)}"
            )
        y = np.frombuffer(raw, dtype=where.dtype).astype(np.float32)
        y *= _PCM16_SCALE
        if ch > 1:
            y = np.mean(y.reshape(-1, ch).T, axis=0)
        yield a, b, rate, frames, _resample(y, rate, sr)


def _libsndfile_spans(
    f: io.BufferedReader, path: str, sr: int, choose: _Spans
) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
    import soundfile as sf

    f.seek(0)
    try:
        snd = sf.SoundFile(f)
    except sf.SoundFileError as exc:
        raise AudioError(path, f"not an audio file ({_libsndfile_reason(exc)})") from None
    with snd:
        rate, frames = int(snd.samplerate), int(snd.frames)
        if frames <= 0:
            raise AudioError(path, "no audio (0 samples)")
        for a, b in choose(frames, rate):
            try:
                snd.seek(a)
                block = snd.read(b - a, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as exc:
                raise AudioError(
                    path, f"cannot decode, truncated or corrupt ({_libsndfile_reason(exc)})"
                ) from None
            if len(block) < b - a:
                raise AudioError(
                    path, f"truncated: header promises {frames} frames, file holds {a + len(block)}"
                )
            yield a, b, rate, frames, _resample(_mono(block, path), rate, sr)
