"""The network edges of AS2: one POST out, and a small threaded endpoint in. Standard library only.

Nothing here reads the S/MIME layers: the endpoint hands the raw headers and body to a
handler supplied by the caller, so the gateway can store the request as evidence before
``message.parse_message`` (which may refuse it) ever sees it.

Anyone who reaches the port is a client, so what one can make the endpoint spend is bounded
(``Limits``): header bytes and lines, one deadline for the whole request, a number of
connections, bodies on disk rather than in memory and no larger than the handler admits
after seeing the headers, and a stop that does not wait for slow clients.
"""

from __future__ import annotations

import contextlib
import hashlib
import http
import http.client
import io
import math
import re
import socket
import socketserver
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import structlog

from gateway.errors import TransportError
from gateway.transport.as2.message import OutboundMessage

log = structlog.get_logger(__name__)

#: ``handler(headers, body) -> (status, headers, body)``. Headers keep the sender's spelling and order.
Handler = Callable[[dict[str, str], bytes], tuple[int, Mapping[str, str], bytes]]
Response = tuple[int, Mapping[str, str], bytes]

_HOP_BY_HOP = {"content-length", "connection", "transfer-encoding", "keep-alive"}
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE = re.compile(r"[\r\n\x00]")
_BUFFER = 64 * 1024
#: Bodies over this are handed to the handler one at a time: a handler holds its body in memory (and the
#: S/MIME layers copy it), so these are what the endpoint's memory is bounded by.
LARGE_BODY = 1024 * 1024
#: After an answer given before the whole request was read, what the client still sends is read and dropped
#: for this long, so that it gets the answer rather than a connection reset.
_LINGER_SECONDS = 2.0
_WATCH_INTERVAL = 0.1
_BUSY_TEXT = b"too many connections: send again later\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))


