"""The one family of user-facing errors: each message is a single line naming the file or setting.

Besides emotune's own errors, the environment can stop any command: a full disk, a read-only or
forbidden folder, a folder where a file was meant, a port already taken. :func:`environment_error`
recognises those (an :class:`OSError` with such an errno, or the feature cache's SQLite reporting a
full or read-only disk), also when another library or a Ray task wrapped them, and says them in one
line that names the path or address; the CLI prints that line and exits 1. Any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence


class EmotuneError(Exception):
    """Base of every expected, user-facing error. The CLI prints it as one line and exits 1."""


class FeatureError(EmotuneError):
    """A bad feature parameter, label scheme or corpus setting."""


class AudioError(EmotuneError):
    """A file that cannot be used as audio (unreadable, empty, truncated, not audio)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# errno -> (what happened, what to do). Only conditions of the machine the user can change: a
# missing file (ENOENT) is left out, since inputs are checked before a command acts and an ENOENT
# that still surfaces points at a bug.
_ERRNO_TEXT: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free space there or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space there or write elsewhere"),
    errno.EFBIG: ("file too large for this file system or limit", "write elsewhere"),
    errno.EROFS: ("read-only file system", "write elsewhere"),
    errno.EACCES: ("permission denied", "check the folder's permissions or write elsewhere"),
    errno.EPERM: ("operation not permitted", "check the folder's permissions or write elsewhere"),
    errno.EISDIR: ("is a folder", "give a file name"),
    errno.ENOTDIR: ("a part of the path is not a folder", "check the path"),
    errno.EEXIST: ("exists already", "remove it or choose another path"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.EADDRINUSE: ("address already in use", "choose another port, or stop what listens there"),
    errno.EADDRNOTAVAIL: ("address not available on this machine", "choose another host"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n)"),
    errno.ENFILE: ("too many open files on the system", "close other programs"),
}
# SQLite result names of the feature cache's index that the disk, not emotune, causes.
_SQLITE_TEXT: dict[str, str] = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_READONLY": "it is read-only",
    "SQLITE_CANTOPEN": "it cannot be opened (a read-only or missing folder?)",
    "SQLITE_IOERR": "the disk failed to read or write",
    "SQLITE_PERM": "permission denied",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``__cause__``/``__context__``, and a Ray task error's ``cause``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for inner in (getattr(e, "cause", None), e.__cause__, e.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)


def _beside(name: str, targets: Sequence[str | os.PathLike[str]]) -> str:
    """The target for a writer's hidden temporary sibling of it (``.best.json.x1y2``), else ``name``.

    Atomic writers write ``.NAME.<random>`` beside ``NAME`` and rename it at the end; the user asked
    for ``NAME``, so that is what an error names.
    """
    here = os.path.abspath(name)
    for target in targets:
        goal = os.path.abspath(os.fsdecode(target))
        if os.path.dirname(here) == os.path.dirname(goal) and os.path.basename(here).startswith(
            f".{os.path.basename(goal)}."
        ):
            return goal
    return name


def _free_bytes(path: str) -> int:
    """Free bytes on the file system of ``path`` (of its nearest existing folder); huge if unknown."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        st = os.statvfs(path)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def environment_error(
    exc: BaseException,
    *,
    cache: str | os.PathLike[str] | None = None,
    targets: Sequence[str | os.PathLike[str]] = (),
) -> str | None:
    """One line for an error the machine caused (full disk, read-only folder, port taken), else None.

    Args:
        exc: What a command raised.
        cache: The feature cache folder the command used, named when its SQLite index fails.
        targets: What the command was writing (``--out``...). A writer's temporary file beside a
            target is named as the target; an error that carries no file name (a write to an open
            file that fills the disk) names the target on the fullest disk.

    Returns:
        ``"<path>: <what happened> (<ERRNO>); <what to do>"``, or None when ``exc`` is not such an
        error (a bug: the caller keeps the traceback).
    """
    import sqlite3

    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _ERRNO_TEXT:
            what, todo = _ERRNO_TEXT[e.errno]
            names = [_beside(os.fsdecode(p), targets) for p in (e.filename, e.filename2) if p is not None]
            where = " -> ".join(dict.fromkeys(names))
            if not where and targets:
                fullest = min(targets, key=lambda t: _free_bytes(os.fsdecode(t)))
                where = f"writing {os.path.abspath(os.fsdecode(fullest))}"
            name = errno.errorcode.get(e.errno, str(e.errno))
            return f"{where + ': ' if where else ''}{what} ({name}); {todo}"
        if isinstance(e, sqlite3.Error):
            code = str(getattr(e, "sqlite_errorname", "") or "")
            base = next((k for k in _SQLITE_TEXT if code == k or code.startswith(k + "_")), None)
            if base is not None:
                folder = f" {os.fsdecode(cache)}" if cache is not None else ""
                return (
                    f"feature cache{folder}: its index failed, {_SQLITE_TEXT[base]} ({code}); "
                    "free space there or use --cache on another disk"
                )
    return None
