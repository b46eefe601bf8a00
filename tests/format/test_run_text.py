"""``canonical_run`` must give what the model gives for the same text, or nothing."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from gitml.format import yamlio
from gitml.format.records import Run, validate
from gitml.format.run_text import canonical_run
from testing.records import mutated

STRINGS = ["x", "run-1", "yes", "null", "5", "1e5", "", "a b", "é", "x\ny", '"q"', "\\", "\x85"]
STRINGS += ["- x", ": y", "{}", "[]", "tab\there", "日本語", "a" * 250, "a/b.c-d_e"]


def _by_model(text: str) -> dict[str, Any] | None:
    """What a pull made of ``text`` before ``canonical_run``: the record's ``to_plain()``
    when the model takes the document and gives it back unchanged."""
    try:
        record = validate(Run, yamlio.load(text), where="", path="")
    except Exception:  # not YAML or not a run: the model refuses it
        return None
    plain = record.to_plain()
    return plain if plain == yamlio.load(text) else None


def _hex(rng: random.Random, digits: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(digits))


def _random_run(rng: random.Random) -> Run:
    """A valid run with awkward values: strings YAML could mistake, ids that start with
    a letter or a digit, numbers at their edges, maps of every size."""

    def text(optional: bool = False) -> str | None:
        return None if optional and rng.random() < 0.3 else rng.choice(STRINGS)

    def count() -> int:
        return rng.choice([0, 1, 9, 1764007957000, 2**63 - 1, 2**70])

    def number() -> float:
        return rng.choice([0.5, -0.0, 5.0, 1e-05, 1e16, 1.5e300, math.nan, math.inf, -math.inf])

    def texts() -> dict[str, str]:
        return {rng.choice(STRINGS): rng.choice(STRINGS) for _ in range(rng.randint(0, 3))}

    plain: dict[str, Any] = {
        "id": _hex(rng, 32),
        "experiment_id": rng.choice(["0", "7", "yes", "exp_1", "-x", "a" * 64]),
        "name": rng.choice([s for s in STRINGS if s]),
        "status": rng.choice(["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]),
        "lifecycle_stage": rng.choice(["active", "deleted"]),
        "start_time": count(),
        "end_time": None if rng.random() < 0.3 else count(),
        "user": text(),
        "parent_run_id": None if rng.random() < 0.5 else _hex(rng, 32),
        "source": {
            "commit": None if rng.random() < 0.3 else _hex(rng, 40),
            "snapshot": None if rng.random() < 0.5 else _hex(rng, 40),
            "branch": text(optional=True),
            "dirty": rng.random() < 0.5,
            "entry_point": text(optional=True),
            "omitted": [] if rng.random() < 0.9 else ["big.bin"],
        },
        "params": texts(),
        "tags": texts(),
        "metrics": {
            rng.choice(STRINGS): {"value": number(), "step": count(), "timestamp": count()}
            for _ in range(rng.randint(0, 3))
        },
    }
    return Run.model_validate(plain)


def test_every_run_gitml_writes_is_read_as_the_model_reads_it() -> None:
    rng = random.Random(5)
    read = 0
    for _ in range(1500):
        run = _random_run(rng)
        text = run.to_yaml().decode()
        fast = canonical_run(text.encode())
        # repr: NaN is not equal to itself, and key order counts (the index keeps JSON).
        assert repr(fast) == repr(run.to_plain()) or run.source.omitted, text
        assert fast is None or repr(fast) == repr(_by_model(text))
        read += fast is not None
    assert read > 1200  # all but those with omitted files


def test_text_changed_anywhere_is_read_as_the_model_reads_it_or_left_to_it() -> None:
    rng = random.Random(6)
    read = 0
    for _ in range(1500):
        text = _random_run(rng).to_yaml().decode()
        for variant in [mutated(rng, text) for _ in range(4)]:
            fast = canonical_run(variant.encode())
            if fast is not None:
                read += 1
                assert repr(fast) == repr(_by_model(variant)), variant
    assert read > 100  # mutations that still make a run gitml writes (lines swapped alike)


A_RUN = Run.model_validate(
    {
        "id": "0" + "a" * 31,
        "experiment_id": "0",
        "name": "r",
        "status": "FINISHED",
        "start_time": 5,
        "end_time": 6,
        "user": "u",
        "params": {"a": "1", "b": "2"},
        "tags": {"t": "v"},
        "metrics": {"m": {"value": 0.5, "step": 1, "timestamp": 7}},
    }
).to_yaml()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('id: "0aaa', 'id: "0AAA'),  # the model's pattern: lowercase hex
        ('id: "0aaaaaaaa', 'id: "0aaaaaaa'),  # 31 digits
        ('id: "0' + "a" * 31 + '"', "id: " + "a" * 32 + "x"),
        ('experiment_id: "0"', "experiment_id: a/b"),
        ('experiment_id: "0"', "experiment_id: " + "a" * 65),
        ("name: r", 'name: ""'),
        ("name: r", "name: " + "a" * 251),
        ("status: FINISHED", "status: DONE"),
        ("lifecycle_stage: active", "lifecycle_stage: gone"),
        ("start_time: 5", "start_time: -5"),
        ("end_time: 6", "end_time: 6.0"),  # an integral float: the model takes it as 6
        ("user: u", "user: 5"),
        ("parent_run_id: null", "parent_run_id: abc"),
        ("  commit: null", '  commit: "' + "1" * 39 + '"'),
        ("  dirty: false", "  dirty: 0"),
        ('  a: "1"', "  a: 1"),  # a param value is a string
        ('  a: "1"\n  b: "2"', '  b: "2"\n  a: "1"'),  # keys out of order
        ('  a: "1"\n  b: "2"', '  a: "1"\n  a: "2"'),  # a key twice
        ("  t: v", '  "t": v'),  # quoted where dump writes it plain
        ("    value: 0.5", "    value: 5"),  # an int where the model wants a float
        ("    step: 1", "    step: -1"),
        ("    timestamp: 7", "    timestamp: 07"),
        ("tags:\n  t: v\n", "tags:\n  t: v\nextra: 1\n"),
    ],
)
def test_a_value_the_model_refuses_or_gitml_writes_otherwise_is_left_to_the_model(
    old: str, new: str
) -> None:
    text = A_RUN.decode()
    assert canonical_run(A_RUN) is not None
    changed = text.replace(old, new)
    assert changed != text
    assert canonical_run(changed.encode()) is None


def test_bytes_that_are_not_utf8_are_left_to_the_model() -> None:
    assert canonical_run(A_RUN.replace(b"name: r", b"name: r\xff")) is None
