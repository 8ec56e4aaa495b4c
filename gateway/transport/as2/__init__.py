"""AS2 (RFC 4130): S/MIME messages and MDNs over HTTP.

``mime`` and ``cms`` are the layers, ``message`` builds and reads messages and MDNs
without any network: what this package exposes. ``http`` is the network edge (one POST
out, the endpoint of ``gateway serve`` in, on uvicorn) and ``transport`` the ``Transport``
of a partner reached over AS2 (it reads the configuration); both are imported by their
own path, so that reading a message loads neither a server nor the configuration.
"""

from gateway.transport.as2.cms import ENCRYPTIONS, SIGNING_DIGESTS
from gateway.transport.as2.errors import (
    AUTHENTICATION_FAILED,
    DECOMPRESSION_FAILED,
    DECRYPTION_FAILED,
    INSUFFICIENT_SECURITY,
    INTEGRITY_CHECK_FAILED,
    UNEXPECTED_ERROR,
    AS2Error,
)
from gateway.transport.as2.message import (
    MDN_OPTIONS,
    InboundMessage,
    Mdn,
    MdnRequest,
    OutboundMessage,
    build_mdn,
    build_message,
    mdn_options,
    parse_mdn,
    parse_message,
    read_disposition,
    same_mic,
)

__all__ = [
    "AUTHENTICATION_FAILED", "DECOMPRESSION_FAILED", "DECRYPTION_FAILED", "ENCRYPTIONS", "INSUFFICIENT_SECURITY",
    "INTEGRITY_CHECK_FAILED", "MDN_OPTIONS", "SIGNING_DIGESTS", "UNEXPECTED_ERROR", "AS2Error", "InboundMessage",
    "Mdn", "MdnRequest", "OutboundMessage", "build_mdn", "build_message", "mdn_options", "parse_mdn", "parse_message",
    "read_disposition", "same_mic",
]
