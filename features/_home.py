"""Where emotune keeps its state: ``$EMOTUNE_HOME`` or ``./.emotune``.

``EMOTUNE_HOME`` is checked like a flag: a path that is a file, or a folder that cannot be created
(read-only, forbidden, under a file), is a one-line :class:`FeatureError` naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from emotune.features._errors import FeatureError


def emotune_home() -> Path:
    """Return the absolute emotune state directory, creating it on demand.

    ``$EMOTUNE_HOME`` when set, else ``.emotune`` under the working directory.

    Raises:
        FeatureError: It is a file, or cannot be created (the message names the reason).
    """
    home = home_path()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FeatureError(f"{_named(home)}: cannot create it ({exc.strerror})") from None
    return home


def home_path() -> Path:
    """Where :func:`emotune_home` is, without creating it.

    Raises:
        FeatureError: The path exists and is not a folder.
    """
    home = Path(os.environ.get("EMOTUNE_HOME") or Path.cwd() / ".emotune").expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise FeatureError(f"{_named(home)}: exists and is not a folder; point it at a folder")
    return home


def _named(home: Path) -> str:
    return f"EMOTUNE_HOME={home}" if os.environ.get("EMOTUNE_HOME") else f"emotune home {home}"


def default_cache_dir() -> Path:
    """The feature cache directory used when ``--cache`` is not given."""
    return emotune_home() / "cache"
