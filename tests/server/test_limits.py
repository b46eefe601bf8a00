"""One body cap for every gitml server: the same 413, declared or streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2

import gitml
from gitml.server.auth import read_tokens
from testing.servers import every_server

BIG = b"[" + b"1," * 1000 + b"1]"  # 2,003 bytes


def test_every_server_refuses_a_body_over_the_cap_alike(
    adder: gitml.Client, token_file: Path
) -> None:
    def streamed() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        yield BIG[:600]
        yield BIG[600:]

    declared, counted = [], []
    tokens = read_tokens(token_file)
    with every_server(adder, tokens, max_body_bytes=1000) as servers, httpx2.Client() as http:
        for server in servers:
            for answers, body in ((declared, BIG), (counted, streamed())):
                response = server.call(http, server.read, "abc", body)
                answers.append((response.status_code, response.json()))
            assert server.call(http, server.read, "abc").status_code == 200, server.name

    def refusal(message: str) -> tuple[int, object]:
        return 413, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": message}

    assert declared == [refusal("request body of 2003 bytes is over the limit of 1000 bytes")] * 3
    assert counted == [refusal("request body over the limit of 1000 bytes")] * 3
