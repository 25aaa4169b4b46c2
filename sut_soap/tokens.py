"""Validation of the JWT that PartnerSystemUserService returns, and the keys that sign it.

The ``Token`` in a successful ``AuthenticationResponse`` is a JWT (RFC 7519) signed RS256 by the
environment's "Federated Login" certificate. It carries the system user ticket in the claim
``http://schemes.superoffice.net/identity/ticket``. sut-soap hands out that ticket only after
:class:`TokenValidator` has checked, cheapest first, each failure a
:class:`~sut_soap.errors.TokenValidationError` whose ``check`` names the step:

``size``, ``format``
    A ``str`` of ASCII, at most :data:`MAX_TOKEN_BYTES` long (measured before any decoding, so
    an 8 MiB answer costs nothing), made of exactly three non-empty, unpadded, canonical
    base64url segments; header and payload are UTF-8 JSON objects (no duplicate keys, no
    ``NaN``/``Infinity``, nesting bounded by the size cap).
``algorithm``, ``critical``
    ``alg`` is exactly ``RS256``. The accepted algorithm is pinned here and passed to PyJWT as
    ``algorithms=["RS256"]``; it is never derived from the token (no ``none``, no HS256 keyed
    with the public key). A ``crit`` header is refused: no extension is understood.
``key``, ``signature``
    The key comes from a :class:`KeySource`, chosen by ``kid`` only. Header parameters that
    name keys (``jwk``, ``jku``, ``x5u``, ``x5c``, ``x5t``) are ignored: trusting them would let
    the token pick the key that verifies it.
``issuer``, ``serial``, ``audience``
    ``iss`` is exactly ``SuperOffice AS``. ``aud`` is a single string equal to
    ``spn:<serial>``, where serial is the tenant database's serial claim (SuperOffice uses the
    same issuer and audience shape in every environment, so the audience is only meaningful
    against the serial; pass ``expected_serial`` to pin it as well). Audience lists are refused.
``expiry``, ``not_before``, ``issued_at``, ``lifetime``
    ``exp`` is required and must be a JSON number: a numeric string is refused because RFC 7519
    defines NumericDate as a number, and SuperOffice's documented tokens send ``exp`` and ``nbf`` as
    numbers. ``nbf`` and ``iat`` are optional (the "SuperOffice AS" token shown in SuperOffice's
    documentation has no ``iat``); when present they must be a number or a string of decimal
    digits, because SuperOffice's documented id_token sends ``iat`` as ``"1581665207"``. Accepting that string for an
    optional claim is never weaker than the claim being absent. ``leeway`` (default 300 s, the
    skew SuperOffice's .NET sample allows) applies to each bound. A token whose ``exp`` lies
    more than ``max_lifetime`` (+ leeway) ahead, or whose ``exp - iat`` exceeds
    ``max_lifetime``, is refused: these JWTs are short-lived, and ``exp = 10**20`` is a forgery
    tell or a broken issuer.
``context``
    The ``ctx`` claim equals the ContextIdentifier that was sent, so a ticket for one tenant is
    never handed out for another.
``ticket``
    The ticket claim is a non-empty string of at most :data:`MAX_TICKET_CHARS` visible ASCII
    characters: it travels in an HTTP header (``Authorization: SOTicket <ticket>``), where
    whitespace, control or non-ASCII characters would break or smuggle headers.

No message, log line or ``repr`` here carries the token or a claim value: the ticket is a
credential, and any claim could hold it.

Keys: :class:`JwksKeySource` fetches the environment's JWKS lazily and caches it;
:func:`key_source_from_public_key` pins a key, certificate (``SuperOfficeFederatedLogin.crt``),
JWK or JWKS file and never fetches.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from ._clock import SYSTEM_CLOCK, Clock
from ._contract import (
    ALGORITHM,
    CLAIM_ASSOCIATE_ID,
    CLAIM_CTX,
    CLAIM_NETSERVER_URL,
    CLAIM_PREFIX,
    CLAIM_SERIAL,
    CLAIM_TICKET,
    CLAIM_WEBAPI_URL,
    ISSUER,
)
from .environments import validate_endpoint
from .errors import ConfigurationError, SutSoapError, TokenValidationError, TransportError
from .transport import DEFAULT_TIMEOUT, HttpTransport, Transport, call_transport

__all__ = [
    "CLAIM_ASSOCIATE_ID",
    "CLAIM_CTX",
    "CLAIM_NETSERVER_URL",
    "CLAIM_PREFIX",
    "CLAIM_SERIAL",
    "CLAIM_TICKET",
    "CLAIM_WEBAPI_URL",
    "DEFAULT_LEEWAY",
    "ISSUER",
    "MAX_LEEWAY",
    "MAX_TICKET_CHARS",
    "MAX_TOKEN_BYTES",
    "JwksKeySource",
    "KeySource",
    "StaticKeySource",
    "TokenValidator",
    "decode_unverified",
    "key_source_from_public_key",
]

DEFAULT_LEEWAY = 300.0
MAX_LEEWAY = 300.0
MAX_TOKEN_BYTES = 16 * 1024
MAX_TICKET_CHARS = 4096

_ALGORITHM = ALGORITHM
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 16384
_MAX_JWKS_BYTES = 1024 * 1024
_MAX_KEY_FILE_BYTES = 1024 * 1024

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_DIGITS = re.compile(r"[0-9]{1,15}")
_TICKET = re.compile(r"[\x21-\x7e]+")

_HINT_FORMAT = "that the endpoint is SuperOffice's and the request asked for ReturnTokenType=Jwt"
_HINT_KEY = (
    "that the JWKS URL or public key/certificate belongs to the same environment "
    "(sod, qaonline, online) as the endpoint"
)
_HINT_CLOCK = "the local clock (UTC, NTP) and the leeway"

# The one PyJWT object that verifies signatures; the algorithm list is pinned on every call too.
_JWS = jwt.PyJWS(algorithms=[_ALGORITHM], options={"enforce_minimum_key_length": True})


# --------------------------------------------------------------------------------------------
# Key sources


@runtime_checkable
class KeySource(Protocol):
    """Where the validator gets the RSA public key for a JWT's ``kid`` (``None`` when absent)."""

    def get_key(self, kid: str | None) -> RSAPublicKey:
        """Return the key for ``kid``; raise ``TokenValidationError(check="key")`` if none fits."""
        ...


