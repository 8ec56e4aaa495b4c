"""The port every transport implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
