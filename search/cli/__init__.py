"""The `emotune` command: a thin argparse layer over the library.

Each group of commands lives in its own module with a ``register(subparsers)`` function; every
subcommand sets ``func(args) -> int``. Expected failures raise :class:`EmotuneError` and are printed
as one line (exit 1); so are errors the machine causes (a full disk, a read-only or forbidden
folder, a port in use: :func:`emotune.features._errors.environment_error`), also when they happen
while writing standard output. Usage errors exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from emotune.features import EmotuneError
from emotune.features._errors import environment_error
from emotune.search._text import emotune_version
from emotune.search.cli._common import Outputs, stdout_file, stdout_name
from emotune.search.cli.options import Parser

_GROUPS = (
    "emotune.search.cli.features",
    "emotune.search.cli.search",
    "emotune.search.cli.model",
    "emotune.search.cli.figures",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command group that is installed."""
    import importlib

    parser = Parser(
        prog="emotune",
        description="Distributed hyperparameter search for speech emotion recognition.",
        epilog="Example: emotune corpus synth demo-data && emotune features build demo-data",
    )
    parser.add_argument("--version", action="version", version=f"emotune {emotune_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `emotune` console script."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A file name that is not UTF-8 is printed as its own bytes, never a UnicodeEncodeError.
    getattr(sys.stdout, "reconfigure", lambda **_: None)(errors="surrogateescape")
    quiet_library_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    ray_was_up = _ray_is_up()
    outputs = Outputs(args)
    code = 1
    try:
        outputs.check()
        code = int(args.func(args) or 0)
        _flush_stdout()  # a full disk under a redirected stdout shows here: one line too
    except EmotuneError as exc:
        _error(one_line(exc))
        code = 1
    except KeyboardInterrupt:
        print("emotune: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:
        line = environment_error(
            exc, cache=_cache_of(args), targets=[*outputs.paths, *filter(None, [stdout_file()])]
        )
        if line is None:  # a bug: keep its traceback, but never a password
            _print_traceback()
        else:
            _error(one_line(line))
        code = 1
    finally:
        if code != 0:  # nothing half-written where the output was to go
            outputs.discard()
        if not ray_was_up and _ray_is_up():  # stop the Ray this command started, remove its session
            from emotune.features._ray import ray_shutdown

            ray_shutdown()
    return code


def _error(line: str) -> None:
    """Print one error line (the traceback too with EMOTUNE_DEBUG); drop stdout's unwritable rest."""
    if os.environ.get("EMOTUNE_DEBUG"):
        _print_traceback()
    print(f"emotune: error: {line}", file=sys.stderr)
    _settle_stdout()


def _settle_stdout() -> None:
    """After a failed write to stdout (a full disk behind ``> file``), point it at /dev/null.

    Otherwise the interpreter's final flush retries the buffered rest and prints a second error.
    """
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except OSError as exc:
        exc.filename = exc.filename or stdout_name()
        raise


def _cache_of(args: argparse.Namespace) -> str | None:
    """The feature cache folder a command used (``--cache``, else the default), for error lines."""
    if getattr(args, "cache", None):
        return str(args.cache)
    try:
        from emotune.features._home import home_path

        return str(home_path() / "cache")
    except Exception:  # EMOTUNE_HOME unusable: the error line names the rest
        return None


def _ray_is_up() -> bool:
    return "ray" in sys.modules and bool(sys.modules["ray"].is_initialized())


def quiet_library_warnings() -> None:
    """scikit-learn's UserWarnings (few class members for a split, feature names) are not for users.

    emotune's own results say what matters (folds used, failed files); EMOTUNE_DEBUG shows them.
    """
    import warnings

    if not os.environ.get("EMOTUNE_DEBUG"):
        warnings.filterwarnings("ignore", category=UserWarning, module=r"sklearn(\.|$)")


def one_line(exc: BaseException | str) -> str:
    """The first line of an error's message: passwords masked, terminal colour codes removed."""
    import re

    from emotune.search._urls import mask

    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc)).strip()
    return mask(text.splitlines()[0]) if text else type(exc).__name__


def _print_traceback() -> None:
    import traceback

    from emotune.search._urls import mask

    sys.stderr.write(mask(traceback.format_exc()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def console() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
