"""`gateway serve` against hostile clients, over real sockets on 127.0.0.1: what a client can make it spend is
bounded (headers, time, connections, body bytes read and kept), and SIGTERM stops it whatever the clients do."""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli_runner import PROJECT
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.store import Store, db
from gateway.store.models import InboundMessage
from gateway.transport.as2.http import AS2Endpoint, Limits

OURS, PARTNER = "CHORUS GATEWAY", "AIFE-CPP"
PARTNER_CAP = 5000  # [partners.chorus] as2_max_message_bytes
KEEP = 100  # [serve] refused_body_keep_bytes


def _config(tmp_path: Path, serve: str) -> tuple[Path, str]:
    config = tmp_path / "gateway.toml"
    # The credential files are never read: every request here is refused before its S/MIME layers are.
    config.write_text(f"""
[gateway]
data_dir = "data"
[sandbox]
enabled = false
[serve]
{serve}
[partners.chorus]
transport = "as2"
partner_code = "AAA123"
endpoint = "http://127.0.0.1:9/"
as2_from = "{OURS}"
as2_to = "{PARTNER}"
as2_max_message_bytes = {PARTNER_CAP}
[partners.chorus.credentials]
own_key = "keys/absent.key"
own_cert = "keys/absent.pem"
partner_cert = "keys/absent-partner.pem"
[channels.erp]
partner = "chorus"
""")
    return config, f"sqlite:///{tmp_path / 'g.db'}"


@contextmanager
def _serve(config: Path, database_url: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`gateway serve` as its own process on a port it picks; killed at the end if the test left it running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | {"GATEWAY_DATABASE_URL":
                                                                                   database_url}
    process = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(config), "--log-format", "json",
                                "serve", "--port", "0"], env=env, cwd=PROJECT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "serving AS2 on http://127.0.0.1:PORT/"
        assert line.startswith("serving AS2 on "), process.communicate(timeout=30)[1]
        yield int(line.rsplit(":", 1)[1].strip().rstrip("/")), process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _request(port: int, head: str, body: bytes = b"") -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.sendall(head.encode("latin-1") + body)
    return client


