"""A smart-HTTP Git remote on 127.0.0.1 that can stop answering, for fault tests.

Requests are answered by the real ``git http-backend`` (as CGI), so any bare
repository under ``root`` is an ``http://`` remote. ``stall()`` makes the
server accept connections and never answer them, as a hung server or a
black-holed network does; ``recover()`` answers again and drops the connections
held so far, as a restarted server does; ``resume()`` answers new ones and
keeps the held ones silent. ``credentials`` makes it require HTTP
basic authentication, so a URL's ``user:password@`` is really used.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class GitHttpServer:
    def __init__(self, root: Path, credentials: tuple[str, str] | None = None) -> None:
        self.root = root
        self.credentials = credentials
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.held = 0  # connections accepted while stalled, never answered
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, repo: str, *, userinfo: str | None = None) -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/{repo}"

    def stall(self) -> None:
        self.released.clear()
        self.stalled.set()

    def resume(self) -> None:
        """Answer new connections again; those held so far stay silent (a half-open TCP)."""
        self.stalled.clear()

    def recover(self) -> None:
        self.stalled.clear()
        self.released.set()

    def start(self) -> GitHttpServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.recover()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: pytest shows stderr of failing tests only

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            if server.stalled.is_set():
                with server._lock:
                    server.held += 1
                server.released.wait()
                # A restarted server: the connection closes without an answer.
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if server.credentials is not None and not self._authenticated():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            env = {
                **os.environ,
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "REMOTE_ADDR": "127.0.0.1",
            }
            done = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            )
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _authenticated(self) -> bool:
            assert server.credentials is not None
            given = self.headers.get("Authorization", "")
            expected = base64.b64encode(":".join(server.credentials).encode()).decode()
            return given == f"Basic {expected}"

    return Handler


@contextmanager
def git_http_server(
    root: Path, credentials: tuple[str, str] | None = None
) -> Iterator[GitHttpServer]:
    server = GitHttpServer(root, credentials).start()
    try:
        yield server
    finally:
        server.close()


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose arguments contain ``text`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if text in line and state != "Z":
            found.append(f"{entry.name}: {line}")
    return found
