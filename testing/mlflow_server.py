"""MLflow's own server on SQLite, on 127.0.0.1: the reference answers and the baseline.

It serves artifacts through its proxy (``mlflow-artifacts:``) into a folder
beside its database, as ``gitml server`` serves them into the repository.
"""

from __future__ import annotations

import importlib.util
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
import pytest

from .procs import child_env
from .serving import free_socket

needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None,
    reason="mlflow is not installed (it is in the dev extra: pip install -e '.[dev]')",
)
ROOT = Path(__file__).resolve().parent.parent


def mlflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that runs MLflow: its own HOME, no telemetry."""
    home.mkdir(parents=True, exist_ok=True)
    return child_env(
        home,
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **extra,
    )


@contextmanager
def mlflow_server(
    folder: Path, timeout: float = 120, backend_store_uri: str | None = None
) -> Iterator[str]:
    """``mlflow server`` on ``backend_store_uri`` (default ``folder/mlflow.db``); yields its
    URL, stops it at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    fd, log = tempfile.mkstemp(prefix="mlflow-server-", suffix=".log")
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri or f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        cwd=folder,
        env=mlflow_env(folder / "home"),
        stdout=fd,
        stderr=subprocess.STDOUT,
        # MLflow's server runs uvicorn (and a job runner) as children: stopped as one group.
        start_new_session=True,
    )
    os.close(fd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow server exited: {Path(log).read_text()}")
            try:
                if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not answer on {url} in {timeout}s")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        Path(log).unlink()
