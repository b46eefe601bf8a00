"""Child Python processes for durability and concurrency tests.

A child runs a short script with ``python -c`` in a repository, with the
pinned git environment of ``testing.git.git_env``; the test reads its stdout
line by line (for ``READY``-style handshakes) and signals or waits for it.
"""

from __future__ import annotations

import os
import resource
import selectors
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .git import git_env

READY = "READY"


def child_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a gitml child: pinned git identity, no user config."""
    env = git_env(home if home is not None else Path(os.environ["HOME"]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def spawn(
    script: str,
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start ``python -c script args…`` in ``cwd``; stdout and stderr are pipes."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=cwd,
        env=env if env is not None else child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(
    script: str,
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c script args…`` in ``cwd`` to completion."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=cwd,
        env=env if env is not None else child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_until(proc: subprocess.Popen[str], marker: str = READY, timeout: float = 60) -> list[str]:
    """The stdout lines a child printed up to and including the line ``marker``.

    Reads the pipe's file descriptor directly (no Python buffering, so
    ``select`` never misses a line); complete lines that arrived in the same
    read as the marker are returned too. Fails with the child's stderr if it
    exits or stays silent for ``timeout`` seconds.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            lines = data.decode().split("\n")[:-1]
            if marker in lines:
                return lines
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                proc.kill()
                _, err = proc.communicate()
                raise AssertionError(f"child printed no {marker!r} in {timeout}s: {err}")
            chunk = os.read(fd, 65536)
            if not chunk:
                _, err = proc.communicate()
                raise AssertionError(
                    f"child exited ({proc.returncode}) before {marker!r}; stderr:\n{err}"
                )
            data += chunk


def wait_for(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    *,
    retry_on: tuple[type[BaseException], ...] = (),
) -> float:
    """Poll ``condition()`` until it is true (one of ``retry_on`` raised counts as not
    yet); the seconds it took. The test fails after ``timeout`` seconds."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except retry_on:
            pass
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_stopped(pid: int, timeout: float = 60) -> None:
    """Return once process ``pid`` is stopped (SIGSTOP); fail if it exits or keeps running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            raise AssertionError(f"process {pid} exited instead of stopping") from None
        state = stat.rsplit(")", 1)[1].split()[0]  # the name in parentheses may hold spaces
        if state in ("T", "t"):
            return
        if state in ("Z", "X"):
            raise AssertionError(f"process {pid} exited instead of stopping")
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop in {timeout}s")


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    """Wait for a child; returns (exit code, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child did not exit in {timeout}s: {err}") from None
    return proc.returncode, out, err


def write_config(root: Path, **settings: Any) -> Path:
    """Write ``root/.gitml.yaml`` with ``settings`` (validated when a Client loads it)."""
    import yaml

    path = root / ".gitml.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=True))
    return path


def limit_memory(limit: int = 1 << 30) -> Callable[[], None]:
    """A ``preexec_fn`` capping a child's address space (and its children's) at
    ``limit`` bytes: a regression that balloons memory then fails the test with
    a MemoryError instead of taking the machine down."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply
