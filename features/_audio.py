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

Every failure is an :class:`~emotune.features.AudioError` with a short reason.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from emotune.features._errors import AudioError, FeatureError

__all__ = ["decode_bytes", "read_audio"]

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
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise AudioError(os.fspath(path), f"cannot read ({exc.strerror or exc})") from None
    return decode_bytes(data, sr=sr, path=os.fspath(path))


def decode_bytes(data: bytes, *, sr: int = 22050, path: str = "<bytes>") -> np.ndarray:
    """Decode an audio file held in memory; the same result as :func:`read_audio` on its path.

    Meant for callers that already hold the bytes (the feature cache hashes them first), so each
    file is read from disk once.

    Args:
        data: The whole file's content.
        sr: Target sample rate in Hz.
        path: Name used in error messages.

    Returns:
        y: [shape=(n,), dtype=float32] mono audio at ``sr``, ``n >= 1``.

    Raises:
        AudioError: empty, truncated, not audio, non-finite samples or no samples.
        FeatureError: ``sr`` is not a positive integer.
    """
    _check_sr(sr)
    if not data:
        raise AudioError(path, "empty file")
    pcm16 = _parse_header(data, path)
    if pcm16 is not None:
        y, native_sr = _decode_pcm16(data, pcm16), pcm16.rate
    else:
        y, native_sr = _decode_libsndfile(data, path)
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


def _decode_libsndfile(data: bytes, path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        f = sf.SoundFile(io.BytesIO(data))
    except sf.SoundFileError as exc:
        raise AudioError(path, f"not an audio file ({_libsndfile_reason(exc)})") from None
    try:
        with f:
            native_sr, promised = f.samplerate, f.frames
            y = f.read(dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:  # e.g. a cut FLAC: "flac decoder lost sync"
        raise AudioError(path, f"cannot decode, truncated or corrupt ({_libsndfile_reason(exc)})") from None
    if 0 < len(y) < promised:
        raise AudioError(path, f"truncated: header promises {promised} frames, file holds {len(y)}")
    y = y.T
    y = np.mean(y, axis=0) if y.shape[0] > 1 else y[0]
    if y.size and not np.isfinite(y).all():
        raise AudioError(path, "non-finite samples (NaN or inf)")
    return np.ascontiguousarray(y), int(native_sr)


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
