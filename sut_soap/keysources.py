"""Where the keys that verify SuperOffice's JWTs come from: a JWKS over the network, or pinned.

:class:`~sut_soap.tokens.TokenValidator` asks a :class:`KeySource` for the RSA public key of a
JWT's ``kid`` and nothing else: this module fetches, parses and holds those keys, and never
looks at a token. Two sources cover what partners use:

:class:`JwksKeySource`
    The environment's JSON Web Key Set (RFC 7517), ``https://{env}.superoffice.com/login/
    .well-known/jwks``, fetched through the client's :class:`~sut_soap.Transport` on first
    use, cached, and fetched again when a token names a ``kid`` the cached set does not hold:
    that is how a key rotation reaches a running process. Such refetches wait 1 s after the
    last fetch, doubling per refetch that did not find the kid, up to the refetch cooldown.
:class:`StaticKeySource`
    A fixed set of keys that never fetches, usually built by :func:`key_source_from_public_key`
    from a PEM public key, SuperOffice's ``SuperOfficeFederatedLogin.crt`` (PEM or DER), a JWK
    or a JWKS file. For offline validation, and for networks that cannot reach the JWKS.

Only RSA keys of 2048 to 16384 bits count, because RS256 is the only algorithm accepted. In a
JWKS, keys of another type, use (``use`` other than ``sig``) or algorithm are skipped, as RFC
7517 asks; a pinned file that holds anything else is a
:class:`~sut_soap.errors.ConfigurationError`. A failed JWKS fetch is a
:class:`~sut_soap.errors.TransportError` and never replaces a set already cached.
"""

from __future__ import annotations

import binascii
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from . import _deadline, _fork
from ._clock import SYSTEM_CLOCK, Clock
from .contract import ALGORITHM
from .environments import validate_endpoint
from .errors import ConfigurationError, SutSoapError, TokenValidationError, TransportError
from .transport import DEFAULT_TIMEOUT, HttpTransport, Transport, call_transport

__all__ = ["JwksKeySource", "KeySource", "StaticKeySource", "key_source_from_public_key"]

_ALGORITHM = ALGORITHM
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 16384
_MAX_JWKS_BYTES = 1024 * 1024
_MAX_KEY_FILE_BYTES = 1024 * 1024
# The wait before the first refetch for an unknown kid; it doubles per refetch that misses.
_FIRST_REFETCH_WAIT = 1.0

_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# The last character of a canonical segment whose length is 2 or 3 (mod 4): it carries 4 or 2
# unused bits, which must be zero.
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}

_HINT_KEY = (
    "that the JWKS URL or public key/certificate belongs to the same environment "
    "(sod, qaonline, online) as the endpoint"
)


@runtime_checkable
class KeySource(Protocol):
    """Where the validator gets the RSA public key for a JWT's ``kid`` (``None`` when absent).

    Implement it to take keys from somewhere else (a secrets store, a key pinned per tenant);
    :class:`JwksKeySource` and :class:`StaticKeySource` are the two sut-soap brings. The
    validator calls :meth:`get_key` once per token, from any thread.
    """

    def get_key(self, kid: str | None) -> RSAPublicKey:
        """Return the RSA public key that should verify a JWT whose header names ``kid``.

        Args:
            kid: the JWT header's ``kid``, or None when the header has none.

        Returns:
            The RSA public key; the validator refuses anything else with a ``ConfigurationError``.

        Raises:
            TokenValidationError: ``check="key"`` when no key fits ``kid``.
            TransportError: the keys could not be fetched (network sources).
        """
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
    A token without ``kid`` is accepted only when the set holds exactly one key; a key without
    ``kid`` that is alone in the set (a pinned certificate) matches any ``kid``. The repr shows
    the number of keys only.

    Args:
        keys: ``(kid, key)`` pairs: ``kid`` a string or None, ``key`` a cryptography
            ``RSAPublicKey``.

    Raises:
        ConfigurationError: no pair at all, a key that is not an ``RSAPublicKey``, or a
            ``kid`` that is neither a string nor None.
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
        """Return the pinned key for ``kid`` (the no-kid rules are in the class docstring).

        Raises:
            TokenValidationError: ``check="key"``: no key has ``kid``, several do, or the token
                has no ``kid`` and the set holds more than one key.
        """
        key = _select_key(self._entries, kid)
        if key is None:
            raise _unknown_kid()
        return key

    def __repr__(self) -> str:
        return f"StaticKeySource(keys={len(self._entries)})"


