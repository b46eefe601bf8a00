"""Readable default run names (``brave-otter-417``), as MLflow gives runs, and who made a run."""

from __future__ import annotations

import getpass
import secrets

_ADJECTIVES = (
    "amber",
    "bold",
    "brave",
    "bright",
    "calm",
    "clever",
    "crisp",
    "daring",
    "eager",
    "fast",
    "gentle",
    "glad",
    "grand",
    "keen",
    "kind",
    "lively",
    "lucky",
    "merry",
    "nimble",
    "noble",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "sharp",
    "shy",
    "silent",
    "smooth",
    "steady",
    "sunny",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "wise",
    "witty",
)
_NOUNS = (
    "badger",
    "bat",
    "bear",
    "crane",
    "deer",
    "dove",
    "eagle",
    "falcon",
    "finch",
    "fox",
    "gecko",
    "hare",
    "hawk",
    "heron",
    "ibis",
    "koala",
    "lark",
    "lemur",
    "lynx",
    "mole",
    "moth",
    "newt",
    "otter",
    "owl",
    "panda",
    "puffin",
    "raven",
    "seal",
    "shrew",
    "snail",
    "stork",
    "swan",
    "tern",
    "toad",
    "trout",
    "wolf",
    "wren",
    "yak",
)


def run_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000):03d}"


_USER: str | None = None


def user() -> str:
    """The login name recorded on runs and model versions (``unknown`` when there is none)."""
    global _USER
    if _USER is None:
        try:
            _USER = getpass.getuser()
        except (KeyError, OSError):
            _USER = "unknown"
    return _USER