def _answer(client: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer is a close too)."""
    data = b""
    try:
        while chunk := client.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        client.close()
    return data


def _answer_while_sending(port: int, data: bytes) -> bytes:
    """The answer to ``data``, read while it is still being sent, as a client that does not wait to finish."""
    client = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send() -> None:
        with contextlib.suppress(OSError):  # the server closed after answering
            client.sendall(data)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        return _answer(client)
    finally:
        sender.join(30)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _as2_head(as2_from: str, extra: str = "") -> str:
    return (f"POST /as2 HTTP/1.1\r\nHost: gateway\r\nAS2-Version: 1.2\r\nAS2-From: {as2_from}\r\n"
            f'AS2-To: "{OURS}"\r\nMessage-ID: <m-{time.monotonic_ns()}@partner>\r\n'
            f"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n{extra}\r\n")


def _inbound(database_url: str) -> list[InboundMessage]:
    store = Store(db.make_engine(database_url))
    try:
        with store.transaction() as tx:
            return list(tx.inbound_messages())
    finally:
        store.close()


def test_serve_refuses_hostile_requests_without_reading_or_keeping_more_than_the_limits(tmp_path: Path) -> None:
    config, url = _config(tmp_path, "max_connections = 3\nrequest_deadline_seconds = 2\nmax_headers = 30\n"
                                    f"refused_body_keep_bytes = {KEEP}\nshutdown_grace_seconds = 1")
    with _serve(config, url) as (port, process):
        # 200 headers of 60 KB (measured: the connection broke): 431, read whole by the client, which was still
        # sending when the server answered after the default 64 KiB of head.
        huge = "".join(f"X-Filler-{i}: {'a' * 60_000}\r\n" for i in range(200))
        answer = _answer_while_sending(port, f"POST / HTTP/1.1\r\nHost: gateway\r\n{huge}\r\n".encode())
        assert _status(answer) == 431 and answer.endswith(b"the request line and headers exceed 65536 bytes\n")
        # More header lines than max_headers, each short.
        many = "".join(f"X-Line-{i}: {i}\r\n" for i in range(31))
        answer = _answer(_request(port, f"POST / HTTP/1.1\r\n{many}\r\n"))
        assert _status(answer) == 431 and answer.endswith(b"more than 30 header fields\n")

        # A sender no partner is agreed with: answered on its headers alone, with 1 MB of body announced and
        # none sent; kept with its headers, the body never read.
        client = _request(port, _as2_head("STRANGER", "Content-Length: 1000000\r\n"))
        assert _status(_answer(client)) == 403
        # The partner announcing more than its cap, asking to continue: 413 instead of "100 Continue".
        client = _request(port, _as2_head(PARTNER, f"Content-Length: {PARTNER_CAP + 1}\r\nExpect: 100-continue\r\n"))
        answer = _answer(client)
        assert _status(answer) == 413 and b"100 Continue" not in answer
        # The partner sending more than its cap in chunks: read up to the cap (and one byte), then 413.
        data = bytes(range(256)) * 40
        chunks = b"".join(b"%x\r\n%s\r\n" % (1000, data[i:i + 1000]) for i in range(0, len(data), 1000)) + b"0\r\n\r\n"
        answer = _answer(_request(port, _as2_head(PARTNER, "Transfer-Encoding: chunked\r\n"), chunks))
        assert _status(answer) == 413
        # Within the cap but not AS2 inside: read whole, refused after, kept only in part.
        junk = b"\x00junk" * 600
        answer = _answer(_request(port, _as2_head(PARTNER, f"Content-Length: {len(junk)}\r\n"), junk))
        assert _status(answer) == 400

        # max_connections = 3 clients trickling their headers hold every connection (the request above was read
        # whole, so its connection was released before its answer ended): the next is refused at once with 503;
        # the three are cut at the 2 s deadline with 408 although each sends a byte every 0.2 s.
        trickling = [_request(port, "POST / HTTP/1.1\r\nX-Slow: ") for _ in range(3)]
        busy = _answer(socket.create_connection(("127.0.0.1", port), timeout=30))
        assert _status(busy) == 503 and b"\r\nRetry-After: 30\r\n" in busy
        answers = _trickle(trickling, give_up_after=20)
        assert [_status(a) for a in answers] == [408] * 3, answers
        assert all(a.endswith(b"the request headers did not arrive within 2 s\n") for a in answers)

        process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=30)[1]
    assert process.returncode == 0, stderr

    stranger, too_long, chunked, junk_row = _inbound(url)
    assert (stranger.outcome, stranger.body, stranger.body_size, stranger.body_sha256) == ("refused", b"", None, None)
    assert "STRANGER" in (stranger.error or "") and stranger.partner is None
    assert (too_long.outcome, too_long.body, too_long.body_size, too_long.partner) == ("refused", b"", None, "chorus")
    assert f"the body of {PARTNER_CAP + 1} bytes exceeds the {PARTNER_CAP} bytes" in (too_long.error or "")
    # Only the configured prefix is kept; the size and sha256 are those of all that was read.
    assert (chunked.outcome, chunked.body, chunked.body_size) == ("refused", data[:KEEP], PARTNER_CAP + 1)
    assert chunked.body_sha256 == hashlib.sha256(data[:PARTNER_CAP + 1]).hexdigest()
    assert "as2_max_message_bytes" in (chunked.error or "")
    assert (junk_row.outcome, junk_row.body, junk_row.body_size) == ("refused", junk[:KEEP], len(junk))
    assert junk_row.body_sha256 == hashlib.sha256(junk).hexdigest()
    assert list((tmp_path / "data" / "spool").iterdir()) == []  # bodies were spooled to anonymous files
    refused = [line for line in stderr.splitlines() if '"as2.connections_refused"' in line]
    assert len(refused) == 1 and '"max_connections": 3' in refused[0]


def _trickle(clients: list[socket.socket], *, give_up_after: float) -> list[bytes]:
    """One header byte every 0.2 s on each client until the server answers it; the answers, in order."""
    answers: dict[socket.socket, bytes] = {}
    end = time.monotonic() + give_up_after
    while len(answers) < len(clients) and time.monotonic() < end:
        waiting = [c for c in clients if c not in answers]
        readable, _, _ = select.select(waiting, [], [], 0.2)
        for client in readable:
            answers[client] = _answer(client)
        for client in waiting:
            if client not in answers:
                try:
                    client.send(b"x")
                except OSError:
                    answers[client] = _answer(client)
    return [answers.get(c, b"") for c in clients]


def test_serve_stops_within_seconds_of_sigterm_with_a_client_still_sending(tmp_path: Path) -> None:
    """The default request deadline (60 s) is far away: only the stop closes the trickling connection."""
    config, url = _config(tmp_path, "")
    with _serve(config, url) as (port, process):
        client = _request(port, _as2_head(PARTNER, "Content-Length: 4000\r\nExpect: 100-continue\r\n"))
        assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # its connection is being served
        client.sendall(b"first bytes")

        process.send_signal(signal.SIGTERM)

        # Measured before: still running 150 s later. 10 s is a bound, not a measure: the grace is 5 s.
        stderr = process.communicate(timeout=10)[1]
    assert process.returncode == 0, stderr
    answer = _answer(client)
    assert _status(answer) == 503 and b"\r\nRetry-After: 60\r\n" in answer
    [row] = _inbound(url)
    assert (row.outcome, row.body, row.body_size) == ("refused", b"first bytes", 11)
    assert "stopping" in (row.error or "")
    events = [line for line in stderr.splitlines() if '"serve.stopping"' in line or '"serve.stopped"' in line]
    assert len(events) == 2 and '"signal": "SIGTERM"' in events[0]


def test_stop_lets_a_request_already_read_finish(tmp_path: Path) -> None:
    """In process: a handler still running once ``stop()`` has closed the listening socket gets its answer out."""
    port, running = 0, threading.Event()

    def handler(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        running.set()
        end = time.monotonic() + 10
        while time.monotonic() < end:  # until stop() has begun: nothing listens any more
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return 200, {}, b"done: " + body
            time.sleep(0.05)
        return 500, {}, b"stop() was never called"

    endpoint = AS2Endpoint("127.0.0.1", 0, handler, limits=Limits(shutdown_grace=10), spool_dir=tmp_path).start()
    port = int(endpoint.url.rsplit(":", 1)[1].rstrip("/"))
    client = _request(port, "POST / HTTP/1.1\r\nHost: gateway\r\nContent-Length: 4\r\n\r\n", b"body")
    assert running.wait(10)

    endpoint.stop()

    assert _answer(client).endswith(b"\r\n\r\ndone: body")


@pytest.mark.parametrize(("setting", "key"), [
    ("max_connections = 0", "serve.max_connections"),
    ("request_deadline_seconds = -1", "serve.request_deadline_seconds"),
    ("max_header_byte = 1", "serve.max_header_byte"),  # misspelt
    ("refused_body_keep_bytes = -1", "serve.refused_body_keep_bytes"),
])
def test_serve_settings_are_checked(tmp_path: Path, setting: str, key: str) -> None:
    config, _ = _config(tmp_path, setting)
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    assert caught.value.key == key
