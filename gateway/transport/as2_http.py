"""The network edges of AS2: one POST out, and a small threaded endpoint in. Standard library only.

Nothing here reads the S/MIME layers: the endpoint hands the raw headers and body to a
handler supplied by the caller, so the gateway can store the request as evidence before
``as2.parse_message`` (which may refuse it) ever sees it.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from gateway.errors import TransportError
from gateway.transport.as2 import OutboundMessage

log = structlog.get_logger(__name__)

#: ``handler(headers, body) -> (status, headers, body)``. Headers keep the sender's spelling and order.
Handler = Callable[[dict[str, str], bytes], tuple[int, Mapping[str, str], bytes]]
Response = tuple[int, dict[str, str], bytes]

_HOP_BY_HOP = {"content-length", "connection", "transfer-encoding", "keep-alive"}


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


class AS2Endpoint:
    """Receives AS2 POSTs (messages, or asynchronous MDNs) on its own thread until ``stop()``.

    HTTPS when given a server ``ssl_context``; the TLS handshake runs on the request's thread
    so that a slow client cannot stall the others. Port 0 picks a free port: read ``url``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_body: int = 256 * 1024 * 1024,
        timeout: float = 60.0,
    ) -> None:
        self.host, self.port, self.handler = host, port, handler
        self.ssl_context, self.max_body, self.timeout = ssl_context, max_body, timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

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
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"as2-endpoint-{self._server.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops accepting, then waits for the requests in flight, so that no handler runs after this returns."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> AS2Endpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so that server_close() waits for the requests in flight
    block_on_close = True

    def __init__(self, address: tuple[str, int], endpoint: AS2Endpoint) -> None:
        self.endpoint = endpoint
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.endpoint.ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.endpoint.timeout)
        try:
            tls = context.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as exc:
            log.info("as2.tls_handshake_failed", client=client_address[0], error=str(exc))
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # for Expect: 100-continue, which some AS2 clients send before large bodies
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.endpoint.timeout
        super().setup()

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        endpoint = self.server.endpoint
        try:
            body = self._read_body(endpoint.max_body)
        except _BadRequest as exc:
            self._reply(exc.status, {"Content-Type": "text/plain; charset=utf-8"}, f"{exc}\n".encode())
            return
        try:
            status, headers, reply = endpoint.handler(_joined(self.headers.items()), body)
        except Exception:  # noqa: BLE001 - the partner gets a 500, the operator the traceback
            log.exception("as2.handler_failed", client=self.client_address[0], path=self.path)
            status, headers, reply = 500, {"Content-Type": "text/plain; charset=utf-8"}, b"internal error\n"
        self._reply(status, headers, reply)

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            raise _BadRequest(411, "Content-Length or chunked Transfer-Encoding is required")
        if not length.strip().isdigit():
            raise _BadRequest(400, f"bad Content-Length {length!r}")
        if int(length) > limit:
            raise _BadRequest(413, f"the body exceeds {limit} bytes")
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            raise _BadRequest(400, "the body is shorter than its Content-Length")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "bad chunk size line") from None
            if size == 0:
                while self.rfile.readline(8192).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > limit:
                raise _BadRequest(413, f"the body exceeds {limit} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _BadRequest(400, "a chunk is truncated")
            chunks.append(chunk)
            self.rfile.readline(8)

    def _reply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature http.server calls
        log.debug("as2.http", client=self.client_address[0], line=format % args)


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated headers are joined with commas (RFC 9110 5.3), keeping the first spelling of the name."""
    headers: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers
