"""The port every transport implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.config import Partner
from gateway.errors import TransportError

if TYPE_CHECKING:
    from gateway.transport.sftp import SftpSettings


@dataclass(frozen=True)
class Delivery:
    """What an attempt leaves as evidence, stored with its transmission row."""

    #: One line for the record: where the bytes went, their size and sha256, the MDN.
    receipt: str
    #: AS2 Message-ID (None for file transports).
    message_id: str | None = None
    #: The raw request as sent (AS2: headers and body) and the raw answer (the MDN).
    request: bytes | None = None
    response: bytes | None = None
    #: True when the partner's receipt comes later (AS2 asynchronous MDN): the flow stays
    #: ``sending`` until it arrives at ``gateway serve``.
    pending: bool = False


class Transport(Protocol):
    kind: str

    def deposit(self, name: str, data: bytes) -> Delivery:
        """Deliver ``data`` under ``name``, atomically; return the evidence for the record.

        Raises ``TransportError`` (whose ``request``/``response`` carry what was sent and
        answered, when anything was) on failure."""
        ...

    def close(self) -> None:
        """Release connections at the end of a pass."""
        ...

    def remote_size(self, name: str) -> int | None:
        """Size of a delivered file under its final name, None when it is not there."""
        ...

    def list_reports(self) -> list[str]:
        """Names of the complete files the partner has sent back, oldest name first."""
        ...

    def fetch_report(self, name: str) -> bytes: ...

    def acknowledge_report(self, name: str) -> None:
        """Remove a report from the partner's side; call only once it is stored."""
        ...


def open_transport(partner: Partner) -> Transport:
    if partner.transport == "local":
        from gateway.transport.local import LocalTransport

        assert partner.outbound_dir is not None and partner.inbound_dir is not None  # config checked
        return LocalTransport(partner.outbound_dir, partner.inbound_dir, peer=partner.name)
    if partner.transport == "sftp":
        from gateway.transport.sftp import SftpTransport

        return SftpTransport(sftp_settings(partner))
    if partner.transport == "as2":
        from gateway.transport.as2_transport import AS2Transport

        return AS2Transport(partner)
    raise TransportError(
        f"the {partner.transport} transport is not available in this version",
        peer=partner.name,
        retryable=False,
    )


def sftp_settings(partner: Partner) -> SftpSettings:
    """The SFTP settings of a partner: ``endpoint = "sftp://user@host:port"`` and the
    credential files (known_hosts is required: host keys are pinned, never learnt)."""
    from urllib.parse import urlsplit

    from gateway.transport.sftp import SftpSettings

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
