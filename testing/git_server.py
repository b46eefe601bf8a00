"""A real Git server for tests: ``git http-backend`` behind nginx and fcgiwrap.

nginx checks HTTP basic authentication against an htpasswd file and hands
every request to ``git http-backend`` through fcgiwrap (a FastCGI wrapper for
CGI programs), as a self-hosted Git server does. Everything the server writes
(configuration, logs, pid file, nginx's temporary folders, the FastCGI socket)
stays in one temporary folder, and stopping it kills only the processes it
started. The served repositories are bare repositories in that folder, with
push enabled and gitml's ``pre-receive`` hook installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gitml.registry.hooks import install_server_hook

from .git import git, init_repo

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")

# What the hook (a grandchild of fcgiwrap) needs of the test's environment:
# PYTHONPATH finds the gitml under test, the rest pins git's configuration.
_PASSED_ON = (
    "PATH",
    "PYTHONPATH",
    "HOME",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_NOSYSTEM",
    "LANG",
    "LC_ALL",
)

_CONFIG = """\
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        # Pushes carry whole packs.
        client_max_body_size 0;
        location / {{
            auth_basic "gitml";
            auth_basic_user_file {root}/htpasswd;
            fastcgi_pass unix:{root}/fcgiwrap.sock;
            fastcgi_read_timeout 120s;
            fastcgi_param SCRIPT_FILENAME {backend};
            fastcgi_param GIT_PROJECT_ROOT {repos};
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param HTTP_GIT_PROTOCOL $http_git_protocol;
{passed}
        }}
    }}
}}
"""


@dataclass
class GitHttpServer:
    """A running server: ``url(name)`` is a repository's address, without credentials."""

    root: Path
    port: int
    user: str
    password: str

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    def url(self, name: str, *, credentials: str | None = None) -> str:
        """``http://127.0.0.1:<port>/<name>``; ``credentials`` (``user:password``) go in it."""
        auth = f"{credentials}@" if credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}/{name}"

    def create_repository(self, name: str, *, hook: bool = True) -> Path:
        """A bare repository served as ``name`` that accepts pushes, with gitml's hook."""
        path = init_repo(self.repos / name, bare=True)
        git(path, "config", "http.receivepack", "true")
        if hook:
            install_server_hook(path)
        return path

    def log(self) -> str:
        """nginx's error log and fcgiwrap's output, for an assertion message."""
        parts = [self.root / "error.log", self.root / "fcgiwrap.log"]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())


def available() -> str | None:
    """Why the server cannot run here (None: it can)."""
    missing = [name for name in ("nginx", "fcgiwrap") if shutil.which(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install nginx fcgiwrap)"
    if not HTTP_BACKEND.exists():
        return f"{HTTP_BACKEND} not found"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(
    what: str, ready: Callable[[], bool], procs: list[subprocess.Popen[bytes]], root: Path
) -> None:
    deadline = time.monotonic() + 15
    while not ready():
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in 15 s (logs in {root})")
        time.sleep(0.02)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        # Its own process group: fcgiwrap's parent leaves its preforked workers
        # running when it is terminated.
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def git_http_server(
    root: Path, *, user: str = "alice", password: str = "s3cret-Pa55", processes: int = 4
) -> Iterator[GitHttpServer]:
    """nginx and fcgiwrap serving ``root/repos`` on 127.0.0.1, stopped on exit.

    ``processes`` fcgiwrap workers run CGI requests side by side, so pushes
    from several clients at once really are concurrent.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "repos").mkdir()
    (root / "tmp").mkdir()
    # nginx reads a "{PLAIN}" entry as the password itself: no hashing tool needed.
    (root / "htpasswd").write_text(f"{user}:{{PLAIN}}{password}\n")
    port = _free_port()
    passed = "\n".join(
        f'            fastcgi_param {key} "{os.environ[key]}";'
        for key in _PASSED_ON
        if key in os.environ
    )
    # As root, nginx's workers would drop to "nobody", who cannot read the
    # temporary folder; a sandbox that runs tests as root keeps them root.
    user_line = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(
        _CONFIG.format(
            user=user_line,
            root=root,
            port=port,
            backend=HTTP_BACKEND,
            repos=root / "repos",
            passed=passed,
        )
    )
    sock = root / "fcgiwrap.sock"
    fcgiwrap = _start(["fcgiwrap", "-c", str(processes), "-s", f"unix:{sock}"], root)
    nginx = None
    try:
        _wait_for("fcgiwrap", sock.exists, [fcgiwrap], root)
        # "-e": nginx opens its error log before reading the configuration, and
        # the default (/var/log/nginx) may not be writable or may not exist.
        command = ["nginx", "-p", str(root), "-c", str(root / "nginx.conf")]
        nginx = _start([*command, "-e", str(root / "error.log"), "-g", "daemon off;"], root)
        _wait_for("nginx", lambda: _accepts(port), [fcgiwrap, nginx], root)
        yield GitHttpServer(root, port, user, password)
    finally:
        # nginx first (SIGQUIT: it finishes the requests in flight), then its backend.
        if nginx is not None:
            _stop(nginx, signal.SIGQUIT)
        _stop(fcgiwrap, signal.SIGTERM)


def _start(args: list[str], root: Path) -> subprocess.Popen[bytes]:
    with open(root / f"{args[0]}.log", "ab") as out:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
