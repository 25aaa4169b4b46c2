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
     +-- TenantNotRunningError        the tenant's state API says it is not running (maintenance, ...)

No message ever carries a secret (client secret, private key, system user token, signed
token, JWT or ticket). Each error says what to check next (``hint``) and whether trying the
same call again later may help (``retryable``). ``str(error)`` is the message followed by
``(check: <hint>)``; ``repr`` shows the class and the message only.

Catch by what you would do differently::

    try:
        ticket = client.get_ticket(context_identifier=tenant, system_user_token=token)
    except AuthenticationRejectedError as error:   # the tenant must act: do not retry
        disable_tenant(tenant, reason=error.error_message)
    except SutSoapError as error:
        if not error.retryable:
            raise
        schedule_retry(tenant)                       # transient: the same call may pass later
"""

from __future__ import annotations

import re

__all__ = [
    "AuthenticationRejectedError",
    "ConfigurationError",
    "ProtocolError",
    "SoapFaultError",
    "SutSoapError",
    "TenantNotRunningError",
    "TokenValidationError",
    "TransportError",
]

_MAX_MESSAGE = 1024


class SutSoapError(Exception):
    """Base class of every error sut-soap raises.

    Args:
        message: what went wrong, without any secret; cut to 1024 characters.
        hint: what to check next; default: the class's :attr:`default_hint`.
        retryable: override the class's :attr:`retryable` for this instance.

    Attributes:
        message: the message as given (bounded), without the hint.
        hint: what to check next (the environment, the clock, a key file, ...); may be empty.
        retryable: True when the same call may succeed later without any change on your side
            (a timeout, HTTP 503, a SOAP ``s:Server`` fault); False when something must change
            first. ``get_ticket`` retries only retryable transport errors and server faults.
        default_hint: the class-wide hint used when none is given.
    """

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
    """The client was given something unusable: a key, an endpoint, a missing value.

    Raised when the client (or a helper such as ``load_private_key``) is built or called with a
    value it cannot use: a key file that is missing, encrypted without a password, not RSA or
    under 2048 bits; an endpoint that is not https; an empty secret or tenant; conflicting
    options. The message names the option or file, never the secret. Never retryable: the
    same value fails the same way.
    """

    default_hint = "the value passed to sut-soap"


class _HttpAnswerError(SutSoapError):
    """Shared shape of errors about an HTTP answer: its status and a short, scrubbed excerpt.

    Attributes:
        status: the HTTP status code when an answer arrived, else None.
        excerpt: at most 200 characters of the answer's text, markup removed and secrets
            replaced by ``***``, else None.
        retry_after: seconds the server asked to wait (``Retry-After``), else None.
    """

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

    No connection, a timeout, a TLS failure, the total deadline, a connection broken
    mid-answer, or an HTTP status without a SOAP answer (404, 503, a redirect, which is never
    followed so the client secret is not re-sent). Also a JWKS that could not be fetched.

    Attributes:
        status: the HTTP status when there was one, else None.
        excerpt: a short, scrubbed excerpt of the answer's text, else None.
        retry_after: the seconds the server asked to wait (its ``Retry-After`` header, seconds
            or HTTP-date), else None.
        retryable: True for connection failures, timeouts, the deadline, a connection broken
            mid-answer and HTTP 429, 502, 503 and 504 (any 5xx of a JWKS fetch); False for
            TLS failures, redirects, other statuses and a failure of your own transport.
        host: the host the failed request went to, when the failure was the network's
            (also named in the message); None for an HTTP status.
        phase: where the request was when it failed: ``"connect"``, ``"TLS"``, ``"send"``,
            ``"wait for headers"`` or ``"body"``; None for an HTTP status. From ``"send"`` on,
            the request may have reached the server (the message says so).
    """

    default_hint = "network reachability, the endpoint URL and the service status"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        excerpt: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        host: str | None = None,
        phase: str | None = None,
    ) -> None:
        self.host = host
        self.phase = phase
        super().__init__(
            message, status=status, excerpt=excerpt, hint=hint, retryable=retryable, retry_after=retry_after
        )


class ProtocolError(_HttpAnswerError):
    """The answer was not an acceptable SOAP 1.1 AuthenticationResponse.

    HTML or JSON where SOAP was expected, an empty or truncated body, SOAP 1.2, a DTD or entity
    declaration (refused, never expanded), an answer over 1 MiB or one whose
    ``Content-Encoding`` does not decode, or an AuthenticationResponse with missing or
    duplicate fields. Not retryable: the same endpoint answers the same way.

    Attributes:
        status: the HTTP status of the answer, when known.
        excerpt: a short, scrubbed excerpt of the answer's text, when it helps.
    """

    default_hint = "that the endpoint is SuperOffice's PartnerSystemUserService and no proxy rewrote the answer"


