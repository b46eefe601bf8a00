"""Hostile record files, as a foreign writer could commit them with plain git."""

from __future__ import annotations

import re


def billion_laughs(run_yaml: str) -> str:
    """``run_yaml`` with its ``params`` replaced by nine levels of nine aliases each:
    about 600 bytes that expand to 9**9 strings in a loader that follows aliases."""
    levels = ["  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, 9):
        levels.append(f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]")
    bomb = "params:\n" + "\n".join(levels) + "\n"
    text, count = re.subn(r"^params: \{\}\n", bomb, run_yaml, flags=re.M)
    assert count == 1, run_yaml
    return text
