"""The AS2 refusal, and the RFC 4130 disposition modifiers an error MDN names it with."""

from __future__ import annotations

from gateway.errors import TransportError

AUTHENTICATION_FAILED = "authentication-failed"
DECOMPRESSION_FAILED = "decompression-failed"
DECRYPTION_FAILED = "decryption-failed"
INSUFFICIENT_SECURITY = "insufficient-message-security"
INTEGRITY_CHECK_FAILED = "integrity-check-failed"
UNEXPECTED_ERROR = "unexpected-processing-error"


class AS2Error(TransportError):
    """An AS2 message or MDN was refused.

    Never retryable: sending the same bytes again gives the same answer. ``disposition``
    is the RFC 4130 error modifier to put in the MDN sent back to the partner.
    """

    def __init__(self, message: str, *, disposition: str = UNEXPECTED_ERROR, peer: str | None = None) -> None:
        self.disposition = disposition
        super().__init__(message, peer=peer, retryable=False)
