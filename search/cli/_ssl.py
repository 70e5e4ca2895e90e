"""The ``--ssl-model`` option: the pretrained encoder of the ``ssl`` feature set, for every command that
builds, loads or recomputes features (``features build``, ``search``, ``evaluate``, ``explore``,
``ensemble``, ``predict``, ``report``).

Given on the command line it sets ``$EMOTUNE_SSL_MODEL`` for the command (the library reads it where
the set's params are made or its weights checked; :mod:`emotune.features._ssl`), so one flag reaches
every path that needs the model without threading it through each call.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["add_ssl_model"]

SSL_MODEL_ENV = (
    "EMOTUNE_SSL_MODEL"  # same as emotune.features._ssl.SSL_MODEL_ENV (not imported: --help stays light)
)


class _SslModel(argparse.Action):
    """Store the value and set ``$EMOTUNE_SSL_MODEL`` to it for this command."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        value = str(values).strip()
        if not value:
            parser.error(f"{option_string}: give a model folder or a model id")
        os.environ[SSL_MODEL_ENV] = value
        setattr(namespace, self.dest, value)


def add_ssl_model(p: argparse.ArgumentParser) -> None:
    """Add ``--ssl-model PATH_OR_ID`` to a command."""
    p.add_argument(
        "--ssl-model",
        action=_SslModel,
        default=None,
        metavar="PATH_OR_ID",
        help="pretrained speech encoder of the ssl feature set (env EMOTUNE_SSL_MODEL): a local "
        "save_pretrained folder, or a model id already in the local Hugging Face cache (nothing is "
        "downloaded); features are keyed by the weights' content, and a model trained on them "
        "accepts moved weights with the same content",
    )
