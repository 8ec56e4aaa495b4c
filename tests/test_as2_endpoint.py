"""The AS2 endpoint (uvicorn, and the guard around its protocol) in process, over real sockets on 127.0.0.1:
what its handler is given, and the limits of a request's body. tests/test_serve_limits.py drives the same
limits through `gateway serve`."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from gateway.transport.as2.http import AS2Endpoint, Body, Limits, Response


def _exchange(port: int, request: bytes, *, pause_after: int | None = None, pause: float = 0.0) -> bytes:
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        if pause_after is None:
            client.sendall(request)
        else:
            client.sendall(request[:pause_after])
            time.sleep(pause)
            with contextlib.suppress(OSError):  # the server answered and closed meanwhile
                client.sendall(request[pause_after:])
        answer = b""
        try:
            while chunk := client.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer
    finally:
        client.close()


class Recording:
    """An ``Intake`` that admits AS2-From ``PARTNER`` up to ``cap`` bytes and keeps what it was given."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.admitted: list[dict[str, str]] = []
        self.received: list[tuple[dict[str, str], int | None, bytes, int | None]] = []

    def admit(self, headers: dict[str, str]) -> int | Response:
        self.admitted.append(headers)
        if headers.get("AS2-From") != "PARTNER":
            return 403, {"Content-Type": "text/plain"}, b"who are you\n"
        return self.cap

    def receive(self, headers: dict[str, str], body: Body) -> Response:
        status = body.refusal.status if body.refusal else None
        self.received.append((headers, body.size, body.read(), status))
        if body.refusal is not None:
            return body.refusal.response()
        reply: Mapping[str, str] = {"X-Bytes": str(body.size), "X-Bad": "a\r\nInjected: yes"}
        return 200, reply, b"ok"


def test_the_handler_gets_the_headers_as_sent_and_the_body_whole(tmp_path: Path) -> None:
    intake = Recording(cap=1000)
    with AS2Endpoint("127.0.0.1", 0, intake, spool_dir=tmp_path) as endpoint:
        port = int(endpoint.url.rsplit(":", 1)[1].rstrip("/"))
        answer = _exchange(port, b"POST /as2 HTTP/1.1\r\nHost: gateway\r\nAS2-From: PARTNER\r\nX-Twice: one\r\n"
                                 b"x-twice: two\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nok")
    assert b"\r\nX-Bytes: 8\r\n" in answer
    assert b"\r\nInjected" not in answer and b"X-Bad: a  Injected: yes" in answer  # no header line added
    [(headers, size, data, refusal)] = intake.received
    assert (size, data, refusal) == (8, b"abcdefgh", None)
    # The sender's spelling and order, repeated fields joined (RFC 9110 5.3), as the evidence keeps them.
    assert list(headers.items())[:3] == [("Host", "gateway"), ("AS2-From", "PARTNER"), ("X-Twice", "one, two")]
    assert list(tmp_path.iterdir()) == []


def test_a_stranger_is_answered_on_its_headers_without_being_asked_for_its_body(tmp_path: Path) -> None:
    intake = Recording(cap=1000)
    with AS2Endpoint("127.0.0.1", 0, intake, spool_dir=tmp_path) as endpoint:
        port = int(endpoint.url.rsplit(":", 1)[1].rstrip("/"))
        answer = _exchange(port, b"POST / HTTP/1.1\r\nHost: g\r\nAS2-From: STRANGER\r\nContent-Length: 500\r\n"
                                 b"Expect: 100-continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403 ") and b"100 Continue" not in answer
    assert answer.endswith(b"who are you\n") and intake.received == []


def test_a_body_that_does_not_arrive_within_the_deadline_is_cut_and_handed_over_as_read(tmp_path: Path) -> None:
    intake = Recording(cap=1000)
    limits = Limits(request_deadline=1.5)
    with AS2Endpoint("127.0.0.1", 0, intake, spool_dir=tmp_path, limits=limits) as endpoint:
        port = int(endpoint.url.rsplit(":", 1)[1].rstrip("/"))
        request = b"POST / HTTP/1.1\r\nHost: g\r\nAS2-From: PARTNER\r\nContent-Length: 10\r\n\r\nabcdefghij"
        started = time.monotonic()
        answer = _exchange(port, request, pause_after=len(request) - 7, pause=3)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"the body (3 of 10 bytes read) did not arrive within 1.5 s\n")
    assert elapsed < 3 + 2.5  # answered at the deadline; the client's late bytes were dropped, not awaited
    [(_, size, data, refusal)] = intake.received
    assert (size, data, refusal) == (3, b"abc", 408)


def test_an_http_1_1_request_without_host_is_refused_by_the_parser(tmp_path: Path) -> None:
    """RFC 9112 3.2: a server MUST answer 400. h11 does; the handler never sees such a request."""
    intake = Recording(cap=1000)
    with AS2Endpoint("127.0.0.1", 0, intake, spool_dir=tmp_path) as endpoint:
        port = int(endpoint.url.rsplit(":", 1)[1].rstrip("/"))
        answer = _exchange(port, b"POST / HTTP/1.1\r\nAS2-From: PARTNER\r\nContent-Length: 2\r\n\r\nhi")
    assert answer.startswith(b"HTTP/1.1 400 ") and intake.admitted == []
