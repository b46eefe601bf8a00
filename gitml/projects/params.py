"""Checking parameters against their types and putting them into the command.

MLflow labels ``float`` and ``int`` but never checks them, so ``-P alpha=abc``
fails (or worse, runs) inside the script; gitml refuses it before anything
runs. ``path`` values must name an existing local file or folder and become
absolute (MLflow's rule); ``uri`` values must have a scheme. Every value is
shell-quoted into the command, and parameters the entry point does not
declare are appended as ``--key value``, as MLflow appends them.

A placeholder inside quotes (``--msg '{msg}'``) is where MLflow's plain
quoting breaks: the value's own quoting ends the author's quotes, and a
crafted value runs commands. So the command is read as bash reads it, and a
value inside quotes closes them, goes in quoted on its own, and opens them
again: one word, the value verbatim. Where no quoting can hold a value (inside
backquotes, ``${...}``, arithmetic, a here-document or a comment) the command
is refused.
"""

from __future__ import annotations

import shlex
import string
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gitml.errors import InvalidInput
from gitml.projects.spec import EntryPoint, Parameter

CHECKED_TYPES = ("float", "int", "string", "path", "uri")


@dataclass(frozen=True)
class ResolvedParameters:
    """What a run records (``given``) and what goes into the command (``values``)."""

    given: dict[str, str]  # declared parameters as given or defaulted, then extra ones
    values: dict[str, str]  # declared parameters as substituted (paths made absolute)
    extra: dict[str, str]  # undeclared parameters, appended as --key value


def parse_assignments(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["alpha=0.5", "name=x=y"]`` -> ``{"alpha": "0.5", "name": "x=y"}``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"parameter {pair!r} is not KEY=VALUE (e.g. -P alpha=0.5)")
        if key in out:
            raise InvalidInput(f"parameter {key!r} is given twice")
        out[key] = value
    return out


def check_value(param: Parameter, value: str, *, base: Path, entry_point: str) -> str:
    """``value`` as it goes into the command, or ``InvalidInput`` saying what is wrong."""
    where = f"parameter {param.name!r} of entry point {entry_point!r}"
    if param.type == "float":
        try:
            float(value)
        except ValueError:
            raise InvalidInput(
                f"{where} is a float, but {value!r} is not a number (e.g. -P {param.name}=0.5)"
            ) from None
        return value
    if param.type == "int":
        try:
            int(value, 10)
        except ValueError:
            raise InvalidInput(
                f"{where} is an int, but {value!r} is not a whole number (e.g. -P {param.name}=3)"
            ) from None
        return value
    if param.type == "uri":
        if not urllib.parse.urlparse(value).scheme:
            raise InvalidInput(
                f"{where} is a uri, but {value!r} has no scheme (e.g. https://…, s3://…, file:///…)"
            )
        return value
    if param.type == "path":
        return str(_local_path(value, base=base, where=where))
    return value  # string, and labels MLflow does not check (bool, str)


def _local_path(value: str, *, base: Path, where: str) -> Path:
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme == "file" and not parsed.netloc:
        path = Path(urllib.parse.unquote(parsed.path))
    elif parsed.scheme and len(parsed.scheme) > 1:
        raise InvalidInput(
            f"{where} is a path, but {value!r} is a remote URI; gitml does not download "
            "path parameters: download it first, or declare the parameter as a uri"
        )
    else:
        path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        raise InvalidInput(f"{where} is a path, but {path} does not exist")
    return path.resolve()


def resolve(
    entry: EntryPoint,
    given: Mapping[str, str],
    *,
    cwd: Path,
    project_dir: Path,
) -> ResolvedParameters:
    """Check every parameter before anything runs.

    A relative ``path`` given by the caller is taken from ``cwd`` (where the
    command was typed, as MLflow takes it); a relative default from the
    project, whose author wrote it.
    """
    missing = [
        name for name, p in entry.parameters.items() if p.default is None and name not in given
    ]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        example = " ".join(f"-P {m}=…" for m in missing)
        raise InvalidInput(f"entry point {entry.name!r} needs a value for {names}: pass {example}")
    recorded: dict[str, str] = {}
    values: dict[str, str] = {}
    for name, param in entry.parameters.items():
        if name in given:
            value, base = given[name], cwd
        else:
            assert param.default is not None
            value, base = param.default, project_dir
        recorded[name] = value
        values[name] = check_value(param, value, base=base, entry_point=entry.name)
    extra = {k: v for k, v in given.items() if k not in entry.parameters}
    recorded.update(extra)
    return ResolvedParameters(recorded, values, extra)


