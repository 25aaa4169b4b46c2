"""The exception tree of sut-soap.

Every failure the library reports is a :class:`SutSoapError`; third-party exceptions
(requests, zeep, lxml, PyJWT, cryptography) are converted at one boundary with
``raise ... from`` so a caller only ever catches these::

    SutSoapError
     +-- ConfigurationError           bad key, bad endpoint, missing or malformed value
     +-- TransportError               network, timeout, TLS, HTTP status without a SOAP answer
     +-- ProtocolError                bytes that are not an acceptable SOAP answer (hostile XML too)
     +-- SoapFaultError               the service answered with a SOAP Fault
     +-- AuthenticationRejectedError  IsSuccessful=false, with SuperOffice's ErrorMessage
     +-- TokenValidationError         the returned JWT failed a named check

No message ever carries a secret (client secret, private key, system user token, signed
token, JWT or ticket). Each error says what to check next (``hint``) and whether trying the
same call again later may help (``retryable``).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationRejectedError",
    "ConfigurationError",
    "ProtocolError",
    "SoapFaultError",
    "SutSoapError",
    "TokenValidationError",
    "TransportError",
]

_MAX_MESSAGE = 1024


class SutSoapError(Exception):
    """Base class of every error sut-soap raises."""

    retryable: bool = False
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool | None = None) -> None:
        self.message = message[:_MAX_MESSAGE]
        self.hint = self.default_hint if hint is None else hint
        if retryable is not None:
            self.retryable = retryable
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (check: {self.hint})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigurationError(SutSoapError):
    """The client was given something unusable: a key, an endpoint, a missing value."""

    default_hint = "the value passed to sut-soap"


class _HttpAnswerError(SutSoapError):
    """Shared shape of errors about an HTTP answer: its status and a short, scrubbed excerpt."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        excerpt: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.excerpt = excerpt
        self.retry_after = retry_after
        super().__init__(message, hint=hint, retryable=retryable)


class TransportError(_HttpAnswerError):
    """The HTTP exchange failed before a SOAP answer arrived.

    ``status`` is the HTTP status when there was one; ``retry_after`` the seconds the server
    asked to wait (its ``Retry-After`` header, seconds or HTTP-date), else None.
    """

    default_hint = "network reachability, the endpoint URL and the service status"


class ProtocolError(_HttpAnswerError):
    """The answer was not an acceptable SOAP 1.1 AuthenticationResponse."""

    default_hint = "that the endpoint is SuperOffice's PartnerSystemUserService and no proxy rewrote the answer"


class SoapFaultError(SutSoapError):
    """The service answered with a SOAP Fault."""

    default_hint = "the SOAPAction, the endpoint and the service status"

    def __init__(
        self,
        message: str,
        *,
        fault_code: str,
        fault_string: str,
        status: int | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.fault_code = fault_code
        self.fault_string = fault_string
        self.status = status
        super().__init__(message, hint=hint, retryable=retryable)


class AuthenticationRejectedError(SutSoapError):
    """The service said IsSuccessful=false; ``error_message`` is its (sanitised) reason."""

    default_hint = (
        "the client secret, the tenant (ContextIdentifier), the system user token, "
        "the partner key registered for the application and the clock (UTC)"
    )

    def __init__(self, message: str, *, error_message: str, hint: str | None = None) -> None:
        self.error_message = error_message
        super().__init__(message, hint=hint, retryable=False)


class TokenValidationError(SutSoapError):
    """The JWT in the answer failed validation; ``check`` names the failed check."""

    default_hint = "the environment's signing key (JWKS or certificate), the tenant and the clock"

    def __init__(self, message: str, *, check: str, hint: str | None = None) -> None:
        self.check = check
        super().__init__(message, hint=hint, retryable=False)