class JwksKeySource:
    """The environment's JWKS (``https://{env}.superoffice.com/login/.well-known/jwks``), cached.

    - The set is fetched on first use, not at construction, and cached for the object's life.
    - A ``kid`` the cached set does not know triggers a refetch (key rotation) once a wait since
      the last fetch is over, measured on ``clock`` (monotonic): 1 s, doubling with each
      refetch that did not find the kid it was made for (fetch failures included), at most
      ``refetch_cooldown`` seconds; a refetch that finds its kid starts the waits over. So a
      rotation is picked up within a second, a stream of random kids costs a handful of
      fetches and then one per ``refetch_cooldown``, and after a JWKS outage the rotated key
      is found at the next refetch, within one wait. Within the wait, an unknown kid raises
      ``TokenValidationError(check="key")`` if the last fetch succeeded, and a
      :class:`~sut_soap.errors.TransportError` (``retryable`` as that fetch's failure was:
      network errors, 429, 5xx) if it failed: the JWKS may hold the key once it is back.
    - A failed fetch (network, timeout, HTTP status other than 200, redirect, body over 1 MiB,
      not JSON, no usable RSA key) raises :class:`~sut_soap.errors.TransportError` and never
      replaces a cached set. ``retryable`` is true for network errors, 429 and 5xx.
    - While nothing is cached each call may try again, one at a time; callers that waited on
      the lock during a failed fetch share its failure instead of fetching again.
    - Only ``kty: RSA`` keys with ``use`` absent or ``sig`` (and ``alg`` absent or RS256) count.
      A token without ``kid`` is accepted when the set holds exactly one such key.
    - Safe to share between threads: one lock guards fetching and the cache.

    Args:
        url: the JWKS URL: https, or http on loopback only (the emulator).
        transport: the :class:`~sut_soap.Transport` the GET goes through, such as the
            client's own. Default: an :class:`~sut_soap.HttpTransport` of its own, which
            :meth:`close` closes.
        timeout: ``(connect, read)`` seconds for the transport it creates; default ``(5, 10)``.
            Checked, but not used, when ``transport`` is given.
        refetch_cooldown: the longest wait between two refetches caused by unknown kids, in
            seconds, >= 0; default 30. The waits start at 1 s (or this, if smaller).
        clock: a :class:`~sut_soap.Clock` (its monotonic time is read) or a callable returning
            monotonic seconds. Default: the system clock.

    Raises:
        ConfigurationError: a URL that is not https (outside loopback), carries credentials or
            a fragment, a negative or non-finite cooldown, a timeout that is not a pair of positive
            numbers, or a clock that is not callable.
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
        self._misses = 0  # refetches in a row that did not find the kid they were made for
        self._attempts = 0
        self._last_failure: TransportError | None = None
        _fork.register(self)

    @property
    def url(self) -> str:
        """The JWKS URL the keys are fetched from, as validated at construction."""
        return self._url

    def get_key(self, kid: str | None) -> RSAPublicKey:
        """Return the key for ``kid``, fetching or refetching the JWKS as the class docstring says.

        Returns:
            The RSA public key whose ``kid`` matches (or the set's only key, for a token without
            ``kid``).

        Raises:
            TransportError: the JWKS could not be fetched: no answer, an HTTP status other than
                200 (``.status``; ``retryable`` for 429 and 5xx), a redirect, a body that is not
                UTF-8 JSON or holds no usable RSA key. Callers that waited on a failed fetch
                get a copy of its error.
                Also for a ``kid`` the cached set lacks while the last fetch failed (``retryable``
                as that failure was).
            TokenValidationError: ``check="key"`` when no cached or refetched key fits ``kid``.
        """
        attempts_seen = self._attempts
        if not self._lock.acquire(timeout=_lock_wait()):
            host = urlsplit(self._url).hostname
            raise TransportError(
                f"another thread's fetch of the JWKS from {host} did not end within this call's deadline",
                hint="the JWKS endpoint's health; a larger deadline= if it is merely slow",
                retryable=True, host=host,
            )
        try:
            if self._entries is None:
                if self._attempts != attempts_seen and self._last_failure is not None:
                    raise _copy_transport_error(self._last_failure)
                self._refresh_locked()
            assert self._entries is not None
            key = _select_key(self._entries, kid)
            return self._refetch_for(kid) if key is None else key
        finally:
            self._lock.release()

    def cached_key(self, kid: str | None) -> RSAPublicKey | None:
        """The key for ``kid`` from the cached set, without fetching or waiting; None when a fetch may be needed.

        For a caller that must not block (the async client validates on the event loop with it,
        and calls :meth:`get_key` in a thread when it returns None). Reads the cached set without
        the lock: it is replaced whole, never changed.

        Raises:
            TokenValidationError: ``check="key"`` when the cached set cannot choose a key (see
                :meth:`get_key`).
        """
        entries = self._entries
        return None if entries is None else _select_key(entries, kid)

    def _reset_after_fork(self) -> None:
        """In a forked child: a new lock (a parent's thread may have held it mid-fetch); the keys stay cached."""
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the transport if this source created it (a transport passed in stays open)."""
        if self._owns_transport:
            self._transport.close()

    def __repr__(self) -> str:
        cached = "none" if self._entries is None else str(len(self._entries))
        return f"JwksKeySource(url={self._url!r}, cached_keys={cached})"

    def _refetch_for(self, kid: str | None) -> RSAPublicKey:
        """The key for an unknown ``kid`` from a refetch, if the wait is over; else the reason there is none."""
        if self._refetch_wait_over():
            try:
                entries = self._refresh_locked()
            except TransportError:
                self._misses += 1
                raise
            key = _select_key(entries, kid)
            if key is not None:
                self._misses = 0
                return key
            self._misses += 1
        failure = self._last_failure
        if failure is not None:
            raise TransportError(
                f"no cached key has the JWT's kid and the last JWKS fetch failed: {failure.message}",
                status=failure.status,
                hint=failure.hint,
                retryable=failure.retryable,
                host=failure.host,
                phase=failure.phase,
            )
        raise _unknown_kid()

    def _refetch_wait_over(self) -> bool:
        # 2**misses is capped so that years of random kids cannot overflow the float.
        wait = min(self._cooldown, _FIRST_REFETCH_WAIT * 2.0 ** min(self._misses, 32))
        return self._last_attempt is None or self._clock() - self._last_attempt >= wait

    def _refresh_locked(self) -> tuple[_Entry, ...]:
        self._attempts += 1
        self._last_attempt = self._clock()
        try:
            entries = self._fetch()
        except TransportError as error:
            self._last_failure = _copy_transport_error(error)
            raise
        self._entries = entries
        self._last_failure = None
        return entries

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
                host=getattr(error, "host", None),
                phase=getattr(error, "phase", None),
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


def _lock_wait() -> float:
    """Seconds to wait for the JWKS lock: what is left of the call's deadline, else for ever (-1)."""
    left = _deadline.remaining()
    return -1 if left is None else max(0.0, left)


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
    return TransportError(
        error.message, status=error.status, hint=error.hint, retryable=error.retryable,
        host=error.host, phase=error.phase,
    )


def _is_positive_number(value: object, *, allow_zero: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (value >= 0 if allow_zero else value > 0)


def key_source_from_public_key(value: RSAPublicKey | str | os.PathLike[str] | bytes) -> StaticKeySource:
    """Return a :class:`StaticKeySource` from a key object, a file path, or key file content.

    Accepted: an ``RSAPublicKey``; a PEM public key (``BEGIN PUBLIC KEY`` or ``BEGIN RSA
    PUBLIC KEY``); a PEM or DER X.509 certificate (SuperOffice's
    ``SuperOfficeFederatedLogin.crt``; its validity dates are not checked, the key is pinned);
    a JWKS (``{"keys": [...]}``) or a single JWK as JSON. A ``str`` that starts with
    ``-----BEGIN`` or ``{`` is content, any other ``str`` is a path. Anything else, a private
    key, a non-RSA or sub-2048-bit key raises :class:`~sut_soap.errors.ConfigurationError`.

    Example, validating offline with the certificate SuperOffice publishes::

        source = key_source_from_public_key("SuperOfficeFederatedLogin.crt")
        validator = TokenValidator(source)

    Raises:
        ConfigurationError: the file cannot be read or is larger than 1 MiB, or its content is
            none of the forms above, holds a private key, or a key that is not RSA of 2048 to
            16384 bits. The message names the file, never its bytes.
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
# Shared with the token parser


def _b64url_decode(segment: str, *, canonical: bool = True) -> bytes | None:
    """Unpadded base64url to bytes, or ``None``. Canonical: the unused low bits must be zero.

    Each step is one pass in C (and canonical form a look at the last character): a JWT
    payload is over a kilobyte, and a regex or a re-encoding would cost more than the decoding.
    """
    if not segment or not segment.isascii():
        return None
    data = segment.encode("ascii")
    rest = len(data) % 4
    if data.translate(None, _B64URL_ALPHABET) or rest == 1:
        return None  # characters outside the alphabet, or a length no padding completes
    if canonical and rest and data[-1] not in _CANONICAL_LAST[rest]:
        return None
    # Only alphabet characters, padded to a multiple of 4: decoding cannot fail.
    return binascii.a2b_base64(data.translate(_B64URL_TO_STANDARD) + b"=" * (-rest % 4))
