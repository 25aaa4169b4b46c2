"""What both clients are: the options, the exchange as steps, the cache keys, invalidation.

:class:`~sut_soap.SystemUserClient` and :class:`~sut_soap.AsyncSystemUserClient` are two
shells around this :class:`ClientCore`: each takes the same options (checked here, through
:mod:`sut_soap._options`), makes the same exchange (:meth:`ClientCore._exchange`: sign, build
the envelope, send, parse, validate the JWT, retried per the policy within the deadline) and
the same renewal decisions (:class:`~sut_soap._renewal.TicketRenewal`). The decisions are
generators of steps (:mod:`sut_soap._steps`); what a shell adds is how a step is performed:
blocking in the calling thread, or awaited on the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import _deadline, rest
from ._clock import Clock, as_clock
from ._options import (
    check_cache,
    check_cooldown,
    check_deadline,
    check_lifetime,
    check_protocol,
    check_timeout,
    effective_retry,
    exchange_bound,
    make_key_source,
)
from ._rejection import rejection
from ._renewal import TicketRenewal
from ._steps import Attempt, Send, Sign, Sleep, Step, Steps, Store, Validate, run
from .cache import CachedTicket, InMemoryTicketCache, TicketCache
from .contract import REST_PATH, SERVICE_PATH
from .environments import normalise_environment, resolve_endpoint
from .errors import ConfigurationError, ProtocolError, SutSoapError
from .keys import PrivateKeyInput, load_private_key
from .retry import RetryPolicy
from .signing import check_text_value
from .soap import Answer, SoapService, parse_answer
from .ticket import SystemUserTicket
from .tokens import TokenValidator
from .transport import Transport

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from .keysources import KeySource

__all__ = ["DEFAULT_RETRY_OPTION", "FINGERPRINT_MEMO", "ClientCore", "remember_fingerprint"]

_log = logging.getLogger("sut_soap.client")

#: The most token fingerprints a client memoises.
FINGERPRINT_MEMO = 100_000
#: The default of ``retry=``: identity tells "not given" from an explicit ``RetryPolicy()``.
DEFAULT_RETRY_OPTION = RetryPolicy()


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
        """The value itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class ClientCore(TicketRenewal):
    """The part of a client that does not depend on how it waits; see the module docstring.

    A shell calls :meth:`_configure` from its ``__init__`` (between the two, it builds its
    transport) and :meth:`_configure_exchange`, and performs the steps.
    """

    ticket_lifetime: float
    refresh_ahead: float
    deadline: float
    endpoint: str
    protocol: str
    environment: str | None
    jwks_url: str | None
    _key_source: KeySource
    _validator: TokenValidator

    def _configure(
        self,
        *,
        client_secret: str,
        private_key: PrivateKeyInput,
        password: str | bytes | None,
        environment: str | None,
        endpoint: str | None,
        timeout: object,
        deadline: object,
        clock: Clock | Callable[[], datetime] | None,
        cache: TicketCache | None,
        ticket_lifetime: float,
        refresh_ahead: float | None,
        retry: RetryPolicy | None,
        transport_given: bool,
        rejection_cooldown: float,
        allow_insecure_tls: bool,
        protocol: str,
        wsdl: str | os.PathLike[str] | None,
        async_store: bool = False,
    ) -> tuple[float, float]:
        """Check and keep every option but the transport and JWT ones; return the ``(connect, read)`` timeout.

        ``async_store``: an :class:`~sut_soap.AsyncTicketCache` is accepted (the async client's).
        """
        self._client_secret = _Secret(check_text_value(client_secret, "client secret"))
        self.ticket_lifetime, self.refresh_ahead = check_lifetime(ticket_lifetime, refresh_ahead)
        self.retry: RetryPolicy | None = effective_retry(
            retry, defaulted=retry is DEFAULT_RETRY_OPTION, transport_given=transport_given
        )
        self.rejection_cooldown = check_cooldown(rejection_cooldown)
        if not isinstance(allow_insecure_tls, bool):
            raise ConfigurationError("allow_insecure_tls must be True or False")
        self._renew_after = self.ticket_lifetime - self.refresh_ahead
        self._clock = as_clock(clock)
        self._now: Callable[[], float] = self._clock.wall
        self._cache: TicketCache = InMemoryTicketCache(clock=self._clock) if cache is None else check_cache(
            cache, asynchronous=async_store
        )
        self._private_key = load_private_key(private_key, password=password)
        self.protocol = check_protocol(protocol, wsdl)
        self.environment = normalise_environment(environment) if environment is not None else None
        self.endpoint = resolve_endpoint(
            environment=self.environment, endpoint=endpoint, path=REST_PATH if self.protocol == "rest" else SERVICE_PATH
        )
        checked = check_timeout(timeout)
        self.deadline = check_deadline(deadline)
        return checked

    def _configure_exchange(
        self,
        *,
        network: object,
        jwks_transport: Transport,
        public_key: str | bytes | os.PathLike[str] | RSAPublicKey | None,
        jwks_url: str | None,
        leeway: float,
        expected_serial: str | None,
        wsdl: str | os.PathLike[str] | None,
        allow_insecure_tls: bool,
    ) -> None:
        """Build the JWT validation (JWKS fetched through ``jwks_transport``), the envelopes and the cache keys.

        ``network`` is the shell's transport: one with ``prepare`` gets the endpoint and JWKS URL.
        """
        self._key_source, self.jwks_url = make_key_source(
            public_key=public_key,
            jwks_url=jwks_url,
            environment=self.environment,
            endpoint=self.endpoint,
            transport=jwks_transport,
            clock=self._clock,
        )
        self._leeway, self._expected_serial = leeway, expected_serial
        self._validator = TokenValidator(
            self._key_source, leeway=leeway, expected_serial=expected_serial, clock=self._clock
        )
        # The one difference between the protocols: how the request is written and the answer read.
        self._soap: SoapService | None = None
        self._build: Callable[..., tuple[bytes, dict[str, str]]] = rest.build_request
        self._parse: Callable[..., Answer] = rest.parse_answer
        if self.protocol == "soap":
            self._soap = SoapService(endpoint=self.endpoint, wsdl=Path(wsdl) if wsdl is not None else None)
            self._build, self._parse = self._soap.build, parse_answer
        prepare = getattr(network, "prepare", None)
        if callable(prepare):
            prepare((self.endpoint, self.jwks_url), allow_insecure_tls=allow_insecure_tls)
        self._hash_key, self._key_prefix = _cache_keys(self._client_secret.reveal(), self.endpoint)
        use_derived_key = getattr(self._cache, "use_derived_key", None)
        if callable(use_derived_key):
            use_derived_key(self._key_prefix, _store_key(self._client_secret.reveal(), self.endpoint))
        self._init_renewal(exchange_bound(self.deadline))
        self._fingerprints = _TokenMemo()

    @property
    def clock(self) -> Clock:
        """The :class:`~sut_soap.Clock` this client reads time from."""
        return self._clock

    # -- the exchange, as steps ----------------------------------------------------------------

    def _exchange(self, context: str, token: str, retry: RetryPolicy | None) -> Steps[SystemUserTicket]:
        """One exchange (retried per ``retry`` when given) and its validated ticket."""
        exchanged: list[tuple[Answer, datetime]] = []

        def attempt(budget: float | None) -> Steps[SystemUserTicket]:
            # One exchange per call: when only the validation failed, and retryably (a JWKS that
            # could not be fetched), the retry validates the same JWT again; exchanging again
            # would only add a credential record at SuperOffice.
            within = None if budget is None else _deadline.open_budget(budget, self._clock.monotonic)
            try:
                if not exchanged:
                    exchanged.append((yield Attempt(context, token)))
                answer, now = exchanged[0]
                if answer.token is None:  # parse_answer guarantees a token on success
                    raise ProtocolError("IsSuccessful is true but the answer carries no Token")
                claims = yield Validate(answer.token, context)
                return self._ticket(context, answer.token, claims, now)
            finally:
                if within is not None:
                    _deadline.leave(within)

        if retry is None:
            return (yield from attempt(None))
        schedule = retry.schedule(what=f"exchange for {context}", clock=self._clock, budget=_deadline.remaining())
        while True:
            try:
                return (yield from attempt(schedule.left()))
            except SutSoapError as error:
                wait = schedule.wait_after(error)
                if wait is None:
                    raise
            yield Sleep(wait, schedule.sleep)

    @staticmethod
    def _ticket(context: str, token: str, claims: dict[str, Any], now: datetime) -> SystemUserTicket:
        """The ticket from a successful answer's JWT, once it passed every check."""
        # The claims are the JWT's payload: the ticket keeps the JWT and decodes them when read.
        ticket = SystemUserTicket._from_validated_jwt(token, claims, context_identifier=context, obtained_at=now)
        if _log.isEnabledFor(logging.DEBUG):  # isoformat costs more than the check
            _log.debug("ticket for %s valid; JWT expires %s", context, ticket.expires_at.isoformat())
        return ticket

    def _attempt_steps(self, context: str, token: str) -> Steps[tuple[Answer, datetime]]:
        """Sign now, send, and read the answer: one attempt at the exchange."""
        secret = self._client_secret.reveal()
        now = self._clock.now()
        signed: str = yield Sign(token, self._private_key, now)
        body, headers = self._build(signed_token=signed, client_secret=secret, context_identifier=context)

        started = self._clock.monotonic()
        response = yield Send("POST", self.endpoint, body, headers)
        _log.debug(
            "exchange for %s: HTTP %s in %.1f ms",
            context, response.status_code, (self._clock.monotonic() - started) * 1000,
        )
        answer = self._parse(response, secrets=(secret, signed, token))
        if not answer.is_successful:
            raise rejection(context, answer.error_message)
        return answer, now

    # -- cached tickets ------------------------------------------------------------------------

    @property
    def cache(self) -> TicketCache:
        """The ticket store (an :class:`~sut_soap.cache.InMemoryTicketCache` unless ``cache=`` was given).

        Its entries are secrets: each holds a ticket for the tenant's APIs.
        """
        return self._cache

    def _invalidate(self, context_identifier: str, *, ticket: SystemUserTicket | str | None = None) -> None:
        """The sync client's ``invalidate``: :meth:`_invalidate_steps`, each store call made here."""
        run(self._invalidate_steps(context_identifier, ticket), _call_store)

    def _invalidate_steps(self, context_identifier: str, ticket: SystemUserTicket | str | None) -> Steps[None]:
        """Both clients' ``invalidate``: forget the tenant's ticket (only ``ticket``, if given) in the store.

        The client's own part (renewal back-off, a remembered rejection) is done before the first
        store step, so a shell that hands the store's part to a task has done it when it returns.
        """
        context = check_text_value(context_identifier, "context identifier")
        key = self._key_prefix + context
        for flight_key in [k for k in list(self._backoff) if k.startswith(key + "\x00")]:
            self._backoff.pop(flight_key, None)
        if ticket is None:
            self._rejections.forget(lambda flight_key: flight_key.startswith(key + "\x00"))
        given = None if ticket is None else (ticket.ticket if isinstance(ticket, SystemUserTicket) else ticket)
        delete_if = getattr(self._cache, "delete_if", None)
        if given is not None and callable(delete_if):
            try:
                # One step in the store: a slow process never deletes the newer ticket another stored.
                deleted = yield Store(delete_if, (key, given))
            except Exception as exc:
                self._store_failed("delete", exc)  # then delete() below, as for an unreadable store
            else:
                if deleted:
                    _log.debug("ticket for %s invalidated", context)
                return
        elif given is not None:
            try:
                entry = yield Store(self._cache.get, (key,))
            except Exception as exc:
                # Unreadable: the refused ticket may still be cached, so forget the entry (at
                # worst one extra exchange) rather than keep serving it once the store is back.
                self._store_failed("get", exc)
            else:
                if entry is None or (isinstance(entry, CachedTicket) and entry.ticket.ticket != given):
                    return
        try:
            yield Store(self._cache.delete, (key,))
        except Exception as exc:
            self._store_failed("delete", exc)
        _log.debug("ticket for %s invalidated", context)

    def _fingerprint(self, token: str) -> str:
        # Memoised: hashing is the largest cost of a cache hit.
        fingerprint = self._fingerprints.get(token)
        if fingerprint is None:
            fingerprint = remember_fingerprint(self._fingerprints, self._hash_key, token, FINGERPRINT_MEMO)
        return fingerprint

    def build_envelope(self, *, context_identifier: str, signed_system_token: str) -> tuple[bytes, dict[str, str]]:
        """Return the exact request body and HTTP headers ``authenticate`` would send.

        Nothing is sent. The body (the SOAP envelope, or the JSON of ``protocol="rest"``)
        carries the client secret and the signed token: treat it as a secret (the command
        line's ``envelope`` masks both unless asked not to).

        Args:
            context_identifier: the tenant, such as ``Cust12345``.
            signed_system_token: the signed token, as :func:`~sut_soap.sign_system_user_token`
                returns it.

        Returns:
            ``(body, headers)``: the UTF-8 envelope and its ``Content-Type`` and ``SOAPAction``;
            for REST the UTF-8 JSON and its ``Content-Type`` and ``Accept``.

        Raises:
            ConfigurationError: an empty value or one with control characters.
        """
        context = check_text_value(context_identifier, "context identifier")
        signed = check_text_value(signed_system_token, "signed system token")
        return self._build(signed_token=signed, client_secret=self._client_secret.reveal(), context_identifier=context)


