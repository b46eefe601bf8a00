"""A real ``gitml server`` process on 127.0.0.1, which tests stop, kill and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from .procs import child_env
from .serving import free_socket

SERVE = "import sys; from gitml.cli import main; sys.argv[0] = 'gitml'; main()"


class TrackingServer:
    """``gitml server --repo REPO --port PORT`` that can be started again on the same port."""

    def __init__(self, repo: Path, *args: str, env: dict[str, str] | None = None) -> None:
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        self.repo = repo
        self.args = args
        self.env = env if env is not None else child_env()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30) -> None:
        # Its output goes to a file: a pipe nobody reads fills up with the
        # tracebacks of failing requests, and the server then blocks writing them.
        fd, log = tempfile.mkstemp(prefix="gitml-server-", suffix=".log")
        self.log = Path(log)
        command = [sys.executable, "-c", SERVE, "server", "--repo", str(self.repo)]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), *self.args],
            cwd=self.repo,
            env=self.env,
            stdout=fd,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.close(fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"gitml server exited ({self.proc.returncode}): {self.log.read_text()}"
                )
            try:
                if httpx2.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"gitml server did not answer on {self.url} in {timeout}s")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.proc = None
        self.log.unlink()


@contextmanager
def tracking_server(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[TrackingServer]:
    """A started server; stopped (SIGTERM) at the end whatever happened."""
    server = TrackingServer(repo, *args, env=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
