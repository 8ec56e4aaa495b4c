"""CMS (RFC 5652) as AS2 uses it: detached SignedData, EnvelopedData, AuthEnvelopedData (RFC 5083/5084,
AES-GCM), RSAES-OAEP key transport (RFC 8017) and zlib CompressedData (RFC 3274).

The structures are ``asn1crypto.cms`` (DER written, DER and BER read: Bouncy Castle based AS2
servers stream indefinite lengths and chunked strings); the cryptography is ``cryptography``'s
primitives. Its own PKCS#7 builders would not do: they sign only with SHA-2, envelope only
AES-CBC under RSA PKCS#1 v1.5, and its reader refuses BER, while partners need SHA-1, 3DES,
OAEP and GCM.

Only the partner's pinned certificate is trusted: the certificates a signature carries are
never read.
"""

from __future__ import annotations

import hmac
import secrets
import zlib
from datetime import UTC, datetime
from typing import Any, Literal

from asn1crypto import algos, core
from asn1crypto import cms as asn1
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.transport.as2.errors import (
    AUTHENTICATION_FAILED,
    DECOMPRESSION_FAILED,
    DECRYPTION_FAILED,
    INTEGRITY_CHECK_FAILED,
    AS2Error,
)

#: Signing digests we send with (``[partners.X] as2_signing_digest``), and their RFC 5751 micalg names.
SIGNING_DIGESTS: dict[str, tuple[type[hashes.HashAlgorithm], str]] = {
    "sha256": (hashes.SHA256, "sha-256"), "sha1": (hashes.SHA1, "sha-1"), "sha384": (hashes.SHA384, "sha-384"),
    "sha512": (hashes.SHA512, "sha-512"),
}
#: Content encryption we send with (``[partners.X] as2_encryption``): GCM goes as AuthEnvelopedData (RFC 5084).
ENCRYPTIONS = {"aes256-cbc": "aes256_cbc", "aes128-cbc": "aes128_cbc", "aes128-gcm": "aes128_gcm",
               "aes256-gcm": "aes256_gcm", "3des": "tripledes_3key"}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_MAX_INFLATED = 1 << 30  # a compressed layer inflating beyond this is taken for a zip bomb
# What a crafted structure raises from asn1crypto (it parses lazily, on access) or from a missing field.
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError)
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_CIPHERS: dict[str, tuple[type[algorithms.AES] | type[TripleDES], int, Literal["cbc", "gcm"]]] = {
    # asn1crypto's name of the content-encryption OID: (algorithm, key bytes, mode)
    "aes128_cbc": (algorithms.AES, 16, "cbc"), "aes192_cbc": (algorithms.AES, 24, "cbc"),
    "aes256_cbc": (algorithms.AES, 32, "cbc"), "tripledes_3key": (TripleDES, 24, "cbc"),
    "aes128_gcm": (algorithms.AES, 16, "gcm"), "aes192_gcm": (algorithms.AES, 24, "gcm"),
    "aes256_gcm": (algorithms.AES, 32, "gcm"),
}
_NAME_KEYS = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU"}


class GCMParameters(core.Sequence):
    """RFC 5084 3.2, which asn1crypto does not map: the nonce, and the tag length (12 by default)."""

    _fields = [("nonce", core.OctetString), ("icv_len", core.Integer, {"default": 12})]


def signed_data(content: bytes, key: PrivateKey, cert: x509.Certificate, digest: str) -> bytes:
    """A detached SignedData: one signer named by issuer and serial, its certificate, and the content type,
    signing time and message digest as signed attributes."""
    algorithm = _DIGESTS[digest]()
    hasher = hashes.Hash(algorithm)
    hasher.update(content)
    attributes = asn1.CMSAttributes([  # a SET OF: asn1crypto sorts it, as DER wants and the signature covers
        asn1.CMSAttribute({"type": "content_type", "values": ["data"]}),
        asn1.CMSAttribute({"type": "signing_time", "values": [asn1.Time({"utc_time": datetime.now(UTC)})]}),
        asn1.CMSAttribute({"type": "message_digest", "values": [hasher.finalize()]}),
    ])
    if isinstance(key, rsa.RSAPrivateKey):
        value = key.sign(attributes.dump(), padding.PKCS1v15(), algorithm)
        signature_algorithm = {"algorithm": "rsassa_pkcs1v15", "parameters": core.Null()}
    else:
        value = key.sign(attributes.dump(), ec.ECDSA(algorithm))
        signature_algorithm = {"algorithm": f"{digest}_ecdsa"}
    certificate = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    signer = asn1.SignerInfo({
        "version": "v1", "sid": asn1.SignerIdentifier({"issuer_and_serial_number": _issuer_and_serial(certificate)}),
        "digest_algorithm": {"algorithm": digest}, "signed_attrs": attributes,
        "signature_algorithm": signature_algorithm, "signature": value,
    })
    signed = asn1.SignedData({
        "version": "v1", "digest_algorithms": [{"algorithm": digest}], "encap_content_info": {"content_type": "data"},
        "certificates": [asn1.CertificateChoices({"certificate": certificate})], "signer_infos": [signer],
    })
    return asn1.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


