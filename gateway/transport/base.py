"""The port every transport implements."""

from __future__ import annotations

from typing import Protocol

from gateway.config import Partner
from gateway.errors import TransportError


class Transport(Protocol):
    kind: str

    def deposit(self, name: str, data: bytes) -> str:
        """Deliver ``data`` under ``name``, atomically; return a receipt for the record."""
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
    raise TransportError(
        f"the {partner.transport} transport is not available in this version",
        peer=partner.name,
        retryable=False,
    )
