"""DkimSigner: DKIM signatures (RFC 6376, RFC 8463) over finished MIME messages, via dkimpy.

Keys: an RSA key of at least 2048 bits (PEM, PKCS#1 or PKCS#8) or an Ed25519 key (PEM PKCS#8,
or dkimpy's base64 seed), as `mailpipe dkim keygen` prints them. Canonicalization is
relaxed/relaxed, so a relay that refolds headers or changes trailing whitespace leaves the
signature valid. The signed headers are the ones a receiver shows or acts on (`SIGNED_HEADERS`);
one that a message lacks is signed as absent, so it cannot be added on the way (a
List-Unsubscribe slipped into a transactional message would fail verification). From is signed
twice (over-signed): a second From added later breaks the signature.

`sign` returns the message with its DKIM-Signature header in front; the bytes after it are
the input's, untouched. dkimpy canonicalizes, hashes and assembles the header; the RSA
signature itself is made by OpenSSL (cryptography), because dkimpy's own is pure-Python modular
arithmetic, about 15x slower (`_OpenSslDkim`). Ed25519 goes through PyNaCl (libsodium). A key
that cannot be used is a ConfigurationError naming the setting, never showing the key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from shared.domain.errors import ConfigurationError

SIGNED_HEADERS = (
    "From", "From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "MIME-Version",
    "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id",
)  # fmt: skip
MIN_RSA_BITS = 2048
KEY_SETTING = "MAILPIPE_DKIM_PRIVATE_KEY"
RSA, ED25519 = "rsa", "ed25519"


@dataclass(frozen=True)
class DkimKey:
    """A private key in the form dkimpy signs with, and its public half for DNS."""

    kind: str  # rsa | ed25519
    signing_key: bytes = b""  # PEM (RSA) or base64 seed (Ed25519), as dkimpy takes them
    public_b64: str = ""  # the p= of the DNS record

    def __repr__(self) -> str:
        return f"DkimKey({self.kind}, p={self.public_b64[:12]}...)"

    @property
    def algorithm(self) -> bytes:
        return b"rsa-sha256" if self.kind == RSA else b"ed25519-sha256"

    def txt_record(self) -> str:
        """The TXT record value to publish at <selector>._domainkey.<domain>."""
        return f"v=DKIM1; k={self.kind}; p={self.public_b64}"


def load_key(text: str) -> DkimKey:
    """The key from its setting's text. ConfigurationError when it is not a usable key."""
    data = text.strip().encode()
    if not data.startswith(b"-----BEGIN"):
        return _raw_ed25519(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{KEY_SETTING} is not a readable PEM private key") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _ed25519_key(key)
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigurationError(
                f"{KEY_SETTING} is a {key.key_size}-bit RSA key; mailbox providers want "
                f"{MIN_RSA_BITS} bits or more (mailpipe dkim keygen makes one)"
            )
        return _rsa_key(key)
    raise ConfigurationError(f"{KEY_SETTING} must be an RSA or Ed25519 private key")


def generate_key(kind: str) -> tuple[str, DkimKey]:
    """A new key: its PEM text (for the secret) and the loaded key."""
    if kind == ED25519:
        private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey = (
            ed25519.Ed25519PrivateKey.generate()
        )
        pem_format = serialization.PrivateFormat.PKCS8
    elif kind == RSA:
        private = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
        pem_format = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        raise ConfigurationError(f"key type must be {RSA} or {ED25519}, not {kind!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM, pem_format, serialization.NoEncryption()
    ).decode()
    return pem, load_key(pem)


def _rsa_key(key: rsa.RSAPrivateKey) -> DkimKey:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # the PKCS#1 form dkimpy reads
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(RSA, pem, base64.b64encode(der).decode())


def _ed25519_key(key: ed25519.Ed25519PrivateKey) -> DkimKey:
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return DkimKey(ED25519, base64.b64encode(seed), base64.b64encode(public).decode())


def _raw_ed25519(data: bytes) -> DkimKey:
    try:
        seed = base64.b64decode(data, validate=True)
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError as exc:
        raise ConfigurationError(
            f"{KEY_SETTING} must be a PEM private key (RSA or Ed25519) or a base64 Ed25519 seed"
        ) from exc
    return _ed25519_key(key)


@dataclass(frozen=True)
class _Signature:
    signature: bytes


@dataclass(frozen=True)
class _OpenSslRsa:
    """An RSA key with the interface of PyNaCl's SigningKey: sign(digest).signature."""

    key: rsa.RSAPrivateKey

    def sign(self, digest: bytes) -> _Signature:
        return _Signature(self.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())))


class _OpenSslDkim(dkim.DKIM):
    """dkimpy's DKIM, its RSA signature made by OpenSSL. dkimpy's gen_header hashes the
    canonical headers, then signs the digest: RSA in pure Python, or, for Ed25519, by calling
    `pk.sign(digest).signature`. Here an RSA signature takes the latter road with an OpenSSL
    key; the header's a= tag was written by `sign` beforehand and stays rsa-sha256. The
    tests verify these signatures with dkimpy's own verify."""

    openssl_key: rsa.RSAPrivateKey | None = None

    def gen_header(self, fields: Any, include_headers: Any, canon_policy: Any,
                   header_name: Any, pk: Any, standardize: bool = False) -> Any:  # fmt: skip
        if self.openssl_key is None or self.signature_algorithm != b"rsa-sha256":
            return super().gen_header(
                fields, include_headers, canon_policy, header_name, pk, standardize
            )
        self.signature_algorithm: bytes = b"ed25519-sha256"  # the branch that calls pk.sign(digest)
        try:
            return super().gen_header(fields, include_headers, canon_policy, header_name,
                                      _OpenSslRsa(self.openssl_key), standardize)  # fmt: skip
        finally:
            self.signature_algorithm = b"rsa-sha256"


class DkimSigner:
    def __init__(self, key: DkimKey, domain: str, selector: str) -> None:
        if not domain or not selector:
            raise ConfigurationError(
                "DKIM signing needs MAILPIPE_DKIM_SELECTOR and a domain (MAILPIPE_DKIM_DOMAIN "
                "or MAILPIPE_SENDER's)"
            )
        self.key = key
        self.domain = domain
        self.selector = selector
        self._domain = domain.encode("idna")
        self._selector = selector.encode()
        self._headers = [h.lower().encode() for h in SIGNED_HEADERS]
        self._openssl_key: rsa.RSAPrivateKey | None = None
        if key.kind == RSA:
            loaded = serialization.load_pem_private_key(key.signing_key, password=None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            self._openssl_key = loaded

    def __repr__(self) -> str:
        return f"DkimSigner({self.selector}._domainkey.{self.domain}, {self.key.kind})"

    def sign(self, raw: bytes) -> bytes:
        """`raw` (CRLF line endings, as mime.build_message makes it) with a DKIM-Signature."""
        signer = _OpenSslDkim(raw, linesep=b"\r\n")
        signer.openssl_key = self._openssl_key
        try:
            signature = signer.sign(
                self._selector,
                self._domain,
                self.key.signing_key,
                signature_algorithm=self.key.algorithm,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=self._headers,
            )
        except dkim.DKIMException as exc:
            raise ConfigurationError(f"DKIM signing failed ({KEY_SETTING}): {exc}") from exc
        return signature + raw