def command_line(entry: EntryPoint, params: ResolvedParameters) -> str:
    """The entry point's command with every value shell-quoted, then ``--key value`` extras."""
    where = f"entry point {entry.name!r}"
    try:
        pieces = list(string.Formatter().parse(entry.command))
    except ValueError as exc:
        raise InvalidInput(f"{where}: its command is not a valid template: {exc}") from None
    out: list[str] = []
    shell = _Shell()
    for literal, name, spec, conversion in pieces:
        out.append(literal)
        shell.read(literal)
        if name is None:
            continue
        if name not in params.values:
            raise InvalidInput(
                f"{where}: its command uses {{{name}}}, which is not one of its parameters"
            )
        if spec or conversion:
            raise InvalidInput(
                f"{where}: its command formats {{{name}}} (with '!' or ':'); write {{{name}}} alone"
            )
        out.append(shell.quote(params.values[name], f"{where}: {{{name}}}"))
    parts = ["".join(out)]
    parts.extend(f"--{shlex.quote(k)} {shlex.quote(v)}" for k, v in params.extra.items())
    return " ".join(parts)


_CLOSES = {'"': '"', "`": "`", "$(": ")", "${": "}", "$((": ")"}


class _Shell:
    """Where bash is in a command read so far: the quotes and expansions still open."""

    def __init__(self) -> None:
        # Innermost last: "'", "$'" (ANSI-C quotes), '"', "`", "$(" (a command
        # substitution or a subshell), "${", "$((", "#" (a comment, to the
        # line's end), "<<" (a here-document).
        self.open: list[str] = []
        self.escaped = False  # the last character was an unquoted backslash
        self.word_start = True  # a "#" here starts a comment

    def read(self, text: str) -> None:
        i = 0
        while i < len(text):
            c, two, three = text[i], text[i : i + 2], text[i : i + 3]
            top = self.open[-1] if self.open else ""
            i += 1
            if self.escaped:
                self.escaped = False
            elif top == "'":
                if c == "'":
                    self.open.pop()
            elif top == "$'":
                if c == "\\":
                    self.escaped = True
                elif c == "'":
                    self.open.pop()
            elif top == "#":
                if c == "\n":
                    self.open.pop()
            elif top == "<<":
                pass  # a here-document: its body is not quoted words; nothing closes it here
            elif c == "\\":
                self.escaped = True
            elif c == _CLOSES.get(top):
                self.open.pop()
                if top == "$((" and two == "))":
                    i += 1
            elif three == "$((":
                self.open.append("$((")
                i += 2
            elif two in ("$(", "${") or (two == "$'" and top != '"'):
                self.open.append(two)
                i += 1
            elif c == "`":
                self.open.append("`")
            elif top == '"':
                pass  # inside double quotes only the above are special
            elif c in "'\"":
                self.open.append(c)
            elif c == "(":
                self.open.append("$(")  # a subshell: its words are read alike
            elif two == "<<" and three != "<<<":
                self.open.append("<<")
            elif c == "#" and self.word_start:
                self.open.append("#")
            self.word_start = c in " \t\n;&|()"

    def quote(self, value: str, where: str) -> str:
        """``value`` quoted for where the command stands now, as one word holding it verbatim."""
        top = self.open[-1] if self.open else ""
        if self.escaped:
            raise InvalidInput(f"{where} follows a backslash, which would take the value's quote")
        if top in ("", "$("):
            quoted = shlex.quote(value)
        elif top in ("'", '"'):
            # Close the author's quotes, the value quoted on its own, open them again.
            quoted = top + shlex.quote(value) + top
        else:
            what = {
                "$'": "$'...' quotes",
                "`": "backquotes",
                "${": "a ${...} expansion",
                "$((": "arithmetic",
                "#": "a comment",
                "<<": "a here-document",
            }[top]
            raise InvalidInput(
                f"{where} stands inside {what}, where no quoting keeps a value from "
                "running as code; pass it as its own word (e.g. --key {key}) instead"
            )
        self.word_start = False
        return quoted
