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
import socket
import stat
import threading
from urllib.parse import urlsplit
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import paramiko
from paramiko.sftp import SFTPError

from gateway.errors import TransportError
from gateway.fs import is_temporary, temporary_name
from gateway.transport.base import Delivery
from gateway.transport.sftp.client import DEFAULT_REQUEST_SIZE, SFTPClient, reason
from gateway.transport.sftp.known_hosts import PinnedKeys, describe_key, same_key

if TYPE_CHECKING:
    from gateway.config import Partner

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


@dataclass
class _Connection:
    transport: paramiko.Transport
    sftp: SFTPClient
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
    def _session(self, action: str) -> Iterator[tuple[_Connection, SFTPClient]]:
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
                    f"connection to {self.settings.address} lost while {action}: {reason(exc)}", peer=self.peer
                ) from exc
            raise TransportError(f"{action}: the server answered {reason(exc)!r}", peer=self.peer) from exc

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
            raise TransportError(f"cannot reach {settings.address}: {reason(exc)}", peer=self.peer) from exc
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

    def _handshake(self, transport: paramiko.Transport, known: PinnedKeys, key: paramiko.PKey | None) -> _Connection:
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
                f"SSH handshake with {settings.address} failed: {reason(exc)}", peer=self.peer
            ) from exc
        self._verify_host_key(transport.get_remote_server_key(), known)
        self._authenticate(transport, key)
        try:
            channel = transport.open_session(
                window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE, timeout=settings.connect_timeout
            )
            channel.settimeout(settings.io_timeout)
            channel.invoke_subsystem("sftp")
            sftp = SFTPClient(channel)
            read_size, write_size = sftp.request_sizes()
        except (*_CONNECTION_ERRORS, OSError) as exc:
            raise TransportError(
                f"{settings.address} accepted the login of {settings.username!r} but not an SFTP session: "
                f"{reason(exc)}",
                peer=self.peer,
            ) from exc
        posix_rename = "posix-rename@openssh.com" in sftp.server_extensions
        return _Connection(transport, sftp, posix_rename, read_size=read_size, write_size=write_size)

    # -- host key and credentials --------------------------------------------------------

    def _load_known_hosts(self) -> PinnedKeys:
        """The keys the known_hosts file pins (and revokes) for this host:port."""
        path = self.settings.known_hosts
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise TransportError(
                f"cannot read the known_hosts file {path}: {reason(exc)}", peer=self.peer, retryable=False
            ) from exc
        return PinnedKeys.parse(text, self.settings.known_hosts_name)

    def _verify_host_key(self, offered: paramiko.PKey, known: PinnedKeys) -> None:
        settings = self.settings
        offered_text = describe_key(offered)
        if any(same_key(offered, revoked) for revoked in known.revoked):
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
        if any(same_key(offered, pinned) for pinned in known.keys):
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
                    f"cannot load the private key {path}: {reason(exc)}", peer=self.peer, retryable=False
                ) from exc
            message = f"the key file {path} is encrypted: set its passphrase in the settings"
            raise TransportError(message, peer=self.peer, retryable=False) from exc
        except (OSError, paramiko.SSHException, ValueError) as exc:
            hint = " (wrong passphrase?)" if passphrase is not None else ""
            message = f"cannot load the private key {path}{hint}: {reason(exc)}"
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
            f"{reason(exc)}",
            peer=self.peer,
        )

    def _rename_into_place(
        self, connection: _Connection, sftp: SFTPClient, temporary: str, final: str, size: int
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


def sftp_settings(partner: Partner) -> SftpSettings:
    """The SFTP settings of a partner: ``endpoint = "sftp://user@host:port"`` and the
    credential files (known_hosts is required: host keys are pinned, never learnt)."""
    url = urlsplit(partner.endpoint or "")
    known_hosts = partner.credential("known_hosts")
    if url.scheme != "sftp" or not url.hostname or not url.username:
        raise TransportError("endpoint must read sftp://user@host[:port]", peer=partner.name, retryable=False)
    if known_hosts is None:
        raise TransportError("credentials.known_hosts is required: the host key is pinned from it",
                             peer=partner.name, retryable=False)
    return SftpSettings(
        host=url.hostname,
        port=url.port or 22,
        username=url.username,
        known_hosts=known_hosts,
        key_file=partner.credential("private_key"),
        key_passphrase=_secret(partner, "passphrase_file"),
        password=_secret(partner, "password_file"),
        outbound_dir=partner.remote_outbound_dir,
        inbound_dir=partner.remote_inbound_dir,
        done_dir=partner.remote_done_dir,
        connect_timeout=min(15.0, partner.timeout_seconds),
        io_timeout=partner.timeout_seconds,
        peer=partner.name,
    )


def _secret(partner: Partner, name: str) -> str | None:
    """A secret read from the file the configuration names (first line, stripped)."""
    path = partner.credential(name)
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise TransportError(f"cannot read credentials.{name} {path}: {exc}", peer=partner.name,
                             retryable=False) from None
