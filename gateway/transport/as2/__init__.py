"""AS2 (RFC 4130): S/MIME messages and MDNs over HTTP.

``mime`` and ``cms`` are the layers, ``message`` builds and reads messages and MDNs
without any network, ``http`` is the network edge (one POST out, the endpoint of
``gateway serve`` in), ``transport`` the ``Transport`` of a partner reached over AS2.
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
from gateway.transport.as2.http import AS2Endpoint, Body, Intake, Limits, Refusal, post_message
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
from gateway.transport.as2.transport import (
    AS2Credentials,
    AS2Transport,
    flow_mic,
    load_credentials,
    mdn_problem,
    raw_message,
)

__all__ = [
    "AUTHENTICATION_FAILED", "DECOMPRESSION_FAILED", "DECRYPTION_FAILED", "ENCRYPTIONS", "INSUFFICIENT_SECURITY",
    "INTEGRITY_CHECK_FAILED", "MDN_OPTIONS", "SIGNING_DIGESTS", "UNEXPECTED_ERROR", "AS2Credentials", "AS2Endpoint",
    "AS2Error", "AS2Transport", "Body", "InboundMessage", "Intake", "Limits", "Mdn", "MdnRequest", "OutboundMessage",
    "Refusal", "build_mdn", "build_message", "flow_mic", "load_credentials", "mdn_options", "mdn_problem",
    "parse_mdn", "parse_message", "post_message", "raw_message", "read_disposition", "same_mic",
]
