"""Where emotune keeps its state: ``$EMOTUNE_HOME`` or ``./.emotune``."""

from __future__ import annotations

import os
from pathlib import Path


def emotune_home() -> Path:
    """Return the absolute emotune state directory, creating it on demand.

    ``$EMOTUNE_HOME`` when set, else ``.emotune`` under the working directory.
    """
    home = home_path()
    home.mkdir(parents=True, exist_ok=True)
    return home


def home_path() -> Path:
    """Where :func:`emotune_home` is, without creating it."""
    return Path(os.environ.get("EMOTUNE_HOME") or Path.cwd() / ".emotune").expanduser().resolve()


def default_cache_dir() -> Path:
    """The feature cache directory used when ``--cache`` is not given."""
    return emotune_home() / "cache"
