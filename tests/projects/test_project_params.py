"""Parameters: every type checked before anything runs, quoted into the command."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from gitml.errors import InvalidInput
from gitml.projects.params import command_line, parse_assignments, resolve
from gitml.projects.spec import EntryPoint, Parameter


def entry(command: str, **params: tuple[str, str | None]) -> EntryPoint:
    return EntryPoint("main", command, {k: Parameter(k, t, d) for k, (t, d) in params.items()})


def build(ep: EntryPoint, given: dict[str, str], tmp_path: Path) -> str:
    return command_line(ep, resolve(ep, given, cwd=tmp_path, project_dir=tmp_path / "project"))


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("float", "0.5"),
        ("float", "-3"),
        ("float", "1e-3"),
        ("float", "inf"),
        ("int", "42"),
        ("int", "-7"),
        ("string", "anything at all; $(rm -rf /)"),
        ("uri", "s3://bucket/key"),
        ("uri", "https://example.com/data.csv"),
        ("bool", "yes"),  # a label MLflow does not check: taken as a string
        ("str", "x"),
    ],
)
def test_values_of_each_type_pass_as_given(kind: str, value: str, tmp_path: Path) -> None:
    ep = entry("run {p}", p=(kind, None))
    assert build(ep, {"p": value}, tmp_path) == f"run {shlex.quote(value)}"


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("float", "abc", "'alpha' of entry point 'main' is a float, but 'abc' is not a number"),
        ("float", "", "is not a number"),
        ("int", "1.5", "is an int, but '1.5' is not a whole number"),
        ("int", "ten", "not a whole number"),
        ("uri", "just/a/path", "has no scheme"),
        ("path", "missing.csv", "does not exist"),
        ("path", "s3://bucket/data.csv", "gitml does not download path parameters"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    kind: str, value: str, message: str, tmp_path: Path
) -> None:
    ep = entry("run {alpha}", alpha=(kind, None))
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        build(ep, {"alpha": value}, tmp_path)


def test_a_path_becomes_absolute_from_where_the_command_was_typed(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n")
    ep = entry("wc -l {data}", data=("path", None))
    assert build(ep, {"data": "data.csv"}, tmp_path) == f"wc -l {tmp_path / 'data.csv'}"
    uri = (tmp_path / "data.csv").as_uri()
    assert build(ep, {"data": uri}, tmp_path) == f"wc -l {tmp_path / 'data.csv'}"


def test_a_relative_default_path_is_from_the_project(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "d.csv").write_text("a\n")
    ep = entry("wc -l {data}", data=("path", "d.csv"))
    resolved = resolve(ep, {}, cwd=tmp_path, project_dir=tmp_path / "project")
    assert resolved.values["data"] == str(tmp_path / "project" / "d.csv")
    assert resolved.given["data"] == "d.csv"  # what the run records, as MLflow records it


def test_missing_required_parameters_are_named(tmp_path: Path) -> None:
    ep = entry("x {a} {b} {c}", a=("float", None), b=("string", None), c=("int", "1"))
    with pytest.raises(InvalidInput, match=r"needs a value for 'a', 'b': pass -P a=… -P b=…"):
        build(ep, {}, tmp_path)


def test_defaults_fill_in_and_extra_parameters_are_appended(tmp_path: Path) -> None:
    ep = entry("python t.py --a {a}", a=("float", "0.1"))
    command = build(ep, {"epochs": "3", "note": "two words"}, tmp_path)
    assert command == "python t.py --a 0.1 --epochs 3 --note 'two words'"
    resolved = resolve(ep, {"epochs": "3"}, cwd=tmp_path, project_dir=tmp_path)
    assert resolved.given == {"a": "0.1", "epochs": "3"}
    assert resolved.extra == {"epochs": "3"}


def test_quoting_survives_the_shell(tmp_path: Path) -> None:
    ep = entry("printf '%s\\n' {s}", s=("string", None))
    nasty = 'it\'s "quoted" $HOME `id` ; echo pwned'
    out = subprocess.run(
        ["bash", "-c", build(ep, {"s": nasty}, tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == nasty + "\n"


def test_a_command_naming_an_undeclared_placeholder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"uses \{beta\}"):
        build(entry("x {beta}", alpha=("float", "1")), {}, tmp_path)


def test_assignments() -> None:
    assert parse_assignments(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(InvalidInput, match="not KEY=VALUE"):
        parse_assignments(["novalue"])
    with pytest.raises(InvalidInput, match="not KEY=VALUE"):
        parse_assignments(["=1"])
    with pytest.raises(InvalidInput, match="given twice"):
        parse_assignments(["a=1", "a=2"])


PAYLOADS = [
    "'; touch {m}; '",
    '"; touch {m}; "',
    "$(touch {m})",
    "`touch {m}`",
    "'$(touch {m})'",
    '"$(touch {m})"',
    "x\ntouch {m}\n",
    "'\"'\"'; touch {m} #",
    "\\'; touch {m}; echo \\'",
    "$'\\''; touch {m}; '",
    "a' 'b\" \"c",
    "${{IFS}}$(touch {m})}}",
]
TEMPLATES = [
    ("printf '[%s]\\n' '{msg}'", "[{}]\n"),
    ("printf '[%s]\\n' \"{msg}\"", "[{}]\n"),
    ("printf '[%s]\\n' '--msg={msg}' \"--also={msg}\"", "[--msg={0}]\n[--also={0}]\n"),
    ("printf '[%s]\\n' {msg}", "[{}]\n"),
    ("printf '[%s]\\n' \"$(printf '%s|' \"{msg}\" '{msg}')\"", "[{0}|{0}|]\n"),
]


@pytest.mark.parametrize("template", [t for t, _ in TEMPLATES], ids=range(len(TEMPLATES)))
def test_a_placeholder_inside_quotes_takes_any_value_verbatim(
    template: str, tmp_path: Path
) -> None:
    expected = dict(TEMPLATES)[template]
    marker = tmp_path / "ran"
    ep = entry(template, msg=("string", None))
    for payload in (p.format(m=marker) for p in PAYLOADS):
        command = build(ep, {"msg": payload}, tmp_path)
        out = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, check=False, cwd=tmp_path
        )
        assert not marker.exists(), (payload, command)
        assert (out.returncode, out.stdout) == (0, expected.format(payload)), (
            payload,
            command,
            out.stderr,
        )


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ("echo `echo {msg}`", "backquotes"),
        ("echo ${{X:-{msg}}}", "a ${...} expansion"),
        ("echo $(( {msg} + 1 ))", "arithmetic"),
        ("echo hi # {msg}", "a comment"),
        ("cat <<EOF\n{msg}\nEOF", "a here-document"),
        ("echo $'{msg}'", "$'...' quotes"),
    ],
)
def test_a_placeholder_no_quoting_can_hold_is_refused(
    template: str, where: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(f"{{msg}} stands inside {where}")):
        build(entry(template, msg=("string", "1")), {}, tmp_path)
    with pytest.raises(InvalidInput, match="follows a backslash"):
        build(entry("echo \\{msg}", msg=("string", "1")), {}, tmp_path)
    with pytest.raises(InvalidInput, match=re.escape("formats {msg}")):
        build(entry("echo {msg!r}", msg=("string", "1")), {}, tmp_path)