def verify(content: bytes, signature: bytes, cert: x509.Certificate) -> bytes:
    """``content`` if ``signature`` is a SignedData over it by ``cert``, the partner's pinned certificate."""
    try:
        signers = _content(signature, "signed_data")["signer_infos"]
        signer = next((s for s in signers if _names(s["sid"], cert)), None)
        if signer is None:
            raise AS2Error(f"the message is signed with the certificate "
                           f"{', '.join(_describe_id(s['sid']) for s in signers) or '(none)'}, not with the "
                           f"partner certificate {_describe(cert)}", disposition=AUTHENTICATION_FAILED)
        digest_name = signer["digest_algorithm"]["algorithm"].native
        signature_oid = signer["signature_algorithm"]["algorithm"].dotted
        if digest_name not in _DIGESTS or signature_oid == "1.2.840.113549.1.1.10":  # RSA-PSS
            raise AS2Error(f"signature algorithm {signer['digest_algorithm']['algorithm'].dotted}/{signature_oid} "
                           f"is not supported", disposition=AUTHENTICATION_FAILED)
        algorithm, signed_bytes = _DIGESTS[digest_name](), content
        attributes = signer["signed_attrs"]
        if not isinstance(attributes, core.Void):
            hasher = hashes.Hash(algorithm)
            hasher.update(content)
            stated = next((a["values"][0].native for a in attributes if a["type"].native == "message_digest"), None)
            if stated is None:
                raise ValueError("the signed attribute message-digest is missing")
            if not hmac.compare_digest(hasher.finalize(), stated):
                raise AS2Error("the content does not match its signature: it was altered after signing",
                               disposition=INTEGRITY_CHECK_FAILED)
            signed_bytes = attributes.untag().dump()  # signed as a SET OF, not as the [0] it is stored as
        public_key, signature_value = cert.public_key(), signer["signature"].native
    except _MALFORMED as exc:
        raise AS2Error(f"the signature cannot be read: {exc}", disposition=AUTHENTICATION_FAILED) from exc
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature_value, signed_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature_value, signed_bytes, ec.ECDSA(algorithm))
        else:
            raise AS2Error("the partner certificate's key type is not supported", disposition=AUTHENTICATION_FAILED)
    except InvalidSignature:
        raise AS2Error(f"the signature does not verify with the partner certificate {_describe(cert)}",
                       disposition=AUTHENTICATION_FAILED) from None
    return content


