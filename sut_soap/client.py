"""SystemUserClient: sign, exchange over SOAP, validate into a ticket; cache it per tenant.

One client serves many tenants. The client secret, partner key, endpoint, HTTP session,
parsed WSDL, JWKS cache and ticket cache belong to the client; the tenant (its
ContextIdentifier and system user token) arrives with each call. One instance is meant to be
shared between threads.

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
with a fresh timestamp); a renewal while the cached ticket is still valid is not retried, the
cached ticket is. A rejection (IsSuccessful=false) is remembered for ``rejection_cooldown``
seconds: the same tenant and system user token get the same error again without an exchange
until then or until :meth:`SystemUserClient.invalidate`. ``authenticate`` does neither: it is
always exactly one exchange.

Age is measured from the start of the exchange on the injectable wall clock, and for tickets
this process obtained also on the monotonic clock (the larger wins), so a wall clock set back
cannot keep a dead ticket alive. Single flight: for one tenant (and system user token) only one
exchange runs at a time in the process, whoever asks, and callers waiting for it share its
ticket or its error. Different tenants never wait for each other: no lock is held during an
exchange except that tenant's own.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._clock import Clock, as_clock
from ._contract import JWKS_PATH
from ._flight import Flights, Freshness, Rejections, freshness
from .cache import CachedTicket, InMemoryTicketCache, TicketCache
from .environments import jwks_url_for, normalise_environment, resolve_endpoint, validate_endpoint
from .errors import AuthenticationRejectedError, ConfigurationError, ProtocolError, SutSoapError, TransportError
from .keys import PrivateKeyInput, load_private_key
from .retry import RetryPolicy
from .signing import check_text_value, sign_system_user_token
from .soap import Answer, SoapService, parse_answer
from .ticket import SystemUserTicket
from .tokens import DEFAULT_LEEWAY, JwksKeySource, KeySource, TokenValidator, key_source_from_public_key
from .transport import DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, HttpTransport, Transport, call_transport

if TYPE_CHECKING:
    import requests
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_REJECTION_COOLDOWN",
    "DEFAULT_TICKET_LIFETIME",
    "RetryPolicy",
    "SystemUserClient",
    "default_refresh_ahead",
]

_log = logging.getLogger("sut_soap.client")

#: SuperOffice keeps a ticket valid for 6 hours after its last use.
DEFAULT_TICKET_LIFETIME = 6 * 3600.0
#: Threads of ``get_tickets`` and connections in the pool of a session the client creates.
DEFAULT_MAX_WORKERS = DEFAULT_POOL_SIZE
_MAX_WORKERS_LIMIT = 256
_MAX_TICKET_LIFETIME = 24 * 3600.0
# After a failed renewal of a still-valid ticket: how long to keep using it before trying again.
_RENEWAL_BACKOFF = 30.0
_FINGERPRINT_MEMO = 100_000
# Store failures are logged at WARNING at most this often per operation, else at DEBUG.
_STORE_WARNING_INTERVAL = 60.0
#: Seconds an identical rejected exchange is not sent again by ``get_ticket`` (MSAL waits 60 s).
DEFAULT_REJECTION_COOLDOWN = 60.0
_MAX_REJECTION_COOLDOWN = 24 * 3600.0
# The default of retry=: identity tells "not given" from an explicit RetryPolicy().
_DEFAULT_RETRY = RetryPolicy()


def default_refresh_ahead(ticket_lifetime: float) -> float:
    """max(300 s, 10 % of the lifetime), at most half of it: 36 minutes for 6 hours."""
    return min(max(300.0, 0.1 * ticket_lifetime), 0.5 * ticket_lifetime)

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


class _TokenMemo(dict[str, str]):
    """System user token -> fingerprint; its repr shows only the size (the keys are secrets)."""

    def __repr__(self) -> str:
        return f"<{len(self)} token fingerprints>"

    __str__ = __repr__


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


def _jwks_url_of_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}{JWKS_PATH}"


class SystemUserClient:
    """Exchange system user tokens for validated system user tickets, for many tenants.

    One client per application (client secret and partner key) and environment, shared by
    every thread; the tenant arrives with each call. Options (keyword-only):

    client_secret:
        The application's client secret, sent as ``ApplicationToken``. Required.
    private_key:
        The partner's RSA private key (at least 2048 bits): a path, the key's bytes or text
        (PEM, DER or .NET ``<RSAKeyValue>``) or a cryptography ``RSAPrivateKey``. Required.
    password:
        The passphrase of an encrypted PEM key. Default None.
    environment / endpoint:
        ``"sod"``, ``"qaonline"`` (alias ``"stage"``) or ``"online"``; or the service URL
        (https, except on loopback). Exactly one is required.
    jwks_url:
        Where the JWT signing keys are fetched. Default: the environment's JWKS, or
        ``/login/.well-known/jwks`` on an explicit endpoint's host.
    public_key:
        Validate JWTs offline with a PEM public key, a PEM/DER certificate or a JWKS file
        instead of fetching a JWKS. Not together with ``jwks_url``. Default None.
    timeout:
        Seconds for connecting and for each read, a number or ``(connect, read)``; default
        ``(5, 10)``. Unbounded waits are refused. Each answer must also arrive within 30 s.
    session:
        Your own ``requests.Session`` (proxies, CA bundle, adapters), used as it is and
        left open. Default: a session of the client's own. Not together with ``transport``.
    transport:
        Your own :class:`~sut_soap.Transport`, through which every request goes (a
        recording, a replay, a test double). Default: an :class:`~sut_soap.HttpTransport`.
    allow_insecure_tls:
        ``True`` accepts a session with ``verify=False`` towards a remote https host, with one
        WARNING. Default False: such a session is a ``ConfigurationError``.
    wsdl:
        Another copy of the service WSDL (such as SuperOffice's published one). Default:
        the bundled WSDL.
    leeway:
        Seconds of clock skew allowed on the JWT's time claims, 0 to 300. Default 300.
    expected_serial:
        Also require this tenant database serial in the JWT. Default None.
    clock:
        A :class:`~sut_soap.Clock`, or a callable returning an aware ``datetime`` (wall
        time only), for tests. Default: the system clock.
    cache:
        The :class:`~sut_soap.TicketCache` for ``get_ticket``. Default: an
        :class:`~sut_soap.InMemoryTicketCache` of the client's own.
    ticket_lifetime:
        Seconds a ticket is used after it was obtained, above 0 and at most 86400. Default
        21600 (SuperOffice keeps a ticket for 6 hours after its last use).
    refresh_ahead:
        Seconds before ``ticket_lifetime`` when ``get_ticket`` renews; default
        :func:`default_refresh_ahead` (36 minutes for 6 hours).
    retry:
        The :class:`~sut_soap.RetryPolicy` of ``get_ticket``; None turns retrying off.
        Default ``RetryPolicy()`` (3 attempts, 30 s), off when ``transport`` is given.
    rejection_cooldown:
        Seconds a rejected tenant and token get the same error again from ``get_ticket``
        without an exchange, 0 (off) to 86400. Default 60.

    Raises:
        ConfigurationError: any option out of range, a key that cannot be loaded, an endpoint
            that is not https, a missing CA bundle, or conflicting options.
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
        transport: Transport | None = None,
        wsdl: str | os.PathLike[str] | None = None,
        password: str | bytes | None = None,
        leeway: float = DEFAULT_LEEWAY,
        expected_serial: str | None = None,
        clock: Clock | Callable[[], datetime] | None = None,
        cache: TicketCache | None = None,
        ticket_lifetime: float = DEFAULT_TICKET_LIFETIME,
        refresh_ahead: float | None = None,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        rejection_cooldown: float = DEFAULT_REJECTION_COOLDOWN,
        allow_insecure_tls: bool = False,
    ) -> None:
        self._client_secret = _Secret(check_text_value(client_secret, "client secret"))
        self.ticket_lifetime, self.refresh_ahead = _check_lifetime(ticket_lifetime, refresh_ahead)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy or None")
        # A transport= given (recording, replay, a test double) answers each exchange as it sees
        # fit; retrying over it unasked would replay or record more exchanges than the caller made.
        self.retry: RetryPolicy | None = (
            None if retry is None or (retry is _DEFAULT_RETRY and transport is not None) or retry.attempts == 1
            else retry
        )
        self.rejection_cooldown = _check_cooldown(rejection_cooldown)
        if not isinstance(allow_insecure_tls, bool):
            raise ConfigurationError("allow_insecure_tls must be True or False")
        self._renew_after = self.ticket_lifetime - self.refresh_ahead
        self._clock = as_clock(clock)
        self._now: Callable[[], float] = self._clock.wall
        self._cache: TicketCache = InMemoryTicketCache(clock=self._clock) if cache is None else _check_cache(cache)
        self._private_key = load_private_key(private_key, password=password)
        self.environment = normalise_environment(environment) if environment is not None else None
        self.endpoint = resolve_endpoint(environment=self.environment, endpoint=endpoint)
        timeout = _check_timeout(timeout)

        if transport is not None and session is not None:
            raise ConfigurationError("give either session= or transport=, not both")
        if transport is not None and not callable(getattr(transport, "request", None)):
            raise ConfigurationError(
                "transport must be a sut_soap.Transport: an object with request(method, url, ...) and close()",
                hint="wrap a requests.Session with session= instead; zeep transports are no longer accepted",
            )
        self._transport: Transport = (
            transport if transport is not None else HttpTransport(session, timeout=timeout, clock=self._clock)
        )

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
            key_source = JwksKeySource(self.jwks_url, transport=self._transport, clock=self._clock)
        self._key_source = key_source
        self._validator = TokenValidator(
            key_source, leeway=leeway, expected_serial=expected_serial, clock=self._clock
        )
        self._soap = SoapService(endpoint=self.endpoint, wsdl=Path(wsdl) if wsdl is not None else None)
        prepare = getattr(self._transport, "prepare", None)
        if callable(prepare):
            prepare((self.endpoint, self.jwks_url), allow_insecure_tls=allow_insecure_tls)

        # Cache keys and token fingerprints are keyed with a hash of the client secret, so
        # neither reveals a secret and two applications never share an entry.
        self._hash_key = hashlib.blake2b(
            b"sut-soap ticket cache v1\x00" + self._client_secret.reveal().encode("utf-8"), digest_size=32
        ).digest()
        namespace = hashlib.blake2b(self.endpoint.encode("utf-8"), key=self._hash_key, digest_size=8).hexdigest()
        self._key_prefix = f"sut-soap:v1:{namespace}:"
        self._store_lock: Callable[..., AbstractContextManager[object]] | None = (
            getattr(self._cache, "lock", None) if callable(getattr(self._cache, "lock", None)) else None
        )
        connect, read = timeout
        # Upper bound of one exchange, retries included: connect + the 30 s answer deadline
        # (or the retry deadline, which cuts every attempt to what is left), plus a JWKS fetch.
        total = 30.0 if self.retry is None else max(30.0, self.retry.deadline)
        self._exchange_bound = 2 * (connect + read) + total
        self._flights = Flights()
        self._backoff: dict[str, float] = {}
        self._rejections = Rejections(self.rejection_cooldown, self._clock)
        self._store_warned: dict[str, float] = {}
        self._fingerprints = _TokenMemo()

    @property
    def transport(self) -> Transport:
        """The :class:`~sut_soap.Transport` every request of this client goes through."""
        return self._transport

    @property
    def clock(self) -> Clock:
        """The :class:`~sut_soap.Clock` this client reads time from."""
        return self._clock

    def authenticate(self, *, context_identifier: str, system_user_token: str) -> SystemUserTicket:
        """Sign the tenant's system user token, exchange it and return the validated ticket.

        Every call is a fresh exchange at SuperOffice, which creates a credential record there:
        keep the ticket and reuse it for hours instead of calling this before every request.
        This is exactly one exchange: no retry and no remembered rejection (see :meth:`get_ticket`).
        """
        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        return self._authenticate(context, token, None)

    def _authenticate(self, context: str, token: str, retry: RetryPolicy | None) -> SystemUserTicket:
        if retry is None:
            answer, now = self._attempt(context, token, None)
        else:
            answer, now = retry.call(
                lambda budget: self._attempt(context, token, budget), what=f"exchange for {context}", clock=self._clock
            )
        if answer.token is None:  # parse_answer guarantees a token on success
            raise ProtocolError("IsSuccessful is true but the answer carries no Token")
        # Outside the retries: a JWKS or validation failure would not change by exchanging again.
        claims = self._validator.validate(answer.token, context_identifier=context)
        ticket = SystemUserTicket.from_claims(answer.token, claims, obtained_at=now)
        _log.debug("ticket for %s valid; JWT expires %s", context, ticket.expires_at.isoformat())
        return ticket

    def _attempt(self, context: str, token: str, budget: float | None) -> tuple[Answer, datetime]:
        """Sign now, send, and read the answer: one attempt at the exchange."""
        secret = self._client_secret.reveal()
        now = self._clock.now()
        signed = sign_system_user_token(token, self._private_key, at=now)
        body, headers = self._soap.build(signed_token=signed, client_secret=secret, context_identifier=context)

        started = self._clock.monotonic()
        response = call_transport(self._transport, "POST", self.endpoint, body=body, headers=headers, deadline=budget)
        _log.debug(
            "exchange for %s: HTTP %s in %.1f ms",
            context, response.status_code, (self._clock.monotonic() - started) * 1000,
        )
        answer = parse_answer(response, secrets=(secret, signed, token))
        if not answer.is_successful:
            raise _rejection(context, answer.error_message)
        return answer, now

    # -- cached tickets ------------------------------------------------------------------------

    @property
    def cache(self) -> TicketCache:
        """The ticket store (an :class:`~sut_soap.cache.InMemoryTicketCache` unless ``cache=`` was given)."""
        return self._cache

    def get_ticket(self, *, context_identifier: str, system_user_token: str) -> SystemUserTicket:
        """Return the tenant's cached ticket while it is fresh, else exchange (once) and cache it.

        Call it before each use of the tenant's API; it costs microseconds when the ticket is
        cached. Any number of threads asking for the same tenant cause one exchange; waiting
        callers get its ticket or its error. A ticket is never returned after
        ``ticket_lifetime``. When the tenant's API answers 401 with the ticket, call
        :meth:`invalidate` and then this once more.

        Without a usable cached ticket, transient failures are retried per ``retry=``. A
        rejection is raised again without an exchange for ``rejection_cooldown`` seconds (or
        until :meth:`invalidate`), so a misconfigured tenant does not hammer the service.
        """
        if type(context_identifier) is str and type(system_user_token) is str:
            entry = self._read(
                self._key_prefix + context_identifier, context_identifier, self._fingerprint(system_user_token)
            )
            if entry is not None and self._age(entry) < self._renew_after:
                return entry.ticket
        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        return self._renew(self._key_prefix + context, context, token, self._fingerprint(token))

    def invalidate(self, context_identifier: str, *, ticket: SystemUserTicket | str | None = None) -> None:
        """Forget the tenant's cached ticket, so the next :meth:`get_ticket` exchanges.

        Pass ``ticket`` (the ticket that got the 401) to forget it only if it is still the cached
        one: when many threads see the same 401, the first invalidates and the others then leave
        the fresh ticket alone instead of causing one exchange each (a store that cannot be read
        is not trusted to tell: the entry is forgotten). Without ``ticket``, a
        remembered rejection of the tenant is forgotten too (say, once the tenant's
        administrator approved the application again).
        """
        context = check_text_value(context_identifier, "context identifier")
        key = self._key_prefix + context
        if ticket is not None:
            given = ticket.ticket if isinstance(ticket, SystemUserTicket) else ticket
            try:
                entry = self._cache.get(key)
            except Exception as exc:
                # Unreadable: the refused ticket may still be cached, so forget the entry (at
                # worst one extra exchange) rather than keep serving it once the store is back.
                self._store_failed("get", exc)
            else:
                if entry is None or (isinstance(entry, CachedTicket) and entry.ticket.ticket != given):
                    return
        for flight_key in [k for k in list(self._backoff) if k.startswith(key + "\x00")]:
            self._backoff.pop(flight_key, None)
        if ticket is None:
            self._rejections.forget(lambda flight_key: flight_key.startswith(key + "\x00"))
        try:
            self._cache.delete(key)
        except Exception as exc:
            self._store_failed("delete", exc)
        _log.debug("ticket for %s invalidated", context)

    def get_tickets(
        self, tenants: Mapping[str, str], *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> dict[str, SystemUserTicket | SutSoapError]:
        """Warm up many tenants: ``{context_identifier: system_user_token}`` -> ticket or error per tenant.

        Runs :meth:`get_ticket` on up to ``max_workers`` threads (1 to 256) over the client's
        keep-alive connection pool, so cached tenants cost nothing and cold ones are exchanged
        concurrently. One tenant's failure never fails the batch: its value is the
        :class:`~sut_soap.errors.SutSoapError` instead of a ticket. The result keeps the order
        of ``tenants``. A session the client created grows its pool to ``max_workers``; a
        ``session=`` you passed is used as it is (mount an ``HTTPAdapter(pool_maxsize=...)``
        on it yourself).
        """
        if (
            isinstance(max_workers, bool)
            or not isinstance(max_workers, int)
            or not 1 <= max_workers <= _MAX_WORKERS_LIMIT
        ):
            raise ConfigurationError(f"max_workers must be an integer from 1 to {_MAX_WORKERS_LIMIT}")
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

    def _fingerprint(self, token: str) -> str:
        # Memoised: hashing is the largest cost of a cache hit. The process holds these tokens
        # anyway (callers pass them, ticket claims carry them); the memo is bounded.
        fingerprint = self._fingerprints.get(token)
        if fingerprint is None:
            data = token.encode("utf-8", "surrogatepass")
            fingerprint = hashlib.blake2b(data, key=self._hash_key, digest_size=16).hexdigest()
            if len(self._fingerprints) >= _FINGERPRINT_MEMO:
                self._fingerprints.clear()
            self._fingerprints[token] = fingerprint
        return fingerprint

    def _freshness(self, entry: CachedTicket) -> Freshness:
        return freshness(self._age(entry), renew_after=self._renew_after, lifetime=self.ticket_lifetime)

    def _age(self, entry: CachedTicket) -> float:
        age = self._now() - entry.obtained_ts
        local = entry.local_age(self._clock.monotonic())
        return local if local is not None and local > age else age

    def _read(self, key: str, context: str, fingerprint: str) -> CachedTicket | None:
        try:
            entry = self._cache.get(key)
        except Exception as exc:
            self._store_failed("get", exc)
            return None
        if (
            entry is None
            or not isinstance(entry, CachedTicket)
            or entry.ticket.context_identifier != context
            or entry.token_fingerprint != fingerprint
        ):
            return None
        return entry

    def _renew(self, key: str, context: str, token: str, fingerprint: str) -> SystemUserTicket:
        flight_key = f"{key}\x00{fingerprint}"
        while True:
            usable: CachedTicket | None = None
            entry = self._read(key, context, fingerprint)
            if entry is not None:
                state = self._freshness(entry)
                if state is Freshness.FRESH:
                    return entry.ticket
                if state is Freshness.DUE:
                    usable = entry
                    until = self._backoff.get(flight_key)
                    if until is not None and self._clock.monotonic() < until:
                        return entry.ticket
            # Checked before any lock, so a remembered rejection costs no fleet-lock round trip.
            remembered = self._remembered_rejection(flight_key, context)
            if remembered is not None:
                raise remembered
            flight, leader = self._flights.join(flight_key)
            if not leader:
                if usable is not None:  # someone is renewing it; this one is still valid
                    return usable.ticket
                if not flight.done.wait(2 * self._exchange_bound):
                    raise TransportError(
                        f"the exchange for tenant {context} in another thread did not finish in time",
                        retryable=True,
                    )
                if flight.ticket is not None:
                    return flight.ticket
                if flight.error is not None:
                    raise flight.error
                continue  # the leader was interrupted without an outcome: try again
            try:
                ticket = self._lead(key, context, token, fingerprint, flight_key)
                flight.ticket = ticket
                return ticket
            except BaseException as error:
                flight.error = error if isinstance(error, Exception) else None
                raise
            finally:
                self._flights.land(flight_key, flight)

    def _lead(self, key: str, context: str, token: str, fingerprint: str, flight_key: str) -> SystemUserTicket:
        with self._fleet_lock(key):
            usable: CachedTicket | None = None
            entry = self._read(key, context, fingerprint)  # renewed meanwhile by a thread or process?
            if entry is not None:
                state = self._freshness(entry)
                if state is Freshness.FRESH:
                    return entry.ticket
                if state is Freshness.DUE:
                    usable = entry
            remembered = self._remembered_rejection(flight_key, context)
            if remembered is not None:
                raise remembered
            _log.debug(
                "ticket for %s %s; exchanging", context,
                "missing" if entry is None else ("due for renewal" if usable is not None else "expired"),
            )
            started = self._clock.monotonic()
            try:
                # With a still-valid ticket in hand, a failed renewal falls back to it at once
                # rather than making the caller wait out retries.
                ticket = self._authenticate(context, token, self.retry if usable is None else None)
            except SutSoapError as error:
                if isinstance(error, AuthenticationRejectedError):
                    self._rejections.remember(flight_key, error)
                if usable is not None and error.retryable and self._age(usable) < self.ticket_lifetime:
                    self._backoff[flight_key] = self._clock.monotonic() + _RENEWAL_BACKOFF
                    _log.warning(
                        "renewing the ticket for %s failed (%s: %s); using the cached ticket, which stays "
                        "valid for %.0f s more", context, type(error).__name__, error.message,
                        self.ticket_lifetime - self._age(usable),
                    )
                    return usable.ticket
                raise
            self._backoff.pop(flight_key, None)
            fresh = CachedTicket(ticket, token_fingerprint=fingerprint, obtained_monotonic=started)
            try:
                self._cache.set(key, fresh, max(1.0, self.ticket_lifetime - (self._clock.monotonic() - started)))
            except Exception as exc:
                self._store_failed("set", exc)
            return ticket

    def _remembered_rejection(self, flight_key: str, context: str) -> AuthenticationRejectedError | None:
        remembered = self._rejections.recall(flight_key)
        if remembered is None:
            return None
        original, age = remembered
        _log.debug("exchange for %s not sent: the same exchange was rejected %.0f s ago", context, age)
        # A new instance per raise: re-raising one object would grow its traceback forever.
        return AuthenticationRejectedError(
            f"{original.message} (remembered: rejected {age:.0f} s ago, not sent again for "
            f"{self.rejection_cooldown:g} s or until invalidate())",
            error_message=original.error_message,
            hint=original.hint,
        )

    @contextmanager
    def _fleet_lock(self, key: str) -> Iterator[None]:
        """The store's cross-process lock for ``key`` if it has one; a failing store is skipped."""
        held: AbstractContextManager[object] | None = None
        if self._store_lock is not None:
            try:
                candidate = self._store_lock(key, self._exchange_bound)
                candidate.__enter__()
                held = candidate
            except Exception as exc:
                self._store_failed("lock", exc)
        try:
            yield
        finally:
            if held is not None:
                try:
                    held.__exit__(None, None, None)
                except Exception as exc:
                    self._store_failed("unlock", exc)

    def _store_failed(self, operation: str, exc: Exception) -> None:
        now = self._clock.monotonic()
        last = self._store_warned.get(operation)
        level = logging.DEBUG if last is not None and now - last < _STORE_WARNING_INTERVAL else logging.WARNING
        if level == logging.WARNING:
            self._store_warned[operation] = now
        _log.log(
            level, "ticket cache %s failed (%s); carrying on without the cache", operation, type(exc).__name__
        )

    def build_envelope(self, *, context_identifier: str, signed_system_token: str) -> tuple[bytes, dict[str, str]]:
        """Return the exact request envelope and HTTP headers ``authenticate`` would send."""
        context = check_text_value(context_identifier, "context identifier")
        signed = check_text_value(signed_system_token, "signed system token")
        return self._soap.build(
            signed_token=signed, client_secret=self._client_secret.reveal(), context_identifier=context
        )

    def close(self) -> None:
        """Close the transport (its own HTTP session; a ``session=`` passed in stays open)."""
        self._transport.close()
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


def _check_lifetime(ticket_lifetime: object, refresh_ahead: object) -> tuple[float, float]:
    if (
        isinstance(ticket_lifetime, bool)
        or not isinstance(ticket_lifetime, (int, float))
        or not 0 < ticket_lifetime <= _MAX_TICKET_LIFETIME
    ):
        raise ConfigurationError(
            "ticket_lifetime must be a number of seconds above 0 and at most 86400",
            hint="SuperOffice keeps a ticket valid for 6 hours (21600 s) after its last use",
        )
    lifetime = float(ticket_lifetime)
    if refresh_ahead is None:
        return lifetime, default_refresh_ahead(lifetime)
    if (
        isinstance(refresh_ahead, bool)
        or not isinstance(refresh_ahead, (int, float))
        or not 0 <= refresh_ahead < lifetime
    ):
        raise ConfigurationError("refresh_ahead must be a number of seconds from 0 to below ticket_lifetime")
    return lifetime, float(refresh_ahead)


def _check_cooldown(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= _MAX_REJECTION_COOLDOWN
    ):
        raise ConfigurationError("rejection_cooldown must be a number of seconds from 0 (off) to 86400")
    return float(value)


def _check_cache(cache: object) -> TicketCache:
    if not all(callable(getattr(cache, name, None)) for name in ("get", "set", "delete")):
        raise ConfigurationError("cache must have get(key), set(key, entry, ttl) and delete(key) methods")
    return cache  # type: ignore[return-value]


def _rejection(context: str, error_message: str | None) -> AuthenticationRejectedError:
    text = error_message or "(no ErrorMessage)"
    lowered = text.lower()
    hint = next((h for key, h in _REJECTION_HINTS if key in lowered), None)
    return AuthenticationRejectedError(
        f"SuperOffice rejected the exchange for tenant {context}: {text}",
        error_message=error_message or "",
        hint=hint,
    )
