"""Transport stage: deposit flows at a partner and pick up what it sends back.

Every transport writes under a temporary name and renames, so that a receiver never
sees a partial file. Only modules of this package touch the network or a partner's
directories. ``open_transport`` is the one place that knows the implementations, and
imports each only when a partner uses it (paramiko and the AS2 stack are not loaded
for a local partner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.errors import TransportError
from gateway.transport.base import Delivery, Transport

if TYPE_CHECKING:
    from gateway.config import Partner

__all__ = ["Delivery", "Transport", "open_transport"]


def open_transport(partner: Partner) -> Transport:
    if partner.transport == "local":
        from gateway.transport.local import LocalTransport

        assert partner.outbound_dir is not None and partner.inbound_dir is not None  # config checked
        return LocalTransport(partner.outbound_dir, partner.inbound_dir, peer=partner.name)
    if partner.transport == "sftp":
        from gateway.transport.sftp import SftpTransport, sftp_settings

        return SftpTransport(sftp_settings(partner))
    if partner.transport == "as2":
        from gateway.transport.as2.transport import AS2Transport

        return AS2Transport(partner)
    raise TransportError(
        f"the {partner.transport} transport is not available in this version",
        peer=partner.name,
        retryable=False,
    )
