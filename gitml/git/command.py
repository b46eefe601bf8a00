"""Every run of the ``git`` binary.

gitml calls the real ``git`` where dulwich falls short: network transports,
``push --atomic``, glob refspecs, ``update-ref --stdin`` transactions, and
listings that git does faster (``for-each-ref``, ``cat-file --batch``,
``ls-files``). All of them go through this module, so every call gets the same
environment and a failure reads the same everywhere:

- ``GIT_TERMINAL_PROMPT=0``: git asks nobody for a password (a prompt would
  hang a server or a CI job); a credential helper or ``GIT_ASKPASS`` still
  answers, since the user's configuration is read as usual.
- ``LC_ALL=C``: git's messages are in English, because callers recognise some
  of them ("(fetch first)", "Unable to create '...lock'").
- A failure is a :class:`GitFailed` carrying everything git wrote on stderr,
  one line per line of git's, trailing padding removed (a hook's ``remote:``
  lines come padded), joined by `` / `` so the error stays one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from gitml.errors import GitmlError

# How often a watched call checks whether it must stop.
_POLL_SECONDS = 0.05


class GitFailed(GitmlError):
    """The ``git`` command ``what`` failed (or could not be started); ``said`` is why."""

    def __init__(self, what: str, said: str) -> None:
        self.what = what
        self.said = said
        super().__init__(f"{what} failed: {said}")


def environment() -> dict[str, str]:
    """The environment every git call runs with."""
    return {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


@contextlib.contextmanager
def _started(args: Sequence[str]) -> Iterator[None]:
    """Starting ``git ARGS``: a missing or unrunnable git binary is :class:`GitFailed`."""
    try:
        yield
    except OSError as exc:
        raise GitFailed(f"git {args[0]}", f"cannot run git: {exc}") from None


def said(stderr: str, stdout: str = "", returncode: int | None = None) -> str:
    """All that a git call said, as one line: stderr (else stdout, else the exit code)."""
    for text in (stderr, stdout):
        lines = [line.rstrip() for line in text.splitlines() if line.strip()]
        if lines:
            return " / ".join(lines)
    return f"exit {returncode}"


def run(
    args: Sequence[str],
    *,
    cwd: Path | str | None = None,
    stdin: str | None = None,
    ok: Iterable[int] = (0,),
) -> subprocess.CompletedProcess[str]:
    """``git ARGS`` in ``cwd``; an exit code outside ``ok`` raises :class:`GitFailed`."""
    with _started(args):
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=environment(),
            input=stdin,
            capture_output=True,
            encoding="utf-8",
            errors="surrogateescape",
            check=False,
        )
    if done.returncode not in tuple(ok):
        raise GitFailed(f"git {args[0]}", said(done.stderr, done.stdout, done.returncode))
    return done


class Started:
    """``git ARGS`` started by ``begin``, running while the caller does other work."""

    def __init__(
        self, args: Sequence[str], process: subprocess.Popen[bytes], output: IO[bytes] | None
    ) -> None:
        self.args = args
        self.process = process
        self.output = output

    def wait(self) -> str:
        """Wait for it to end; what it wrote on stdout when begun with ``capture``
        (else ""). A failure is :class:`GitFailed`, as from ``run``."""
        try:
            _, stderr = self.process.communicate()
            if self.process.returncode != 0:
                raise _failed(self.args, stderr, self.process.returncode)
            if self.output is None:
                return ""
            self.output.seek(0)
            return self.output.read().decode("utf-8", "surrogateescape")
        finally:
            self._close()

    def stop(self) -> None:
        """End it, whatever it was doing, and wait for it (nothing, once it ended)."""
        if self.process.returncode is None:
            self.process.kill()
            self.process.communicate()
        self._close()

    def _close(self) -> None:
        if self.output is not None:
            self.output.close()

    def __enter__(self) -> Started:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Stopped when the block fails; otherwise left running, for ``wait``."""
        if kind is not None:
            self.stop()


def begin(args: Sequence[str], *, cwd: Path | str, capture: bool = False) -> Started:
    """Start ``git ARGS``, for ``Started.wait`` later; ``capture``: keep its stdout.

    Its stdout goes to a temporary file, not a pipe: git writing more than a
    pipe holds (64 KiB; ``ls-remote`` of 10,000 refs writes 800 KB) would wait
    for the caller to read, and so not run while the caller works.
    """
    # Not a with block: the file outlives this call, and Started closes it.
    output = tempfile.TemporaryFile() if capture else None  # noqa: SIM115
    try:
        with _started(args):
            process = subprocess.Popen(
                ["git", *args],
                cwd=cwd,
                env=environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if output is None else output,
                stderr=subprocess.PIPE,
            )
    except BaseException:
        if output is not None:
            output.close()
        raise
    return Started(args, process, output)


def run_binary(args: Sequence[str], *, cwd: Path | str, stdin: bytes) -> bytes:
    """``git ARGS`` fed and answering bytes (``cat-file --batch``); its stdout.

    Fed from a file, its errors to another: with one pipe, Python reads the
    answer in one call; with three, it polls and writes 512 bytes at a time
    (10,000 runs' records: 12,000 polls, 0.1 s of CPU).
    """
    with _started(args), tempfile.TemporaryFile() as given, tempfile.TemporaryFile() as errors:
        given.write(stdin)
        given.seek(0)
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=environment(),
            stdin=given,
            stdout=subprocess.PIPE,
            stderr=errors,
            check=False,
        )
        if done.returncode != 0:
            errors.seek(0)
            raise _failed(args, errors.read(), done.returncode)
    return done.stdout


def _failed(args: Sequence[str], stderr: bytes, returncode: int) -> GitFailed:
    """The failure of ``git ARGS``, which wrote ``stderr`` (bytes) and exited ``returncode``."""
    return GitFailed(f"git {args[0]}", said(stderr.decode(errors="replace"), returncode=returncode))


def start(args: Sequence[str], *, cwd: Path | str) -> subprocess.Popen[bytes] | None:
    """Start ``git ARGS`` to read its stdout later (stderr dropped); None without a git binary."""
    try:
        return subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def run_watched(
    args: Sequence[str],
    *,
    cwd: Path | str,
    stdin: str | None,
    stop: Callable[[float], Exception | None],
) -> subprocess.CompletedProcess[str]:
    """``git ARGS`` in its own process group, whatever its exit code; ``stop`` can end it.

    Every 50 ms ``stop`` gets the seconds waited so far; when it returns an
    exception, git and every process it started (remote helpers, ssh,
    upload-pack) are killed and that exception is raised. Killing git alone
    would leave a remote helper holding the connection open.
    """
    with _started(args):
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=environment(),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="surrogateescape",
            start_new_session=True,
        )
    started = time.monotonic()
    pending = stdin
    try:
        while True:
            try:
                out, err = proc.communicate(pending, timeout=_POLL_SECONDS)
                return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                pending = None  # communicate() keeps what it has not written yet
            reason = stop(time.monotonic() - started)
            if reason is not None:
                _kill_group(proc)
                raise reason
    finally:
        if proc.returncode is None:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill git and every process it started, then reap them."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