def encrypt(entity: bytes, cert: x509.Certificate, encryption: str) -> bytes:
    """EnvelopedData (CBC) or AuthEnvelopedData (GCM, RFC 5084) to ``cert``, the content key under RSA PKCS#1
    v1.5: what every AS2 implementation reads (OAEP is read, not sent)."""
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("the partner certificate must hold an RSA key to encrypt to it")
    name = ENCRYPTIONS[encryption]
    cipher, size, mode = _CIPHERS[name]
    content_key = secrets.token_bytes(size)
    certificate = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    recipient = asn1.RecipientInfo({"ktri": asn1.KeyTransRecipientInfo({
        "version": "v0", "rid": asn1.RecipientIdentifier({"issuer_and_serial_number": _issuer_and_serial(certificate)}),
        "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()},
        "encrypted_key": public_key.encrypt(content_key, padding.PKCS1v15()),
    })})
    if mode == "gcm":
        nonce = secrets.token_bytes(12)  # RFC 5084 3.2: 12 octets
        encryptor = Cipher(cipher(content_key), modes.GCM(nonce)).encryptor()
        encrypted = encryptor.update(entity) + encryptor.finalize()
        content = asn1.AuthEnvelopedData({
            "version": "v0", "recipient_infos": [recipient],
            "auth_encrypted_content_info": _encrypted_content(name, GCMParameters({"nonce": nonce, "icv_len": 16}),
                                                              encrypted),
            "mac": encryptor.tag,
        })
        return asn1.ContentInfo({"content_type": "authenticated_enveloped_data", "content": content}).dump()
    iv = secrets.token_bytes(cipher.block_size // 8)
    padder = block_padding.PKCS7(cipher.block_size).padder()
    encryptor = Cipher(cipher(content_key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padder.update(entity) + padder.finalize()) + encryptor.finalize()
    content = asn1.EnvelopedData({"version": "v0", "recipient_infos": [recipient],
                                  "encrypted_content_info": _encrypted_content(name, iv, encrypted)})
    return asn1.ContentInfo({"content_type": "enveloped_data", "content": content}).dump()


def decrypt(data: bytes, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> bytes:
    """EnvelopedData and AuthEnvelopedData are told apart by their content type, whatever the smime-type says."""
    try:
        info = asn1.ContentInfo.load(data)
        kind = info["content_type"].native
        if kind not in ("enveloped_data", "authenticated_enveloped_data"):
            raise ValueError(f"the CMS content type is {info['content_type'].dotted}, not (auth)enveloped data")
        content = info["content"]
        recipients = [r.chosen for r in content["recipient_infos"]]
        chosen = next((r for r in recipients if isinstance(r, asn1.KeyTransRecipientInfo) and _names(r["rid"], cert)),
                      None)
        if chosen is None:
            seen = [_describe_id(r["rid"]) if isinstance(r, asn1.KeyTransRecipientInfo) else "(not RSA)"
                    for r in recipients]
            raise AS2Error(f"the message is encrypted for the certificate {', '.join(seen) or '(none)'}, not for our "
                           f"certificate {_describe(cert)}: the partner must use our current certificate",
                           disposition=DECRYPTION_FAILED)
        sealed = content["encrypted_content_info" if kind == "enveloped_data" else "auth_encrypted_content_info"]
        algorithm = sealed["content_encryption_algorithm"]
        cipher_name = algorithm["algorithm"].native
        if cipher_name not in _CIPHERS:
            raise AS2Error(f"content encryption {algorithm['algorithm'].dotted} is not supported (AES-CBC, AES-GCM "
                           f"and 3DES are)", disposition=DECRYPTION_FAILED)
        cipher, size, mode = _CIPHERS[cipher_name]
        if (mode == "gcm") != (kind == "authenticated_enveloped_data"):  # RFC 5084: GCM only with the tag checked
            raise ValueError(f"content encryption {cipher_name} does not go in content type {kind}")
        content_key = key.decrypt(chosen["encrypted_key"].native, _key_transport(chosen["key_encryption_algorithm"]))
        if len(content_key) != size:
            raise ValueError("the content key has the wrong size")
        encrypted = sealed["encrypted_content"].native or b""
        if mode == "gcm":
            attributes = content["auth_attrs"]
            authenticated = b"" if isinstance(attributes, core.Void) else attributes.untag().dump()
            return _open_gcm(algorithms.AES(content_key), GCMParameters.load(algorithm["parameters"].dump()),
                             encrypted, content["mac"].native, authenticated)
        decryptor = Cipher(cipher(content_key), modes.CBC(algorithm["parameters"].native)).decryptor()
        unpadder = block_padding.PKCS7(cipher.block_size).unpadder()
        return unpadder.update(decryptor.update(encrypted) + decryptor.finalize()) + unpadder.finalize()
    except _MALFORMED as exc:
        raise AS2Error(f"the message cannot be decrypted: it was altered in transit, or our key does not match "
                       f"our certificate ({exc})", disposition=DECRYPTION_FAILED) from exc


def compress(entity: bytes) -> bytes:
    """RFC 3274 CompressedData with zlib; cryptography has no builder for it."""
    compressed = asn1.CompressedData({
        "version": "v0", "compression_algorithm": {"algorithm": "zlib"},
        "encap_content_info": {"content_type": "data", "content": zlib.compress(entity)},
    })
    return asn1.ContentInfo({"content_type": "compressed_data", "content": compressed}).dump()


def decompress(data: bytes) -> bytes:
    """Inflated here rather than by asn1crypto's ``decompressed``, to stop a zip bomb at ``_MAX_INFLATED``."""
    try:
        compressed = _content(data, "compressed_data")
        algorithm = compressed["compression_algorithm"]["algorithm"]
        if algorithm.native != "zlib":
            raise ValueError(f"compression {algorithm.dotted} is not zlib")
        inflater = zlib.decompressobj()
        entity = inflater.decompress(compressed["encap_content_info"]["content"].native or b"", _MAX_INFLATED)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("the compressed content is truncated or inflates beyond 1 GiB")
        return entity
    except (*_MALFORMED, zlib.error) as exc:
        raise AS2Error(f"the compressed layer cannot be read: {exc}", disposition=DECOMPRESSION_FAILED) from exc


def _content(data: bytes, kind: str) -> Any:
    info = asn1.ContentInfo.load(data)
    if info["content_type"].native != kind:
        raise ValueError(f"the CMS content type is {info['content_type'].dotted}, expected {kind}")
    return info["content"]


def _encrypted_content(name: str, parameters: object, encrypted: bytes) -> asn1.EncryptedContentInfo:
    return asn1.EncryptedContentInfo({
        "content_type": "data", "content_encryption_algorithm": {"algorithm": name, "parameters": parameters},
        "encrypted_content": encrypted,
    })


def _key_transport(algorithm: asn1.KeyEncryptionAlgorithm) -> padding.AsymmetricPadding:
    """RSA PKCS#1 v1.5, or RSAES-OAEP (RFC 8017 A.2.1) with its hash, MGF1 hash and label, SHA-1 by default."""
    name = algorithm["algorithm"].native
    if name == "rsaes_pkcs1v15":
        return padding.PKCS1v15()
    if name != "rsaes_oaep":
        raise AS2Error(f"key transport {algorithm['algorithm'].dotted} is not supported (RSA PKCS#1 v1.5 and "
                       f"RSAES-OAEP are)", disposition=DECRYPTION_FAILED)
    parameters = algorithm["parameters"]
    mask, source = parameters["mask_gen_algorithm"], parameters["p_source_algorithm"]
    if mask["algorithm"].native != "mgf1" or source["algorithm"].native != "p_specified":
        raise ValueError(f"RSAES-OAEP with {mask['algorithm'].dotted}/{source['algorithm'].dotted} is not supported")
    return padding.OAEP(padding.MGF1(_digest(mask["parameters"])), _digest(parameters["hash_algorithm"]),
                        source["parameters"].native or None)


def _digest(algorithm: algos.DigestAlgorithm) -> hashes.HashAlgorithm:
    if algorithm["algorithm"].native not in _DIGESTS:
        raise ValueError(f"digest {algorithm['algorithm'].dotted} is not supported")
    return _DIGESTS[algorithm["algorithm"].native]()


def _open_gcm(cipher: algorithms.AES, parameters: GCMParameters, encrypted: bytes, mac: bytes,
              authenticated: bytes) -> bytes:
    """The mac field must have the tag length the parameters give."""
    tag_length = parameters["icv_len"].native
    if not 12 <= tag_length <= 16 or len(mac) != tag_length:
        raise ValueError(f"the authentication tag is {len(mac)} bytes, its parameters say {tag_length}")
    decryptor = Cipher(cipher, modes.GCM(parameters["nonce"].native, mac, min_tag_length=tag_length)).decryptor()
    decryptor.authenticate_additional_data(authenticated)
    try:
        return decryptor.update(encrypted) + decryptor.finalize()
    except InvalidTag:
        raise ValueError("the authentication tag does not match") from None


def _issuer_and_serial(certificate: asn1_x509.Certificate) -> asn1.IssuerAndSerialNumber:
    return asn1.IssuerAndSerialNumber({"issuer": certificate.issuer, "serial_number": certificate.serial_number})


def _names(identifier: asn1.SignerIdentifier | asn1.RecipientIdentifier, cert: x509.Certificate) -> bool:
    """Whether a signer's or a recipient's identifier names ``cert``: by issuer and serial, or by key identifier."""
    if identifier.name == "issuer_and_serial_number":
        chosen = identifier.chosen
        return (chosen["issuer"].dump() == cert.issuer.public_bytes()
                and chosen["serial_number"].native == cert.serial_number)
    try:
        return identifier.chosen.native == cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False


def _describe(cert: x509.Certificate) -> str:
    return f"serial {cert.serial_number:#x} issued by {cert.issuer.rfc4514_string() or '(empty name)'}"


def _describe_id(identifier: asn1.SignerIdentifier | asn1.RecipientIdentifier) -> str:
    if identifier.name != "issuer_and_serial_number":
        return f"with key identifier {identifier.chosen.native.hex()}"
    issuer, serial = identifier.chosen["issuer"], identifier.chosen["serial_number"].native
    names = [f"{_NAME_KEYS.get(pair['type'].dotted, pair['type'].dotted)}={pair['value'].native}"
             for rdn in issuer.chosen for pair in rdn]
    return f"serial {serial:#x} issued by {','.join(reversed(names))}"
