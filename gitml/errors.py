"""The error tree.

Every error a user can cause is a ``GitmlError``; the CLI turns it into one
line and exit 1. Anything else escaping is a bug (exit 3).
"""

from __future__ import annotations


class GitmlError(Exception):
    """Root of every error gitml raises on purpose."""


class NotFound(GitmlError):
    """A run, experiment, artifact or ref that does not exist."""


class Conflict(GitmlError):
    """A write that contradicts what is already recorded (a changed param, a lost race)."""


class RefBusy(GitmlError):
    """A ref other writers kept locked or kept moving for as long as a write waits.

    Nothing was written; the same write can be tried again.
    """


class InvalidInput(GitmlError):
    """A value passed by the caller breaks a rule (key name, length, path, type)."""


class NotARepository(GitmlError):
    """No Git repository where one is needed."""


class InvalidRecord(GitmlError):
    """A stored record that does not match its schema.

    ``where`` names the ref or file the record came from, ``path`` the file
    inside it, ``field`` the dotted location of the bad value.
    """

    def __init__(self, where: str, path: str, field: str, reason: str) -> None:
        self.where = where
        self.path = path
        self.field = field
        self.reason = reason
        location = f"{where}:{path}" if where else path
        super().__init__(f"{location}: field '{field}': {reason}")


class Corrupt(GitmlError):
    """Stored content that does not match the digest its record gives."""
