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
    ``alg`` is exactly ``RS256``. The verifier is PyJWT's RS256 algorithm, taken once from a
    ``PyJWS(algorithms=["RS256"])``; it is never derived from the token (no ``none``, no HS256
    keyed with the public key). A ``crit`` header is refused: no extension is understood (so is
    ``b64: false``, which RFC 7797 only allows with ``crit``).
``key``, ``signature``
    The key comes from a :class:`KeySource`, chosen by ``kid`` only. Header parameters that
    name keys (``jwk``, ``jku``, ``x5u``, ``x5c``, ``x5t``) are ignored: trusting them would let
    the token pick the key that verifies it. PyJWT prepares each key and checks its length
    (2048 bits at least) once per key object; the validator remembers the last few, so a token
    costs one base64url and JSON decode per segment (here, never in PyJWT) and one RSA verify.
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

Keys come from a :class:`~sut_soap.keysources.KeySource`: :class:`JwksKeySource` fetches the
environment's JWKS lazily and caches it; :func:`key_source_from_public_key` pins a key,
certificate (``SuperOfficeFederatedLogin.crt``), JWK or JWKS file and never fetches. They live
in :mod:`sut_soap.keysources` and are importable from here as well.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ._clock import SYSTEM_CLOCK, Clock
from .contract import (
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
from .errors import ConfigurationError, TokenValidationError
from .keysources import (
    _HINT_KEY,
    JwksKeySource,
    KeySource,
    StaticKeySource,
    _b64url_decode,
    _is_positive_number,
    key_source_from_public_key,
)

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

#: Seconds of clock skew allowed on each time claim unless ``leeway=`` says otherwise.
DEFAULT_LEEWAY = 300.0
#: The largest ``leeway=`` accepted: SuperOffice's own .NET sample allows 5 minutes.
MAX_LEEWAY = 300.0
#: Longest JWT accepted, in characters, checked before anything is decoded.
MAX_TOKEN_BYTES = 16 * 1024
#: Longest ticket claim accepted, in characters (it travels in an HTTP header).
MAX_TICKET_CHARS = 4096

_ALGORITHM = ALGORITHM

_DIGITS = re.compile(r"[0-9]{1,15}")
_TICKET = re.compile(r"[\x21-\x7e]+")

_HINT_FORMAT = "that the endpoint is SuperOffice's and the request asked for ReturnTokenType=Jwt"
_HINT_CLOCK = "the local clock (UTC, NTP) and the leeway"

# PyJWT's RS256 algorithm, taken once from a PyJWS that allows nothing else: the validator does
# its own strict parsing (PyJWT's would decode every segment a second time, testing base64url
# one character at a time) and then asks PyJWT for the signature check alone, through the
# algorithm's own interface: prepare_key and check_key_length once per key, verify per token.
_RS256 = jwt.PyJWS(algorithms=[_ALGORITHM]).get_algorithm_by_name(_ALGORITHM)
# Keys prepared by one validator that it remembers (by identity): a JWKS holds a few.
_PREPARED_KEYS = 8


# --------------------------------------------------------------------------------------------
# Token parsing


class _Parts(NamedTuple):
    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


# Built once: json.loads with options would build a decoder per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def _json_object(data: bytes) -> dict[str, Any] | None:
    """Strict UTF-8 JSON object, or ``None`` (invalid UTF-8 or JSON, duplicates, NaN, not an object)."""
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _format_error(message: str) -> TokenValidationError:
    return TokenValidationError(message, check="format", hint=_HINT_FORMAT)


def _split(token: object) -> _Parts:
    """Size and format checks; the parsed header, the payload bytes and what the signature covers.

    Each segment is decoded here and only here: the signature check gets the bytes, and the
    payload is parsed once, after the signature verified.
    """
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
    signing_input = token[: len(segments[0]) + 1 + len(segments[1])].encode("ascii")
    return _Parts(header, decoded[1], signing_input, decoded[2])


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
    :meth:`TokenValidator.validate`.

    Returns:
        ``(header, claims)``, both decoded JSON objects.

    Raises:
        TokenValidationError: ``check="size"`` or ``check="format"``: not a ``str``, too long,
            not three canonical base64url segments, or a header or payload that is not a
            strict UTF-8 JSON object.
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

    One validator serves every tenant and thread: the tenant arrives with each
    :meth:`validate` call. ``SystemUserClient`` builds one from its ``jwks_url=``/``public_key=``,
    ``leeway=``, ``expected_serial=`` and ``clock=``; build your own to check a JWT yourself::

        validator = TokenValidator(key_source_from_public_key("SuperOfficeFederatedLogin.crt"))
        claims = validator.validate(jwt_text, context_identifier="Cust12345")

    Args:
        key_source: a :class:`~sut_soap.keysources.KeySource` (an object with
            ``get_key(kid)``), such as :class:`JwksKeySource` or :class:`StaticKeySource`.
        leeway: seconds of clock skew allowed on each time bound, 0 to :data:`MAX_LEEWAY`;
            default :data:`DEFAULT_LEEWAY` (300).
        expected_serial: also require this tenant database serial (the serial claim, and so
            ``aud == "spn:<serial>"``). Default None: any serial that matches ``aud``.
        max_lifetime: seconds ``exp`` may lie ahead of now (plus leeway), and the most
            ``exp - iat`` may be; default 86400.
        clock: a :class:`~sut_soap.Clock` (its wall time is read) or a callable returning the
            current Unix time; inject it in tests. Default: the system clock.

    Raises:
        ConfigurationError: a ``key_source`` without ``get_key``, a leeway outside 0 to 300, a
            ``max_lifetime`` that is not a positive finite number, an empty or non-string
            ``expected_serial``, or a ``clock`` that is not callable.
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
        # (key as the source returned it, as PyJWT prepared it), most recent first; replaced
        # whole, never mutated, so threads can read it without a lock.
        self._prepared: tuple[tuple[RSAPublicKey, RSAPublicKey], ...] = ()

    def __repr__(self) -> str:
        return (
            f"TokenValidator(key_source={self._key_source!r}, leeway={self._leeway}, "
            f"expected_serial={self._expected_serial!r}, max_lifetime={self._max_lifetime})"
        )

    def validate(self, token: str, *, context_identifier: str) -> dict[str, Any]:
        """Return the JWT's claims after every check passed; raise ``TokenValidationError`` otherwise.

        Args:
            token: the JWT as the answer carried it (``header.payload.signature``).
            context_identifier: the tenant (e.g. ``Cust12345``) that was sent to the service;
                the ``ctx`` claim must equal it.

        Returns:
            The claims, a new ``dict`` decoded from the payload (the ticket claim among them:
            a credential, so never log it).

        Raises:
            TokenValidationError: the first check that failed, named by ``.check`` (``size``,
                ``format``, ``algorithm``, ``critical``, ``key``, ``signature``, ``issuer``,
                ``serial``, ``audience``, ``expiry``, ``not_before``, ``issued_at``, ``lifetime``,
                ``context``, ``ticket``); never retryable.
            TransportError: the key source could not fetch the keys (a :class:`JwksKeySource`),
                including for a ``kid`` its cached set lacks while the JWKS cannot be fetched
                (a key rotation during an outage): ``retryable`` then, unlike ``check="key"``.
            ConfigurationError: an empty ``context_identifier``, or a key source that returned
                something other than an RSA public key.
        """
        if not isinstance(context_identifier, str) or not context_identifier:
            raise ConfigurationError("context_identifier must be a non-empty string (e.g. Cust12345)")
        parts = _split(token)
        kid = self._check_header(parts.header)
        key = self._key_source.get_key(kid)
        if not isinstance(key, RSAPublicKey):
            raise ConfigurationError("the key source returned something that is not an RSA public key")
        self._check_signature(parts, self._prepare(key))
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
        if header.get("b64", True) is False:
            # RFC 7797 requires b64 to be listed in crit, which is refused above.
            raise _format_error("the JWT header sets b64=false without crit (RFC 7797)")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _format_error("the JWT header's kid is not a string")
        return kid

    def _prepare(self, key: RSAPublicKey) -> RSAPublicKey:
        """PyJWT's prepared form of ``key``, checked for RS256 once per key object, then remembered."""
        prepared = self._prepared
        for known, ready in prepared:
            if known is key:
                return ready
        fresh: RSAPublicKey = _RS256.prepare_key(key)
        if _RS256.check_key_length(fresh) is not None:
            raise TokenValidationError(
                "the signing key is unusable for RS256 (RSA, 2048+ bits)", check="key", hint=_HINT_KEY
            )
        self._prepared = ((key, fresh), *prepared[: _PREPARED_KEYS - 1])
        return fresh

    @staticmethod
    def _check_signature(parts: _Parts, key: RSAPublicKey) -> None:
        try:
            valid: bool | None = _RS256.verify(parts.signing_input, key, parts.signature)
        except (TypeError, ValueError):
            valid = None  # raised below, outside the handler: no third-party exception attached
        if valid is None:
            raise TokenValidationError(
                "the JWT signature could not be checked with the environment's key",
                check="signature",
                hint=_HINT_KEY,
            )
        if not valid:
            raise TokenValidationError(
                "the JWT signature does not verify with the environment's key",
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
