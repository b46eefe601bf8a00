"""``yamlio.dump`` must mean to every YAML reader exactly what it was given."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import yaml

from gitml.format import yamlio
from testing.records import mutated

TRICKY_STRINGS = [
    "",
    " ",
    "plain",
    "with space",
    "yes",
    "No",
    "ON",
    "off",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "y",
    "n",
    "1",
    "0x1f",
    "1e5",
    "1_000",
    "-1",
    "+1",
    ".5",
    "1.0",
    ".inf",
    "-.inf",
    ".nan",
    "nan",
    "inf",
    "0o17",
    "012",
    "2024-01-01",
    "12:30:45",
    "a: b",
    "a #b",
    "#x",
    "- x",
    "[a]",
    "{a}",
    "'q'",
    '"dq"',
    "x\ny",
    "tab\there",
    "trailing ",
    " leading",
    "back\\slash",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "é",
    "日本語",
    "emoji 🚀",
    "%2F",
    "a/b.c-d_e",
    "@at",
    "`tick",
    "!tag",
    "&anchor",
    "*alias",
    "|",
    ">",
    "?",
    ":",
    ",",
    "=",
    "<<",
]


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_strings_round_trip_as_keys_and_values(text: str) -> None:
    data = {"key": text, text or "empty": "value", "nested": {text or "e": [text]}}
    assert yaml.safe_load(yamlio.dump(data)) == data
    assert yamlio.load(yamlio.dump(data)) == data


@pytest.mark.parametrize(
    "number", [0.0, -0.0, 1.0, 0.1, 1e-05, 1e16, 1.5e300, -2.5e-300, 123456789.125, 3, -7, 2**70]
)
def test_numbers_keep_type_and_value(number: float) -> None:
    loaded = yaml.safe_load(yamlio.dump({"n": number}))["n"]
    assert type(loaded) is type(number)
    assert loaded == number


def test_special_floats() -> None:
    loaded = yaml.safe_load(yamlio.dump({"a": math.nan, "b": math.inf, "c": -math.inf}))
    assert math.isnan(loaded["a"]) and loaded["b"] == math.inf and loaded["c"] == -math.inf


def test_shapes_match_pyyaml_block_style() -> None:
    data: dict[str, Any] = {
        "id": "abc",
        "empty_map": {},
        "empty_list": [],
        "none": None,
        "flags": {"t": True, "f": False},
        "artifacts": [{"path": "a/b.txt", "size": 3}, {"path": "c", "size": 0}],
        "scalars": [1, "two", None],
    }
    text = yamlio.dump(data).decode()
    assert yaml.safe_load(text) == data
    assert text == yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def test_lists_nested_in_lists_keep_their_items() -> None:
    data: dict[str, Any] = {
        "pairs": [["NAME", "value"], [1, [2, [3]]], []],
        "deep": [{"k": [[1], []]}],
    }
    text = yamlio.dump(data)
    assert yaml.safe_load(text) == data == yamlio.load(text)
    assert text.decode() == yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def test_random_records_round_trip() -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ019 _-./:#'\"\\\n\t{}[]!&*?|>@`%é€\u2028\x85~,="
    for _ in range(300):
        data = {
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))): "".join(
                rng.choice(alphabet) for _ in range(rng.randint(0, 12))
            )
            for _ in range(5)
        }
        assert yaml.safe_load(yamlio.dump(data)) == data


def test_rejects_what_records_never_hold() -> None:
    with pytest.raises(TypeError):
        yamlio.dump({"x": object()})
    with pytest.raises(TypeError):
        yamlio.dump(["not", "a", "mapping"])
    # A lone surrogate's "\udcff" escape is refused by PyYAML: such a file could not be read.
    for data in [{"x": "a\udcff"}, {"a:\udcff": "x"}, {"l": ["\ud800"]}]:
        with pytest.raises(ValueError, match="not valid Unicode text"):
            yamlio.dump(data)


def test_records_gitml_wrote_skip_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    data: dict[str, Any] = {
        "id": "abc",
        "n": 3,
        "x": 0.25,
        "nan": math.nan,
        "empty": {},
        "none": None,
        "text": "two words: and a colon",
        "a key: with a colon": 1,
        'a "quoted" key': 2,
        "nested": {"deeper": {"k": "v"}, "flag": True},
        "artifacts": [{"path": "a b/c.txt", "size": 1}, {"path": "d", "size": 2}],
    }
    text = yamlio.dump(data)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("PyYAML was used for a canonical record")

    monkeypatch.setattr(yaml, "load", fail)
    loaded = yamlio.load(text)
    assert math.isnan(loaded.pop("nan"))
    data.pop("nan")
    assert loaded == data


def _random_record(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """Maps of maps, lists of maps and scalars, with keys and values chosen to be awkward."""
    keys = ["a", "id", "x y", "1", "a: b", 'q"t', "é", "yes", "", "-", "k\\", "\t"]
    scalars: list[Any] = [None, True, False, 0, -5, 10**20, 0.5, -0.0, 1e-05, math.inf]
    scalars += ["", "s", "1e5", "null", "x\ny", '"q"', "\\", "\x85", "- x", ": y", "{}", "[]"]
    record: dict[str, Any] = {}
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.15 and depth < 3:
            value: Any = _random_record(rng, depth + 1)
        elif roll < 0.25 and depth < 3:
            value = [_random_record(rng, depth + 1) for _ in range(rng.randint(1, 3))]
        elif roll < 0.3:
            value = rng.choice([{}, []])
        else:
            value = rng.choice(scalars)
        record[rng.choice(keys)] = value
    return record


def test_the_fast_reader_reads_only_what_dump_writes() -> None:
    """``load`` trusts the fast reader without dumping again: whatever it reads must
    be what ``dump`` writes as exactly that text, and all of ``dump``'s text is read."""
    rng = random.Random(11)
    read = 0
    for _ in range(1500):
        text = yamlio.dump(_random_record(rng)).decode()
        assert yamlio._read_canonical(text) is not None, text
        for variant in [mutated(rng, text) for _ in range(4)]:
            fast = yamlio._read_canonical(variant)
            if fast is not None:
                read += 1
                assert yamlio.dump(fast).decode() == variant
    assert read > 100  # mutations that are still canonical (a swapped pair of lines, say)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\n# a comment\nb: 2\n",
        "a:   spaced\n",
        "a: 'single quoted'\n",
        "a: 1e5\n",
        "a: 2024-01-01\n",
        "a: 0x1f\n",
        "list:\n  - 1\n  - 2\n",
        "a: {b: 1}\n",
        'key "with": quote\n',
        "a: 1",
        "a:\nb: 1\n",
        "a: &x 1\nb: '*x'\n",  # an anchor alone copies nothing
        # Double-quoted, as gitml writes strings, but not as it writes them.
        'a: "x" # c\n',
        'a: "tab\there"\n',
        'a: "5"\nb: ""\n',
        # Blocks where gitml's writer would not put them, and keys twice.
        "a:\n    b: 1\n",
        "a:\n  - b: 1\n",
        "a:\n- b: 1\n  c:\n  - d: 2\n- e: 3\nf: 4\n",
        "a: 01\nb: 1.0e5\nc: -0\n",
        "a: 1\r\n",
        "\ufeffa: 1\n",
        "",
    ],
)
def test_other_yaml_means_what_pyyaml_says(text: str) -> None:
    assert yamlio.load(text) == yaml.safe_load(text)


