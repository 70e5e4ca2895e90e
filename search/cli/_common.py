"""Small helpers shared by the command modules: storage option, tables, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from emotune.search._text import json_clean, table

__all__ = [
    "add_cache",
    "add_corpus",
    "add_ray",
    "add_storage",
    "check_inputs",
    "command",
    "json_clean",
    "print_json",
    "run_options",
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


def print_json(obj: Any) -> None:
    """Machine-readable output: JSON on stdout and nothing else there."""
    sys.stdout.write(json.dumps(json_clean(obj), indent=2) + "\n")
