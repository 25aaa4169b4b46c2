"""The partner's RSA key going out: .NET XML, PKCS#8 PEM, a fingerprint, and names for key kinds.

:mod:`sut_soap.keys` reads a key in every form partners hold it; this module goes the other
way, for the command line's ``convert-key`` and for anyone moving a key between a .NET and an
OpenSSL world without pasting it into a web page:

- :func:`private_key_to_rsa_xml`: the ``<RSAKeyValue>`` document .NET's ``ToXmlString(true)``
  writes, which is what the developer portal hands out;
- :func:`private_key_to_pem`: unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``);
- :func:`public_key_fingerprint`: ``SHA256:ab:cd:...`` of the public key, the value to quote in
  logs and support requests, since it identifies the key without revealing any of it.

It also holds the wording both directions share for an object that is not the RSA private key
signing needs ("an EC private key", "a certificate (which holds only the public key)"), so
loading and writing refuse the same object with the same message. The functions here are
importable from :mod:`sut_soap.keys` as well.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from .errors import ConfigurationError

__all__ = ["private_key_to_pem", "private_key_to_rsa_xml", "public_key_fingerprint"]

_PORTAL_KEY_HINT = "that this is the private key of the application registered in the developer portal"


def private_key_to_rsa_xml(key: rsa.RSAPrivateKey) -> str:
    """Return ``key`` as the .NET ``<RSAKeyValue>`` document ``RSA.ToXmlString(true)`` writes.

    Elements in .NET's order; Modulus and Exponent as their minimal big-endian bytes, P, Q, DP,
    DQ and InverseQ padded to half the modulus length and D to the modulus length, as .NET's
    ``ExportParameters`` pads them. One line, no XML declaration, no whitespace.

    The result is the private key itself: write it only where the key may be (mode 0600).

    Raises:
        ConfigurationError: ``key`` is not a cryptography ``RSAPrivateKey`` (the message says
            what it is instead: a public key, a certificate, another algorithm).
    """
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _refusal_for_object(key)
    numbers = key.private_numbers()
    public = numbers.public_numbers
    size = _byte_length(public.n)
    half = (size + 1) // 2
    values = (
        ("Modulus", public.n, size),
        ("Exponent", public.e, 0),
        ("P", numbers.p, half),
        ("Q", numbers.q, half),
        ("DP", numbers.dmp1, half),
        ("DQ", numbers.dmq1, half),
        ("InverseQ", numbers.iqmp, half),
        ("D", numbers.d, size),
    )
    body = "".join(f"<{name}>{_base64_of(value, width)}</{name}>" for name, value, width in values)
    return f"<RSAKeyValue>{body}</RSAKeyValue>"


def private_key_to_pem(key: rsa.RSAPrivateKey) -> bytes:
    """Return ``key`` as unencrypted PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``) bytes.

    What OpenSSL, Java and most tools read; :func:`~sut_soap.keys.load_private_key` reads it
    back. The result is the private key itself, unencrypted.

    Raises:
        ConfigurationError: ``key`` is not a cryptography ``RSAPrivateKey``.
    """
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _refusal_for_object(key)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_fingerprint(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """Return ``SHA256:`` and the SHA-256 of the public key's DER SubjectPublicKeyInfo as ``ab:cd:...``.

    The same value as ``openssl pkey -pubout -outform DER | openssl dgst -sha256``, with the
    hex in colon-separated pairs; safe to log. A private key and its public half give the
    same value, so comparing fingerprints tells whether a key pair matches.

    Raises:
        ConfigurationError: ``key`` is not an RSA private or public key.
    """
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    if not isinstance(public, rsa.RSAPublicKey):
        raise ConfigurationError(
            f"cannot fingerprint {_kind_of(key) or type(key).__name__}: expected an RSA key",
            hint="pass the RSA private or public key",
        )
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(spki).hexdigest()
    return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _public_not_private(where: str, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where} is {what}, but signing needs the private key",
        hint="the private key file (an <RSAKeyValue> with P, Q and D, or BEGIN PRIVATE KEY), "
        "not the public key or certificate registered with SuperOffice",
    )


def _kind_of(obj: object) -> str | None:
    kinds: tuple[tuple[type, str], ...] = (
        (rsa.RSAPrivateKey, "an RSA private key"),
        (rsa.RSAPublicKey, "an RSA public key"),
        (ec.EllipticCurvePublicKey, "an EC public key"),
        (ed25519.Ed25519PrivateKey, "an Ed25519 private key"),
        (ed25519.Ed25519PublicKey, "an Ed25519 public key"),
        (ed448.Ed448PrivateKey, "an Ed448 private key"),
        (ed448.Ed448PublicKey, "an Ed448 public key"),
        (dsa.DSAPrivateKey, "a DSA private key"),
        (dsa.DSAPublicKey, "a DSA public key"),
        (x25519.X25519PrivateKey, "an X25519 private key"),
        (x25519.X25519PublicKey, "an X25519 public key"),
        (x448.X448PrivateKey, "an X448 private key"),
        (x448.X448PublicKey, "an X448 public key"),
        (x509.Certificate, "a certificate"),
    )
    if isinstance(obj, ec.EllipticCurvePrivateKey):
        return f"an EC private key ({obj.curve.name})"
    for cls, kind in kinds:
        if isinstance(obj, cls):
            return kind
    return None


def _refusal_for_object(obj: object, where: str | None = None) -> ConfigurationError:
    kind = _kind_of(obj)
    if kind is None:
        return ConfigurationError(
            f"cannot use a {type(obj).__name__} as the private key",
            hint="pass a file path (str or pathlib.Path), key content (bytes or str), or a cryptography RSAPrivateKey",
        )
    subject = where or "the key object"
    if "public key" in kind or kind == "a certificate":
        return _public_not_private(subject, kind)
    return ConfigurationError(
        f"{subject} is {kind}, not RSA: SuperOffice system user tokens are signed with RSA",
        hint=_PORTAL_KEY_HINT,
    )


def _byte_length(value: int) -> int:
    return max(1, (value.bit_length() + 7) // 8)


def _base64_of(value: int, width: int) -> str:
    return base64.b64encode(value.to_bytes(max(width, _byte_length(value)), "big")).decode("ascii")
