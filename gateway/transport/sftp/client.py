"""paramiko's SFTP client with what the gateway needs and paramiko's public API cannot do.

The one place the gateway uses paramiko's private API (``_send_version``, ``_request``,
``_async_request``, ``_read_response``, ``_convert_status``), for three reasons:

* **pipelined writes that report every error.** paramiko's public pipelined writes
  (``SFTPFile.set_pipelined``, also what ``put`` uses) register their answers with no
  owner and read them only when more than 100 are outstanding, so a write the server
  refuses in the middle of a flow is lost: the file can keep a hole of zeros under the
  right size (tried: a flow written to ``/dev/full`` came back as a size mismatch, not as
  the server's "no space left"). Unpipelined writes report errors but wait a round trip
  per request, 256 KiB per round trip: 12.8 MB/s at 20 ms, whatever the line;
* **``limits@openssh.com``**: how large a request the server takes. paramiko's cost is per
  request, so 32 KiB requests (the protocol's minimum, all that is safe without asking)
  halve its throughput (``benchmarks/bench_sftp.py``);
* **``posix-rename@openssh.com``**: a rename that replaces the target in one step. paramiko
  reads the server's VERSION packet and drops the extensions it lists, and trying the
  rename blind would not do: a server without it answers a generic failure.

These private methods have been stable since paramiko 1.x; ``pyproject.toml`` bounds
paramiko below its next major version, and ``tests/test_sftp.py`` exercises each against
OpenSSH's sftp-server (extensions, a write refused mid-flow, the size check).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_INIT,
    CMD_OPEN,
    CMD_STATUS,
    CMD_VERSION,
    CMD_WRITE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTPError,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

#: SFTP read/write request size when the server does not announce its limits (the protocol's minimum).
DEFAULT_REQUEST_SIZE = 32768
#: Largest SFTP read/write request we make, even when the server allows more.
MAX_REQUEST_SIZE = 256 * 1024
#: Write requests sent ahead of their answers (the SSH window bounds the bytes in flight anyway).
MAX_OUTSTANDING_WRITES = 64


class SFTPClient(paramiko.SFTPClient):
    """paramiko's client, keeping the extensions the server announces."""

    server_extensions: dict[str, bytes]

    def _send_version(self) -> int:
        message = paramiko.Message()
        message.add_int(3)
        self._send_packet(CMD_INIT, message)
        kind, data = self._read_packet()
        if kind != CMD_VERSION:
            raise SFTPError("Incompatible sftp protocol")
        reply = paramiko.Message(data)
        version = reply.get_int()
        self.server_extensions = {}
        while reply.get_remainder():
            name = reply.get_text()
            self.server_extensions[name] = reply.get_binary()
        return version

    def request_sizes(self) -> tuple[int, int]:
        """The largest read and write requests to make: the server's ``limits@openssh.com``, capped."""
        if "limits@openssh.com" not in self.server_extensions:
            return DEFAULT_REQUEST_SIZE, DEFAULT_REQUEST_SIZE
        kind, reply = self._request(CMD_EXTENDED, "limits@openssh.com")
        if kind != CMD_EXTENDED_REPLY or reply is None:
            return DEFAULT_REQUEST_SIZE, DEFAULT_REQUEST_SIZE
        reply.get_int64()  # max-packet-length
        limits = reply.get_int64(), reply.get_int64()  # max-read-length, max-write-length (0: no limit)
        read, write = (min(limit or MAX_REQUEST_SIZE, MAX_REQUEST_SIZE) for limit in limits)
        return max(read, DEFAULT_REQUEST_SIZE), max(write, DEFAULT_REQUEST_SIZE)

    def upload(self, path: str, data: memoryview, request_size: int, sent: Callable[[memoryview], None]) -> int:
        """Write ``data`` to ``path`` (created or truncated); return the file's size as the server then sees it.

        Two round trips per file: the open, then the writes, an fstat of the handle and its close,
        sent back to back, their answers read as they come (paramiko's file object waits four
        times: open, write answers, close, then a stat). The server handles the requests on one
        handle in order, so the fstat sees every write. ``sent`` gets each slice once it is sent;
        slices are views of ``data``, never copies of the whole.
        """
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
        kind, reply = self._request(CMD_OPEN, path, flags, SFTPAttributes())
        if kind != CMD_HANDLE or reply is None:
            raise SFTPError("Expected handle")
        handle = reply.get_binary()
        answers = _Answers()
        writes: deque[int] = deque()
        failures: list[BaseException] = []
        for offset in range(0, len(data), request_size):
            piece = data[offset : offset + request_size]
            writes.append(self._async_request(answers, CMD_WRITE, handle, int64(offset), piece))
            sent(piece)
            while len(writes) > MAX_OUTSTANDING_WRITES:
                _collect(failures, self._expect_ok, answers, writes.popleft())
            if failures:  # e.g. the disk is full: stop writing, but still close the handle
                break
        fstat = self._async_request(answers, CMD_FSTAT, handle)
        close = self._async_request(answers, CMD_CLOSE, handle)
        for number in writes:
            _collect(failures, self._expect_ok, answers, number)
        size = -1
        kind, reply = self._answer(answers, fstat)
        if kind == CMD_ATTRS:
            attributes = SFTPAttributes._from_msg(reply)
            size = attributes.st_size if attributes.st_size is not None else -1
        else:
            _collect(failures, self._check_status, kind, reply)
        _collect(failures, self._expect_ok, answers, close)
        if failures:
            raise failures[0]
        return size

    def _answer(self, answers: _Answers, number: int) -> tuple[int, paramiko.Message]:
        while number not in answers.received:
            self._read_response()  # reads one answer and hands it to whoever asked
        return answers.received.pop(number)

    def _expect_ok(self, answers: _Answers, number: int) -> None:
        self._check_status(*self._answer(answers, number))

    def _check_status(self, kind: int, reply: paramiko.Message) -> None:
        if kind != CMD_STATUS:
            raise SFTPError(f"expected a status, got message type {kind}")
        try:
            self._convert_status(reply)  # raises OSError/EOFError unless OK
        except (OSError, EOFError) as exc:
            raise _StatusError(getattr(exc, "errno", None) or 0, reason(exc)) from exc


class _StatusError(OSError):
    """The server answered a request with an error status: the connection itself is fine."""


class _Answers:
    """Where paramiko puts the answers to our pipelined requests while it waits for another one."""

    def __init__(self) -> None:
        self.received: dict[int, tuple[int, paramiko.Message]] = {}

    def _async_response(self, kind: int, message: paramiko.Message, number: int) -> None:
        self.received[number] = (kind, message)


def _collect(failures: list[BaseException], check: Callable[..., None], *args: object) -> None:
    """Run ``check(*args)``; keep an SFTP status error for later, so that every answer is still read."""
    try:
        check(*args)
    except _StatusError as exc:  # not a timeout or a broken connection: those end the upload at once
        failures.append(exc)


def reason(exc: BaseException) -> str:
    """What went wrong, in the words of the OS or the server."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return text or type(exc).__name__
