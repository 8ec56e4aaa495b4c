"""The network edges of AS2: one POST out, and the endpoint partners POST to, on uvicorn.

Nothing here reads the S/MIME layers: the endpoint hands the raw headers and body to a
handler supplied by the caller, so the gateway can store the request as evidence before
``message.parse_message`` (which may refuse it) ever sees it.

The endpoint is an ASGI application served by uvicorn (HTTP parsed by h11): the application
gets the headers first and asks the handler to *admit* them (``Intake.admit``), and only then
reads the body, chunk by chunk as uvicorn receives it, into a spool file on disk; uvicorn sends
``100 Continue`` only when the body is first read, so a refused client is never invited to send.
Anyone who reaches the port is a client, so what one can make the endpoint spend is bounded
(``Limits``). uvicorn bounds none of it the way it must be bounded (its ``limit_concurrency``
answers once the headers have arrived, and has no Retry-After; h11's header limit is one
number, answered 400; nothing bounds the time a client takes to send its headers), so a thin
guard wraps uvicorn's protocol for each connection (``_Guard``): the number of connections
(503 at once, before a byte is read), the size and count of the head (431), one deadline from
accept to the request's last byte (408), a stop that does not wait for slow clients, and a
short linger after an early answer so that the client reads it instead of a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http
import http.client
import io
import math
import re
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.errors import TransportError
from gateway.transport.as2.message import OutboundMessage

log = structlog.get_logger(__name__)

#: ``handler(headers, body) -> (status, headers, body)``. Headers keep the sender's spelling and order.
Handler = Callable[[dict[str, str], bytes], tuple[int, Mapping[str, str], bytes]]
Response = tuple[int, Mapping[str, str], bytes]
_T = TypeVar("_T")

_HOP_BY_HOP = {"content-length", "connection", "transfer-encoding", "keep-alive"}
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE = re.compile(r"[\r\n\x00]")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
#: Bodies over this are handed to the handler one at a time: a handler holds its body in memory (and the
#: S/MIME layers copy it), so these are what the endpoint's memory is bounded by.
LARGE_BODY = 1024 * 1024
#: After an answer given before the whole request was read, what the client still sends is read and dropped
#: for this long, so that it gets the answer rather than a connection reset.
_LINGER_SECONDS = 2.0
_BUSY_TEXT = b"too many connections: send again later\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))
_STOPPING = "stopping"
_GUARD = "gateway.as2.guard"  # the key of the connection's guard in the ASGI scope's "state"


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

    #: Connections open at once; the next one is answered 503 (Retry-After) and closed before a byte is read.
    max_connections: int = 16
    #: Seconds from accept (over TLS: from the handshake's end) to the request's last byte: else 408 and close.
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
        """Called once the headers are read, before the body is: the most body bytes the request may carry, or
        the answer that refuses it (the body is then never read, nor ``100 Continue`` sent)."""

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
    """Receives AS2 POSTs (messages, or asynchronous MDNs) until ``stop()``, on uvicorn in a thread of its own.

    ``handler`` is an ``Intake`` (sees the headers before the body is read), or a plain ``Handler``. One
    request per connection, at most ``limits.max_connections`` connections. Bodies are spooled to anonymous
    files in ``spool_dir`` (the system's temporary directory if None); a body over ``LARGE_BODY`` is handed
    over once the previous large one is done. Handlers run on threads of their own (they block on the
    store). HTTPS when given a server ``ssl_context``. Port 0 picks a free port: read ``url``.
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
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bound: int | None = None
        # Used on the event loop's thread only.
        self._guards: set[_Guard] = set()
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._large: asyncio.Semaphore | None = None
        self._busy_refused, self._busy_logged_at = 0, -math.inf

    @property
    def url(self) -> str:
        if self._bound is None:
            raise RuntimeError("the endpoint is not started")
        scheme = "https" if self.ssl_context else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self._bound}/"

    def start(self) -> AS2Endpoint:
        """Listens (an ``OSError`` if the address cannot be had), then serves on a thread of its own."""
        if self._server is not None:
            raise RuntimeError("the endpoint is already started")
        listening = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind((self.host, self.port))
        except OSError:
            listening.close()
            raise
        config = uvicorn.Config(
            _App(self), http=functools.partial(_Guard, self), ws="none", lifespan="off", interface="asgi3",
            log_config=None, access_log=False, server_header=False, date_header=False, proxy_headers=False,
            backlog=64, h11_max_incomplete_event_size=self.limits.max_header_bytes + 1,
            # A backstop: ``_overran`` closes what outlives the grace first, so nothing is cancelled mid-handler.
            timeout_graceful_shutdown=self.limits.shutdown_grace + 0.5,
            ssl_context_factory=(lambda _config, _default: self.ssl_context) if self.ssl_context else None,
        )
        server, loop = uvicorn.Server(config), asyncio.new_event_loop()
        self._bound, self._server, self._loop = listening.getsockname()[1], server, loop

        def serve() -> None:
            asyncio.set_event_loop(loop)
            self._stop_event, self._large = asyncio.Event(), asyncio.Semaphore(1)
            self._stopping = False
            try:
                loop.run_until_complete(server.serve(sockets=[listening]))
            finally:
                listening.close()
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"as2-endpoint-{self._bound}", daemon=True)
        self._thread.start()
        while not server.started and self._thread.is_alive():
            time.sleep(0.01)
        if not server.started:
            self._server = self._loop = self._thread = None
            raise OSError(f"the AS2 endpoint did not start on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        """Stops accepting and closes at once the connections still sending their request (503 with Retry-After)
        or lingering; a request already read finishes, within ``limits.shutdown_grace`` seconds. One that
        overruns it is cut and logged, so this returns within about the grace whatever the clients do."""
        server, loop, thread = self._server, self._loop, self._thread
        self._server = self._loop = self._thread = None
        if server is None or loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(self._begin_stop)
        server.should_exit = True
        thread.join(timeout=self.limits.shutdown_grace + 10)

    def __enter__(self) -> AS2Endpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- on the event loop's thread ------------------------------------------------------------------------------

    def _begin_stop(self) -> None:
        self._stopping = True
        assert self._stop_event is not None
        self._stop_event.set()
        for guard in list(self._guards):
            guard.stop()
        asyncio.get_running_loop().call_later(self.limits.shutdown_grace, self._overran)

    def _overran(self) -> None:
        if self._guards:
            log.warning("as2.stopped_with_requests_in_flight", requests=len(self._guards),
                        grace_seconds=self.limits.shutdown_grace)
        for guard in list(self._guards):
            guard.kill()

    def _admit_connection(self, guard: _Guard) -> bool:
        if not self._stopping and len(self._guards) < self.limits.max_connections:
            self._guards.add(guard)
            return True
        self._busy_refused += 1
        now = time.monotonic()
        if now - self._busy_logged_at >= 60:  # at most one line a minute, however many are refused
            log.warning("as2.connections_refused", client=guard.client, refused=self._busy_refused,
                        max_connections=self.limits.max_connections)
            self._busy_refused, self._busy_logged_at = 0, now
        return False

    def _forget(self, guard: _Guard) -> None:
        self._guards.discard(guard)


_HEAD, _APP, _REPLYING, _LINGERING, _CLOSED = "head", "app", "replying", "lingering", "closed"


class _Guard(asyncio.Protocol):
    """One connection: uvicorn's protocol inside, the limits uvicorn does not hold around it.

    Phases: ``head`` (the guard counts the request line and headers, and answers 408 at the deadline),
    ``app`` (the application reads the body within the same deadline, then the handler runs), ``replying``,
    ``lingering`` (after an early answer, what the client still sends is dropped for ``_LINGER_SECONDS``).
    """

    def __init__(self, endpoint: AS2Endpoint, **uvicorn_arguments: Any) -> None:
        self.endpoint, self.limits = endpoint, endpoint.limits
        app_state = {**uvicorn_arguments.pop("app_state"), _GUARD: self}
        self.inner = H11Protocol(app_state=app_state, **uvicorn_arguments)
        self.loop = self.inner.loop
        self.transport: asyncio.Transport | None = None
        self.client = "?"
        self.phase = _HEAD
        self.head = bytearray()
        self.deadline = math.inf
        self.read_whole = False  #: set by the application once the request was read to its end
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) else "?"
        if not self.endpoint._admit_connection(self):
            # Nothing read, nothing started: one write the socket's buffer takes at once. Over TLS this comes
            # after the handshake (asyncio's, bounded by its own timeout).
            self.phase = _CLOSED
            transport.write(_BUSY)
            transport.close()
            return
        self.enter(_HEAD, self.loop.time() + self.limits.request_deadline)
        self.inner.connection_made(_Transport(self, transport))

    def data_received(self, data: bytes) -> None:
        if self.phase in (_LINGERING, _CLOSED):
            return
        if self.phase == _HEAD:
            end = _END_OF_HEAD.search(bytes(self.head[-3:]) + data)
            taken = len(data) if end is None else end.end() - min(3, len(self.head))
            if len(self.head) + taken > self.limits.max_header_bytes:
                self.refuse(Refusal(431, f"the request line and headers exceed {self.limits.max_header_bytes} bytes"))
                return
            self.head += data[:taken]
            if end is not None:
                fields = len(self.head.strip().splitlines()) - 1
                if fields > self.limits.max_headers:
                    self.refuse(Refusal(431, f"more than {self.limits.max_headers} header fields"))
                    return
                self.enter(_APP, self.deadline)  # the application reads the body within the same deadline
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.phase == _HEAD and self.head:
            self.refuse(Refusal(400, "the connection closed before the end of the request headers"))
            return True
        if self.phase == _LINGERING:
            self.close_now()
            return None
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = _CLOSED
        self._cancel_timer()
        self.endpoint._forget(self)
        if self.inner.transport is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- phases -------------------------------------------------------------------------------------------------

    def enter(self, phase: str, deadline: float = math.inf) -> None:
        self.phase, self.deadline = phase, deadline
        self._cancel_timer()
        if deadline != math.inf:
            self._timer = self.loop.call_at(deadline, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.phase == _HEAD:
            self.refuse(Refusal(408, f"the request headers did not arrive within {self.limits.request_deadline:g} s"))
        elif self.phase == _LINGERING:
            self.close_now()
        elif self.phase == _REPLYING:
            self.kill()  # a client that does not read its answer

    def refuse(self, refusal: Refusal) -> None:
        """Answers on the guard's own, before the application has the request (its head is not whole)."""
        log.warning("as2.request_refused", client=self.client, status=refusal.status, reason=refusal.reason)
        assert self.transport is not None
        self.transport.write(_raw_response(refusal.response()))
        self.phase = _REPLYING
        self.close()

    def close(self) -> None:
        """The end of an answer (uvicorn's, or the guard's): linger if the client may still be sending."""
        if self.phase in (_LINGERING, _CLOSED) or self.transport is None:
            return
        if self.read_whole or self.endpoint._stopping:
            self.close_now()
            return
        self.enter(_LINGERING, self.loop.time() + _LINGER_SECONDS)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client's read ends here, whatever it still sends
        self.transport.resume_reading()

    def close_now(self) -> None:
        self.phase = _CLOSED
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def kill(self) -> None:
        self.phase = _CLOSED
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def stop(self) -> None:
        """At ``AS2Endpoint.stop``: a head still arriving is answered 503, a linger ends; the application sees
        the stop while it reads a body (``_App._next``), and a running handler gets the grace."""
        if self.phase == _HEAD:
            self.refuse(Refusal(503, "the server is stopping: send again later", {"Retry-After": "60"}))
        elif self.phase == _LINGERING:
            self.close_now()

    def headers(self, parsed: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        """The request's headers as h11 parsed them (names in lower case), with the sender's spelling of the
        names taken back from the head as received: it is the evidence kept of the request."""
        spelled = [line.split(b":", 1)[0] for line in self.head.splitlines()[1:] if b":" in line]
        pairs, position = [], 0
        for name, value in parsed:
            while position < len(spelled) and spelled[position].lower() != name:
                position += 1  # a line h11 dropped (a repeated Content-Length)
            original = spelled[position] if position < len(spelled) else name
            position += 1
            pairs.append((original.decode("latin-1"), value.decode("latin-1")))
        return _joined(pairs)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Transport:
    """The transport uvicorn's protocol writes to: its ``close()`` lets the guard linger first."""

    def __init__(self, guard: _Guard, transport: asyncio.Transport) -> None:
        self._guard, self._transport = guard, transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._guard.close()

    def is_closing(self) -> bool:
        return self._guard.phase in (_LINGERING, _CLOSED) or self._transport.is_closing()


class _App:
    """The ASGI application: admit the headers, read the body within the limits, hand it over, answer."""

    def __init__(self, endpoint: AS2Endpoint) -> None:
        self.endpoint, self.intake, self.limits = endpoint, endpoint.intake, endpoint.limits

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        guard: _Guard = scope["state"][_GUARD]
        headers = guard.headers(scope["headers"])
        try:
            response = await self._respond(guard, scope, headers, receive)
        except asyncio.CancelledError:
            if guard.phase == _CLOSED:  # cut at the end of the stop's grace: nobody to answer
                return
            raise
        guard.enter(_REPLYING, guard.loop.time() + self.limits.request_deadline)
        status, reply_headers, body = response
        fields = [(name.encode("latin-1"), value.encode("latin-1", "replace")) for name, value in _fields(response)]
        await send({"type": "http.response.start", "status": status, "headers": fields})
        await send({"type": "http.response.body", "body": body})

    async def _respond(self, guard: _Guard, scope: dict[str, Any], headers: dict[str, str],
                       receive: Callable[[], Any]) -> Response:
        if scope["method"] != "POST":
            return self._refused(guard, Refusal(405, f"{scope['method'][:20]} is not accepted here, only POST",
                                                {"Allow": "POST"}))
        admitted = await self._run(guard, self.intake.admit, headers)
        if not isinstance(admitted, int):
            return admitted
        body = await self._read_body(guard, headers, receive, admitted)
        large = body.refusal is None and (body.size or 0) > LARGE_BODY
        try:
            assert self.endpoint._large is not None
            async with self.endpoint._large if large else contextlib.nullcontext():
                return await self._run(guard, self.intake.receive, headers, body)
        finally:
            body.close()

    async def _read_body(self, guard: _Guard, headers: dict[str, str], receive: Callable[[], Any],
                         limit: int) -> Body:
        """The body to a spool file, hashed on the way, up to ``limit`` bytes (then 413, having read one more)."""
        fields = {name.lower(): value for name, value in headers.items()}
        declared = None
        if "transfer-encoding" not in fields:  # h11 has refused any coding but chunked, and a bad Content-Length
            if "content-length" not in fields:
                return Body(refusal=Refusal(411, "Content-Length or chunked Transfer-Encoding is required"))
            declared = int(fields["content-length"].split(",")[0])
            if declared > limit:
                return Body(declared=declared, refusal=Refusal(413, f"the body of {declared} bytes exceeds the "
                                                                    f"{limit} bytes accepted"))
        # Anonymous (unlinked at once): nothing is left on disk after the request, or after a crash.
        body = Body(tempfile.TemporaryFile(dir=self.endpoint.spool_dir), declared=declared)  # noqa: SIM115
        expected = f" of {declared}" if declared is not None else ""
        assert self.endpoint._stop_event is not None
        stopping = asyncio.ensure_future(self.endpoint._stop_event.wait())
        try:
            while True:
                message = await self._next(guard, receive, stopping)
                if not isinstance(message, dict) or message["type"] != "http.request":
                    cut = message if isinstance(message, str) else None
                    body.refusal = _interrupted(cut, self.limits, f"the body ({body.size}{expected} bytes read)")
                    return body
                assert body.size is not None
                data = message.get("body", b"")
                if body.size + len(data) > limit:
                    body.write(data[:limit + 1 - body.size])
                    body.refusal = Refusal(413, f"the body exceeds the {limit} bytes accepted (read up to "
                                                f"{limit + 1} bytes)")
                    return body
                body.write(data)
                if not message.get("more_body", False):
                    guard.read_whole = True
                    return body
        finally:
            stopping.cancel()

    async def _next(self, guard: _Guard, receive: Callable[[], Any], stopping: asyncio.Future[Any]) -> Any:
        """The next ASGI message, or why there is none: ``"deadline"`` or ``"stopping"``."""
        chunk = asyncio.ensure_future(receive())
        done, _ = await asyncio.wait({chunk, stopping}, timeout=max(0.0, guard.deadline - guard.loop.time()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if chunk in done:
            return chunk.result()
        chunk.cancel()
        return _STOPPING if stopping in done else "deadline"

    def _refused(self, guard: _Guard, refusal: Refusal) -> Response:
        log.warning("as2.request_refused", client=guard.client, status=refusal.status, reason=refusal.reason)
        return refusal.response()

    async def _run(self, guard: _Guard, function: Callable[..., _T], *arguments: Any) -> _T | Response:
        """``function`` on a thread of its own (a handler blocks on the store; a daemon thread, so that a stop
        never waits for one past its grace). Its exception is a 500 for the client, a traceback for the log."""
        future: asyncio.Future[_T] = guard.loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(result)

        def run() -> None:
            try:
                outcome, error = function(*arguments), None
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, which logs it
                outcome, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop ended at the stop: nobody waits
                guard.loop.call_soon_threadsafe(settle, outcome, error)

        deadline = guard.deadline
        guard.enter(_APP)  # no deadline while the handler runs: the stop's grace bounds it
        threading.Thread(target=run, name=f"as2-handler-{guard.client}", daemon=True).start()
        try:
            return await future
        except Exception:  # noqa: BLE001 - the partner gets a 500, the operator the traceback
            log.exception("as2.handler_failed", client=guard.client)
            return 500, _TEXT, b"internal error\n"
        finally:
            guard.enter(_APP, deadline)


def _interrupted(cut: str | None, limits: Limits, what: str) -> Refusal:
    """Why reading ended early: the stop, the deadline, or the client."""
    if cut == _STOPPING:
        return Refusal(503, "the server is stopping: send again later", {"Retry-After": "60"})
    if cut == "deadline":
        return Refusal(408, f"{what} did not arrive within {limits.request_deadline:g} s")
    return Refusal(400, f"the connection closed before the end of {what}")


def _fields(response: Response) -> list[tuple[str, str]]:
    """A handler's headers made safe to send (its framing is the endpoint's), then the framing: one answer, then
    the connection closes."""
    _, headers, body = response
    fields = [(name, _UNSAFE.sub(" ", value)) for name, value in headers.items()
              if name.lower() not in _HOP_BY_HOP and _TOKEN.fullmatch(name.encode("latin-1", "replace"))]
    return [*fields, ("Content-Length", str(len(body))), ("Connection", "close")]


def _raw_response(response: Response) -> bytes:
    """What the guard writes itself, when the application does not have the request."""
    try:
        phrase = http.HTTPStatus(response[0]).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {response[0]} {phrase}", *(f"{name}: {value}" for name, value in _fields(response)), "", ""]
    return "\r\n".join(lines).encode("latin-1", "replace") + response[2]


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated headers are joined with commas (RFC 9110 5.3), keeping the first spelling of the name."""
    headers: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers
