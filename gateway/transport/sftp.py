"""SFTP transport: deposit flows on, and pick reports up from, a partner's SSH server.

The rules are those of the local transport (:mod:`gateway.transport.local`):

* a flow is written under a temporary name (``.NAME.part`` in the outbound directory),
  its size checked, then renamed to its final name in one step, so the partner never
  picks up half a file;
* reports are listed without the names a writer uses while a file is incomplete
  (:func:`~gateway.fs.is_temporary`).

Security: the server's host key must be pinned in the ``known_hosts`` file named by the
settings (OpenSSH format; ``[host]:port`` entries for ports other than 22, hashed entries
allowed). An unknown key and a changed key are refused, each with its own message giving
the key type and the SHA256 fingerprint the server offered, as OpenSSH shows them; a key is
never added automatically. Authentication uses only the key file or the password of the
settings: no SSH agent, no key looked for in ``~/.ssh``.

One connection is opened at the first call and reused by the next ones (one pass of the
gateway); :meth:`SftpTransport.close` ends it. When the connection breaks, the call raises
a retryable :class:`~gateway.errors.TransportError` and drops it; the next call reconnects.
"""

from __future__ import annotations

import errno
import hashlib
import posixpath
import re
import socket
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import paramiko
from paramiko.hostkeys import HostKeyEntry
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

from gateway.errors import TransportError
from gateway.fs import is_temporary, temporary_name
from gateway.transport.base import Delivery

#: SFTP read/write request size when the server does not announce its limits (the protocol's minimum).
DEFAULT_REQUEST_SIZE = 32768
#: Largest SFTP read/write request we make, even when the server allows more.
MAX_REQUEST_SIZE = 256 * 1024
#: Write requests sent ahead of their answers (the SSH window bounds the bytes in flight anyway).
MAX_OUTSTANDING_WRITES = 64
#: Our receive window and largest packet, for downloads (the server's own govern uploads).
WINDOW_SIZE = 16 * 1024 * 1024
MAX_PACKET_SIZE = 32768
#: AEAD ciphers first: one pass over the data instead of a cipher pass plus an HMAC pass.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
#: Host key algorithms negotiated for a known_hosts key type.
_HOST_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}

#: Errors that mean the connection itself is gone or unusable.
_CONNECTION_ERRORS = (EOFError, paramiko.SSHException, SFTPError, TimeoutError, ConnectionError)


@dataclass(frozen=True, kw_only=True)
class SftpSettings:
    """Where and how to reach one partner's SFTP server."""

    host: str
    username: str
    #: OpenSSH known_hosts file pinning the server's host key.
    known_hosts: Path
    #: Remote directory flows are deposited into.
    outbound_dir: str
    #: Remote directory the partner leaves reports in.
    inbound_dir: str
    port: int = 22
    key_file: Path | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    #: Remote directory picked-up reports are moved into; None deletes them.
    done_dir: str | None = None
    #: Seconds allowed for the TCP connection, the SSH banner, key exchange and authentication, each.
    connect_timeout: float = 15.0
    #: Seconds without an answer from the server, once connected, before the connection is given up.
    io_timeout: float = 60.0
    #: Name used in error messages (the partner's name); the host when empty.
    peer: str = ""

    def __post_init__(self) -> None:
        if self.key_file is None and self.password is None:
            raise ValueError("SftpSettings needs a key_file or a password")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name of this server in a known_hosts file, as OpenSSH writes it."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


class _SFTPClient(paramiko.SFTPClient):
    """paramiko's client, keeping the extensions the server announces (paramiko drops them)."""

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
        """The largest read and write requests to make: the server's ``limits@openssh.com``, capped.

        Large writes matter: paramiko's cost is per request, and 32 KiB requests halve its throughput.
        """
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
            raise _StatusError(getattr(exc, "errno", None) or 0, _reason(exc)) from exc


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


@dataclass
class _Connection:
    transport: paramiko.Transport
    sftp: _SFTPClient
    posix_rename: bool
    read_size: int = DEFAULT_REQUEST_SIZE
    write_size: int = DEFAULT_REQUEST_SIZE

    def alive(self) -> bool:
        channel = self.sftp.get_channel()
        return self.transport.is_active() and channel is not None and not channel.closed

    def close(self) -> None:
        with suppress(Exception):
            self.sftp.close()
        with suppress(Exception):
            self.transport.close()


@dataclass
class _PinnedKeys:
    """What a known_hosts file says about one ``host`` or ``[host]:port``."""

    keys: list[paramiko.PKey] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, name: str) -> _PinnedKeys:
        """Read OpenSSH's format: plain, hashed (``|1|``), wildcard and negated names, ``@revoked`` lines.

        Lines paramiko cannot read (other key types, damaged lines) and ``@cert-authority`` lines
        (host certificates are not supported) are skipped, as OpenSSH skips what it cannot use.
        """
        found = cls()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            marker = ""
            if line.startswith("@"):
                marker, _, line = line.partition(" ")
                if marker not in {"@revoked", "@cert-authority"}:
                    continue
            try:
                entry = HostKeyEntry.from_line(line.strip(), number)
            except Exception:  # noqa: BLE001 - paramiko's InvalidHostKey and base64/key errors: skip the line
                continue
            if entry is None or entry.key is None or not _host_matches(entry.hostnames, name):
                continue
            if marker == "@revoked":
                found.revoked.append(entry.key)
            elif not marker:
                found.keys.append(entry.key)
        return found


def _host_matches(patterns: list[str], name: str) -> bool:
    """OpenSSH's rule: one pattern matches and no negated (``!``) pattern does."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            hit = paramiko.HostKeys.hash_host(name, pattern) == pattern
        elif "*" in pattern or "?" in pattern:
            regex = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
            hit = re.fullmatch(regex, name.lower()) is not None
        else:
            hit = pattern.lower() == name.lower()
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def _same_key(one: paramiko.PKey, other: paramiko.PKey) -> bool:
    return one.get_name() == other.get_name() and one.asbytes() == other.asbytes()


def describe_key(key: paramiko.PKey) -> str:
    """``ED25519 key SHA256:...``, the way OpenSSH names a key."""
    return f"{key.algorithm_name} key {key.fingerprint}"


class SftpTransport:
    """The :class:`~gateway.transport.base.Transport` of a partner reached over SFTP."""

    kind = "sftp"

    def __init__(self, settings: SftpSettings) -> None:
        self.settings = settings
        self.peer = settings.peer or settings.host
        #: How many SSH connections this transport has opened so far.
        self.connections_opened = 0
        self._connection: _Connection | None = None

    # -- the Transport protocol ---------------------------------------------------

    def deposit(self, name: str, data: bytes) -> Delivery:
        """Upload ``data`` as ``.NAME.part``, check its size, then rename it to ``NAME`` in one step.

        Returns the evidence: a receipt naming the server, the remote path, the size and the SHA-256.
        The data is sent in slices of the given bytes (no copy of the whole flow is made).
        """
        _check_name(name, self.peer)
        final = posixpath.join(self.settings.outbound_dir, name)
        temporary = posixpath.join(self.settings.outbound_dir, temporary_name(name))
        size = len(data)
        digest = hashlib.sha256()
        with self._session(f"depositing {final}") as (connection, sftp):
            written = sftp.upload(temporary, memoryview(data), connection.write_size, digest.update)
            if written != size:
                with suppress(OSError):
                    sftp.remove(temporary)
                raise TransportError(
                    f"{temporary} holds {written} bytes after the upload of {size}; the upload will be retried",
                    peer=self.peer,
                )
            note = self._rename_into_place(connection, sftp, temporary, final, size)
        where = final if final.startswith("/") else f"/~/{final}"  # a relative path is under the login's home
        url = f"sftp://{self.settings.username}@{self.settings.address}{where}"
        receipt = f"{url} size={size} sha256={digest.hexdigest()}"
        return Delivery(f"{receipt} {note}" if note else receipt)

    def remote_size(self, name: str) -> int | None:
        _check_name(name, self.peer)
        path = posixpath.join(self.settings.outbound_dir, name)
        with self._session(f"looking for {path}") as (_, sftp):
            return _size_or_none(sftp, path)

    def list_reports(self) -> list[str]:
        """Complete files in the inbound directory, by name; directories and temporary names are skipped."""
        directory = self.settings.inbound_dir
        with self._session(f"listing {directory}") as (_, sftp):
            entries = sftp.listdir_attr(directory)
        return sorted(
            entry.filename
            for entry in entries
            if entry.st_mode is not None and stat.S_ISREG(entry.st_mode) and not is_temporary(entry.filename)
        )

    def fetch_report(self, name: str) -> bytes:
        _check_name(name, self.peer)
        path = posixpath.join(self.settings.inbound_dir, name)
        with self._session(f"downloading {path}") as (connection, sftp), sftp.open(path, "rb") as handle:
            handle.MAX_REQUEST_SIZE = connection.read_size
            expected = handle.stat().st_size
            handle.prefetch(expected)
            data = handle.read()
        if expected is not None and len(data) != expected:
            raise TransportError(f"{path}: read {len(data)} bytes of {expected}", peer=self.peer)
        return data

    def acknowledge_report(self, name: str) -> None:
        """Move a picked-up report into ``done_dir`` (created if missing), or delete it when there is none.

        Call this only once the report returned by :meth:`fetch_report` is stored durably on
        our side: afterwards the partner's copy is gone from the inbound directory. A report
        already gone (acknowledged by an earlier, interrupted call) is not an error.
        """
        _check_name(name, self.peer)
        source = posixpath.join(self.settings.inbound_dir, name)
        done_dir = self.settings.done_dir
        with self._session(f"acknowledging {source}") as (connection, sftp):
            if _size_or_none(sftp, source) is None:
                return
            if done_dir is None:
                sftp.remove(source)
                return
            if _size_or_none(sftp, done_dir) is None:
                with suppress(OSError):
                    sftp.mkdir(done_dir)
            target = posixpath.join(done_dir, name)
            if connection.posix_rename:
                sftp.posix_rename(source, target)
                return
            # a plain SFTP rename does not replace: an older copy, already stored, makes way
            if _size_or_none(sftp, target) is not None:
                sftp.remove(target)
            sftp.rename(source, target)

    # -- connection -----------------------------------------------------------------

    def close(self) -> None:
        """End the connection, if one is open; the next call opens a new one."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __enter__(self) -> SftpTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.alive()

    @contextmanager
    def _session(self, action: str) -> Iterator[tuple[_Connection, _SFTPClient]]:
        """The open connection; its failures become TransportErrors, and a broken one is dropped."""
        connection = self._connect()
        try:
            yield connection, connection.sftp
        except TransportError:
            raise
        except (*_CONNECTION_ERRORS, OSError) as exc:
            if isinstance(exc, _CONNECTION_ERRORS) or not connection.alive():
                self.close()
                raise TransportError(
                    f"connection to {self.settings.address} lost while {action}: {_reason(exc)}", peer=self.peer
                ) from exc
            raise TransportError(f"{action}: the server answered {_reason(exc)!r}", peer=self.peer) from exc

    def _connect(self) -> _Connection:
        if self._connection is not None:
            if self._connection.alive():
                return self._connection
            self.close()
        settings = self.settings
        known = self._load_known_hosts()
        key = self._load_key()
        try:
            sock = socket.create_connection((settings.host, settings.port), timeout=settings.connect_timeout)
        except OSError as exc:
            raise TransportError(f"cannot reach {settings.address}: {_reason(exc)}", peer=self.peer) from exc
        # SFTP is request/answer: without this, Nagle holds each small request back for an ACK
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET_SIZE)
        try:
            connection = self._handshake(transport, known, key)
        except BaseException:
            transport.close()
            sock.close()
            raise
        self._connection = connection
        self.connections_opened += 1
        return connection

    def _handshake(self, transport: paramiko.Transport, known: _PinnedKeys, key: paramiko.PKey | None) -> _Connection:
        settings = self.settings
        transport.banner_timeout = settings.connect_timeout
        transport.handshake_timeout = settings.connect_timeout
        transport.auth_timeout = settings.connect_timeout
        options = transport.get_security_options()
        options.ciphers = _preferring(options.ciphers, PREFERRED_CIPHERS)
        pinned_types = dict.fromkeys(pinned.get_name() for pinned in known.keys)
        pinned_algorithms = [alg for kind in pinned_types for alg in _HOST_KEY_ALGORITHMS.get(kind, (kind,))]
        options.key_types = _preferring(options.key_types, pinned_algorithms)
        try:
            _start_client(transport, settings.connect_timeout)
        except paramiko.IncompatiblePeer as exc:
            raise TransportError(
                f"{settings.address} and the gateway share no SSH algorithm: {exc}", peer=self.peer, retryable=False
            ) from exc
        except (*_CONNECTION_ERRORS, OSError) as exc:
            raise TransportError(
                f"SSH handshake with {settings.address} failed: {_reason(exc)}", peer=self.peer
            ) from exc
        self._verify_host_key(transport.get_remote_server_key(), known)
        self._authenticate(transport, key)
        try:
            channel = transport.open_session(
                window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE, timeout=settings.connect_timeout
            )
            channel.settimeout(settings.io_timeout)
            channel.invoke_subsystem("sftp")
            sftp = _SFTPClient(channel)
            read_size, write_size = sftp.request_sizes()
        except (*_CONNECTION_ERRORS, OSError) as exc:
            raise TransportError(
                f"{settings.address} accepted the login of {settings.username!r} but not an SFTP session: "
                f"{_reason(exc)}",
                peer=self.peer,
            ) from exc
        posix_rename = "posix-rename@openssh.com" in sftp.server_extensions
        return _Connection(transport, sftp, posix_rename, read_size=read_size, write_size=write_size)

    # -- host key and credentials --------------------------------------------------------

    def _load_known_hosts(self) -> _PinnedKeys:
        """The keys the known_hosts file pins (and revokes) for this host:port."""
        path = self.settings.known_hosts
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise TransportError(
                f"cannot read the known_hosts file {path}: {_reason(exc)}", peer=self.peer, retryable=False
            ) from exc
        return _PinnedKeys.parse(text, self.settings.known_hosts_name)

    def _verify_host_key(self, offered: paramiko.PKey, known: _PinnedKeys) -> None:
        settings = self.settings
        offered_text = describe_key(offered)
        if any(_same_key(offered, revoked) for revoked in known.revoked):
            raise TransportError(
                f"host key of {settings.address} is REVOKED: the server offered the {offered_text}, which "
                f"{settings.known_hosts} marks @revoked for {settings.known_hosts_name}. Refused",
                peer=self.peer,
                retryable=False,
            )
        if not known.keys:
            raise TransportError(
                f"host key of {settings.address} is UNKNOWN: the server offered the {offered_text} and "
                f"{settings.known_hosts} has no entry for {settings.known_hosts_name}. Refused. Check that fingerprint "
                f"with the partner by another channel, then add this line to {settings.known_hosts}: "
                f"{settings.known_hosts_name} {offered.get_name()} {offered.get_base64()}",
                peer=self.peer,
                retryable=False,
            )
        if any(_same_key(offered, pinned) for pinned in known.keys):
            return
        pinned_text = ", ".join(describe_key(pinned) for pinned in known.keys)
        raise TransportError(
            f"host key of {settings.address} has CHANGED: the server offered the {offered_text}, but "
            f"{settings.known_hosts} pins the {pinned_text} for {settings.known_hosts_name}. Refused: someone may be "
            "intercepting the connection, or the partner replaced its key; confirm the new fingerprint with the "
            f"partner before replacing the entry in {settings.known_hosts}",
            peer=self.peer,
            retryable=False,
        )

    def _load_key(self) -> paramiko.PKey | None:
        path = self.settings.key_file
        if path is None:
            return None
        passphrase = self.settings.key_passphrase
        try:
            # paramiko 5.1 hands the passphrase to cryptography as it is, which wants bytes
            return paramiko.PKey.from_path(path, passphrase.encode() if passphrase is not None else None)
        except (paramiko.PasswordRequiredException, TypeError) as exc:
            if passphrase is not None:
                raise TransportError(
                    f"cannot load the private key {path}: {_reason(exc)}", peer=self.peer, retryable=False
                ) from exc
            message = f"the key file {path} is encrypted: set its passphrase in the settings"
            raise TransportError(message, peer=self.peer, retryable=False) from exc
        except (OSError, paramiko.SSHException, ValueError) as exc:
            hint = " (wrong passphrase?)" if passphrase is not None else ""
            message = f"cannot load the private key {path}{hint}: {_reason(exc)}"
            raise TransportError(message, peer=self.peer, retryable=False) from exc

    def _authenticate(self, transport: paramiko.Transport, key: paramiko.PKey | None) -> None:
        settings = self.settings
        attempts: list[str] = []
        if key is not None:
            what = f"the key {settings.key_file} ({describe_key(key)})"
            try:
                transport.auth_publickey(settings.username, key)
                return
            except paramiko.AuthenticationException as exc:
                attempts.append(_refusal(what, exc))
            except (*_CONNECTION_ERRORS, OSError) as exc:
                raise self._lost_during_login(exc) from exc
        if settings.password is not None and transport.is_active():
            try:
                transport.auth_password(settings.username, settings.password)
                return
            except paramiko.AuthenticationException as exc:
                attempts.append(_refusal("the password of the settings", exc))
            except (*_CONNECTION_ERRORS, OSError) as exc:
                raise self._lost_during_login(exc) from exc
        raise TransportError(
            f"{settings.address} refused the login of user {settings.username!r}: {'; '.join(attempts)}",
            peer=self.peer,
            retryable=False,
        )

    def _lost_during_login(self, exc: BaseException) -> TransportError:
        return TransportError(
            f"connection to {self.settings.address} lost during the login of {self.settings.username!r}: "
            f"{_reason(exc)}",
            peer=self.peer,
        )

    def _rename_into_place(
        self, connection: _Connection, sftp: _SFTPClient, temporary: str, final: str, size: int
    ) -> str:
        """Give the uploaded file its final name; return a note for the receipt ("" normally)."""
        if connection.posix_rename:
            sftp.posix_rename(temporary, final)
            return ""
        # plain SFTP rename fails when the target exists: look first
        existing = _size_or_none(sftp, final)
        if existing is None:
            sftp.rename(temporary, final)
            return ""
        sftp.remove(temporary)
        if existing == size:
            return "(already delivered: found under its final name with the same size)"
        raise TransportError(
            f"{final} already exists with {existing} bytes, not the {size} of this flow; "
            "it was left in place: find out which file it is before sending again",
            peer=self.peer,
            retryable=False,
        )


def _start_client(transport: paramiko.Transport, timeout: float) -> None:
    """Key exchange, within ``timeout`` (paramiko's own ``timeout=`` returns silently when it runs out)."""
    done = threading.Event()
    transport.start_client(event=done)
    if not done.wait(timeout):
        raise TimeoutError(f"no key exchange within {timeout:g} s")
    if not transport.is_active():
        raise transport.get_exception() or paramiko.SSHException("negotiation failed")


def _check_name(name: str, peer: str) -> None:
    if not name or name in {".", ".."} or "/" in name or "\0" in name or is_temporary(name):
        raise TransportError(f"{name!r} cannot be used as a remote file name", peer=peer, retryable=False)


def _size_or_none(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        return sftp.stat(path).st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def _preferring(available: tuple[str, ...] | list[str], preferred: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    first = [name for name in preferred if name in available]
    return (*first, *(name for name in available if name not in first))


def _refusal(what: str, exc: paramiko.AuthenticationException) -> str:
    if isinstance(exc, paramiko.BadAuthenticationType):
        return f"{what} was not tried: the server allows only {', '.join(exc.allowed_types)}"
    return f"{what} was not accepted"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return text or type(exc).__name__
