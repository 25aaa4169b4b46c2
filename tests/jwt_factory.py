"""Builders for keys, certificates and SuperOffice-shaped JWTs used across the test suite.

Tests mint their own keys and tokens (as PyJWT's own suite does). The signing is written out
here rather than delegated to ``jwt.encode`` so tests can also mint what PyJWT refuses to:
``alg: none``, HS256 keyed with a public key, raw header or payload bytes.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import hmac
import json
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from sut_soap.testing.minting import superoffice_claims
from sut_soap.tokens import (
    CLAIM_ASSOCIATE_ID,
    CLAIM_CTX,
    CLAIM_NETSERVER_URL,
    CLAIM_PREFIX,
    CLAIM_SERIAL,
    CLAIM_TICKET,
    CLAIM_WEBAPI_URL,
)

__all__ = [
    "DEFAULT_CTX",
    "DEFAULT_SERIAL",
    "b64url",
    "default_claims",
    "jwk_for",
    "jwks_for",
    "mint",
    "mint_raw",
    "public_pem",
    "rsa_key",
    "self_signed_cert",
    "sign_segments",
]

DEFAULT_CTX = "Cust12345"
DEFAULT_SERIAL = "1234567"

# Short names accepted as keyword overrides by mint(); anything else is used verbatim.
_SHORT_NAMES = {
    "ticket": CLAIM_TICKET,
    "ctx": CLAIM_CTX,
    "serial": CLAIM_SERIAL,
    "webapi_url": CLAIM_WEBAPI_URL,
    "netserver_url": CLAIM_NETSERVER_URL,
    "associateid": CLAIM_ASSOCIATE_ID,
    "is_administrator": CLAIM_PREFIX + "is_administrator",
    "email": CLAIM_PREFIX + "email",
    "upn": CLAIM_PREFIX + "upn",
    "system_token": CLAIM_PREFIX + "system_token",
}


@functools.lru_cache(maxsize=8)
def rsa_key(index: int = 0, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A memoized RSA private key; distinct ``index`` values give distinct keys."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def b64url(data: bytes | str) -> str:
    """Unpadded base64url, as JWS compact serialisation uses."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def default_claims(now: float | None = None) -> dict[str, Any]:
    """The claims of a valid SuperOffice system user JWT issued at ``now`` (default: time.time()).

    The testing kit's minter makes them, so the suite and the emulator mint the same shape.
    """
    issued = datetime.datetime.fromtimestamp(int(time.time() if now is None else now), datetime.timezone.utc)
    return superoffice_claims(
        context_identifier=DEFAULT_CTX,
        serial=DEFAULT_SERIAL,
        issued_at=issued,
        is_administrator=True,
        email="sync@example.com",
        upn="sync@example.com",
    )


def _apply(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value


def sign_segments(key: Any, signing_input: bytes, alg: str = "RS256") -> bytes:
    """The JWS signature of ``signing_input``.

    ``key`` is an RSA private key for RS*/PS*, bytes or str (the HMAC secret) for HS*, ignored
    for ``none``. Unknown algorithms (e.g. a lowercase ``rs256``) sign as RS256, so a test can
    check that the header value alone is refused.
    """
    upper = alg.upper()
    if upper == "NONE":
        return b""
    if upper.startswith("HS"):
        secret = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[upper]
        return hmac.new(secret, signing_input, digest).digest()
    hash_algorithm = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[upper[2:]]
    if upper.startswith("PS"):
        pad: padding.AsymmetricPadding = padding.PSS(
            mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size
        )
    else:
        pad = padding.PKCS1v15()
    signature: bytes = key.sign(signing_input, pad, hash_algorithm)
    return signature


def mint_raw(key: Any, header: bytes | dict[str, Any], payload: bytes | dict[str, Any], alg: str = "RS256") -> str:
    """A compact JWS from raw header/payload (bytes used verbatim, dicts JSON-encoded), signed."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    payload_bytes = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    signing_input = f"{b64url(header_bytes)}.{b64url(payload_bytes)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64url(sign_segments(key, signing_input, alg))}"


def mint(
    private_key: Any,
    claims: dict[str, Any] | None = None,
    *,
    kid: str | None = "test-kid",
    headers: dict[str, Any] | None = None,
    alg: str = "RS256",
    now: float | None = None,
    **overrides: Any,
) -> str:
    """A SuperOffice-shaped JWT signed with ``private_key``.

    ``claims`` (full claim names) and then ``overrides`` (short names such as ``ticket``,
    ``ctx``, ``serial`` are expanded to SuperOffice's claim URIs) replace default claims; a
    value of ``None`` deletes the claim. ``headers`` are merged into ``{"alg", "typ", "kid"}``
    the same way; ``kid=None`` omits the kid.
    """
    body = default_claims(now)
    _apply(body, dict(claims or {}))
    _apply(body, {_SHORT_NAMES.get(name, name): value for name, value in overrides.items()})
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    _apply(header, dict(headers or {}))
    return mint_raw(private_key, header, body, alg)


def jwk_for(public_key: Any, kid: str | None = "test-kid", **extra: Any) -> dict[str, Any]:
    """The RSA JWK (kty, n, e, use sig, alg RS256, kid) of a public or private RSA key."""
    if isinstance(public_key, rsa.RSAPrivateKey):
        public_key = public_key.public_key()
    numbers = public_key.public_numbers()
    jwk: dict[str, Any] = {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
    }
    if kid is not None:
        jwk["kid"] = kid
    _apply(jwk, extra)
    return jwk


def jwks_for(*keys_with_kids: tuple[Any, str | None]) -> dict[str, Any]:
    """A JWKS document from ``(key, kid)`` pairs (public or private RSA keys; kid None omits it)."""
    return {"keys": [jwk_for(key, kid) for key, kid in keys_with_kids]}


def public_pem(key: Any, *, pkcs1: bool = False) -> bytes:
    """PEM of an RSA key's public half: SubjectPublicKeyInfo, or PKCS#1 ``RSA PUBLIC KEY``."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    fmt = serialization.PublicFormat.PKCS1 if pkcs1 else serialization.PublicFormat.SubjectPublicKeyInfo
    data: bytes = key.public_bytes(serialization.Encoding.PEM, fmt)
    return data


def self_signed_cert(private_key: Any, common_name: str = "SuperOffice Federated Login (test)") -> x509.Certificate:
    """A self-signed X.509 certificate for ``private_key``, like SuperOfficeFederatedLogin.crt."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(private_key, hashes.SHA256())
    )