@pytest.mark.parametrize("text", ["a:\n- b: 1\n   c: 2\n", "a:\n- b: 1\nc: 2\n- d: 3\n"])
def test_text_neither_reader_takes_is_pyyamls_error(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):
        yamlio.load(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: 2\na: 3\n", "key 'a' appears twice (lines 1 and 3)"),
        (
            "stages: [a]\npolicy:\n  ordered: true\n# later\npolicy:\n  ordered: false\n",
            "key 'policy' appears twice (lines 2 and 5)",
        ),
        ("model: m\nversions:\n- {version: 1}\nversions: []\n", "key 'versions' appears twice"),
        ("x:\n  deep:\n    k: 1\n    k: 1\n", "key 'k' appears twice (lines 3 and 4)"),
        ("- {a: 1, b: 2, a: 1}\n", "key 'a' appears twice on line 1"),
        ("1: one\n0x1: one again\n", "key 1 appears twice (lines 1 and 2)"),
    ],
)
def test_a_key_given_twice_is_refused_with_both_lines(text: str, message: str) -> None:
    with pytest.raises(yamlio.RefusedYaml) as refused:
        yamlio.load(text)
    assert str(refused.value).startswith(message), str(refused.value)


def test_keys_that_only_look_alike_are_different_keys() -> None:
    text = "1: int\n'1': str\n1.0e+1: float\n'10': str\n"
    assert yamlio.load(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "line", "name"),
    [
        ("a: &x 1\nb: *x\n", 2, "x"),
        ("params:\n  a: &lol [1, 2]\n  b: [*lol, *lol]\n", 3, "lol"),
        ("base: &b {k: 1}\nother:\n  <<: *b\n", 3, "b"),
    ],
)
def test_aliases_are_refused_naming_their_line(text: str, line: int, name: str) -> None:
    with pytest.raises(yamlio.RefusedYaml) as refused:
        yamlio.load(text)
    assert str(refused.value) == (
        f"line {line}: alias *{name}: records take no anchors and aliases; write the value out"
    )


def test_gitml_loads_with_the_c_parser_when_pyyaml_has_one() -> None:
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML built without libyaml")
    assert issubclass(yamlio._record_loader(c_parser=True), yaml.CSafeLoader)
    # Deeply nested text goes to the pure-Python parser, which refuses instead of crashing.
    assert not issubclass(yamlio._record_loader(c_parser=False), yaml.CSafeLoader)
