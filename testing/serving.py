"""Scoring-server fixtures: a stand-in pyfunc model and a real uvicorn in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from gitml.errors import InvalidInput


class StandInModel:
    """What the server needs of ``PyFuncModel``: ``predict(data, params=None)``.

    ``columns``, when given, is a tiny signature: a DataFrame missing one is an
    ``InvalidInput`` naming it. ``params={"fail": true}`` makes the model raise,
    as a broken model would.
    """

    def __init__(self, predict: Callable[[Any], Any], columns: list[str] | None = None) -> None:
        self._predict = predict
        self.columns = columns
        self.calls: list[tuple[Any, dict[str, Any] | None]] = []

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        self.calls.append((data, params))
        if params and params.get("fail"):
            raise RuntimeError("the model broke")
        if self.columns is not None and hasattr(data, "columns"):
            for name in self.columns:
                if name not in data.columns:
                    raise InvalidInput(f"input column '{name}' is missing")
            data = data[self.columns]
        return self._predict(data)


def free_socket() -> socket.socket:
    """A listening-ready socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def uvicorn_server(app: Any, timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def stalled_request(url: str, path: str = "/invocations") -> socket.socket:
    """A connection that sends a request's headers and half its declared body, then nothing."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"inputs": [[1')
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it
    does not within ``timeout`` seconds)."""
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)
