"""Hostile record files, as a foreign writer could commit them with plain git."""

from __future__ import annotations

import random
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


def mutated(rng: random.Random, text: str) -> str:
    """``text`` with a few pieces inserted, cut or lines swapped."""
    pieces = ["\n", " ", "  ", "- ", ":", ": ", '"', "\\", "{}", "a", "1", ".0", "e+5", "\r", "\t"]
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text) + 1)
        roll = rng.random()
        if roll < 0.4:
            text = text[:at] + rng.choice(pieces) + text[at:]
        elif roll < 0.7:
            text = text[:at] + text[at + rng.randint(1, 3) :]
        else:
            lines = text.split("\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text