class SoapFaultError(SutSoapError):
    """The service answered with a SOAP Fault.

    Attributes:
        fault_code: the ``faultcode`` as sent, such as ``s:Client`` or ``s:Server``
            (sanitised; empty when missing).
        fault_string: the ``faultstring``, sanitised and without secrets (empty when missing).
        status: the HTTP status of the answer (usually 500).
        retryable: True for ``Server`` faults, which may pass by themselves; False otherwise.
    """

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


_REASON_CODE = re.compile(r"[A-Za-z]+")


def _reason_code(error_message: str) -> str:
    """The word that starts a rejection's ErrorMessage (its reason code), or ``""``."""
    match = _REASON_CODE.match(error_message.strip())
    return match.group(0) if match else ""


class AuthenticationRejectedError(SutSoapError):
    """The service said IsSuccessful=false; ``error_message`` is its (sanitised) reason.

    The tenant, the application or the signature was refused. The hint follows the codes
    SuperOffice documents: ``InvalidTimestamp`` points at the clock, ``InvalidSignature`` at
    the partner key, ``Revoked``/``Denied``/``NeedsReapproval``/``Expired`` at the tenant's
    approval. Never retryable: ``get_ticket`` answers the same tenant and token with the same
    error for ``rejection_cooldown`` seconds without a new exchange.

    Attributes:
        error_message: SuperOffice's ``ErrorMessage``, one line, control characters and
            secrets removed; empty when the answer had none.
        reason: the word that starts ``error_message`` (its reason code, such as
            ``InvalidSystemToken``), or ``""`` when it starts with none.
    """

    default_hint = (
        "the client secret, the tenant (ContextIdentifier), the system user token, "
        "the partner key registered for the application and the clock (UTC)"
    )

    def __init__(self, message: str, *, error_message: str, hint: str | None = None) -> None:
        self.error_message = error_message
        super().__init__(message, hint=hint, retryable=False)

    @property
    def reason(self) -> str:
        """The reason code that starts ``error_message`` (letters only), or ``""``."""
        return _reason_code(self.error_message)


class TokenValidationError(SutSoapError):
    """The JWT in the answer failed validation; ``check`` names the failed check.

    No ticket is handed out from a JWT that fails any check. Never retryable: exchanging again
    returns a JWT from the same issuer, checked against the same keys and clock.

    Attributes:
        check: the first check that failed: ``size``, ``format``, ``algorithm``, ``critical``,
            ``key``, ``signature``, ``issuer``, ``serial``, ``audience``, ``expiry``,
            ``not_before``, ``issued_at``, ``lifetime``, ``context`` or ``ticket`` (see
            :mod:`sut_soap.tokens`).
    """

    default_hint = "the environment's signing key (JWKS or certificate), the tenant and the clock"

    def __init__(self, message: str, *, check: str, hint: str | None = None) -> None:
        self.check = check
        super().__init__(message, hint=hint, retryable=False)


class TenantNotRunningError(SutSoapError):
    """SuperOffice's tenant state API says the tenant is not running: its API cannot be called now.

    Raised by :meth:`~sut_soap.SystemUserClient.tenant_state` (and by the auth object of
    :meth:`~sut_soap.SystemUserClient.auth` before it sends anything) when the state's
    ``IsRunning`` is false: ``OfflineMaintenance`` (an upgrade, minutes), ``Provisioning``,
    ``MigrationPending``, ``Suspended``, ``Deleted``, ``Deleting``, ``DeleteFailed``,
    ``ProvisioningFailed`` or ``Unknown``. Not a rejected exchange
    (:class:`AuthenticationRejectedError`): the tenant's approval is fine, its installation is
    not available. The state is remembered until its ``ValidUntil``, so asking again before then
    raises the same error without a request.

    Attributes:
        context_identifier: the tenant.
        state: the state's name as SuperOffice sent it (sanitised), such as ``OfflineMaintenance``.
        tenant_state: the whole :class:`~sut_soap.tenantstate.TenantState`.
        retry_after: seconds until the state's ``ValidUntil``, when SuperOffice says to look
            again (0 when it has passed).
        retryable: True for the states that end by themselves (``OfflineMaintenance``,
            ``Provisioning``, ``MigrationPending``); False for the others, which need the
            customer or SuperOffice to act.
    """

    default_hint = "the tenant's status (SuperOffice's tenant state API) before calling its API again"

    def __init__(
        self,
        message: str,
        *,
        context_identifier: str,
        state: str,
        tenant_state: object,
        retry_after: float | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.context_identifier = context_identifier
        self.state = state
        self.tenant_state = tenant_state
        self.retry_after = retry_after
        super().__init__(message, hint=hint, retryable=retryable)
