"""Small helpers shared by the command modules: storage option, tables, JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emotune.features import EmotuneError
from emotune.search._text import json_clean, table

__all__ = [
    "OutputError",
    "Outputs",
    "add_cache",
    "add_corpus",
    "add_ray",
    "add_storage",
    "check_inputs",
    "command",
    "json_clean",
    "print_json",
    "run_options",
    "stdout_file",
    "stdout_name",
    "table",
]


def command(sub: Any, name: str, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand whose description and examples keep their line breaks (``help``, ``description``,
    ``epilog`` and any other ``add_parser`` keyword as given)."""
    return sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kw)  # type: ignore[no-any-return]


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data and cluster settings ``search`` and ``evaluate`` share, as keyword arguments."""
    return {
        "target": args.target,
        "protocol": args.protocol,
        "metric": args.metric,
        "seed": args.seed,
        "speaker_norm": args.speaker_norm,
        "corpus": args.corpus,
        "labels": args.labels,
        "cache_dir": args.cache,
        "ray_address": args.ray_address,
        "num_cpus": args.num_cpus,
    }


def add_storage(p: argparse.ArgumentParser) -> None:
    """``--storage URL`` (env EMOTUNE_STORAGE; default: the embedded PostgreSQL)."""
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="postgresql://user@host:port/db (env EMOTUNE_STORAGE; default: the embedded server in $EMOTUNE_HOME/pg)",
    )


def add_cache(p: argparse.ArgumentParser) -> None:
    """``--cache DIR``: the feature cache."""
    p.add_argument(
        "--cache", default=None, metavar="DIR", help="feature cache (default: $EMOTUNE_HOME/cache)"
    )


def add_corpus(p: argparse.ArgumentParser) -> None:
    """``--corpus`` (force a reader) and ``--labels CSV`` (labels of a generic corpus)."""
    from emotune.features._corpora import CORPORA

    p.add_argument("--corpus", default=None, choices=CORPORA, help="force the corpus reader")
    p.add_argument("--labels", default=None, metavar="CSV", help="labels file for a generic corpus")


def add_ray(p: argparse.ArgumentParser) -> None:
    """``--ray-address`` and ``--num-cpus``: the Ray cluster to attach to, or the local one's size."""
    from emotune.search.cli.options import POSITIVE

    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to attach to (env RAY_ADDRESS); default: a local Ray",
    )
    p.add_argument("--num-cpus", type=POSITIVE, default=None, help="CPUs of the local Ray (default: all)")


def check_inputs(spaces: Sequence[str], data: Sequence[str]) -> None:
    """Spaces and data folders, checked before the storage is resolved (that may start a server).

    Raises:
        EmotuneError: An unknown space (the message lists the valid ones) or a missing data path.
    """
    from pathlib import Path

    from emotune.features import FeatureError
    from emotune.spaces import get

    for space in spaces:
        get(space)
    for path in data:
        if not Path(path).exists():
            raise FeatureError(f"{path}: no such file or folder")


class OutputError(EmotuneError):
    """An output path that cannot be written (a read-only or forbidden folder), found before acting."""


class Outputs:
    """The paths a command was asked to write (``--out``, ``--png-dir``, ``corpus synth OUT``).

    :meth:`check`, before the command acts, refuses a target whose folder cannot be written (a
    read-only file system, no permission), so no work is done for an output that cannot land.
    :meth:`discard`, after a failure, removes what the command created at targets that did not exist
    when it started: a command that stops half-way (a full disk, an error after some figures were
    written, Ctrl-C) leaves nothing where its output was to go, not a partial folder of figures, not
    an empty folder, not the parent folders ``--out a/b/c.json`` created. Only what did not exist
    before is removed (the topmost missing folder of each target); a path that existed is never
    touched (writers replace files in it atomically).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.targets: list[tuple[str, Path]] = []  # (option, absolute path)
        self.new: list[Path] = []
        out = "OUT" if getattr(args, "corpus_command", None) else "--out"  # corpus synth OUT
        options = ((out, getattr(args, "out", None)), ("--png-dir", getattr(args, "png_dir", None)))
        for option, value in options:
            if not isinstance(value, str) or not value or value == "-":
                continue
            path = Path(value).absolute()
            self.targets.append((option, path))
            if os.path.lexists(path):
                continue
            while not os.path.lexists(path.parent) and path.parent != path:
                path = path.parent  # the topmost folder this command would create
            self.new.append(path)

    @property
    def paths(self) -> list[str]:
        """The targets, absolute."""
        return [str(path) for _, path in self.targets]

    def check(self) -> None:
        """Refuse a target whose nearest existing folder is read-only or not writable for this user.

        Raises:
            OutputError: Naming the option, the path, the folder and why.
        """
        import errno

        for option, path in self.targets:
            folder = path if path.is_dir() else path.parent
            while not folder.exists() and folder.parent != folder:
                folder = folder.parent
            if not folder.is_dir():
                continue  # a file where a folder is needed: the writer names it
            if os.access(folder, os.W_OK | os.X_OK):
                continue
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
            why = (
                "read-only file system (EROFS)"
                if read_only
                else f"not writable ({errno.errorcode[errno.EACCES]})"
            )
            where = "" if folder == path else f" in {folder}"
            raise OutputError(f"{option} {path}: cannot write{where}: {why}; write elsewhere")

    def discard(self) -> None:
        """Remove what the command created at its new targets (nothing when it created nothing).

        A target that came to hold the emotune home (``EMOTUNE_HOME=out/home``: the embedded
        server's data, the cache) is left alone.
        """
        import shutil

        try:
            from emotune.features._home import home_path

            home: Path | None = home_path()
        except EmotuneError:
            home = None
        for path in self.new:
            if home is not None and home.is_relative_to(path):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                with contextlib.suppress(OSError):
                    path.unlink()


def print_json(obj: Any) -> None:
    """Machine-readable output: JSON on stdout and nothing else there.

    The document is made whole before the first byte goes out, and written and flushed at once: a
    failure to write (a full disk behind ``> file``) is an :class:`OSError` naming standard output,
    which the CLI prints as one line.
    """
    text = json.dumps(json_clean(obj), indent=2) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        exc.filename = exc.filename or stdout_name()
        raise


def stdout_file() -> str | None:
    """The file standard output is redirected to (``> file``), or None (a terminal, a pipe)."""
    import stat

    try:
        fd = sys.stdout.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return os.readlink(f"/proc/self/fd/{fd}")
    except (OSError, ValueError):
        pass
    return None


def stdout_name() -> str:
    """What standard output is, for an error line: ``standard output`` and the file it goes to."""
    file = stdout_file()
    return f"standard output ({file})" if file else "standard output"
