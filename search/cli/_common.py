"""Small helpers shared by the command modules: storage option, tables, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from emotune.search._text import json_clean, table

__all__ = ["add_storage", "check_inputs", "command", "json_clean", "print_json", "run_options", "table"]


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


def check_inputs(spaces: Sequence[str], data: Sequence[str]) -> None:
    """Spaces and data folders, checked before the storage is resolved (that may start a server).

    Raises:
        EmotuneError: An unknown space (the message lists the valid ones) or a missing data path.
    """
    from pathlib import Path

    from emotune.features._errors import FeatureError
    from emotune.spaces import get

    for space in spaces:
        get(space)
    for path in data:
        if not Path(path).exists():
            raise FeatureError(f"{path}: no such file or folder")


def print_json(obj: Any) -> None:
    """Machine-readable output: JSON on stdout and nothing else there."""
    sys.stdout.write(json.dumps(json_clean(obj), indent=2) + "\n")