def remember_fingerprint(memo: dict[str, str], hash_key: bytes, token: str, limit: int) -> str:
    """The keyed fingerprint of ``token``, kept in ``memo`` (cleared once it holds ``limit``).

    The process holds these tokens anyway (callers pass them, ticket claims carry them); the
    memo is bounded.
    """
    data = token.encode("utf-8", "surrogatepass")
    fingerprint = hashlib.blake2b(data, key=hash_key, digest_size=16).hexdigest()
    if len(memo) >= limit:
        memo.clear()
    memo[token] = fingerprint
    return fingerprint


def _cache_keys(client_secret: str, endpoint: str) -> tuple[bytes, str]:
    """The key for token fingerprints and the prefix of cache keys, both derived from the secret.

    Keyed with a hash of the client secret, so neither reveals a secret and two applications
    (or endpoints) never share an entry.
    """
    hash_key = hashlib.blake2b(b"sut-soap ticket cache v1\x00" + client_secret.encode("utf-8"), digest_size=32).digest()
    namespace = hashlib.blake2b(endpoint.encode("utf-8"), key=hash_key, digest_size=8).hexdigest()
    return hash_key, f"sut-soap:v1:{namespace}:"


def _store_key(client_secret: str, endpoint: str) -> bytes:
    """The 32-byte key a store may encrypt this client's entries at rest with (``use_derived_key``).

    HKDF-SHA256 of the client secret, bound to the endpoint: the store never sees the secret, and
    the key tells nothing about it.
    """
    info = b"sut-soap ticket cache at rest v1\x00" + endpoint.encode("utf-8")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(client_secret.encode("utf-8"))


def _call_store(step: Step) -> Any:
    """Perform a store step in the calling thread (the only steps of ``invalidate``)."""
    return step.call(*step.args)  # type: ignore[union-attr]
