"""Running the ``gitml`` command in tests: in-process through click, or as a real process."""

from __future__ import annotations

import subprocess
from pathlib import Path

from click.testing import CliRunner, Result

from gitml.cli import main

from .procs import child_env


def cli(*args: str, ok: bool = True) -> Result:
    """``gitml ARGS`` in-process; with ``ok``, asserts exit code 0."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def one_error_line(result: Result, code: int = 1) -> str:
    """The single ``error: …`` line a user error prints (and nothing on stdout)."""
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert result.stdout == ""
    return lines[0]


def gitml_exe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``gitml`` executable, with the pinned test environment."""
    return subprocess.run(
        ["gitml", *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
