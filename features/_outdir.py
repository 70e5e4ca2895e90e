"""Output folders emotune owns: the one rule for every command that writes a folder.

A command writes into a folder only when the folder is new (it creates it), empty, or recognised as
that command's own earlier output. Folders emotune creates or fills carry a marker file,
:data:`MARKER`, naming the command that wrote them (``{"written_by": "emotune plot"}``); a model
directory is recognised by its manifest instead (see :mod:`emotune.search.vote._modeldir`, which
passes its own ``recognise``). Any other non-empty folder is refused with one line, before anything
is created, written or deleted: emotune never deletes or overwrites what it did not write.

:func:`check_output_dir` only looks (call it before the work, so a refusal costs nothing and
leaves nothing behind); :func:`prepare_output_dir` creates the folder if needed and marks it. The
files inside are each written atomically by the command (temporary file + rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from emotune.features._errors import EmotuneError

__all__ = [
    "MARKER",
    "OutputDirError",
    "check_output_dir",
    "marked_by",
    "prepare_output_dir",
    "write_atomic",
]

MARKER = ".emotune-output"


class OutputDirError(EmotuneError):
    """An output folder emotune may not write into (a file, or a folder it did not write)."""


def marked_by(folder: str | os.PathLike[str]) -> str | None:
    """The command named in ``folder``'s marker (``"emotune plot"``), or None when it has none."""
    path = Path(folder) / MARKER
    try:
        if not path.is_file() or path.stat().st_size > 4096:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    owner = doc.get("written_by") if isinstance(doc, dict) else None
    return owner if isinstance(owner, str) else None


def check_output_dir(
    path: str | os.PathLike[str],
    *,
    owner: str,
    flag: str = "--out",
    recognise: Callable[[Path], bool] | None = None,
    hint: str = "give a new or empty folder",
) -> Path:
    """Refuse an output folder ``owner`` may not write into; create nothing. Returns ``path``.

    Allowed: a missing path, an empty folder, a folder whose marker names ``owner``, or one that
    ``recognise`` accepts (a model directory by its manifest).

    Args:
        path: The folder the command was asked to write.
        owner: The command, as it appears in the marker (``"emotune plot"``).
        flag: How the user gave the path, for the message (``--out``, ``--png-dir``, ``OUT``).
        recognise: Another way to know the folder as this command's earlier output.
        hint: What to do instead, the end of the refusal.

    Raises:
        OutputDirError: ``path`` is a file (or a link to one), or a non-empty folder that is not
            ``owner``'s earlier output (one line, naming the folder and what it holds).
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{flag} {out}: exists and is not a folder")
    if not out.is_dir() and out.is_symlink():
        raise OutputDirError(f"{flag} {out}: is a broken symbolic link")
    if not out.is_dir():
        return out
    try:
        entries = sorted(e.name for e in out.iterdir())
    except OSError as exc:
        raise OutputDirError(f"{flag} {out}: cannot read the folder ({_why(exc)})") from None
    if not entries or marked_by(out) == owner or (recognise is not None and recognise(out)):
        return out
    other = marked_by(out)
    held = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    why = f"written by {other}" if other else f"holds {held}"
    raise OutputDirError(
        f"{flag} {out}: folder is not empty and not an earlier output of {owner} ({why}): nothing was "
        "written or deleted; " + hint
    )


def prepare_output_dir(
    path: str | os.PathLike[str],
    *,
    owner: str,
    flag: str = "--out",
    recognise: Callable[[Path], bool] | None = None,
    mark: bool = True,
) -> Path:
    """Check ``path`` (:func:`check_output_dir`), create it if missing and mark it as ``owner``'s.

    ``mark=False`` is for folders recognised another way (a model directory), which must hold
    nothing but their own files.

    Raises:
        OutputDirError: the folder is refused, or cannot be created or marked (one line).
    """
    out = check_output_dir(path, owner=owner, flag=flag, recognise=recognise)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if mark and marked_by(out) != owner:
            _write_marker(out, owner)
    except OSError as exc:
        raise OutputDirError(f"{flag} {out}: cannot create or mark it ({_why(exc)})") from None
    return out


def _write_marker(folder: Path, owner: str) -> None:
    text = json.dumps({"written_by": owner, "note": "emotune may overwrite its own files in this folder"})
    write_atomic(folder / MARKER, (text + "\n").encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` through a temporary file beside ``path`` and one rename: all or nothing."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _why(exc: OSError) -> str:
    """``No space left on device, ENOSPC``: the words and the code, as the CLI's other errors say it."""
    import errno

    name = errno.errorcode.get(exc.errno or 0)
    words = exc.strerror or str(exc)
    return f"{words}, {name}" if name else words
