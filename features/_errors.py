"""The one family of user-facing errors: each message is a single line naming the file or setting."""

from __future__ import annotations


class EmotuneError(Exception):
    """Base of every expected, user-facing error. The CLI prints it as one line and exits 1."""


class FeatureError(EmotuneError):
    """A bad feature parameter, label scheme or corpus setting."""


class AudioError(EmotuneError):
    """A file that cannot be used as audio (unreadable, empty, truncated, not audio)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