def post_message(
    url: str,
    message: OutboundMessage,
    *,
    timeout: float,
    cafile: str | None = None,
    context: ssl.SSLContext | None = None,
) -> Response:
    """The status is returned, not judged: a 2xx without an MDN, or a 500 carrying an error MDN, are the
    caller's to interpret. Failing to talk at all is a ``TransportError``, retryable unless the server's
    certificate is not trusted (retrying will not fix that)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"an AS2 URL is http:// or https://, not {url!r}")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = context or ssl.create_default_context(cafile=cafile)
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=message.body, headers={**message.headers, "Connection": "close"})
        response = connection.getresponse()
        return response.status, _joined(response.getheaders()), response.read()
    except ssl.SSLCertVerificationError as exc:
        raise TransportError(f"the server certificate of {url} is not trusted: {exc.verify_message}",
                             peer=parts.hostname, retryable=False) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(f"POST to {url} failed: {exc!r}", peer=parts.hostname) from exc
    finally:
        connection.close()


@dataclass(frozen=True)
class Limits:
    """What one client can make the endpoint spend (docs/transport.md, "Limits of gateway serve")."""

    #: Connections open at once; the next one is answered 503 (Retry-After) and closed by the accepting thread.
    max_connections: int = 16
    #: Seconds from accept to the last byte of the request (TLS handshake, headers, body): else 408 and close.
    request_deadline: float = 60.0
    #: The request line and header lines, in bytes and in number of header lines: else 431.
    max_header_bytes: int = 65_536
    max_headers: int = 100
    #: The largest body a plain ``Handler`` is given (an ``Intake`` says per request): else 413.
    max_body: int = 20_000_000
    #: ``stop()`` lets requests already read finish within this many seconds.
    shutdown_grace: float = 5.0


@dataclass(frozen=True)
class Refusal:
    """Why the endpoint stopped reading a request, and the answer it makes."""

    status: int
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        return self.status, {**_TEXT, **self.headers}, f"{self.reason}\n".encode("utf-8", "replace")


class Body:
    """A request body as read into its spool file (on disk, never whole in memory), hashed on the way.

    ``size`` and ``sha256`` are those of the bytes read, None when none were (refused on the headers);
    ``refusal`` says why reading stopped short of the end (too large, cut at the deadline, malformed).
    """

    def __init__(self, file: IO[bytes] | None = None, *, declared: int | None = None,
                 refusal: Refusal | None = None) -> None:
        self._file, self.declared, self.refusal = file, declared, refusal
        self._digest = hashlib.sha256()
        self.size: int | None = None if file is None else 0

    @classmethod
    def of(cls, data: bytes, *, refusal: Refusal | None = None) -> Body:
        """A body already in memory (a caller that is not the endpoint)."""
        body = cls(io.BytesIO(), declared=len(data), refusal=refusal)
        body.write(data)
        return body

    @property
    def sha256(self) -> str | None:
        return None if self._file is None else self._digest.hexdigest()

    def write(self, data: bytes) -> None:
        assert self._file is not None and self.size is not None
        self._file.write(data)
        self._digest.update(data)
        self.size += len(data)

    def read(self, limit: int = -1) -> bytes:
        """The bytes read, or their first ``limit``."""
        if self._file is None:
            return b""
        self._file.seek(0)
        return self._file.read(limit)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@runtime_checkable
class Intake(Protocol):
    """What the endpoint asks about each request. Both may run on several threads at once."""

    def admit(self, headers: dict[str, str]) -> int | Response:
        """Called once the headers are read, before any byte of the body: the most body bytes the request may
        carry, or the answer that refuses it (the body is then never read)."""

    def receive(self, headers: dict[str, str], body: Body) -> Response:
        """A body read whole, or read in part and refused (``body.refusal``: its answer is the refusal's)."""


class _PlainIntake:
    """A ``Handler`` given every body up to ``max_body``, whole and in memory."""

    def __init__(self, handler: Handler, max_body: int) -> None:
        self.handler, self.max_body = handler, max_body

    def admit(self, headers: dict[str, str]) -> int | Response:
        return self.max_body

    def receive(self, headers: dict[str, str], body: Body) -> Response:
        if body.refusal is not None:
            return body.refusal.response()
        return self.handler(headers, body.read())


class AS2Endpoint:
    """Receives AS2 POSTs (messages, or asynchronous MDNs) on its own threads until ``stop()``.

    ``handler`` is an ``Intake`` (sees the headers before the body is read), or a plain ``Handler``. One
    request per connection, one thread per connection, at most ``limits.max_connections`` of them. Bodies
    are spooled to anonymous files in ``spool_dir`` (the system's temporary directory if None); a body over
    ``LARGE_BODY`` is handed over once the previous large one is done. HTTPS when given a server
    ``ssl_context`` (the handshake runs on the connection's thread, within the deadline). Port 0 picks a
    free port: read ``url``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: Intake | Handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self.host, self.port, self.ssl_context, self.spool_dir = host, port, ssl_context, spool_dir
        self.limits = limits or Limits()
        self.intake = handler if isinstance(handler, Intake) else _PlainIntake(handler, self.limits.max_body)
        self._server: _Listener | None = None
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._stopping = False
        self._stopped = threading.Event()
        self._large = threading.BoundedSemaphore(1)
        self._busy_refused, self._busy_logged_at = 0, -math.inf

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the endpoint is not started")
        scheme = "https" if self.ssl_context else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self._server.server_address[1]}/"

    def start(self) -> AS2Endpoint:
        if self._server is not None:
            raise RuntimeError("the endpoint is already started")
        self._server = _Listener((self.host, self.port), self)
        self._stopping = False
        self._stopped.clear()
        port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"as2-endpoint-{port}", daemon=True)
        self._watcher = threading.Thread(target=self._watch, name=f"as2-deadlines-{port}", daemon=True)
        self._thread.start()
        self._watcher.start()
        return self

    def stop(self) -> None:
        """Stops accepting and closes at once the connections still sending or lingering; a request already
        read finishes, within ``limits.shutdown_grace`` seconds. One that overruns it is cut and logged, so
        this returns within about the grace whatever the clients do."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            self._stopping = True
            connections = list(self._connections)
        now = time.monotonic()
        for connection in connections:
            connection.check(now, stopping=True)
        end = now + self.limits.shutdown_grace
        for connection in connections:
            if connection.thread is not None:
                connection.thread.join(max(0.0, end - time.monotonic()))
        overran = [c for c in connections if c.thread is not None and c.thread.is_alive()]
        for connection in overran:
            connection.kill()
        if overran:
            log.warning("as2.stopped_with_requests_in_flight", requests=len(overran),
                        grace_seconds=self.limits.shutdown_grace)
        self._stopped.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def __enter__(self) -> AS2Endpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- connections ---------------------------------------------------------------------------------------------

    def _accepted(self, sock: socket.socket, address: Any) -> None:
        """On the accepting thread: a thread for the connection, or 503 when ``max_connections`` are open."""
        with self._lock:
            busy = self._stopping or len(self._connections) >= self.limits.max_connections
            if not busy:
                connection = _Connection(sock, str(address[0]), time.monotonic() + self.limits.request_deadline)
                self._connections.add(connection)
        if busy:
            self._refuse_busy(sock, str(address[0]))
            return
        connection.thread = threading.Thread(target=self._serve, args=(connection,), daemon=True,
                                             name=f"as2-connection-{address[0]}:{address[1]}")
        connection.thread.start()

    def _refuse_busy(self, sock: socket.socket, client: str) -> None:
        # Never blocks the accepting thread: one non-blocking send fits a fresh socket's buffer. Over TLS
        # nothing can be said before a handshake, which would cost a thread: the connection is just closed.
        try:
            if self.ssl_context is None:
                sock.setblocking(False)
                sock.send(_BUSY)
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()
        self._busy_refused += 1
        now = time.monotonic()
        if now - self._busy_logged_at >= 60:  # at most one line a minute, however many are refused
            log.warning("as2.connections_refused", client=client, refused=self._busy_refused,
                        max_connections=self.limits.max_connections)
            self._busy_refused, self._busy_logged_at = 0, now

    def _watch(self) -> None:
        """Cuts the connections past their deadline; while stopping, also those not running a handler."""
        while not self._stopped.wait(_WATCH_INTERVAL):
            with self._lock:
                connections, stopping = list(self._connections), self._stopping
            now = time.monotonic()
            for connection in connections:
                connection.check(now, stopping=stopping)

    def _serve(self, connection: _Connection) -> None:
        stream: socket.socket = connection.sock
        try:
            stream.settimeout(self.limits.request_deadline)  # the watchdog cuts first; this is the backstop
            if self.ssl_context is not None:
                try:
                    stream = self.ssl_context.wrap_socket(stream, server_side=True)
                except (OSError, ValueError) as exc:
                    log.info("as2.tls_handshake_failed", client=connection.client, error=str(exc)[:200])
                    return
            self._converse(connection, stream)
        except Exception:  # noqa: BLE001 - one connection's bug must not end the endpoint
            log.exception("as2.connection_failed", client=connection.client)
        finally:
            # Forgotten before the socket closes, so that a client that saw the close can count on the slot.
            with self._lock:
                self._connections.discard(connection)
            for sock in (stream, connection.sock, connection.control):
                with contextlib.suppress(OSError):
                    sock.close()

    def _converse(self, connection: _Connection, stream: socket.socket) -> None:
        rfile = stream.makefile("rb", buffering=_BUFFER)
        try:
            try:
                head = self._read_head(rfile, connection)
            except _Refused as exc:
                self._refused(connection, stream, exc.refusal)
                return
            if head is None:  # closed before a request: a port probe
                return
            method, version, pairs = head
            if method != "POST":
                self._refused(connection, stream, Refusal(405, f"{method[:20]} is not accepted here, only POST",
                                                          {"Allow": "POST"}))
                return
            headers = _joined(pairs)
            connection.enter(_HANDLING)
            try:
                admitted = self.intake.admit(headers)
            except Exception:  # noqa: BLE001 - the partner gets a 500, the operator the traceback
                log.exception("as2.handler_failed", client=connection.client)
                admitted = 500, _TEXT, b"internal error\n"
            if not isinstance(admitted, int):
                self._reply(connection, stream, admitted, linger=True)
                return
            connection.enter(_READING, connection.request_deadline)
            body = self._read_body(rfile, stream, connection, headers, version, admitted)
        finally:
            rfile.close()
        try:
            connection.enter(_HANDLING)
            large = body.refusal is None and (body.size or 0) > LARGE_BODY
            with self._large if large else contextlib.nullcontext():
                try:
                    response = self.intake.receive(headers, body)
                except Exception:  # noqa: BLE001 - the partner gets a 500, the operator the traceback
                    log.exception("as2.handler_failed", client=connection.client)
                    response = 500, _TEXT, b"internal error\n"
        finally:
            body.close()
        self._reply(connection, stream, response, linger=body.refusal is not None)

    def _read_head(self, rfile: IO[bytes], connection: _Connection) -> tuple[str, str, list[tuple[str, str]]] | None:
        """Request line and header lines within ``max_header_bytes`` and ``max_headers``; None on a connection
        closed before its first byte."""
        budget = self.limits.max_header_bytes
        line = b"\r\n"
        while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: empty lines before the request line are ignored
            line = self._line(rfile, connection, budget, first=budget == self.limits.max_header_bytes)
            if line is None:
                return None
            budget -= len(line)
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
            raise _Refused(400, "malformed request line")
        if not re.fullmatch(rb"HTTP/1\.[01]", parts[2]):
            raise _Refused(505 if parts[2].startswith(b"HTTP/") else 400, "only HTTP/1.0 and HTTP/1.1 are spoken")
        pairs: list[tuple[str, str]] = []
        while True:
            line = self._line(rfile, connection, budget)
            assert line is not None
            budget -= len(line)
            if line in (b"\r\n", b"\n"):
                return parts[0].decode("ascii"), parts[2].decode("ascii"), pairs
            if len(pairs) == self.limits.max_headers:
                raise _Refused(431, f"more than {self.limits.max_headers} header fields")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise _Refused(400, "malformed header line (folded lines are not accepted)")
            value = value.strip(b" \t\r\n")
            if re.search(rb"[\r\n\x00]", value):
                raise _Refused(400, "a header value holds CR, LF or NUL")
            pairs.append((name.decode("ascii"), value.decode("latin-1")))

    def _line(self, rfile: IO[bytes], connection: _Connection, budget: int, *, first: bool = False) -> bytes | None:
        try:
            line = rfile.readline(budget + 1)
        except OSError:
            line = b""
        if len(line) > budget:
            raise _Refused(431, f"the request line and headers exceed {self.limits.max_header_bytes} bytes")
        if not line.endswith(b"\n"):
            if first and not line and connection.cut is None:
                return None
            raise _Refused(*self._interrupted(connection, "the request headers"))
        return line

    def _interrupted(self, connection: _Connection, what: str) -> tuple[int, str, Mapping[str, str]]:
        """Why reading ended early: the deadline, a stop, or the client."""
        if connection.cut == "stopping":
            return 503, "the server is stopping: send again later", {"Retry-After": "60"}
        if connection.cut == "deadline" or time.monotonic() >= connection.request_deadline:
            return 408, f"{what} did not arrive within {self.limits.request_deadline:g} s", {}
        return 400, f"the connection closed before the end of {what}", {}

    def _read_body(self, rfile: IO[bytes], stream: socket.socket, connection: _Connection, headers: dict[str, str],
                   version: str, limit: int) -> Body:
        fields = {name.lower(): value for name, value in headers.items()}
        coding, length = fields.get("transfer-encoding"), fields.get("content-length")
        declared = None
        if coding is not None:
            if coding.strip().lower() != "chunked":
                return Body(refusal=Refusal(501, "only the chunked transfer coding is accepted"))
        elif length is None:
            return Body(refusal=Refusal(411, "Content-Length or chunked Transfer-Encoding is required"))
        else:
            values = {value.strip() for value in length.split(",")}
            if len(values) != 1 or not re.fullmatch(r"[0-9]{1,18}", next(iter(values))):
                return Body(refusal=Refusal(400, f"bad Content-Length {length[:40]!r}"))
            declared = int(values.pop())
            if declared > limit:
                return Body(declared=declared, refusal=Refusal(413, f"the body of {declared} bytes exceeds the "
                                                                    f"{limit} bytes accepted"))
        if version == "HTTP/1.1" and fields.get("expect", "").strip().lower() == "100-continue":
            stream.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        # Anonymous (unlinked at once): nothing is left on disk after the request, or after a crash.
        body = Body(tempfile.TemporaryFile(dir=self.spool_dir), declared=declared)  # noqa: SIM115 - Body closes it
        try:
            if declared is None:
                self._read_chunked(rfile, body, limit)
            else:
                _copy(rfile, body, declared)
        except _Refused as exc:
            body.refusal = exc.refusal
        except (OSError, _Incomplete):
            expected = f" of {declared}" if declared is not None else ""
            body.refusal = Refusal(*self._interrupted(connection, f"the body ({body.size}{expected} bytes read)"))
        return body

    def _read_chunked(self, rfile: IO[bytes], body: Body, limit: int) -> None:
        while True:
            line = rfile.readline(1025)
            if not line.endswith(b"\n"):
                if len(line) > 1024:
                    raise _Refused(400, "a chunk size line is too long")
                raise _Incomplete
            size = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size):
                raise _Refused(400, "bad chunk size line")
            count = int(size, 16)
            if count == 0:
                break
            assert body.size is not None
            if body.size + count > limit:
                _copy(rfile, body, limit + 1 - body.size)
                raise _Refused(413, f"the body exceeds the {limit} bytes accepted (read up to {limit + 1} bytes)")
            _copy(rfile, body, count)
            end = rfile.readline(3)
            if end not in (b"\r\n", b"\n"):
                if not end.endswith(b"\n") and len(end) < 3:
                    raise _Incomplete
                raise _Refused(400, "a chunk is longer than its size line")
        budget, trailers = self.limits.max_header_bytes, 0
        while True:  # trailer fields, bounded as headers are, and dropped
            line = rfile.readline(budget + 1)
            budget -= len(line)
            trailers += 1
            if budget < 0 or trailers > self.limits.max_headers + 1:
                raise _Refused(431, "the trailer fields exceed the header limits")
            if not line.endswith(b"\n"):
                raise _Incomplete
            if line in (b"\r\n", b"\n"):
                return

    def _refused(self, connection: _Connection, stream: socket.socket, refusal: Refusal) -> None:
        log.warning("as2.request_refused", client=connection.client, status=refusal.status, reason=refusal.reason)
        self._reply(connection, stream, refusal.response(), linger=True)

    def _reply(self, connection: _Connection, stream: socket.socket, response: Response, *, linger: bool) -> None:
        status, headers, body = response
        connection.enter(_REPLYING, time.monotonic() + self.limits.request_deadline)
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {status} {phrase}"]
        lines += [f"{name}: {_UNSAFE.sub(' ', value)}" for name, value in headers.items()
                  if name.lower() not in _HOP_BY_HOP and _TOKEN.fullmatch(name.encode("latin-1", "replace"))]
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        try:
            stream.sendall("\r\n".join(lines).encode("latin-1", "replace") + body)
            if linger:
                self._linger(connection, stream)
        except OSError:
            pass  # the client is gone

    def _linger(self, connection: _Connection, stream: socket.socket) -> None:
        """After an answer given before the whole request was read: drop what the client still sends, for a
        moment, so that it reads the answer instead of a reset (closing a socket with unread data resets it)."""
        connection.enter(_LINGERING, time.monotonic() + _LINGER_SECONDS)
        connection.control.shutdown(socket.SHUT_WR)
        while stream.recv(_BUFFER):
            pass


_READING, _HANDLING, _REPLYING, _LINGERING = "reading", "handling", "replying", "lingering"


class _Connection:
    """One client connection, as the watchdog sees it: its phase, and until when that phase may last."""

    def __init__(self, sock: socket.socket, client: str, request_deadline: float) -> None:
        self.sock, self.client, self.request_deadline = sock, client, request_deadline
        # A second descriptor of the same socket: shutdown() through it wakes the thread blocked on the socket
        # even once ``ssl`` has taken the original over.
        self.control = sock.dup()
        self.phase = _READING
        self.deadline: float | None = request_deadline
        self.cut: str | None = None  #: "deadline" or "stopping", once reading was cut
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def enter(self, phase: str, deadline: float | None = None) -> None:
        with self._lock:
            self.phase, self.deadline = phase, deadline

    def check(self, now: float, *, stopping: bool) -> None:
        """Past its deadline, or stopping while it reads or lingers: reading is cut (an answer can still be
        written, a 408 or a 503), or the whole connection once the answer is being written. A running handler
        is never cut here: it may finish within the grace."""
        with self._lock:
            if self.phase == _HANDLING:
                return
            late = self.deadline is not None and now >= self.deadline
            if not late and not (stopping and self.phase in (_READING, _LINGERING)):
                return
            if self.cut is None:
                self.cut = "deadline" if late else "stopping"
            how = socket.SHUT_RD if self.phase == _READING else socket.SHUT_RDWR
            self.deadline = None
        with contextlib.suppress(OSError):
            self.control.shutdown(how)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.control.shutdown(socket.SHUT_RDWR)


class _Listener(socketserver.TCPServer):
    """Accepts and hands each connection to ``AS2Endpoint._accepted``."""

    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], endpoint: AS2Endpoint) -> None:
        self.endpoint = endpoint
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, socketserver.BaseRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.endpoint._accepted(request, client_address)


class _Refused(Exception):
    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        self.refusal = Refusal(status, reason, headers or {})
        super().__init__(reason)


class _Incomplete(Exception):
    """The stream ended (or was cut) before the end of the request."""


def _copy(rfile: IO[bytes], body: Body, count: int) -> None:
    while count > 0:
        data = rfile.read1(min(_BUFFER, count))  # type: ignore[attr-defined]
        if not data:
            raise _Incomplete
        body.write(data)
        count -= len(data)


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated headers are joined with commas (RFC 9110 5.3), keeping the first spelling of the name."""
    headers: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers
