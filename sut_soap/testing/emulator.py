"""A local emulator of SuperOffice's PartnerSystemUserService, for demos and tests.

:class:`Emulator` is a real HTTP server on loopback (stdlib ``http.server``, one thread per
connection, HTTP/1.1 keep-alive, a listen backlog of 1024 so that at least 512 clients may
connect at once without one being dropped) that answers the way the contract in CONTRACT.md
says the real WCF service does:

``POST /Login/Services/PartnerSystemUserService.svc`` (path case-insensitive, as IIS is)
    SOAP 1.1 only. ``Content-Type`` must be ``text/xml`` (a UTF-8 ``charset`` is allowed),
    otherwise HTTP 415. The request is parsed with a hardened lxml parser (no DTD, no entity
    expansion, no network); a DOCTYPE or entity is refused with HTTP 400 and never expanded,
    as is XML that is not a well-formed SOAP envelope. A SOAP 1.2 envelope gets an HTTP 500
    ``s:VersionMismatch`` fault. ``SOAPAction`` must be exactly
    ``http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate``,
    quoted (as SOAP 1.1 says) or unquoted (as SuperOffice's Node.js sample sends it; WCF takes
    both, removing one pair of surrounding quotes), otherwise HTTP 500 with WCF's
    ``a:ActionNotSupported`` fault. A header carrying
    ``mustUnderstand="1"`` other than the two below gets WCF's ``s:MustUnderstand`` fault; a
    body other than ``AuthenticationRequest`` (or a ``ReturnTokenType`` outside ``Jwt|Saml``)
    gets ``a:DeserializationFailed``.

    Then, in this order: the ``ApplicationToken`` header must equal the client secret, the
    ``ContextIdentifier`` header must name a registered tenant, the signed system token
    (``<system user token>.<yyyyMMddHHmm>.<base64 signature>``, split from the right) must have
    a 12-digit UTC timestamp within ``timestamp_tolerance`` seconds of the emulator's clock,
    its system user token must be the tenant's, and its RSASSA-PKCS1-v1_5 SHA-256 signature
    (standard Base64) must verify with the registered partner public key. ``ReturnTokenType``
    ``Saml`` is refused ("only Jwt is emulated"). A failure is answered like the real service,
    HTTP 200 with ``IsSuccessful=false`` and an ``ErrorMessage`` that starts with one of the
    :class:`Reason` codes (``InvalidApplicationToken``, ``UnknownTenant``,
    ``InvalidTimestamp``, ``InvalidSystemToken``, ``InvalidSignature``,
    ``UnsupportedTokenType``), followed by ``": "`` and an explanation.

    A success carries an RS256 JWT (header ``kid``; ``iss`` ``SuperOffice AS``; ``aud``
    ``spn:<serial>``; ``iat``/``nbf``/``exp`` with ``exp = now + token_lifetime``; and, under
    ``http://schemes.superoffice.net/identity/``: ``ctx``, ``serial``, ``ticket`` (a fresh
    ``7T:...`` per exchange), ``webapi_url``, ``netserver_url``, ``associateid``,
    ``is_administrator``, ``system_token``, ``email``, ``upn``; numbers as strings).

    Answers are WCF-shaped: ``s:`` envelope prefix, an ``ActivityId`` diagnostics header, the
    default namespace on ``AuthenticationResponse``, ``i:nil="true"`` for empty members,
    ``Content-Type: text/xml; charset=utf-8``. Members come in the order of the published
    WSDL's sequence (``IsSuccessful, Token, ErrorMessage``); ``member_order="alphabetical"``
    (``ErrorMessage, IsSuccessful, Token``, DataContract's default) lets a client prove that it
    tolerates both. zeep in strict mode rejects the alphabetical order, and in lax mode it
    silently drops ``IsSuccessful`` and ``Token``.

``POST /Login/api/PartnerSystemUser/Authenticate`` (path case-insensitive)
    The REST form of the same exchange, as an ASP.NET Core API answers it: ``Content-Type``
    must be JSON (``application/json``, ``text/json`` or ``+json``; UTF-8 if a charset is
    given), otherwise HTTP 415 with a ProblemDetails body. The body must be a JSON object whose
    ``SignedSystemToken``, ``ApplicationToken`` and ``ContextIdentifier`` are strings or null
    and whose ``ReturnTokenType`` is ``Jwt`` or ``Saml`` by name in any case (``"JWT"``, as
    SuperOffice documents it) or ``0``/``1``, default ``Jwt``; member names match in any case
    and a repeated member keeps its last value; otherwise HTTP 400 ProblemDetails. Then the
    same checks, in the same order, with the same :class:`Reason` codes as the SOAP endpoint,
    answered HTTP 200 ``application/json; charset=utf-8``
    ``{"IsSuccessful": ..., "Token": ..., "ErrorMessage": ...}`` (``null`` for empty members).
    Every fault knob applies to it as to SOAP (one decision, two renderers); ``SOAP_FAULT_500``
    becomes an HTTP 500 ProblemDetails (``message`` as its ``detail``). Its POSTs count in
    ``exchange_count`` and ``requests`` like the SOAP ones.

``GET /login/.well-known/jwks`` and ``GET /login/.well-known/openid-configuration``
    The JWT signing keys (every published key; :meth:`Emulator.rotate_key` adds a new signing
    key and keeps the old one published unless told otherwise) and a minimal discovery
    document whose ``jwks_uri`` points at the JWKS.

What it does not emulate: TLS, SAML tokens, the WSDL
(``?wsdl``), revocation and re-approval states (use :attr:`Fault.REJECT` with the message),
the real service's error texts (undocumented), its rate limits, and the tenant APIs that
accept the ticket. It has throwaway security: it refuses to bind a non-loopback address
unless ``allow_remote=True``.

Fault knobs (:meth:`Emulator.inject`, per tenant or global, ``times=N`` or until
:meth:`Emulator.clear_faults`):

- ``LATENCY``: wait ``seconds`` before answering (adds to any other fault).
- ``SOAP_FAULT_500``: HTTP 500 ``s:Fault``, WCF's ``a:InternalServiceFault`` unless
  ``code="Client"``/``"Server"`` (-> ``s:Client``/``s:Server``); ``message`` replaces the
  faultstring.
- ``SERVICE_UNAVAILABLE_HTML``: HTTP 503 with IIS's HTML page; ``retry_after`` adds the header.
- ``EMPTY_BODY``: HTTP 200, ``text/xml``, zero bytes.
- ``TRUNCATED_BODY``: HTTP 200, the real answer cut in the middle (Content-Length matches the
  cut body, so only the XML is broken).
- ``DISCONNECT``: the request is read in full (and counted and recorded), then the connection
  is closed without any answer: the client sees it close while waiting for the response headers.
- ``REJECT``: ``IsSuccessful=false`` with ``message`` (default ``"Denied"``).
- ``EXPIRED_TOKEN``: a successful answer whose JWT expired an hour ago.
- ``WRONG_TENANT_TOKEN``: a successful answer whose JWT is for another tenant (the first other
  registered one, else ``Cust99999``).
- ``DRIP``: the answer (status line, headers and body, byte for byte what it would have been)
  is sent one byte at a time, ``seconds`` apart: each byte well within a read timeout, the
  whole answer as late as you like. Tests a client's overall deadline.
- ``JWKS_UNAVAILABLE``: HTTP 503 on the JWKS and openid-configuration (global only).
- ``JWKS_DRIP``: the JWKS and openid-configuration answers sent like ``DRIP`` (global only).
- ``API_UNAUTHORIZED``: the tenant API answers 401 whatever the ticket (say ``times=2``: a
  request and its resend).
- ``API_LATENCY``: the tenant API waits ``seconds`` before answering (one request per ``times``).

When several faults match a request, all latencies add up, then the first matching
answer-changing fault wins (tenant-specific ones before global ones, then in injection
order); the two token faults are consumed only by an exchange that would have succeeded.
A drip changes how the answer is sent, not what: the first matching ``DRIP`` (in the same
order) is consumed and paces whatever answer the rest decide, an injected one included
(``DISCONNECT`` leaves nothing to send), after the latencies; ``JWKS_DRIP`` likewise paces
the 503 of ``JWKS_UNAVAILABLE``. A drip under way ends when its client goes away; on
:meth:`Emulator.clear_faults` and :meth:`Emulator.reset` the rest of the answer goes at once;
:meth:`Emulator.stop` closes its connection.

Usage::

    from cryptography.hazmat.primitives.asymmetric import rsa
    from sut_soap.testing import Emulator, Fault

    partner_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with Emulator(client_secret="s3cret", partner_public_key=partner_key) as emu:
        emu.add_tenant("Cust12345", system_user_token="Acme Sync-8k8Q7DmBgo", serial="1234567")
        print(emu.endpoint, emu.rest_endpoint, emu.jwks_url)
        emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)   # the next exchange gets a 503

In a pytest suite the plugin's ``superoffice_emulator`` fixture (see
:mod:`sut_soap.testing.pytest_plugin`) is one server per session, :meth:`Emulator.reset` after
every test.

``exchange_count``, ``jwks_count``, ``connection_count`` and ``requests`` (the last 100 SOAP
and REST POSTs as ``(headers, body)``) let a test assert what its client sent; ``internal_errors``
should stay empty.

From the shell, ``sut-soap emulator --port 8080`` (:mod:`sut_soap.cli.emulator`) generates a
throwaway partner key (written to a mode-0600 file), a client secret and a tenant, prints them
with the URLs, and serves until Ctrl-C.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Literal, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sut_soap._clock import Clock, as_clock
from sut_soap.contract import (
    APP_TOKEN_HEADER,
    CLAIM_PREFIX,
    ISSUER,
    JWKS_PATH,
    NOT_RUNNING_STATES,
    REST_PATH,
    RUNNING_STATES,
    SERVICE_PATH,
    SOAP11_ENV,
    SOAP_ACTION,
    TNS,
    XSI,
)
from sut_soap.errors import ConfigurationError
from sut_soap.testing._aspnet import (
    _JSON,
    _json_answer,
    _json_media_type_ok,
    _parse_json_request,
    _problem,
    _unsupported_media_type,
)
from sut_soap.testing._server import _Server
from sut_soap.testing._tenantapi import (
    CURRENT_PRINCIPAL,
    ECHO,
    ApiRequest,
    json_reply,
    state_answer,
    state_context,
    tenant_route,
    unauthorized,
)
from sut_soap.testing._wcf import (
    _ADDRESSING_NONE,
    _DIAGNOSTICS,
    _DISPATCHER,
    _HELP_PAGE,
    _IIS_503,
    _WCF_ACTION_NOT_SUPPORTED,
    _WCF_INTERNAL,
    _XML,
    Headers,
    _Drip,
    _media_type_ok,
    _not_found,
    _parse_request,
    _Rejected,
    _Reply,
    _Request,
    _soap_fault,
    _unavailable,
    _unquoted,
    _xml_text,
)
from sut_soap.testing.minting import new_ticket, sign_jwt, superoffice_claims

__all__ = [
    "CLAIM_PREFIX",
    "ENDPOINT_PATH",
    "ISSUER",
    "JWKS_PATH",
    "OPENID_CONFIGURATION_PATH",
    "SERVICE_NAMESPACE",
    "SOAP_ACTION",
    "ApiRequest",
    "Emulator",
    "Fault",
    "Headers",
    "Reason",
    "RecordedRequest",
    "Tenant",
]

SERVICE_NAMESPACE = TNS
ENDPOINT_PATH = SERVICE_PATH
OPENID_CONFIGURATION_PATH = "/login/.well-known/openid-configuration"

_MAX_RECORDED = 100
_MAX_TICKETS = 100_000
_EXPIRED_AGO = 3600.0
class Fault(enum.Enum):
    """The faults :meth:`Emulator.inject` can make the emulator produce (see the module docstring)."""

    LATENCY = "latency"
    SOAP_FAULT_500 = "soap_fault_500"
    SERVICE_UNAVAILABLE_HTML = "service_unavailable_html"
    EMPTY_BODY = "empty_body"
    TRUNCATED_BODY = "truncated_body"
    DISCONNECT = "disconnect"
    REJECT = "reject"
    EXPIRED_TOKEN = "expired_token"  # noqa: S105
    WRONG_TENANT_TOKEN = "wrong_tenant_token"  # noqa: S105
    JWKS_UNAVAILABLE = "jwks_unavailable"
    DRIP = "drip"
    JWKS_DRIP = "jwks_drip"
    API_UNAUTHORIZED = "api_unauthorized"
    API_LATENCY = "api_latency"


class Reason:
    """Codes that start the emulator's ``ErrorMessage`` texts (the real texts are undocumented)."""

    INVALID_APPLICATION_TOKEN = "InvalidApplicationToken"  # noqa: S105 -- an error code
    UNKNOWN_TENANT = "UnknownTenant"
    INVALID_TIMESTAMP = "InvalidTimestamp"
    INVALID_SYSTEM_TOKEN = "InvalidSystemToken"  # noqa: S105 -- an error code
    INVALID_SIGNATURE = "InvalidSignature"
    UNSUPPORTED_TOKEN_TYPE = "UnsupportedTokenType"  # noqa: S105 -- an error code


@dataclass(frozen=True)
class Tenant:
    """A tenant the emulator knows; ``None`` URLs are derived from the base URL when running."""

    context_identifier: str
    system_user_token: str
    serial: str
    webapi_url: str | None = None
    netserver_url: str | None = None
    associate_id: str = "5"
    email: str | None = None
    upn: str | None = None


class RecordedRequest(NamedTuple):
    """One SOAP POST as the emulator received it."""

    headers: Headers
    body: bytes

    def __repr__(self) -> str:
        # The body holds the client secret and the signed token: a failing assertion must not print them.
        return f"RecordedRequest(headers={self.headers!r}, body=<{len(self.body)} bytes>)"


@dataclass
class _Injection:
    fault: Fault
    tenant: str | None
    remaining: int | None
    seconds: float
    message: str | None
    code: str | None
    retry_after: int | None


@dataclass(frozen=True)
class _SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey


_ANSWER_FAULTS = (
    Fault.SOAP_FAULT_500,
    Fault.SERVICE_UNAVAILABLE_HTML,
    Fault.EMPTY_BODY,
    Fault.TRUNCATED_BODY,
    Fault.DISCONNECT,
    Fault.REJECT,
)
_TOKEN_FAULTS = (Fault.EXPIRED_TOKEN, Fault.WRONG_TENANT_TOKEN)
_ALLOWED_OPTIONS: dict[Fault, frozenset[str]] = {
    Fault.LATENCY: frozenset({"seconds"}),
    Fault.SOAP_FAULT_500: frozenset({"message", "code"}),
    Fault.SERVICE_UNAVAILABLE_HTML: frozenset({"retry_after"}),
    Fault.REJECT: frozenset({"message"}),
    Fault.JWKS_UNAVAILABLE: frozenset({"retry_after"}),
    Fault.DRIP: frozenset({"seconds"}),
    Fault.JWKS_DRIP: frozenset({"seconds"}),
    Fault.API_LATENCY: frozenset({"seconds"}),
}
_NEEDS_SECONDS = (Fault.LATENCY, Fault.DRIP, Fault.JWKS_DRIP, Fault.API_LATENCY)
_GLOBAL_ONLY = (Fault.JWKS_UNAVAILABLE, Fault.JWKS_DRIP)



