"""SystemUserClient: sign, exchange over SOAP, validate into a ticket; cache it per tenant.

One client serves many tenants. The client secret, partner key, endpoint, HTTP session,
parsed WSDL, JWKS cache and ticket cache belong to the client; the tenant (its
ContextIdentifier and system user token) arrives with each call. One instance is meant to be
shared between threads, and can be used in a child after ``os.fork()`` (:mod:`sut_soap._fork`).

``authenticate`` always exchanges. ``get_ticket`` is what a service calls before each use of a
tenant's API: SuperOffice creates a credential record for every exchange and keeps a ticket
alive for 6 hours after its last use, so the ticket is kept (see :mod:`sut_soap.cache`) and
exchanged again only when it is due:

- age < ``ticket_lifetime - refresh_ahead``: fresh, returned from the cache (microseconds);
- then, until ``ticket_lifetime``: due for renewal. One caller exchanges; callers meanwhile get
  the cached ticket. If that exchange fails with a retryable error, the cached ticket is
  returned (one WARNING) and no new attempt is made for 30 s;
- from ``ticket_lifetime`` on: dead, never returned; the caller exchanges or gets the error.

When ``get_ticket`` has no usable ticket to fall back on, a transient failure of the exchange
is retried per the client's :class:`~sut_soap.retry.RetryPolicy` (each attempt signs again
with a fresh timestamp). So is a JWKS that could not be fetched while validating the answer
(say a key rotation while the JWKS is briefly down): that retry validates the same JWT again
without a new exchange. A renewal while the cached ticket is still valid is not retried, the
cached ticket is. A rejection (IsSuccessful=false) is remembered for ``rejection_cooldown``
seconds: the same tenant and system user token get the same error again without an exchange
until then or until :meth:`SystemUserClient.invalidate`. ``authenticate`` does neither: it is
always exactly one exchange.

Age is measured from the start of the exchange: for tickets this process obtained on the
monotonic clock alone, so a wall clock set back cannot keep a dead ticket alive and one jumping
ahead cannot kill a fresh one; only a ticket read back from a shared store (another process's)
is aged on the wall clock. Single flight: for one tenant (and system user token) only one
exchange runs at a time in the process, whoever asks, and callers waiting for it share its
ticket or its error. Different tenants never wait for each other: no lock is held during an
exchange except that tenant's own.

The option checks and defaults live in :mod:`sut_soap._options`, the renewal path of
``get_ticket`` in :mod:`sut_soap._renewal`; this module holds the exchange and the public API.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, SupportsIndex

from . import _deadline
from ._clock import Clock
from ._core import DEFAULT_RETRY_OPTION, ClientCore
from ._fork import not_picklable
from ._options import (
    DEFAULT_MAX_WORKERS,
    DEFAULT_REJECTION_COOLDOWN,
    DEFAULT_TICKET_LIFETIME,
    check_max_workers,
    default_refresh_ahead,
    make_transport,
)
from ._steps import Attempt, Send, Sign, Sleep, Step, Store, Validate, Wait, run
from .cache import TicketCache
from .errors import ConfigurationError, SutSoapError
from .keys import PrivateKeyInput
from .retry import RetryPolicy
from .signing import check_text_value, sign_system_user_token
from .soap import Answer
from .tenantstate import TenantState, TenantStates, state_base
from .ticket import SystemUserTicket
from .tokens import DEFAULT_LEEWAY
from .transport import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, Transport, call_transport

if TYPE_CHECKING:
    import requests
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from .apiauth import TenantAuth

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_REJECTION_COOLDOWN",
    "DEFAULT_TICKET_LIFETIME",
    "RetryPolicy",
    "SystemUserClient",
    "default_refresh_ahead",
]

_log = logging.getLogger("sut_soap.client")


class SystemUserClient(ClientCore):
    """Exchange system user tokens for validated system user tickets, for many tenants.

    One client per application (client secret and partner key) and environment, shared by
    every thread; the tenant (its ContextIdentifier and system user token) arrives with each
    call. Building a client loads the key and parses the WSDL but sends nothing: the JWKS is
    fetched with the first exchange. Use it as a context manager, or call :meth:`close`::

        with SystemUserClient(client_secret=secret, private_key="partner-key.xml",
                              environment="online") as client:
            ticket = client.get_ticket(context_identifier="Cust12345",
                                       system_user_token=system_user_token)

    Args:
        client_secret: the application's client secret, sent as ``ApplicationToken``.
            Required; never shown by ``repr``, errors or logs.
        private_key: the partner's RSA private key (at least 2048 bits), whose public half is
            registered for the application: a path, the key's bytes or text (PEM, DER or .NET
            ``<RSAKeyValue>``) or a cryptography ``RSAPrivateKey``. Required. See
            :func:`~sut_soap.load_private_key`.
        password: the passphrase of an encrypted PEM or DER key. Default None; given for a key
            that is not encrypted, it is an error.
        environment: ``"sod"`` (development), ``"qaonline"`` (alias ``"stage"``) or
            ``"online"`` (production). Exactly one of ``environment`` and ``endpoint``.
        endpoint: the PartnerSystemUserService URL instead of an environment: https, or http
            on loopback only (the emulator). The WSDL's own address is never used.
        jwks_url: where the JWT signing keys are fetched. Default: the environment's
            ``https://{env}.superoffice.com/login/.well-known/jwks``, or
            ``/login/.well-known/jwks`` on an explicit endpoint's host. Not with ``public_key``.
        public_key: validate JWTs offline with a pinned key instead of fetching a JWKS: a PEM
            public key, a PEM or DER certificate (``SuperOfficeFederatedLogin.crt``), a JWK or
            JWKS, as a path, bytes or text, or an ``RSAPublicKey``. Default None.
        timeout: seconds for connecting and for each read, a number or ``(connect, read)``,
            each below 3600. Default ``(5, 10)``. Each answer must also be at most 1 MiB.
            Applies to the transport the client creates.
        deadline: seconds one :meth:`authenticate` or :meth:`get_ticket` call may take in all,
            above 0 and at most 3600: connecting, sending, the answer's headers and body, a
            JWKS fetch inside it, and for ``get_ticket`` every retry and wait (another
            thread's exchange for the tenant included). Default 30. A server that drips its
            answer is cut at the deadline, and the call raises a retryable
            :class:`~sut_soap.errors.TransportError` within a few milliseconds of it (README:
            "Every call ends on time"). ``RetryPolicy(deadline=)`` can only shorten it.
        session: your own ``requests.Session`` (proxies, CA bundle, adapters), used as it is
            and left open by :meth:`close`. Default: kept-alive connections of the client's own
            (16 per host, proxies and CA bundle read from the environment once). Not
            with ``transport``.
        transport: your own :class:`~sut_soap.Transport`, through which every request goes (a
            recording, a replay, a test double). Default: an :class:`~sut_soap.HttpTransport`.
            Turns retrying off unless ``retry`` is given.
        allow_insecure_tls: ``True`` accepts a ``session`` with ``verify=False`` towards a
            remote https host, with one WARNING. Default False: such a session is refused.
        wsdl: another copy of the service WSDL, such as the one SuperOffice publishes.
            Default: the WSDL bundled with the package. Parsed once per process and path.
        leeway: seconds of clock skew allowed on the JWT's ``exp``, ``nbf`` and ``iat``, 0 to
            300. Default 300 (SuperOffice's own sample allows 5 minutes).
        expected_serial: also require this tenant database serial in the JWT. Default None.
        clock: a :class:`~sut_soap.Clock` read by every time-dependent decision (signing,
            ticket age, cache TTL, retry waits, JWT times, JWKS cooldown), or a callable
            returning an aware ``datetime`` (wall time only), for tests. Default: the system.
        cache: where :meth:`get_ticket` keeps tickets: a :class:`~sut_soap.TicketCache`
            (``get``, ``set``, ``delete``; with ``lease`` or ``lock``, for one exchange per
            fleet; see :mod:`sut_soap.cache` for the optional methods), such as a
            :class:`~sut_soap.RedisTicketCache` shared by many processes. Default: an
            :class:`~sut_soap.InMemoryTicketCache` of the client's own.
        ticket_lifetime: seconds a ticket is used after its exchange started, above 0 and at
            most 86400. Default 21600 (SuperOffice keeps a ticket 6 hours after its last use).
        refresh_ahead: seconds before ``ticket_lifetime`` at which :meth:`get_ticket` renews,
            from 0 to below the lifetime. Default None: :func:`default_refresh_ahead`
            (36 minutes for 6 hours).
        retry: the :class:`~sut_soap.RetryPolicy` with which :meth:`get_ticket` retries
            transient failures; None or ``RetryPolicy(attempts=1)`` turns retrying off.
            Default ``RetryPolicy()`` (3 attempts within 30 s), off when ``transport`` is given.
        rejection_cooldown: seconds during which :meth:`get_ticket` answers a rejected tenant
            and token with the same error again without an exchange, 0 (off) to 86400.
            Default 60.
        protocol: ``"soap"`` (default): the PartnerSystemUserService SOAP endpoint. ``"rest"``:
            the same exchange as JSON at ``/Login/api/PartnerSystemUser/Authenticate`` (see
            :mod:`sut_soap.rest`), for networks that block SOAP. Both sign, validate, cache and
            retry alike and give the same :class:`~sut_soap.SystemUserTicket`; with
            ``environment=`` the endpoint is that environment's URL for the protocol, an
            explicit ``endpoint=`` is used as given. ``wsdl=`` is for ``"soap"`` only.

    Attributes:
        endpoint: the service URL every exchange is POSTed to.
        protocol: ``"soap"`` or ``"rest"``, as given.
        environment: the canonical environment name, or None with an explicit ``endpoint``.
        jwks_url: the JWKS URL keys are fetched from; None with ``public_key``.
        deadline: as given, in seconds.
        ticket_lifetime: as given, in seconds.
        refresh_ahead: as given or defaulted, in seconds.
        retry: the policy :meth:`get_ticket` actually uses, or None when retrying is off.
        rejection_cooldown: as given, in seconds.

    Raises:
        ConfigurationError: any option out of range or of the wrong type, a key that cannot be
            loaded, an endpoint or JWKS URL that is not https, an unknown environment, a WSDL
            that cannot be read, a missing CA bundle, a ``verify=False`` session without
            ``allow_insecure_tls``, or conflicting options (``environment`` and ``endpoint``,
            ``session`` and ``transport``, ``public_key`` and ``jwks_url``), a ``protocol``
            other than ``"soap"`` or ``"rest"``, or ``wsdl`` with ``"rest"``.
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
        deadline: float = DEFAULT_DEADLINE,
        session: requests.Session | None = None,
        transport: Transport | None = None,
        wsdl: str | os.PathLike[str] | None = None,
        password: str | bytes | None = None,
        leeway: float = DEFAULT_LEEWAY,
        expected_serial: str | None = None,
        clock: Clock | Callable[[], datetime] | None = None,
        cache: TicketCache | None = None,
        ticket_lifetime: float = DEFAULT_TICKET_LIFETIME,
        refresh_ahead: float | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY_OPTION,
        rejection_cooldown: float = DEFAULT_REJECTION_COOLDOWN,
        allow_insecure_tls: bool = False,
        protocol: str = "soap",
    ) -> None:
        """Check every option and build the client; the options are described on the class."""
        timeout_pair = self._configure(
            client_secret=client_secret, private_key=private_key, password=password, environment=environment,
            endpoint=endpoint, timeout=timeout, deadline=deadline, clock=clock, cache=cache,
            ticket_lifetime=ticket_lifetime, refresh_ahead=refresh_ahead, retry=retry,
            transport_given=transport is not None, rejection_cooldown=rejection_cooldown,
            allow_insecure_tls=allow_insecure_tls, protocol=protocol, wsdl=wsdl,
        )
        self._transport: Transport = make_transport(
            transport, session, timeout=timeout_pair, deadline=self.deadline, clock=self._clock
        )
        self._configure_exchange(
            network=self._transport, jwks_transport=self._transport, public_key=public_key, jwks_url=jwks_url,
            leeway=leeway, expected_serial=expected_serial, wsdl=wsdl, allow_insecure_tls=allow_insecure_tls,
        )
        self._states = TenantStates(self._transport, state_base(self.environment, self.endpoint), self._clock,
                                    deadline=self.deadline)

    @property
    def transport(self) -> Transport:
        """The :class:`~sut_soap.Transport` every request of this client goes through."""
        return self._transport

    def authenticate(self, *, context_identifier: str, system_user_token: str) -> SystemUserTicket:
        """Sign the tenant's system user token, exchange it and return the validated ticket.

        Every call is a fresh exchange at SuperOffice, which creates a credential record there:
        keep the ticket and reuse it for hours instead of calling this before every request.
        This is exactly one exchange: no cache, no retry and no remembered rejection (see
        :meth:`get_ticket`), so each failure is seen as it is.

        Args:
            context_identifier: the tenant, such as ``Cust12345``.
            system_user_token: the tenant's system user token for this application, as
                received (it is signed here with the current UTC minute).

        Returns:
            The :class:`~sut_soap.SystemUserTicket`, from a JWT that passed every check.

        Raises:
            ConfigurationError: an empty value or one with control characters.
            TransportError: no answer (connection, timeout, TLS, the deadline), an HTTP status
                without a SOAP answer (``.status``), a redirect, or a JWKS that could not be
                fetched; ``retryable`` says whether the failure may pass by itself.
            ProtocolError: an answer that is not an acceptable SOAP 1.1 AuthenticationResponse.
            SoapFaultError: a SOAP Fault (``retryable`` for ``s:Server``).
            AuthenticationRejectedError: ``IsSuccessful=false``; ``.error_message`` says why.
            TokenValidationError: the returned JWT failed a check (``.check`` names it).
        """
        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        budget = _deadline.open_budget(self.deadline, self._clock.monotonic)
        try:
            return run(self._exchange(context, token, None), self._perform)
        finally:
            _deadline.leave(budget)

    def _attempt(self, context: str, token: str) -> tuple[Answer, datetime]:
        """Sign now, send, and read the answer: one attempt at the exchange."""
        return run(self._attempt_steps(context, token), self._perform)

    def _perform(self, step: Step) -> Any:
        """Perform one step of the shared decisions here, blocking the calling thread."""
        kind = type(step)
        if kind is Store:
            return step.call(*step.args)  # type: ignore[union-attr]
        if kind is Attempt:
            return self._attempt(step.context, step.token)  # type: ignore[union-attr]
        if kind is Validate:
            return self._validator.validate(step.token, context_identifier=step.context)  # type: ignore[union-attr]
        if kind is Sign:
            return sign_system_user_token(step.token, step.key, at=step.at)  # type: ignore[union-attr]
        if kind is Send:
            return call_transport(
                self._transport, step.method, step.url, body=step.body, headers=step.headers  # type: ignore[union-attr]
            )
        if kind is Wait:
            return step.flight.done.wait(step.timeout)  # type: ignore[union-attr]
        if kind is Sleep:
            return step.sleep(step.seconds)  # type: ignore[union-attr]
        return run(step.steps, self._perform)  # type: ignore[union-attr]  # Lead: the leader is this thread

    # -- cached tickets ------------------------------------------------------------------------

    def get_ticket(self, *, context_identifier: str, system_user_token: str) -> SystemUserTicket:
        """Return the tenant's cached ticket while it is fresh, else exchange (once) and cache it.

        Call it before each use of the tenant's API; it costs microseconds when the ticket is
        cached. Any number of threads asking for the same tenant cause one exchange; waiting
        callers get its ticket or its error. A ticket is never returned after
        ``ticket_lifetime``. When the tenant's API answers 401 with the ticket, call
        :meth:`invalidate` and then this once more.

        Without a usable cached ticket, transient failures are retried per ``retry=``: of the
        exchange, and of the JWKS fetch that validating its JWT needed (this validates the same
        JWT again, without another exchange). A
        rejection is raised again without an exchange for ``rejection_cooldown`` seconds (or
        until :meth:`invalidate`), so a misconfigured tenant does not hammer the service.
        While a due ticket is still valid, a renewal that fails with a retryable error returns
        it instead of raising. Once the retries are spent, the last attempt's error is raised.

        Args:
            context_identifier: the tenant, such as ``Cust12345``.
            system_user_token: the tenant's system user token. A different token for the same
                tenant never gets the ticket cached for the old one.

        Returns:
            The :class:`~sut_soap.SystemUserTicket`: the cached one while it is fresh (or due
            and its renewal failed), else a new one. A ticket read back from a shared store
            has ``token == ""``.

        Raises:
            ConfigurationError: an empty value or one with control characters.
            TransportError: no answer (connection, timeout, TLS, the deadline), an HTTP status
                without a SOAP answer (``.status``), a redirect, a JWKS that could not be
                fetched, or another thread's exchange for the tenant that did not finish within
                twice the bound of one exchange; ``retryable`` says whether it may pass.
            ProtocolError: an answer that is not an acceptable SOAP 1.1 AuthenticationResponse.
            SoapFaultError: a SOAP Fault (``retryable`` for ``s:Server``).
            AuthenticationRejectedError: ``IsSuccessful=false`` (``.error_message`` says why),
                or a rejection remembered within the cooldown (its message says so).
            TokenValidationError: the returned JWT failed a check (``.check`` names it).
        """
        if type(context_identifier) is str and type(system_user_token) is str:
            entry = self._read(
                self._key_prefix + context_identifier, context_identifier, self._fingerprint(system_user_token)
            )
            if entry is not None:
                age = entry.local_age(self._clock.monotonic())  # _age's first step, inlined on the hot path
                if age is None:
                    age = self._age(entry)
                if age < self._renew_after:
                    return entry.ticket
        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        budget = _deadline.open_budget(self.deadline, self._clock.monotonic)
        try:
            return run(self._renew(self._key_prefix + context, context, token, self._fingerprint(token)), self._perform)
        finally:
            _deadline.leave(budget)

    def tenant_state(self, context_identifier: str) -> TenantState:
        """The tenant's state from SuperOffice's tenant state API: running, where its API is, until when.

        ``GET {environment}/api/state/{context_identifier}`` (with an explicit ``endpoint=``, on
        its scheme and host) through the client's transport, within the client's ``deadline``;
        the answer is kept until its ``ValidUntil`` (at most a day, at most 10,000 tenants), so
        calling this before each use of the tenant's API costs a request only now and then, as
        SuperOffice asks. Details in :mod:`sut_soap.tenantstate`.

        Args:
            context_identifier: the tenant, such as ``Cust12345``.

        Returns:
            The :class:`~sut_soap.TenantState` of a running tenant (``Running`` or
            ``OnlineMaintenance``); ``api_url`` is where its API is now.

        Raises:
            ConfigurationError: an empty ``context_identifier`` or one with control characters.
            TenantNotRunningError: the state says the tenant is not running (``.state`` names it,
                ``.retry_after`` says when to look again); raised again until then without a request.
            TransportError: no answer, a redirect, or an HTTP status other than 200.
            ProtocolError: an answer that is not the state API's JSON for this tenant, or whose
                URLs are not https or point outside SuperOffice (the message says which).
        """
        context = check_text_value(context_identifier, "context identifier")
        return self._states.get(context)

    def auth(
        self, *, context_identifier: str, system_user_token: str, base_url: str | None = None
    ) -> TenantAuth:
        """An auth object for calling the tenant's API with ``requests`` or ``httpx``.

        Use it as ``requests.Session().auth`` (or ``auth=`` of one request) or as
        ``httpx.Client(auth=...)``. Each request gets ``Authorization: SOTicket <ticket>`` with
        the tenant's current ticket from :meth:`get_ticket` (cached) and ``SO-AppToken: <client
        secret>``. A 401 invalidates exactly the ticket that request carried (so many requests
        that all get 401 on it cause one exchange), and the request is sent once more with the
        new ticket if its body can be replayed (none, bytes, text, a seekable file, which is
        rewound; for httpx a body held in memory); a generator or stream gets the 401 back
        unsent, with one WARNING. A second 401 is returned as it is. The two headers are sent
        only to the tenant's API origin: a request elsewhere raises ``ConfigurationError``, and
        they are dropped from a followed redirect to another origin (with httpx, add
        ``auth.redirect_guard`` to the request event hooks for that). README: "Calling the
        tenant's API".

        Args:
            context_identifier: the tenant.
            system_user_token: the tenant's system user token.
            base_url: the tenant's API base URL (https, or http on loopback). Default None: the
                ``Api`` of :meth:`tenant_state`, read on the first request and kept until its
                ``ValidUntil``, so a tenant that is not running raises
                :class:`~sut_soap.errors.TenantNotRunningError` before anything is sent.

        Returns:
            A :class:`~sut_soap.TenantAuth`; with httpx installed also an ``httpx.Auth``
            (building the first one imports httpx). ``auth.base_url`` is the URL to build
            requests from.

        Raises:
            ConfigurationError: an empty or malformed value, or a ``base_url`` that is not https
                (http on loopback only) or carries credentials or a fragment.
        """
        from .apiauth import build  # noqa: PLC0415 -- the auth adapters load only for callers of the tenant's API

        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        return build(self, self._client_secret, context, token, base_url)


    def invalidate(self, context_identifier: str, *, ticket: SystemUserTicket | str | None = None) -> None:
        """Forget the tenant's cached ticket, so the next ``get_ticket`` exchanges.

        Pass ``ticket`` (the ticket that got the 401) to forget it only if it is still the cached
        one: when many callers see the same 401, the first invalidates and the others then leave
        the fresh ticket alone instead of causing one exchange each (a store that cannot be read
        is not trusted to tell: the entry is forgotten). Without ``ticket``, a
        remembered rejection of the tenant is forgotten too (say, once the tenant's
        administrator approved the application again). A store that raises is logged and
        skipped, never raised.

        Args:
            context_identifier: the tenant whose ticket to forget.
            ticket: the :class:`~sut_soap.SystemUserTicket` (or its ``ticket`` string) that
                stopped working; None forgets whatever is cached.

        Raises:
            ConfigurationError: an empty ``context_identifier`` or one with control characters.
        """
        self._invalidate(context_identifier, ticket=ticket)

    def get_tickets(
        self, tenants: Mapping[str, str], *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> dict[str, SystemUserTicket | SutSoapError]:
        """Warm up many tenants: ``{context_identifier: system_user_token}`` -> ticket or error per tenant.

        Runs :meth:`get_ticket` on up to ``max_workers`` threads (1 to 256) over the client's
        keep-alive connection pool, so cached tenants cost nothing and cold ones are exchanged
        concurrently. One tenant's failure never fails the batch: its value is the
        :class:`~sut_soap.errors.SutSoapError` instead of a ticket. The result keeps the order
        of ``tenants``. The client's own pools grow to ``max_workers``; a
        ``session=`` you passed is used as it is (mount an ``HTTPAdapter(pool_maxsize=...)``
        on it yourself).

        Args:
            tenants: ``{context_identifier: system_user_token}``.
            max_workers: threads to run, 1 to 256; default 16 (never more than tenants).

        Returns:
            ``{context_identifier: SystemUserTicket or SutSoapError}`` in the order of
            ``tenants``. An unexpected exception for one tenant becomes a non-retryable
            :class:`~sut_soap.errors.SutSoapError` naming only its type.

        Raises:
            ConfigurationError: ``max_workers`` out of range, or ``tenants`` not a mapping.
        """
        check_max_workers(max_workers)
        if not isinstance(tenants, Mapping):
            raise ConfigurationError("tenants must be a mapping of context identifier to system user token")
        items = list(tenants.items())
        if not items:
            return {}
        workers = min(max_workers, len(items))
        ensure_pool = getattr(self._transport, "ensure_pool", None)
        if callable(ensure_pool):
            ensure_pool(workers)

        def one(item: tuple[str, str]) -> SystemUserTicket | SutSoapError:
            try:
                return self.get_ticket(context_identifier=item[0], system_user_token=item[1])
            except SutSoapError as error:
                return error
            except Exception as exc:  # a bug, or a caller's transport misbehaving: keep the batch going
                return SutSoapError(f"unexpected {type(exc).__name__} while getting the ticket", retryable=False)

        if workers == 1:
            return {item[0]: one(item) for item in items}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sut-soap") as pool:
            return {item[0]: result for item, result in zip(items, pool.map(one, items), strict=True)}

    def close(self) -> None:
        """Close the transport and the key source's own transport, if it has one.

        The transport is closed whoever made it, a ``transport=`` you passed included; the
        default :class:`~sut_soap.HttpTransport` closes only its own pools, so a
        ``session=`` you passed stays open. The client should not be used afterwards.
        """
        self._transport.close()
        close = getattr(self._key_source, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> SystemUserClient:
        """Return the client; the ``with`` block ends with :meth:`close`."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Call :meth:`close`; exceptions from the block propagate."""
        self.close()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        """Refuse pickling and copying: a client holds its process's connections, locks and secrets."""
        raise not_picklable("a SystemUserClient")

    def __repr__(self) -> str:
        """The endpoint and JWKS URL; the client secret shows as ``***``."""
        return f"SystemUserClient(endpoint={self.endpoint!r}, jwks_url={self.jwks_url!r}, client_secret='***')"
