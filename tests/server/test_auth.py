"""One token file, one bearer check and one Host rule for every gitml server."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import gitml
from gitml.cli import main
from gitml.errors import InvalidInput
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.server.auth import bearer, loopback_host, read_tokens
from gitml.server.tracking_app import PREFIX, ServerSettings, create_app
from gitml.serving import reconcile_app, scoring_app
from gitml.serving.reconcile import Reconciler, Source
from testing.procs import child_env, spawn
from testing.reconcile import CountingLoader
from testing.servers import every_server
from testing.serving import StandInModel, free_socket
from testing.tracking_server import SERVE

BODY = b'{"inputs": [[1.0, 2.0]]}'
JSON = {"Content-Type": "application/json"}


def test_read_tokens_reads_scopes(token_file: Path) -> None:
    assert read_tokens(token_file) == {"abc": "write", "def": "read"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("s3cret\n", "tokens.txt:1: expected 'TOKEN read' or 'TOKEN write'"),
        ("abc write\ndef admin\n", "tokens.txt:2: expected 'TOKEN read' or 'TOKEN write'"),
        ("abc write\n\nabc read\n", "tokens.txt:3: this token is listed already"),
        ("abc write extra\n", "tokens.txt:1: expected"),
        ("# nothing\n\n", "tokens.txt holds no token"),
    ],
)
def test_a_malformed_token_file_is_refused_naming_the_line(
    tmp_path: Path, text: str, words: str
) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=words):
        read_tokens(path)


@pytest.mark.parametrize(
    "args",
    [
        ["reconcile", "--repo", "."],
        ["server"],
        ["models", "serve", "-m", "runs:/x/model"],
    ],
)
def test_every_server_refuses_a_malformed_token_file_at_start_up(
    repo: Path, tmp_path: Path, args: list[str]
) -> None:
    bad = tmp_path / "tokens.txt"
    bad.write_text("s3cret\n")  # one bare token: accepted before, then every request was 401
    result = CliRunner().invoke(main, [*args, "--token-file", str(bad)])
    assert result.exit_code == 1, result.output
    assert f"{bad}:1: expected 'TOKEN read' or 'TOKEN write'" in result.stderr


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("abc", None),
        ("", None),
    ],
)
def test_bearer_scheme_is_case_insensitive(header: str, token: str | None) -> None:
    assert bearer(header) == token


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:5050", True),
        ("localhost:8080", True),
        ("LOCALHOST", True),
        ("[::1]:5000", True),
        ("[::1]", True),
        ("evil.example", False),
        ("evil.example:5050", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example:80", False),
        ("[::2]:80", False),
    ],
)
def test_loopback_host_names(host: str, allowed: bool) -> None:
    assert loopback_host(host) is allowed


# -- the servers ---------------------------------------------------------------------


def test_the_reconciler_takes_the_tracking_servers_token_file(
    adder: gitml.Client, token_file: Path
) -> None:
    Stages(Registry(adder), adder.config).assign("adder", 1, "production")
    reconciler = Reconciler(
        Source(adder.store), "production", adder.config, loader=CountingLoader()
    )
    reconciler.reconcile()
    app = reconcile_app.create_app(
        reconciler, interval=60, tokens=read_tokens(token_file), run_loop=False
    )
    http = TestClient(app)
    for token in ("abc", "def"):
        for scheme in ("Bearer", "bearer"):
            answer = http.post(
                "/invocations", content=BODY, headers={**JSON, "Authorization": f"{scheme} {token}"}
            )
            assert answer.status_code == 200, answer.text
    assert http.post("/invocations", content=BODY, headers=JSON).status_code == 401
    denied = http.post("/hooks/git", headers={"Authorization": "bearer def"})
    assert denied.status_code == 403 and "needs a write token" in denied.json()["message"]
    assert http.post("/hooks/git", headers={"Authorization": "bearer abc"}).status_code == 202


def test_the_scoring_server_takes_a_token_file_and_any_case(token_file: Path) -> None:
    model = StandInModel(lambda data: [0] * len(data))
    http = TestClient(scoring_app.create_app(model, tokens=read_tokens(token_file)))
    assert http.post("/invocations", content=BODY, headers=JSON).status_code == 401
    for header in ("Bearer def", "bearer abc", "BEARER abc"):
        answer = http.post("/invocations", content=BODY, headers={**JSON, "Authorization": header})
        assert answer.status_code == 200, (header, answer.text)
    single = TestClient(scoring_app.create_app(model, token="t"))
    assert (
        single.post(
            "/invocations", content=BODY, headers={**JSON, "Authorization": "bearer t"}
        ).status_code
        == 200
    )


def test_the_tracking_server_takes_any_case(repo: Path, token_file: Path) -> None:
    settings = ServerSettings(repo=repo, tokens=read_tokens(token_file))
    with TestClient(create_app(settings)) as http:
        for header in ("bearer def", "BEARER def", "Bearer def"):
            answer = http.get(f"{PREFIX}/experiments", headers={"Authorization": header})
            assert answer.status_code == 200, header
        assert http.get(f"{PREFIX}/experiments").status_code == 401


def test_without_tokens_only_loopback_host_names_are_answered(repo: Path) -> None:
    settings = ServerSettings(repo=repo, loopback_only=True)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:5000") as http:
        assert http.get(f"{PREFIX}/experiments").status_code == 200
        for host in ("localhost:5000", "[::1]:5000"):
            assert http.get(f"{PREFIX}/experiments", headers={"Host": host}).status_code == 200
        rebound = http.get(f"{PREFIX}/experiments", headers={"Host": "evil.example:5000"})
        assert rebound.status_code == 403
        assert "Host 'evil.example:5000' is not a loopback name" in rebound.json()["message"]
        assert http.get("/ui/", headers={"Host": "evil.example"}).status_code == 403


def test_a_read_only_server_refuses_every_write(repo: Path) -> None:
    settings = ServerSettings(repo=repo, read_only=True)
    with TestClient(create_app(settings)) as http:
        assert http.get(f"{PREFIX}/experiments").status_code == 200
        refused = http.post(f"{PREFIX}/experiments", json={"name": "x"})
        assert refused.status_code == 403
        assert "--allow-writes" in refused.json()["message"]
        assert http.post(f"{PREFIX}/runs", json={}).status_code == 403


def answer(response: httpx2.Response) -> tuple[int, object, str | None]:
    return response.status_code, response.json(), response.headers.get("www-authenticate")


def refusal(status: int, message: str) -> tuple[int, object, str | None]:
    code = "UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED"
    return status, {"error_code": code, "message": message}, "Bearer" if status == 401 else None


def test_one_token_file_gives_the_same_answers_on_every_server(
    adder: gitml.Client, token_file: Path
) -> None:
    reads, writes = [], []
    with every_server(adder, read_tokens(token_file)) as servers, httpx2.Client() as http:
        for server in servers:
            for token in ("def", "abc"):  # a write token may also read
                assert server.call(http, server.read, token).status_code == 200, server.name
            for token in (None, "guess"):
                reads.append(answer(server.call(http, server.read, token)))
            if server.write is not None:
                for token in (None, "def"):
                    writes.append(answer(server.call(http, server.write, token)))
                assert server.call(http, server.write, "abc").status_code in (201, 202)
    unknown = refusal(401, "send 'Authorization: Bearer <token>' with a read or write token")
    assert reads == [unknown] * 6
    assert (
        writes
        == [
            refusal(401, "send 'Authorization: Bearer <token>' with a write token"),
            refusal(403, "this route needs a write token; this one may only read"),
        ]
        * 2
    )


# -- gitml ui, the real process --------------------------------------------------------


def start_ui(repo: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = spawn(
        SERVE, repo, "ui", "--repo", str(repo), "--port", str(port), *args, env=child_env()
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx2.TransportError:
            pass
        assert time.monotonic() < deadline, "gitml ui did not start"
        time.sleep(0.05)


@pytest.mark.slow
def test_gitml_ui_is_read_only_and_loopback_only_unless_asked(repo: Path) -> None:
    proc, url = start_ui(repo)
    try:
        assert httpx2.get(f"{url}{PREFIX}/experiments").status_code == 200
        rebound = httpx2.get(f"{url}/ui/", headers={"Host": "attacker.example"})
        assert rebound.status_code == 403
        created = httpx2.post(f"{url}{PREFIX}/experiments", json={"name": "x"})
        assert created.status_code == 403 and "--allow-writes" in created.json()["message"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    proc, url = start_ui(repo, "--allow-writes")
    try:
        assert httpx2.post(f"{url}{PREFIX}/experiments", json={"name": "x"}).status_code == 201
        assert httpx2.get(f"{url}/ui/", headers={"Host": "attacker.example"}).status_code == 403
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
