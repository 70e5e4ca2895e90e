"""Storage URLs: parsed strictly, and their passwords never shown.

Every message that names a storage goes through :func:`mask_url` (or :func:`mask` for free text);
every password a URL carried through :func:`parse_url` is remembered for the life of the process, so
:func:`mask` also hides it where it appears outside a URL (a driver's error text, a traceback line).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from emotune.features import EmotuneError

__all__ = ["StorageError", "mask", "mask_url", "parse_url", "remember_secret"]

MASK = "***"

# scheme://user:password@  -- the password runs to the LAST '@' of the whitespace-free run, so an
# unescaped '@' or ':' inside it is hidden too.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<pw>\S*)@")
_QUERY_PW = re.compile(r"(?P<head>[?&]password=)[^&\s]*", re.IGNORECASE)
_SECRETS: set[str] = set()


class StorageError(EmotuneError):
    """The storage URL is wrong or the server cannot be reached."""


def remember_secret(secret: str | None) -> None:
    """Hide ``secret`` (and its percent-decoded form) in every later :func:`mask`."""
    if secret and len(secret) >= 3:
        _SECRETS.update({secret, unquote(secret)})


def mask(text: str) -> str:
    """``text`` with every URL password, ``password=`` query value and remembered secret as ``***``.

    >>> mask("cannot reach postgresql://u:s3cr@t@db:5432/x: timeout")
    'cannot reach postgresql://u:***@db:5432/x: timeout'
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _QUERY_PW.sub(lambda m: f"{m['head']}{MASK}", text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``; works on URLs that do not parse."""
    return mask(url.strip())


def parse_url(url: str) -> str:
    """Check a PostgreSQL URL and return it in SQLAlchemy's psycopg2 form.

    Users type plain ``postgresql://`` (or ``postgres://``) URLs; SQLAlchemy 2.1 would map those to
    psycopg 3, which is not installed. Other drivers are refused.

    Raises:
        StorageError: One line with the password masked: not PostgreSQL, an unescaped ``@`` in the
            password, a port that is no number in 1..65535, or any other URL SQLAlchemy refuses.

    >>> parse_url("postgresql://u@host:5432/db")
    'postgresql+psycopg2://u@host:5432/db'
    """
    url = url.strip()
    shown = mask_url(url)
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            break
    else:
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise StorageError(
            f"storage URL {shown!r} is not PostgreSQL (scheme {scheme!r}): emotune needs "
            "postgresql://user@host:port/db, or no --storage for the embedded server"
        )
    hint = "percent-encode @ : / ? # in the password as %40 %3A %2F %3F %23"
    userinfo = _USERINFO.match("postgresql://" + rest)
    remember_secret(userinfo["pw"] if userinfo else None)
    if rest.split("?", 1)[0].count("@") > 1:
        raise StorageError(f"storage URL {shown!r} does not parse (more than one '@'): {hint}")
    from sqlalchemy.engine import make_url

    hostport = rest.split("?", 1)[0].rsplit("@", 1)[-1].split("/", 1)[0]
    port = hostport.rsplit(":", 1)[1] if ":" in hostport and not hostport.endswith("]") else ""
    if port and not port.isdigit():
        raise StorageError(f"storage URL {shown!r}: port {mask(port)!r} is not a number in 1..65535")
    try:
        parsed = make_url("postgresql+psycopg2://" + rest)
    except Exception:
        raise StorageError(f"storage URL {shown!r} does not parse: {hint}") from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise StorageError(f"storage URL {shown!r}: port {parsed.port} is not in 1..65535")
    return "postgresql+psycopg2://" + rest
