"""What the figure modules share: a headless matplotlib, PNG bytes, atomic writes, one error type."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emotune.features import EmotuneError

DPI = 100


class VizError(EmotuneError):
    """A figure or report that cannot be made from what was given (one line)."""


def figure(width_px: int, height_px: int, **subplots: Any) -> Any:
    """A matplotlib Figure of exactly ``width_px`` x ``height_px`` pixels, drawn by the Agg backend.

    Uses :class:`matplotlib.figure.Figure` directly (no pyplot state, no display needed) and the fonts
    matplotlib ships (DejaVu Sans), so the same pictures come out on a bare machine.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained", **subplots)


@contextlib.contextmanager
def quiet_plotting() -> Iterator[None]:
    """Silence the experimental-feature and layout warnings libraries raise while drawing."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes at its own size (no tight bbox: the stated size is the size)."""
    import io

    buf = io.BytesIO()
    with quiet_plotting():
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and one rename.

    A reader sees the old file or the whole new one, never a part; a failed write leaves no file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FIGURES = "emotune figures"  # the owner in the marker of folders plot, explore and report --png-dir fill


def check_dir(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """Refuse a figures folder emotune may not write into, creating nothing (call before the work).

    Allowed: a missing folder, an empty one, or one that plot, explore or ``report --png-dir`` wrote
    (its marker, see :mod:`emotune.features._outdir`). Anything else is a one-line error.
    """
    from emotune.features._outdir import check_output_dir

    return check_output_dir(path, owner=FIGURES, flag=flag)


def out_dir(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """``--out DIR`` made if missing and marked as emotune's; a file or a foreign folder is a one-line error."""
    from emotune.features._outdir import prepare_output_dir

    return prepare_output_dir(path, owner=FIGURES, flag=flag)