class _Entry(NamedTuple):
    kid: str | None
    key: RSAPublicKey


class _KeyMaterialError(Exception):
    """Internal: key material was unusable; converted to ConfigurationError or TransportError."""


def _select_key(entries: Sequence[_Entry], kid: str | None) -> RSAPublicKey | None:
    """The key for ``kid``; ``None`` when no key has that kid. Raises when the choice is ambiguous.

    A token without ``kid`` is accepted only when the set holds exactly one key. A key without
    ``kid`` that is alone in its set (a pinned certificate) matches any ``kid``.
    """
    if kid is None:
        if len(entries) == 1:
            return entries[0].key
        raise TokenValidationError(
            f"the JWT header has no kid and the key set holds {len(entries)} keys, so none can be chosen",
            check="key",
            hint="pin the environment's single signing key, or check that the issuer sends kid",
        )
    matches = [entry.key for entry in entries if entry.kid == kid]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise TokenValidationError("the key set holds several keys with the JWT's kid", check="key", hint=_HINT_KEY)
    if len(entries) == 1 and entries[0].kid is None:
        return entries[0].key
    return None


def _unknown_kid() -> TokenValidationError:
    return TokenValidationError("no key in the key set has the JWT's kid", check="key", hint=_HINT_KEY)


def _b64url_int(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    data = _b64url_decode(value.rstrip("="), canonical=False)
    if data is None:
        return None
    return int.from_bytes(data, "big")


def _rsa_from_jwk(jwk: dict[str, Any]) -> RSAPublicKey:
    """An RSA public key from the ``n`` and ``e`` members of a JWK; private members are ignored."""
    n = _b64url_int(jwk.get("n"))
    e = _b64url_int(jwk.get("e"))
    if n is None or e is None:
        raise _KeyMaterialError("an RSA JWK lacks a valid base64url n or e")
    try:
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise _KeyMaterialError("an RSA JWK holds numbers that are not an RSA public key") from None
    _check_rsa_size(key)
    return key


def _check_rsa_size(key: RSAPublicKey) -> None:
    if not _MIN_RSA_BITS <= key.key_size <= _MAX_RSA_BITS:
        raise _KeyMaterialError(f"an RSA key has {key.key_size} bits; {_MIN_RSA_BITS} to {_MAX_RSA_BITS} are supported")


def _jwks_entries(document: object) -> tuple[_Entry, ...]:
    """The usable RSA signing keys of a JWKS document (``{"keys": [...]}``).

    Keys that are not RSA, are marked for another use (``use`` other than ``sig``) or another
    algorithm (``alg`` other than RS256), or cannot be built are skipped, as RFC 7517 asks.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _KeyMaterialError("the document is not a JWKS: it has no 'keys' list")
    entries: list[_Entry] = []
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", _ALGORITHM) != _ALGORITHM:
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            key = _rsa_from_jwk(jwk)
        except _KeyMaterialError:
            continue
        entries.append(_Entry(kid, key))
    if not entries:
        raise _KeyMaterialError("the JWKS holds no usable RSA signing key (kty RSA, use sig, 2048+ bits)")
    return tuple(entries)


class StaticKeySource:
    """A fixed set of keys (a pinned key, certificate, JWK or JWKS file); it never fetches.

    Build it with :func:`key_source_from_public_key`, or directly from ``(kid, key)`` pairs.
    """

    def __init__(self, keys: Iterable[tuple[str | None, RSAPublicKey]]) -> None:
        entries: list[_Entry] = []
        for kid, key in keys:
            if not isinstance(key, RSAPublicKey):
                raise ConfigurationError("StaticKeySource accepts RSA public keys only")
            if kid is not None and not isinstance(kid, str):
                raise ConfigurationError("a key id (kid) must be a string or None")
            entries.append(_Entry(kid, key))
        if not entries:
            raise ConfigurationError("StaticKeySource needs at least one key")
        self._entries = tuple(entries)

    def get_key(self, kid: str | None) -> RSAPublicKey:
        """Return the pinned key for ``kid`` (see :func:`_select_key` for the no-kid rules)."""
        key = _select_key(self._entries, kid)
        if key is None:
            raise _unknown_kid()
        return key

    def __repr__(self) -> str:
        return f"StaticKeySource(keys={len(self._entries)})"


class JwksKeySource:
    """The environment's JWKS (``https://{env}.superoffice.com/login/.well-known/jwks``), cached.

    - The set is fetched on first use, not at construction, and cached for the object's life.
    - A ``kid`` the cached set does not know triggers one refetch (key rotation), but at most
      one fetch per ``refetch_cooldown`` seconds measured on ``clock`` (monotonic), so a stream
      of random kids cannot turn into a stream of requests. Unknown kid afterwards:
      ``TokenValidationError(check="key")``.
    - A failed fetch (network, timeout, HTTP status other than 200, redirect, body over 1 MiB,
      not JSON, no usable RSA key) raises :class:`~sut_soap.errors.TransportError` and never
      replaces a cached set. ``retryable`` is true for network errors, 429 and 5xx.
    - While nothing is cached each call may try again, one at a time; callers that waited on
      the lock during a failed fetch share its failure instead of fetching again.
    - Only ``kty: RSA`` keys with ``use`` absent or ``sig`` (and ``alg`` absent or RS256) count.
      A token without ``kid`` is accepted when the set holds exactly one such key.
    - Safe to share between threads: one lock guards fetching and the cache.
    """

    def __init__(
        self,
        url: str,
        *,
        transport: Transport | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        refetch_cooldown: float = 30.0,
        clock: Clock | Callable[[], float] | None = None,
    ) -> None:
        self._url = validate_endpoint(url, what="the JWKS URL")
        if not _is_positive_number(refetch_cooldown, allow_zero=True):
            raise ConfigurationError("refetch_cooldown must be a finite number of seconds >= 0")
        if (
            not isinstance(timeout, tuple)
            or len(timeout) != 2
            or not all(_is_positive_number(part, allow_zero=False) for part in timeout)
        ):
            raise ConfigurationError("timeout must be a (connect, read) pair of positive seconds")
        self._owns_transport = transport is None
        self._transport: Transport = (
            HttpTransport(timeout=(float(timeout[0]), float(timeout[1]))) if transport is None else transport
        )
        self._cooldown = float(refetch_cooldown)
        self._clock: Callable[[], float] = _monotonic_of(clock)
        self._lock = threading.Lock()
        self._entries: tuple[_Entry, ...] | None = None
        self._last_attempt: float | None = None
        self._attempts = 0
        self._last_failure: TransportError | None = None

    @property
    def url(self) -> str:
        """The JWKS URL."""
        return self._url

    def get_key(self, kid: str | None) -> RSAPublicKey:
        """Return the key for ``kid``, fetching or refetching the JWKS as described above."""
        attempts_seen = self._attempts
        with self._lock:
            if self._entries is None:
                if self._attempts != attempts_seen and self._last_failure is not None:
                    raise _copy_transport_error(self._last_failure)
                self._refresh_locked()
            assert self._entries is not None
            key = _select_key(self._entries, kid)
            if key is None and self._cooldown_over():
                self._refresh_locked()
                key = _select_key(self._entries, kid)
            if key is None:
                raise _unknown_kid()
            return key

    def close(self) -> None:
        """Close the transport if this source created it (a transport passed in stays open)."""
        if self._owns_transport:
            self._transport.close()

    def __repr__(self) -> str:
        cached = "none" if self._entries is None else str(len(self._entries))
        return f"JwksKeySource(url={self._url!r}, cached_keys={cached})"

    def _cooldown_over(self) -> bool:
        return self._last_attempt is None or self._clock() - self._last_attempt >= self._cooldown

    def _refresh_locked(self) -> None:
        self._attempts += 1
        self._last_attempt = self._clock()
        try:
            entries = self._fetch()
        except TransportError as error:
            self._last_failure = _copy_transport_error(error)
            raise
        self._entries = entries
        self._last_failure = None

    def _fetch(self) -> tuple[_Entry, ...]:
        body = self._download()
        hint = f"that {self._url} is the environment's jwks_uri"
        try:
            document = json.loads(body.decode("utf-8-sig"))
        except (ValueError, RecursionError):
            raise TransportError(
                "the JWKS endpoint answered something that is not UTF-8 JSON", status=200, hint=hint
            ) from None
        try:
            return _jwks_entries(document)
        except _KeyMaterialError as error:
            raise TransportError(
                f"the JWKS endpoint answered an unusable key set: {error}", status=200, hint=hint
            ) from None

    def _download(self) -> bytes:
        try:
            response = call_transport(
                self._transport, "GET", self._url, headers={"Accept": "application/json"}, max_bytes=_MAX_JWKS_BYTES
            )
        except SutSoapError as error:
            raise TransportError(
                f"fetching the JWKS failed: {error.message}",
                status=getattr(error, "status", None),
                retryable=error.retryable and not isinstance(error, ConfigurationError),
            ) from None
        status = response.status_code
        if status != 200:
            redirect = 300 <= status < 400
            raise TransportError(
                f"the JWKS endpoint answered HTTP {status}"
                + (" (a redirect, which is not followed)" if redirect else ""),
                status=status,
                hint=(
                    "set the JWKS URL to the final https address"
                    if redirect
                    else f"that {self._url} is the environment's jwks_uri and the service status"
                ),
                retryable=status == 429 or status >= 500,
            )
        return bytes(response.content)


def _monotonic_of(clock: Clock | Callable[[], float] | None) -> Callable[[], float]:
    """The monotonic reading of a Clock, or a bare callable given as the monotonic clock."""
    if clock is None:
        return SYSTEM_CLOCK.monotonic
    if isinstance(clock, Clock):
        return clock.monotonic
    if not callable(clock):
        raise ConfigurationError("clock must be a Clock or a callable returning monotonic seconds")
    return clock


def _copy_transport_error(error: TransportError) -> TransportError:
    return TransportError(error.message, status=error.status, hint=error.hint, retryable=error.retryable)


def _is_positive_number(value: object, *, allow_zero: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (value >= 0 if allow_zero else value > 0)


def key_source_from_public_key(value: RSAPublicKey | str | os.PathLike[str] | bytes) -> StaticKeySource:
    """A :class:`StaticKeySource` from a key object, a file path, or key file content.

    Accepted: an ``RSAPublicKey``; a PEM public key (``BEGIN PUBLIC KEY`` or ``BEGIN RSA
    PUBLIC KEY``); a PEM or DER X.509 certificate (SuperOffice's
    ``SuperOfficeFederatedLogin.crt``; its validity dates are not checked, the key is pinned);
    a JWKS (``{"keys": [...]}``) or a single JWK as JSON. A ``str`` that starts with
    ``-----BEGIN`` or ``{`` is content, any other ``str`` is a path. Anything else, a private
    key, a non-RSA or sub-2048-bit key raises :class:`~sut_soap.errors.ConfigurationError`.
    """
    if isinstance(value, RSAPublicKey):
        try:
            _check_rsa_size(value)
        except _KeyMaterialError as error:
            raise ConfigurationError(f"the public key is unusable: {error}") from None
        return StaticKeySource([(None, value)])
    if isinstance(value, bytes):
        return _static_from_material(value, "the public key content")
    if isinstance(value, str) and value.lstrip("\ufeff \t\r\n").startswith(("-----BEGIN", "{")):
        return _static_from_material(value.encode("utf-8"), "the public key content")
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return _static_from_material(_read_key_file(path), f"the public key file {path}")
    raise ConfigurationError(f"a public key must be an RSAPublicKey, a path or bytes, not {type(value).__name__}")


def _read_key_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise ConfigurationError(
            f"cannot read the public key file {path}: {reason}", hint="the path and its permissions"
        ) from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise ConfigurationError(f"the public key file {path} is larger than {_MAX_KEY_FILE_BYTES} bytes")
    return data


def _static_from_material(data: bytes, origin: str) -> StaticKeySource:
    try:
        return StaticKeySource(_parse_key_material(data))
    except _KeyMaterialError as error:
        raise ConfigurationError(
            f"{origin} is unusable: {error}",
            hint="give the environment's public key (PEM), certificate (PEM or DER .crt) or JWKS",
        ) from None


def _parse_key_material(data: bytes) -> list[tuple[str | None, RSAPublicKey]]:
    text = data.removeprefix(b"\xef\xbb\xbf").strip()
    if not text:
        raise _KeyMaterialError("it is empty")
    if text.startswith(b"{"):
        return _parse_jwk_json(text)
    if b"-----BEGIN" in text:
        if b"PRIVATE KEY-----" in text:
            raise _KeyMaterialError("it holds a private key; give the public key or certificate instead")
        if b"-----BEGIN CERTIFICATE-----" in text:
            loaded: object = _load(lambda: x509.load_pem_x509_certificate(text).public_key())
        elif b"PUBLIC KEY-----" in text:
            loaded = _load(lambda: load_pem_public_key(text))
        else:
            raise _KeyMaterialError("it is PEM but neither a public key nor a certificate")
    else:
        # DER is binary: strip() above may have cut whitespace-valued bytes off its end.
        der = data.removeprefix(b"\xef\xbb\xbf")
        loaded = _load(lambda: x509.load_der_x509_certificate(der).public_key())
        if loaded is None:
            loaded = _load(lambda: load_der_public_key(der))
    if loaded is None:
        raise _KeyMaterialError("it is not a parseable public key, certificate, JWK or JWKS")
    if not isinstance(loaded, RSAPublicKey):
        raise _KeyMaterialError(f"it holds {_key_kind(loaded)} key; SuperOffice signs with RSA (RS256)")
    _check_rsa_size(loaded)
    return [(None, loaded)]


def _load(loader: Callable[[], object]) -> object | None:
    try:
        return loader()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _key_kind(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "an elliptic-curve (EC)"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return "an EdDSA"
    if isinstance(key, dsa.DSAPublicKey):
        return "a DSA"
    return "a non-RSA"


def _parse_jwk_json(text: bytes) -> list[tuple[str | None, RSAPublicKey]]:
    try:
        document = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _KeyMaterialError("it starts like JSON but is not valid UTF-8 JSON") from None
    if isinstance(document, dict) and "keys" in document:
        return [(entry.kid, entry.key) for entry in _jwks_entries(document)]
    if isinstance(document, dict) and "kty" in document:
        if document["kty"] != "RSA":
            raise _KeyMaterialError("the JWK is not an RSA key (kty must be RSA)")
        kid = document.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _KeyMaterialError("the JWK's kid is not a string")
        return [(kid, _rsa_from_jwk(document))]
    raise _KeyMaterialError("the JSON is neither a JWK (kty) nor a JWKS (keys)")


# --------------------------------------------------------------------------------------------
# Token parsing


class _Parts(NamedTuple):
    header: dict[str, Any]
    payload: bytes


def _b64url_decode(segment: str, *, canonical: bool = True) -> bytes | None:
    """Unpadded base64url to bytes, or ``None``. Canonical: the unused low bits must be zero."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        return None
    # Only base64url characters and a length that padding completes: decoding cannot fail.
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if canonical and base64.urlsafe_b64encode(data).rstrip(b"=") != segment.encode("ascii"):
        return None
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _json_object(data: bytes) -> dict[str, Any] | None:
    """Strict UTF-8 JSON object, or ``None`` (invalid UTF-8 or JSON, duplicates, NaN, not an object)."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _format_error(message: str) -> TokenValidationError:
    return TokenValidationError(message, check="format", hint=_HINT_FORMAT)


def _split(token: object) -> _Parts:
    """Size and format checks; returns the parsed header and the payload bytes."""
    if not isinstance(token, str):
        raise _format_error(f"the JWT must be a str, not {type(token).__name__}")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenValidationError(
            f"the JWT is longer than {MAX_TOKEN_BYTES} characters; refused before decoding",
            check="size",
            hint=_HINT_FORMAT,
        )
    if not token.isascii():
        raise _format_error("the JWT contains non-ASCII characters")
    segments = token.split(".")
    if len(segments) != 3:
        raise _format_error(f"the JWT has {len(segments)} dot-separated segments; a signed JWT has 3")
    decoded: list[bytes] = []
    for name, segment in zip(("header", "payload", "signature"), segments, strict=True):
        data = _b64url_decode(segment)
        if data is None:
            raise _format_error(
                f"the JWT {name} segment is empty or not canonical unpadded base64url "
                "(no padding, whitespace or other characters)"
            )
        decoded.append(data)
    header = _json_object(decoded[0])
    if header is None:
        raise _format_error("the JWT header is not a UTF-8 JSON object")
    return _Parts(header, decoded[1])


def _payload_object(payload: bytes) -> dict[str, Any]:
    claims = _json_object(payload)
    if claims is None:
        raise _format_error("the JWT payload is not a UTF-8 JSON object")
    return claims


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, claims)`` of a JWT **without verifying anything but its shape**.

    NOT VERIFIED: the signature, issuer, audience, times, tenant and ticket are not checked, so
    nothing returned here may be trusted or used as a credential. Meant for inspection and
    debugging only (the CLI's ``inspect``). Applies the same size and format checks as
    :meth:`TokenValidator.validate` and raises ``TokenValidationError`` (``size``/``format``).
    """
    parts = _split(token)
    return parts.header, _payload_object(parts.payload)


# --------------------------------------------------------------------------------------------
# Validation


def _numeric_date(value: object, *, allow_digit_string: bool) -> float | None:
    """A finite NumericDate as float, or ``None`` when the value is not acceptable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not allow_digit_string or not _DIGITS.fullmatch(value):
            return None
        value = int(value)
    if not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def _time_error(message: str, check: str) -> TokenValidationError:
    return TokenValidationError(message, check=check, hint=_HINT_CLOCK)


class TokenValidator:
    """Validates the JWT from PartnerSystemUserService; see the module docstring for the checks.

    ``leeway`` is the clock skew allowed on each time bound (seconds, default 300);
    ``expected_serial`` pins the tenant database serial when known; ``max_lifetime`` bounds how
    far ahead ``exp`` may lie; ``clock`` is a :class:`~sut_soap.Clock` or a callable returning
    the current Unix time (inject it in tests).
    """

    def __init__(
        self,
        key_source: KeySource,
        *,
        leeway: float = DEFAULT_LEEWAY,
        expected_serial: str | None = None,
        max_lifetime: float = 86400.0,
        clock: Clock | Callable[[], float] | None = None,
    ) -> None:
        if not callable(getattr(key_source, "get_key", None)):
            raise ConfigurationError("key_source must have a get_key(kid) method (a KeySource)")
        if not _is_positive_number(leeway, allow_zero=True) or leeway > MAX_LEEWAY:
            raise ConfigurationError(
                f"leeway must be a number of seconds from 0 to {MAX_LEEWAY:g}",
                hint="a JWT lives minutes; more skew than SuperOffice's own 5 minutes means the clock needs fixing",
            )
        if not _is_positive_number(max_lifetime, allow_zero=False):
            raise ConfigurationError("max_lifetime must be a finite number of seconds > 0")
        if expected_serial is not None and (not isinstance(expected_serial, str) or not expected_serial):
            raise ConfigurationError("expected_serial must be a non-empty string or None")
        if clock is not None and not callable(clock) and not isinstance(clock, Clock):
            raise ConfigurationError("clock must be callable")
        self._key_source = key_source
        self._leeway = float(leeway)
        self._expected_serial = expected_serial
        self._max_lifetime = float(max_lifetime)
        self._clock: Callable[[], float] = (
            SYSTEM_CLOCK.wall if clock is None else clock.wall if isinstance(clock, Clock) else clock
        )

    def __repr__(self) -> str:
        return (
            f"TokenValidator(key_source={self._key_source!r}, leeway={self._leeway}, "
            f"expected_serial={self._expected_serial!r}, max_lifetime={self._max_lifetime})"
        )

    def validate(self, token: str, *, context_identifier: str) -> dict[str, Any]:
        """Return the JWT's claims after every check passed; raise ``TokenValidationError`` otherwise.

        ``context_identifier`` is the tenant (e.g. ``Cust12345``) that was sent to the service.
        Key fetch failures of a :class:`JwksKeySource` surface as ``TransportError``.
        """
        if not isinstance(context_identifier, str) or not context_identifier:
            raise ConfigurationError("context_identifier must be a non-empty string (e.g. Cust12345)")
        parts = _split(token)
        kid = self._check_header(parts.header)
        key = self._key_source.get_key(kid)
        if not isinstance(key, RSAPublicKey):
            raise ConfigurationError("the key source returned something that is not an RSA public key")
        self._check_signature(token, key)
        claims = _payload_object(parts.payload)
        self._check_issuer(claims)
        self._check_audience(claims)
        self._check_times(claims, float(self._clock()))
        self._check_context(claims, context_identifier)
        _check_ticket(claims)
        return claims

    @staticmethod
    def _check_header(header: dict[str, Any]) -> str | None:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg != _ALGORITHM:
            raise TokenValidationError(
                "the JWT header's alg is not RS256, the only algorithm accepted",
                check="algorithm",
                hint="that the token comes from SuperOffice; the algorithm is pinned, not read from it",
            )
        if "crit" in header:
            raise TokenValidationError(
                "the JWT header carries crit; no critical extension is supported",
                check="critical",
                hint=_HINT_FORMAT,
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _format_error("the JWT header's kid is not a string")
        return kid

    @staticmethod
    def _check_signature(token: str, key: RSAPublicKey) -> None:
        try:
            _JWS.decode_complete(token, key=key, algorithms=[_ALGORITHM])
        except jwt.InvalidSignatureError as error:
            raise TokenValidationError(
                "the JWT signature does not verify with the environment's key",
                check="signature",
                hint=_HINT_KEY,
            ) from error
        except jwt.InvalidAlgorithmError as error:
            raise TokenValidationError("the JWT algorithm was refused by the verifier", check="algorithm") from error
        except jwt.InvalidKeyError as error:
            raise TokenValidationError(
                "the signing key is unusable for RS256 (RSA, 2048+ bits)", check="key", hint=_HINT_KEY
            ) from error
        except jwt.PyJWTError as error:
            raise _format_error(f"the JWT was refused by the verifier ({type(error).__name__})") from error
        except (TypeError, ValueError):
            failed = True
        else:
            failed = False
        if failed:
            raise TokenValidationError(
                "the JWT signature could not be checked with the environment's key",
                check="signature",
                hint=_HINT_KEY,
            )

    @staticmethod
    def _check_issuer(claims: dict[str, Any]) -> None:
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss != ISSUER:
            raise TokenValidationError(
                f"the JWT's iss claim is missing or not exactly {ISSUER!r}",
                check="issuer",
                hint="that the endpoint is SuperOffice's PartnerSystemUserService",
            )

    def _check_audience(self, claims: dict[str, Any]) -> None:
        raw = claims.get(CLAIM_SERIAL)
        if isinstance(raw, int) and not isinstance(raw, bool):
            serial = str(raw)
        elif isinstance(raw, str) and raw:
            serial = raw
        else:
            raise TokenValidationError(
                "the JWT has no usable serial claim (a non-empty string or an integer)",
                check="serial",
                hint="that the token comes from SuperOffice's PartnerSystemUserService",
            )
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud != "spn:" + serial:
            raise TokenValidationError(
                "the JWT's aud claim is not a single string equal to spn:<serial claim>",
                check="audience",
                hint="that the token was issued for this tenant's database (lists are refused)",
            )
        if self._expected_serial is not None and serial != self._expected_serial:
            raise TokenValidationError(
                "the JWT's serial claim is not the expected tenant database serial",
                check="serial",
                hint="the expected_serial setting and the tenant (ContextIdentifier)",
            )

    def _check_times(self, claims: dict[str, Any], now: float) -> None:
        leeway = self._leeway
        if "exp" not in claims:
            raise _time_error("the JWT has no exp claim", "expiry")
        exp = _numeric_date(claims["exp"], allow_digit_string=False)
        if exp is None:
            raise _time_error(
                "the JWT's exp claim is not a finite JSON number (numeric strings are refused: "
                "RFC 7519 NumericDate is a number)",
                "expiry",
            )
        if exp <= now - leeway:
            raise _time_error(f"the JWT expired {now - exp:.0f} s ago, beyond the leeway of {leeway:g} s", "expiry")
        iat: float | None = None
        if "nbf" in claims:
            nbf = _numeric_date(claims["nbf"], allow_digit_string=True)
            if nbf is None:
                raise _time_error("the JWT's nbf claim is not a NumericDate", "not_before")
            if nbf > now + leeway:
                raise _time_error(
                    f"the JWT is not valid until {nbf - now:.0f} s from now, beyond the leeway of {leeway:g} s",
                    "not_before",
                )
        if "iat" in claims:
            iat = _numeric_date(claims["iat"], allow_digit_string=True)
            if iat is None:
                raise _time_error("the JWT's iat claim is not a NumericDate", "issued_at")
            if iat > now + leeway:
                raise _time_error(
                    f"the JWT claims to be issued {iat - now:.0f} s in the future, beyond the leeway of {leeway:g} s",
                    "issued_at",
                )
        if exp - now > self._max_lifetime + leeway or (iat is not None and exp - iat > self._max_lifetime):
            raise TokenValidationError(
                f"the JWT's exp lies further ahead than the maximum lifetime of {self._max_lifetime:g} s",
                check="lifetime",
                hint="that the token comes from SuperOffice (its JWTs are short-lived), or max_lifetime",
            )

    @staticmethod
    def _check_context(claims: dict[str, Any], context_identifier: str) -> None:
        ctx = claims.get(CLAIM_CTX)
        if not isinstance(ctx, str) or ctx != context_identifier:
            raise TokenValidationError(
                "the JWT's ctx claim is missing or names another tenant than the one asked for",
                check="context",
                hint="the ContextIdentifier sent and the tenant the system user token belongs to",
            )


def _check_ticket(claims: dict[str, Any]) -> None:
    ticket = claims.get(CLAIM_TICKET)
    if not isinstance(ticket, str) or not ticket:
        problem = "missing, empty or not a string"
    elif len(ticket) > MAX_TICKET_CHARS:
        problem = f"longer than {MAX_TICKET_CHARS} characters"
    elif not _TICKET.fullmatch(ticket):
        problem = "not made of visible ASCII characters (it has whitespace, control or non-ASCII ones)"
    else:
        return
    raise TokenValidationError(
        f"the JWT's ticket claim is {problem}",
        check="ticket",
        hint="that the endpoint is SuperOffice's PartnerSystemUserService",
    )
