"""The guards of the CMS layer (gateway/transport/as2/cms.py) against crafted input: whatever the bytes, an
``AS2Error`` with the disposition to put in the error MDN, never a crash, a deep recursion or a memory blow-up.
What it builds and reads against openssl is tests/test_as2.py."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.transport.as2 import AS2Error, cms
from gateway.transport.as2.errors import AUTHENTICATION_FAILED, DECOMPRESSION_FAILED, DECRYPTION_FAILED


@pytest.fixture(scope="module")
def party() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return key, cert


def _der(tag: int, body: bytes) -> bytes:
    size = len(body).to_bytes(max(1, (len(body).bit_length() + 7) // 8), "big")
    return bytes([tag, len(body)]) + body if len(body) < 0x80 else bytes([tag, 0x80 | len(size)]) + size + body


def _nested_definite(depth: int) -> bytes:
    data = b"\x05\x00"
    for _ in range(depth):
        data = _der(0x30, data)
    return data


@pytest.mark.parametrize("crafted", [
    b"\x30\x80" * 5000 + b"\x00\x00" * 5000,  # BER indefinite lengths nested 5000 deep
    _nested_definite(20_000),  # definite lengths nested 20,000 deep
    bytes.fromhex("3080") + bytes.fromhex("06092a864886f70d010702") + b"\xa0\x80" * 3000,  # truncated, deep
    b"", b"\x30", b"\x30\x84\xff\xff\xff\xff",  # empty, cut, a length beyond the data
])
def test_crafted_structures_are_refused_as_as2_errors(party: tuple[rsa.RSAPrivateKey, x509.Certificate],
                                                      crafted: bytes) -> None:
    key, cert = party
    for layer, disposition in ((lambda: cms.decrypt(crafted, key, cert), DECRYPTION_FAILED),
                               (lambda: cms.verify(b"content", crafted, cert), AUTHENTICATION_FAILED),
                               (lambda: cms.decompress(crafted), DECOMPRESSION_FAILED)):
        with pytest.raises(AS2Error) as caught:
            layer()
        assert caught.value.disposition == disposition and not caught.value.retryable


def test_a_compressed_layer_that_inflates_beyond_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cms, "_MAX_INFLATED", 1 << 20)  # 1 GiB in production: the same code path, cheaper
    assert cms.decompress(cms.compress(b"\0" * (1 << 20))) == b"\0" * (1 << 20)
    bomb = cms.compress(b"\0" * ((1 << 20) + 1))
    assert len(bomb) < 2000
    with pytest.raises(AS2Error, match="inflates beyond") as caught:
        cms.decompress(bomb)
    assert caught.value.disposition == DECOMPRESSION_FAILED


def test_a_compressed_layer_that_is_not_zlib_or_is_truncated_is_refused() -> None:
    whole = cms.compress(b"entity")
    zlib_stream = zlib.compress(b"entity")
    truncated = whole.replace(zlib_stream, zlib_stream[:-4] + b"\0\0\0\0")
    with pytest.raises(AS2Error, match="compressed layer cannot be read") as caught:
        cms.decompress(truncated)
    assert caught.value.disposition == DECOMPRESSION_FAILED
    not_zlib = whole.replace(bytes.fromhex("060b2a864886f70d0109100308"), bytes.fromhex("060b2a864886f70d0109100309"))
    with pytest.raises(AS2Error, match="is not zlib"):
        cms.decompress(not_zlib)


def test_the_certificates_a_signature_carries_are_never_trusted(party: tuple[rsa.RSAPrivateKey, x509.Certificate]
                                                                ) -> None:
    """A stranger's SignedData carrying the stranger's certificate (as every signature does) does not verify:
    only the pinned certificate is used, and the signer is named in the refusal."""
    key, cert = party
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.now(UTC)
    stranger_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(stranger.public_key()).serial_number(9).not_valid_before(now)
                     .not_valid_after(now + timedelta(days=1)).sign(stranger, hashes.SHA256()))
    signature = cms.signed_data(b"content", stranger, stranger_cert, "sha256")
    assert cms.verify(b"content", signature, stranger_cert) == b"content"
    with pytest.raises(AS2Error, match="signed with the certificate serial 0x9 issued by CN=stranger") as caught:
        cms.verify(b"content", signature, cert)
    assert caught.value.disposition == AUTHENTICATION_FAILED
