"""The `emotune` command: a thin argparse layer over the library.

Each group of commands lives in its own module with a ``register(subparsers)`` function; every
subcommand sets ``func(args) -> int``. Expected failures raise :class:`EmotuneError` and are printed
as one line (exit 1); usage errors exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from emotune.features import EmotuneError
from emotune.search._text import emotune_version
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
    try:
        code = int(args.func(args) or 0)
    except EmotuneError as exc:
        if os.environ.get("EMOTUNE_DEBUG"):
            _print_traceback()
        print(f"emotune: error: {one_line(exc)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("emotune: interrupted", file=sys.stderr)
        code = 130
    except Exception:  # a bug: keep its traceback, but never a password
        _print_traceback()
        code = 1
    finally:
        if not ray_was_up and _ray_is_up():  # stop the Ray this command started, remove its session
            from emotune.features._ray import ray_shutdown

            ray_shutdown()
    sys.stdout.flush()
    return code


def _ray_is_up() -> bool:
    return "ray" in sys.modules and bool(sys.modules["ray"].is_initialized())


def quiet_library_warnings() -> None:
    """scikit-learn's UserWarnings (few class members for a split, feature names) are not for users.

    emotune's own results say what matters (folds used, failed files); EMOTUNE_DEBUG shows them.
    """
    import warnings

    if not os.environ.get("EMOTUNE_DEBUG"):
        warnings.filterwarnings("ignore", category=UserWarning, module=r"sklearn(\.|$)")


def one_line(exc: BaseException) -> str:
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
