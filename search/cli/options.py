"""argparse types and the parser class: every option is checked before a command acts.

A bad value is a usage error (exit 2) printed as one line that names the option and its valid
range; nothing has been created, started or written by then.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` (no upper bound when ``high`` is None)."""
    rule = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {rule}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not {rule}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its fallback message
    return parse


def seconds(*, zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds > 0 (>= 0 with ``zero``)."""
    rule = "a finite number of seconds >= 0" if zero else "a finite number of seconds > 0"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {rule}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{text} is not {rule}")
        return value

    parse.__name__ = "seconds"
    return parse


POSITIVE = integer(1)
FOLDS = integer(2)
SEED = integer(0, 2**32 - 1)
PORT = integer(1, 65535)