def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}


def _thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint: a stable kid for a key."""
    canonical = json.dumps(_jwk(public_key), separators=(",", ":"), sort_keys=True).encode("ascii")
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _load_partner_key(key: rsa.RSAPublicKey | rsa.RSAPrivateKey | bytes | str) -> rsa.RSAPublicKey:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return key
    if isinstance(key, (bytes, str)):
        data = key.encode("ascii") if isinstance(key, str) else key
        loaded: object
        try:
            if b"BEGIN CERTIFICATE" in data:
                loaded = x509.load_pem_x509_certificate(data).public_key()
            else:
                loaded = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise ConfigurationError(
                "partner_public_key is not a PEM public key or certificate",
                hint="pass an RSAPublicKey, an RSAPrivateKey or PEM bytes of the public key",
            ) from exc
        if isinstance(loaded, rsa.RSAPublicKey):
            return loaded
    raise ConfigurationError(
        "partner_public_key must be an RSA key",
        hint="pass an RSAPublicKey, an RSAPrivateKey or PEM bytes of an RSA public key",
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Emulator:
    """A local PartnerSystemUserService (SOAP + JWKS) on loopback; see the module docstring.

    ``partner_public_key`` is the key registered for the partner application: an
    ``RSAPublicKey``, an ``RSAPrivateKey`` (its public half is used) or PEM bytes of a public key
    or certificate. ``clock`` (a :class:`sut_soap.Clock`, or a callable returning a timezone-aware
    UTC ``datetime``) drives both the timestamp check and the JWT times. ``signing_key`` is the
    JWT signing key (generated when omitted). ``member_order`` is the order of the answer's
    members (see the module docstring).
    """

    def __init__(
        self,
        client_secret: str,
        partner_public_key: rsa.RSAPublicKey | rsa.RSAPrivateKey | bytes | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timestamp_tolerance: float = 900.0,
        token_lifetime: float = 300.0,
        clock: Clock | Callable[[], datetime] | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
        member_order: Literal["wsdl", "alphabetical"] = "wsdl",
        allow_remote: bool = False,
    ) -> None:
        if not client_secret:
            raise ConfigurationError("client_secret is empty", hint="pass the client secret to emulate")
        if host.lower() == "localhost":
            host = "127.0.0.1"  # avoid clients trying ::1 first when only IPv4 is bound
        if not allow_remote and not _is_loopback(host):
            raise ConfigurationError(
                f"refusing to bind the emulator to non-loopback host {host!r}",
                hint="the emulator has throwaway security; pass allow_remote=True if you really mean it",
            )
        if timestamp_tolerance < 0 or token_lifetime <= 0:
            raise ConfigurationError("timestamp_tolerance must be >= 0 and token_lifetime > 0")
        if member_order not in ("wsdl", "alphabetical"):
            raise ConfigurationError("member_order must be 'wsdl' or 'alphabetical'")
        if signing_key is not None and not isinstance(signing_key, rsa.RSAPrivateKey):
            raise ConfigurationError("signing_key must be an RSAPrivateKey")
        self._client_secret = client_secret.encode("utf-8")
        self._partner_key = _load_partner_key(partner_public_key)
        self._host = host
        self._port = port
        self.timestamp_tolerance = float(timestamp_tolerance)
        self.token_lifetime = float(token_lifetime)
        self._clock = as_clock(clock).now
        self._member_order = member_order
        key = signing_key or _new_rsa_key()
        self._keys: list[_SigningKey] = [_SigningKey(_thumbprint(key.public_key()), key)]
        self._lock = threading.Lock()
        self._tenants: dict[str, Tenant] = {}
        # Injections by tenant (None: global), each list in injection order: a request looks at
        # its tenant's and the global ones only, not at every tenant's (a warm-up of 1,000
        # tenants with a latency each would scan 1,000 injections several times per exchange).
        self._faults: dict[str | None, list[_Injection]] = {}
        self._exchange_count = 0
        self._jwks_count = 0
        self._connection_count = 0
        self._requests: deque[RecordedRequest] = deque(maxlen=_MAX_RECORDED)
        self._internal_errors: list[BaseException] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._drips_called_off = threading.Event()
        self._connections: set[socket.socket] = set()
        self._baseline: tuple[dict[str, Tenant], list[_SigningKey]] = ({}, list(self._keys))
        # The tenant API: tickets minted (ticket -> tenant), revoked ones, states other than Running.
        self._tickets: OrderedDict[str, str] = OrderedDict()
        self._revoked: set[str] = set()
        self._states: dict[str, str] = {}
        #: Seconds from now the state API's ``ValidUntil`` says (0 or less: already passed).
        self.state_valid_for = 300.0
        self._api_count = 0
        self._state_count = 0
        self._api_requests: deque[ApiRequest] = deque(maxlen=_MAX_RECORDED)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; a no-op when already running."""
        if self._server is not None:
            return self
        self._now()  # a clock that returns naive datetimes fails here, not inside a request
        with self._lock:
            self._baseline = (dict(self._tenants), list(self._keys))
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        server = _Server((self._host, self._port), self, family)
        self._stopping.clear()
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sut-soap-emulator:{server.server_address[1]}",
            daemon=True,
        )
        self._server = server
        self._thread = thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = None
        self._thread = None
        self._stopping.set()
        with self._lock:
            self._call_off_drips()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (the chosen one when started with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; use start() or a with block")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running emulator."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The SOAP endpoint URL."""
        return self.base_url + ENDPOINT_PATH

    @property
    def rest_endpoint(self) -> str:
        """The URL of the REST form of the exchange (``/Login/api/PartnerSystemUser/Authenticate``)."""
        return self.base_url + REST_PATH

    @property
    def jwks_url(self) -> str:
        """The JWKS URL."""
        return self.base_url + JWKS_PATH

    @property
    def openid_configuration_url(self) -> str:
        """The OpenID discovery document URL."""
        return self.base_url + OPENID_CONFIGURATION_PATH

    # -- tenants -------------------------------------------------------------------------------

    def add_tenant(
        self,
        context_identifier: str,
        system_user_token: str,
        serial: str | int | None = None,
        *,
        webapi_url: str | None = None,
        netserver_url: str | None = None,
        associate_id: str | int = 5,
        email: str | None = None,
        upn: str | None = None,
    ) -> Tenant:
        """Register (or replace) a tenant; ``serial`` defaults to a number derived from the id."""
        if not context_identifier or not system_user_token:
            raise ConfigurationError("context_identifier and system_user_token must not be empty")
        if serial is None:
            serial = 1_000_000 + zlib.crc32(context_identifier.encode("utf-8")) % 9_000_000
        tenant = Tenant(
            context_identifier=context_identifier,
            system_user_token=system_user_token,
            serial=str(serial),
            webapi_url=webapi_url,
            netserver_url=netserver_url,
            associate_id=str(associate_id),
            email=email,
            upn=upn,
        )
        with self._lock:
            self._tenants[context_identifier] = tenant
        return self._resolve(tenant)

    def remove_tenant(self, context_identifier: str) -> None:
        """Forget a tenant (its exchanges then fail with UnknownTenant)."""
        with self._lock:
            self._tenants.pop(context_identifier, None)

    def set_tenant_state(self, context_identifier: str, state: str = "Running") -> None:
        """Make the state API report ``state`` for a tenant (``Running`` by default, as every tenant starts).

        ``state`` is one of SuperOffice's documented states: ``Running`` and ``OnlineMaintenance``
        (``IsRunning`` true, the tenant API answers) or ``Unknown``, ``Provisioning``, ``Deleted``,
        ``Suspended``, ``OfflineMaintenance``, ``ProvisioningFailed``, ``Deleting``, ``DeleteFailed``,
        ``MigrationPending`` (``IsRunning`` false, the tenant API answers 503).

        Raises:
            ValueError: a state SuperOffice does not document.
        """
        if state not in RUNNING_STATES and state not in NOT_RUNNING_STATES:
            raise ValueError(f"unknown tenant state {state!r}")
        with self._lock:
            if state == "Running":
                self._states.pop(context_identifier, None)
            else:
                self._states[context_identifier] = state

    def revoke_ticket(self, ticket: str) -> None:
        """Make the tenant API answer 401 for ``ticket`` from now on (an exchange mints a new one)."""
        with self._lock:
            self._revoked.add(ticket)

    @property
    def tenants(self) -> dict[str, Tenant]:
        """The registered tenants by ContextIdentifier, URLs resolved when running."""
        with self._lock:
            tenants = list(self._tenants.values())
        return {t.context_identifier: self._resolve(t) for t in tenants}

    def _resolve(self, tenant: Tenant) -> Tenant:
        if self._server is None or (tenant.webapi_url and tenant.netserver_url and tenant.email and tenant.upn):
            return tenant
        ctx = tenant.context_identifier
        return replace(
            tenant,
            webapi_url=tenant.webapi_url or f"{self.base_url}/{ctx}/api/",
            netserver_url=tenant.netserver_url or f"{self.base_url}/{ctx}/Remote/Services88/",
            email=tenant.email or f"system.user@{ctx.lower()}.invalid",
            upn=tenant.upn or f"SystemUser@{ctx}",
        )

    # -- keys --------------------------------------------------------------------------------

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The public half of the key that signs JWTs now."""
        with self._lock:
            return self._keys[-1].private_key.public_key()

    @property
    def kid(self) -> str:
        """The ``kid`` of the key that signs JWTs now."""
        with self._lock:
            return self._keys[-1].kid

    def rotate_key(self, new_key: rsa.RSAPrivateKey | None = None, *, keep_old: bool = True) -> str:
        """Sign with a new key from now on and return its kid; old keys stay in the JWKS if ``keep_old``."""
        key = new_key or _new_rsa_key()
        signing = _SigningKey(_thumbprint(key.public_key()), key)
        with self._lock:
            kept = [k for k in self._keys if k.kid != signing.kid] if keep_old else []
            self._keys = [*kept, signing]
        return signing.kid

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS document the emulator serves."""
        with self._lock:
            keys = list(self._keys)
        return {
            "keys": [
                {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid, **_jwk(k.private_key.public_key())}
                for k in keys
            ]
        }

    # -- faults ------------------------------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        tenant: str | None = None,
        times: int | None = None,
        seconds: float | None = None,
        message: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Make the emulator misbehave, for ``tenant`` only or globally, ``times`` times or until cleared."""
        if not isinstance(fault, Fault):
            raise TypeError("fault must be a Fault")
        given = {
            name
            for name, value in (
                ("seconds", seconds),
                ("message", message),
                ("code", code),
                ("retry_after", retry_after),
            )
            if value is not None
        }
        unexpected = given - _ALLOWED_OPTIONS.get(fault, frozenset())
        if unexpected:
            raise ValueError(f"{fault.name} does not take {', '.join(sorted(unexpected))}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for until cleared)")
        if fault in _NEEDS_SECONDS and (seconds is None or seconds <= 0):
            raise ValueError(f"{fault.name} needs seconds > 0")
        if fault in _GLOBAL_ONLY and tenant is not None:
            raise ValueError(f"{fault.name} is global; the JWKS request names no tenant")
        if code is not None and code not in ("Client", "Server"):
            raise ValueError("code must be 'Client' or 'Server'")
        injection = _Injection(fault, tenant, times, seconds or 0.0, message, code, retry_after)
        with self._lock:
            self._faults.setdefault(tenant, []).append(injection)

    def clear_faults(self) -> None:
        """Remove every injected fault; an answer still dripping is sent at once."""
        with self._lock:
            self._faults.clear()
            self._call_off_drips()

    def reset(self) -> None:
        """Undo what a test did: back to the state of the last :meth:`start`.

        Faults are cleared (an answer still dripping is sent at once); the recorded requests,
        the counters and ``internal_errors`` start from zero; the tenants and the published
        signing keys are the ones the emulator had when it started (tenants added later are
        removed, :meth:`rotate_key` is undone). The server keeps running on the same port. The
        pytest plugin calls this after every test.
        """
        with self._lock:
            tenants, keys = self._baseline
            self._faults.clear()
            self._call_off_drips()
            self._requests.clear()
            self._internal_errors.clear()
            self._exchange_count = self._jwks_count = self._connection_count = 0
            self._tenants = dict(tenants)
            self._keys = list(keys)
            self._tickets.clear()
            self._revoked.clear()
            self._states.clear()
            self._api_requests.clear()
            self._api_count = self._state_count = 0
            self.state_valid_for = 300.0

    def _take(self, kinds: tuple[Fault, ...], tenant: str | None) -> _Injection | None:
        """The first matching fault (tenant-specific first), consumed once."""
        with self._lock:
            for owner in (tenant, None) if tenant is not None else (None,):
                for injection in self._faults.get(owner, ()):
                    if injection.fault in kinds:
                        self._consume(injection)
                        return injection
            return None

    def _take_drip(self, kind: Fault, tenant: str | None) -> _Drip | None:
        with self._lock:
            called_off = self._drips_called_off  # taken first: a clear_faults() from here on calls this drip off
        injected = self._take((kind,), tenant)
        return None if injected is None else _Drip(injected.seconds, called_off)

    def _call_off_drips(self) -> None:
        """End every drip under way (the caller holds the lock); later drips wait on a new event."""
        self._drips_called_off.set()
        self._drips_called_off = threading.Event()

    def _take_latency(self, tenant: str | None) -> float:
        with self._lock:
            owners = (tenant, None) if tenant is not None else (None,)
            matching = [f for owner in owners for f in self._faults.get(owner, ()) if f.fault is Fault.LATENCY]
            for injection in matching:
                self._consume(injection)
            return sum(f.seconds for f in matching)

    def _consume(self, injection: _Injection) -> None:
        if injection.remaining is not None:
            injection.remaining -= 1
            if injection.remaining <= 0:
                owned = self._faults[injection.tenant]
                owned.remove(injection)
                if not owned:
                    del self._faults[injection.tenant]

    # -- observation -------------------------------------------------------------------------

    @property
    def exchange_count(self) -> int:
        """SOAP POSTs handled so far, successful or not."""
        with self._lock:
            return self._exchange_count

    @property
    def jwks_count(self) -> int:
        """GETs of the JWKS so far (to test a client's JWKS cache)."""
        with self._lock:
            return self._jwks_count

    @property
    def connection_count(self) -> int:
        """TCP connections accepted so far (to test a client's keep-alive)."""
        with self._lock:
            return self._connection_count

    @property
    def requests(self) -> list[RecordedRequest]:
        """The last SOAP POSTs received (at most 100), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def api_request_count(self) -> int:
        """Requests to the tenant API (``/{ctx}/api/...``) so far, answered 401 or not (to count resends)."""
        with self._lock:
            return self._api_count

    @property
    def state_request_count(self) -> int:
        """GETs of the tenant state API (``/api/state/{ctx}``) so far."""
        with self._lock:
            return self._state_count

    @property
    def api_requests(self) -> list[ApiRequest]:
        """The last requests to the tenant API (at most 100), oldest first; their headers carry secrets."""
        with self._lock:
            return list(self._api_requests)

    @property
    def internal_errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the emulator (answered with HTTP 500); empty unless it has a bug."""
        with self._lock:
            return list(self._internal_errors)

    def _record_error(self, error: BaseException) -> None:
        with self._lock:
            self._internal_errors.append(error)

    # -- request handling ----------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
            raise ConfigurationError("the emulator clock must return a timezone-aware datetime")
        return now.astimezone(timezone.utc)

    def _handle_soap(self, headers: Headers, body: bytes) -> _Reply:
        return self._handle_exchange(headers, body, rest=False)

    def _handle_rest(self, headers: Headers, body: bytes) -> _Reply:
        return self._handle_exchange(headers, body, rest=True)

    def _handle_exchange(self, headers: Headers, body: bytes, *, rest: bool) -> _Reply:
        """The one place that decides an exchange's outcome; ``rest`` picks how it is read and written."""
        with self._lock:
            self._exchange_count += 1
            self._requests.append(RecordedRequest(headers, body))
        parsed = _parse_json_request(body) if rest else _parse_request(body)
        tenant = parsed.context_identifier if isinstance(parsed, _Request) else None

        delay = self._take_latency(tenant)
        if delay and self._stopping.wait(delay):
            return _Reply(503, _IIS_503, "text/html; charset=us-ascii")
        drip = self._take_drip(Fault.DRIP, tenant)
        injected = self._take(_ANSWER_FAULTS, tenant)
        truncate = injected is not None and injected.fault is Fault.TRUNCATED_BODY
        if injected is not None and not truncate:
            reply = self._injected_reply(injected, rest=rest)
        else:
            reply = self._answer(headers, parsed, rest=rest)
            if truncate:
                reply.body = reply.body[: len(reply.body) // 2]
        reply.drip = drip
        return reply

    def _injected_reply(self, injected: _Injection, *, rest: bool = False) -> _Reply:
        if injected.fault is Fault.SOAP_FAULT_500:
            text = injected.message or _WCF_INTERNAL
            if rest:
                return _problem(500, detail=injected.message)
            if injected.code:
                return _soap_fault(f"s:{injected.code}", text)
            return _soap_fault("a:InternalServiceFault", text, code_namespace=_DISPATCHER)
        if injected.fault is Fault.SERVICE_UNAVAILABLE_HTML:
            return _unavailable(injected.retry_after)
        if injected.fault is Fault.EMPTY_BODY:
            return _Reply(200, content_type=_JSON if rest else _XML)
        if injected.fault is Fault.DISCONNECT:
            return _Reply(0, disconnect=True)
        return self._success_or_rejection(None, injected.message or "Denied", rest=rest)  # REJECT

    def _success_or_rejection(self, token: str | None, error_message: str | None, *, rest: bool) -> _Reply:
        """HTTP 200 with the AuthenticationResponse: the JWT, or IsSuccessful=false and the message."""
        if rest:
            return _Reply(200, _json_answer(token, error_message), _JSON)
        return _Reply(200, self._envelope(token, error_message))

    def _answer(self, headers: Headers, parsed: _Request | _Reply, *, rest: bool = False) -> _Reply:
        checked = self._rest_checks(headers, parsed) if rest else self._soap_checks(headers, parsed)
        if isinstance(checked, _Reply):
            return checked
        try:
            token = self._authenticate(checked)
        except _Rejected as rejected:
            return self._success_or_rejection(None, rejected.error_message, rest=rest)
        return self._success_or_rejection(token, None, rest=rest)

    @staticmethod
    def _rest_checks(headers: Headers, parsed: _Request | _Reply) -> _Request | _Reply:
        """ASP.NET Core's answer to a REST request it cannot take, or the request to go on with."""
        if not _json_media_type_ok(headers.get("Content-Type")):
            return _unsupported_media_type()
        return parsed

    @staticmethod
    def _soap_checks(headers: Headers, parsed: _Request | _Reply) -> _Request | _Reply:
        """WCF's answer to a SOAP request it cannot take (content type, SOAPAction, envelope), or the request."""
        content_type = headers.get("Content-Type")
        if not _media_type_ok(content_type):
            text = (
                f"Cannot process the message because the content type '{(content_type or '')[:200]}' was not "
                f"the expected type '{_XML}'."
            )
            return _Reply(415, text.encode("utf-8"), "text/plain; charset=utf-8")
        if isinstance(parsed, _Reply) and parsed.status == 400:
            return parsed
        action = headers.get("SOAPAction")
        if _unquoted(action) != SOAP_ACTION:
            shown = (action or "").strip('"')[:500]
            return _soap_fault(
                "a:ActionNotSupported",
                _WCF_ACTION_NOT_SUPPORTED.format(action=shown),
                code_namespace=_ADDRESSING_NONE,
            )
        return parsed

    def _authenticate(self, request: _Request) -> str:
        application_token = (request.application_token or "").encode("utf-8")
        if request.application_token is None or not hmac.compare_digest(application_token, self._client_secret):
            raise _Rejected(
                Reason.INVALID_APPLICATION_TOKEN,
                "the ApplicationToken is not the client secret of a registered application",
            )
        ctx = request.context_identifier
        with self._lock:
            tenant = self._tenants.get(ctx) if ctx is not None else None
        if tenant is None:
            shown = "none" if ctx is None else repr(ctx[:64])
            raise _Rejected(Reason.UNKNOWN_TENANT, f"no tenant with ContextIdentifier {shown}")

        parts = (request.signed_token or "").rsplit(".", 2)
        if len(parts) != 3 or not parts[0]:
            raise _Rejected(
                Reason.INVALID_SIGNATURE,
                "the signed system token is not <system user token>.<yyyyMMddHHmm>.<signature>",
            )
        system_user_token, stamp, signature_b64 = parts
        if len(stamp) != 12 or not stamp.isascii() or not stamp.isdigit():
            raise _Rejected(Reason.INVALID_TIMESTAMP, "the supplied timestamp is invalid (expected yyyyMMddHHmm, UTC)")
        try:
            # What strptime("%Y%m%d%H%M") accepts from 12 digits, at a tenth of its cost.
            year, month, day, hour, minute = (int(stamp[i : i + 2 if i else 4]) for i in (0, 4, 6, 8, 10))
            signed_at = datetime(year, month, day, hour, minute, tzinfo=timezone.utc)
        except ValueError:
            raise _Rejected(Reason.INVALID_TIMESTAMP, "the supplied timestamp is not a valid date") from None
        skew = (signed_at - self._now()).total_seconds()
        if abs(skew) > self.timestamp_tolerance:
            side = "ahead of" if skew > 0 else "behind"
            raise _Rejected(
                Reason.INVALID_TIMESTAMP,
                f"the supplied timestamp is {abs(skew):.0f} s {side} the server clock "
                f"(tolerance {self.timestamp_tolerance:.0f} s); sign with the current UTC time",
            )
        if not hmac.compare_digest(system_user_token.encode("utf-8"), tenant.system_user_token.encode("utf-8")):
            raise _Rejected(
                Reason.INVALID_SYSTEM_TOKEN,
                "the system user token is not the one issued to this application for this tenant",
            )
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError):
            raise _Rejected(Reason.INVALID_SIGNATURE, "the signature is not standard Base64") from None
        try:
            self._partner_key.verify(
                signature,
                f"{system_user_token}.{stamp}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise _Rejected(Reason.INVALID_SIGNATURE, "calculated signature is invalid") from None
        if request.token_type != "Jwt":  # noqa: S105
            raise _Rejected(Reason.UNSUPPORTED_TOKEN_TYPE, "only Jwt is emulated")
        return self._mint(tenant)

    def _mint(self, tenant: Tenant) -> str:
        now = self._now()
        issued = now
        injected = self._take(_TOKEN_FAULTS, tenant.context_identifier)
        if injected is not None and injected.fault is Fault.EXPIRED_TOKEN:
            issued = now - timedelta(seconds=_EXPIRED_AGO + self.token_lifetime)
        if injected is not None and injected.fault is Fault.WRONG_TENANT_TOKEN:
            with self._lock:
                others = [t for t in self._tenants.values() if t.context_identifier != tenant.context_identifier]
            tenant = others[0] if others else Tenant("Cust99999", "Other Sync-0000000000", "9999999")
        tenant = self._resolve(tenant)
        ticket = new_ticket()
        with self._lock:
            self._tickets[ticket] = tenant.context_identifier
            while len(self._tickets) > _MAX_TICKETS:
                self._tickets.popitem(last=False)
        claims = superoffice_claims(
            context_identifier=tenant.context_identifier,
            serial=tenant.serial,
            ticket=ticket,
            issued_at=issued,
            lifetime=self.token_lifetime,
            webapi_url=tenant.webapi_url,
            netserver_url=tenant.netserver_url,
            associate_id=tenant.associate_id,
            system_user_token=tenant.system_user_token,
            email=tenant.email,
            upn=tenant.upn,
        )
        with self._lock:
            key = self._keys[-1]
        return sign_jwt(claims, key.private_key, kid=key.kid)

    def _envelope(self, token: str | None, error_message: str | None) -> bytes:
        nil = f' i:nil="true" xmlns:i="{XSI}"/>'
        members = {
            "IsSuccessful": f"<IsSuccessful>{'true' if token is not None else 'false'}</IsSuccessful>",
            "Token": "<Token" + (nil if token is None else f">{_xml_text(token)}</Token>"),
            "ErrorMessage": "<ErrorMessage"
            + (nil if error_message is None else f">{_xml_text(error_message)}</ErrorMessage>"),
        }
        order = ("ErrorMessage", "IsSuccessful", "Token") if self._member_order == "alphabetical" else tuple(members)
        activity, correlation = uuid.uuid4(), uuid.uuid4()
        return (
            f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Header>'
            f'<ActivityId CorrelationId="{correlation}" xmlns="{_DIAGNOSTICS}">{activity}</ActivityId>'
            f"</s:Header><s:Body>"
            f'<AuthenticationResponse xmlns="{SERVICE_NAMESPACE}">{"".join(members[m] for m in order)}'
            f"</AuthenticationResponse></s:Body></s:Envelope>"
        ).encode()

    def _key_document(self, path: str) -> Mapping[str, object]:
        if path == JWKS_PATH.lower():
            return self.jwks()
        return {
            "issuer": self.base_url,
            "jwks_uri": self.jwks_url,
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token"],
            "subject_types_supported": ["public"],
        }

    def _handle_tenant(self, method: str, path: str, headers: Headers, body: bytes) -> _Reply | None:
        """The state API or the tenant API for a request to ``path`` (as sent), or None for neither."""
        ctx = state_context(path)
        if ctx is not None:
            if method != "GET":
                return _Reply(405, content_type=None, headers=(("Allow", "GET"),))
            with self._lock:
                self._state_count += 1
                known = self._find_tenant(ctx)
                state = self._states.get(known.context_identifier, "Running") if known else "Unknown"
            return state_answer(
                known.context_identifier if known else ctx, state, base_url=self.base_url, now=self._now(),
                valid_for=self.state_valid_for, known=known is not None,
            )
        route = tenant_route(path)
        if route is None:
            return None
        with self._lock:
            self._api_count += 1
            self._api_requests.append(ApiRequest(method, path, headers, body))
            tenant = self._find_tenant(route[0])
            api_state = self._states.get(tenant.context_identifier, "Running") if tenant else None
        if tenant is None:
            return _not_found()
        delay = self._take((Fault.API_LATENCY,), tenant.context_identifier)
        if delay is not None and self._stopping.wait(delay.seconds):
            return json_reply(503, {"Error": "Unavailable", "Message": "the emulator is stopping"})
        if api_state not in RUNNING_STATES:
            return json_reply(503, {"Error": "Unavailable", "Message": f"the tenant is {api_state}"})
        if self._take((Fault.API_UNAUTHORIZED,), tenant.context_identifier) is not None:
            return unauthorized("refused (Fault.API_UNAUTHORIZED)")
        refused = self._check_api_credentials(ApiRequest(method, path, headers, body), tenant.context_identifier)
        if refused is not None:
            return unauthorized(refused)
        return self._api_answer(method, route[1], tenant, body)

    def _find_tenant(self, ctx: str) -> Tenant | None:
        """The tenant named ``ctx`` in any case (IIS paths are case-insensitive); the caller holds the lock."""
        tenant = self._tenants.get(ctx)
        if tenant is None:
            folded = ctx.casefold()
            tenant = next((t for k, t in self._tenants.items() if k.casefold() == folded), None)
        return tenant

    def _check_api_credentials(self, request: ApiRequest, ctx: str) -> str | None:
        """Why the tenant API refuses the request's ``SOTicket`` and ``SO-AppToken``, or None when it takes them."""
        app_token = (request.app_token or "").encode("utf-8")
        if request.app_token is None or not hmac.compare_digest(app_token, self._client_secret):
            return f"the {APP_TOKEN_HEADER} header is not the application's client secret"
        ticket = request.ticket
        if ticket is None:
            return "no Authorization: SOTicket header"
        with self._lock:
            owner = self._tickets.get(ticket)
            revoked = ticket in self._revoked
        if owner is None or owner != ctx:
            return "the ticket was not issued for this tenant"
        if revoked:
            return "the ticket was revoked"
        return None

    def _api_answer(self, method: str, rest: str, tenant: Tenant, body: bytes) -> _Reply:
        if rest == CURRENT_PRINCIPAL and method == "GET":
            resolved = self._resolve(tenant)
            return json_reply(200, {
                "ContextIdentifier": resolved.context_identifier,
                "AssociateId": int(resolved.associate_id) if resolved.associate_id.isdigit() else 0,
                "UserName": resolved.upn, "EMailAddress": resolved.email, "IsSystemUser": True,
            })
        if rest == ECHO and method in ("POST", "PUT"):
            return json_reply(200, {"Method": method, "Length": len(body), "Body": body.decode("utf-8", "replace")})
        if rest in (CURRENT_PRINCIPAL, ECHO):
            allowed = "GET" if rest == CURRENT_PRINCIPAL else "POST, PUT"
            return _Reply(405, content_type=None, headers=(("Allow", allowed),))
        return _not_found()

    def _handle_get(self, path: str) -> _Reply:
        if path in (JWKS_PATH.lower(), OPENID_CONFIGURATION_PATH.lower()):
            if path == JWKS_PATH.lower():
                with self._lock:
                    self._jwks_count += 1
            drip = self._take_drip(Fault.JWKS_DRIP, None)
            injected = self._take((Fault.JWKS_UNAVAILABLE,), None)
            if injected is not None:
                reply = _unavailable(injected.retry_after)
            else:
                document = json.dumps(self._key_document(path)).encode("utf-8")
                reply = _Reply(200, document, "application/json; charset=utf-8")
            reply.drip = drip
            return reply
        if path == ENDPOINT_PATH.lower():
            return _Reply(200, _HELP_PAGE, "text/html; charset=utf-8")
        if path == REST_PATH.lower():  # an ASP.NET action that only takes POST
            return _Reply(405, content_type=None, headers=(("Allow", "POST"),))
        return _not_found()

