"""SystemUserClient: sign, exchange over SOAP, validate into a ticket.

One client serves many tenants. The client secret, partner key, endpoint, HTTP session,
parsed WSDL and JWKS cache belong to the client; the tenant (its ContextIdentifier and
system user token) arrives with each call. The client holds no per-call state, so one
instance can be shared between threads.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._soap import DEFAULT_TIMEOUT, HttpTransport, SoapService, parse_answer
from .environments import jwks_url_for, normalise_environment, resolve_endpoint, validate_endpoint
from .errors import AuthenticationRejectedError, ConfigurationError, ProtocolError
from .keys import PrivateKeyInput, load_private_key
from .signing import check_text_value, sign_system_user_token
from .ticket import SystemUserTicket
from .tokens import DEFAULT_LEEWAY, JwksKeySource, KeySource, TokenValidator, key_source_from_public_key

if TYPE_CHECKING:
    import requests
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = ["SystemUserClient"]

_log = logging.getLogger("sut_soap.client")

# Hints for the error codes SuperOffice documents; matched case-insensitively in ErrorMessage.
_REJECTION_HINTS: tuple[tuple[str, str], ...] = (
    ("timestamp", "the clock: the signed token carries UTC time and must be within minutes of the server's"),
    ("signature", "the private key: it must be the one registered for the application, "
                  "and the system user token must be signed exactly as received"),
    ("revoked", "the tenant's approval of the application: an administrator revoked it"),
    ("expired", "the tenant's approval of the application or its subscription"),
    ("denied", "the tenant's approval of the application"),
    ("reapproval", "the tenant's approval: an administrator must approve the application again"),
    ("application", "the client secret (ApplicationToken) of the application and the environment"),
    ("context", "the ContextIdentifier (tenant id, e.g. Cust12345) and the environment"),
    ("tenant", "the ContextIdentifier (tenant id, e.g. Cust12345) and the environment"),
    ("system", "the system user token: it is fixed per tenant and application"),
)


class _Secret:
    """A value that never shows itself in str or repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _jwks_url_of_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}/login/.well-known/jwks"


class SystemUserClient:
    """Exchange system user tokens for validated system user tickets.

    Give the environment (``"sod"``, ``"qaonline"``/``"stage"``, ``"online"``) or an explicit
    ``endpoint`` URL. JWTs are checked with ``public_key`` (PEM key, certificate or JWKS file)
    when given, else with the JWKS at ``jwks_url``, else with the environment's JWKS (or, for an
    explicit endpoint, ``/login/.well-known/jwks`` on the endpoint's host).
    """

    def __init__(
        self,
        *,
        client_secret: str,
        private_key: PrivateKeyInput,
        environment: str | None = None,
        endpoint: str | None = None,
        jwks_url: str | None = None,
        public_key: str | bytes | os.PathLike[str] | RSAPublicKey | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        transport: Any = None,
        wsdl: str | os.PathLike[str] | None = None,
        password: str | bytes | None = None,
        leeway: float = DEFAULT_LEEWAY,
        expected_serial: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._client_secret = _Secret(check_text_value(client_secret, "client secret"))
        self._private_key = load_private_key(private_key, password=password)
        self.environment = normalise_environment(environment) if environment is not None else None
        self.endpoint = resolve_endpoint(environment=self.environment, endpoint=endpoint)
        timeout = _check_timeout(timeout)
        self._clock = clock or _utc_now

        if transport is not None and session is not None:
            raise ConfigurationError("give either session= or transport=, not both")
        self._transport = transport if transport is not None else HttpTransport(session, timeout=timeout)

        key_source: KeySource
        if public_key is not None:
            if jwks_url is not None:
                raise ConfigurationError("give either public_key= or jwks_url=, not both")
            key_source = key_source_from_public_key(public_key)
            self.jwks_url: str | None = None
        else:
            if jwks_url is not None:
                self.jwks_url = validate_endpoint(jwks_url, what="jwks_url")
            elif self.environment is not None:
                self.jwks_url = jwks_url_for(self.environment)
            else:
                self.jwks_url = _jwks_url_of_endpoint(self.endpoint)
            key_source = JwksKeySource(
                self.jwks_url, session=getattr(self._transport, "session", None), timeout=timeout
            )
        self._key_source = key_source
        self._validator = TokenValidator(
            key_source,
            leeway=leeway,
            expected_serial=expected_serial,
            clock=lambda: self._clock().timestamp(),
        )
        self._soap = SoapService(
            endpoint=self.endpoint, transport=self._transport, wsdl=Path(wsdl) if wsdl is not None else None
        )

    def authenticate(self, *, context_identifier: str, system_user_token: str) -> SystemUserTicket:
        """Sign the tenant's system user token, exchange it and return the validated ticket.

        Every call is a fresh exchange at SuperOffice, which creates a credential record there:
        keep the ticket and reuse it for hours instead of calling this before every request.
        """
        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        secret = self._client_secret.reveal()
        now = self._clock()
        signed = sign_system_user_token(token, self._private_key, at=now)
        body, headers = self._soap.build(signed_token=signed, client_secret=secret, context_identifier=context)

        started = time.perf_counter()
        response = self._soap.send(body, headers)
        _log.debug(
            "exchange for %s: HTTP %s in %.1f ms",
            context, response.status_code, (time.perf_counter() - started) * 1000,
        )
        answer = parse_answer(response, secrets=(secret, signed, token))
        if not answer.is_successful:
            raise _rejection(context, answer.error_message)
        if answer.token is None:  # parse_answer guarantees a token on success
            raise ProtocolError("IsSuccessful is true but the answer carries no Token")
        claims = self._validator.validate(answer.token, context_identifier=context)
        ticket = SystemUserTicket.from_claims(answer.token, claims, obtained_at=now)
        _log.debug("ticket for %s valid; JWT expires %s", context, ticket.expires_at.isoformat())
        return ticket

    def build_envelope(self, *, context_identifier: str, signed_system_token: str) -> tuple[bytes, dict[str, str]]:
        """Return the exact request envelope and HTTP headers ``authenticate`` would send."""
        context = check_text_value(context_identifier, "context identifier")
        signed = check_text_value(signed_system_token, "signed system token")
        return self._soap.build(
            signed_token=signed, client_secret=self._client_secret.reveal(), context_identifier=context
        )

    def close(self) -> None:
        """Close the HTTP sessions the client created (a session passed in stays open)."""
        self._soap.close()
        close = getattr(self._key_source, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> SystemUserClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SystemUserClient(endpoint={self.endpoint!r}, jwks_url={self.jwks_url!r}, client_secret='***')"


def _check_timeout(timeout: object) -> tuple[float, float]:
    values = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if len(values) != 2 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 3600 for v in values
    ):
        raise ConfigurationError(
            "timeout must be a positive number of seconds or a (connect, read) pair; unbounded waits are refused"
        )
    return (float(values[0]), float(values[1]))


def _rejection(context: str, error_message: str | None) -> AuthenticationRejectedError:
    text = error_message or "(no ErrorMessage)"
    lowered = text.lower()
    hint = next((h for key, h in _REJECTION_HINTS if key in lowered), None)
    return AuthenticationRejectedError(
        f"SuperOffice rejected the exchange for tenant {context}: {text}",
        error_message=error_message or "",
        hint=hint,
    )
