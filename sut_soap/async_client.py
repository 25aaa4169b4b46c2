"""AsyncSystemUserClient: the system user client for asyncio services, with the same guarantees.

The same options, the same exchange and the same decisions as
:class:`~sut_soap.SystemUserClient`: the cache, freshness and renewal ahead, single flight,
retries within the deadline, rejection memory and stale-on-error are one implementation
(:mod:`sut_soap._core`, :mod:`sut_soap._renewal`), written as steps (:mod:`sut_soap._steps`).
This module only performs those steps on an event loop:

- the network through an :class:`~sut_soap.AsyncTransport` (by default the
  :class:`~sut_soap.transport.AiohttpTransport` of the ``sut-soap[async]`` extra, which keeps
  the sync transport's policy on aiohttp), each await bounded by the call's deadline;
- waits with ``asyncio``: a retry's pause, another task's exchange for the same tenant;
- each exchange's leader in a task of its own, awaited through :func:`asyncio.shield`:
  cancelling the task that started an exchange does not cancel it for the tasks waiting on it,
  and its flight always lands, so the tenant is never wedged;
- nothing that blocks on the loop: the key and the WSDL are loaded when the client is built,
  signing runs on the loop, in turn (below),
  the in-memory store is called directly (it never waits), an async store
  (:class:`~sut_soap.AsyncTicketCache`, such as :class:`~sut_soap.AsyncRedisTicketCache`) is
  awaited on the loop, a sync store that does I/O (such as :class:`~sut_soap.RedisTicketCache`)
  is called in a worker thread, and a JWT whose key is not in the cached JWKS is validated in a
  worker thread, whose fetch goes through the client's async transport.
- the client's own work on the loop in slices: reading an answer, validating its JWT and
  signing on the loop (a fraction of a millisecond each) take a share of about 2 ms per loop
  iteration between them; what does not fit waits for the next iteration, in order. Many
  answers arriving together therefore never hold up the loop's other tasks and timers for
  longer than that.

One client per process and event loop: build it where the loop runs (a FastAPI lifespan, an
``async with`` in ``main``), share it between every task, and close it with :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, SupportsIndex, TypeVar, cast

from . import _deadline
from ._clock import Clock
from ._core import DEFAULT_RETRY_OPTION, ClientCore
from ._flight import Flight
from ._fork import not_picklable
from ._options import (
    DEFAULT_REJECTION_COOLDOWN,
    DEFAULT_TICKET_LIFETIME,
    check_max_workers,
    is_async_store,
    make_async_transport,
)
from ._steps import Attempt, Lead, Send, Sign, Sleep, Step, Steps, Store, Validate, Wait, is_system_sleep
from .cache import AsyncTicketCache, CachedTicket, InMemoryTicketCache, TicketCache
from .errors import ConfigurationError, SutSoapError, TransportError
from .keys import PrivateKeyInput
from .keysources import JwksKeySource
from .retry import RetryPolicy
from .signing import check_text_value, sign_system_user_token
from .tenantstate import AsyncTenantStates, TenantState, state_base
from .ticket import SystemUserTicket
from .tokens import DEFAULT_LEEWAY, TokenValidator
from .transport import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, AsyncTransport, Response, acall_transport

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from .apiauth import AsyncTenantAuth

__all__ = ["DEFAULT_CONCURRENCY", "AsyncSystemUserClient", "Invalidation"]

_log = logging.getLogger("sut_soap.client")

T = TypeVar("T")

#: Tenants ``get_tickets`` works on at a time unless told otherwise.
DEFAULT_CONCURRENCY = 64
# How long past the call's deadline its await is given before it is cut: every request and wait
# inside ends at the deadline by itself, with a more precise error than this cut can give.
_GRACE = 0.1
# The share of one event-loop iteration the client's own work may take (reading an answer,
# validating a JWT, signing on the loop: 0.1 to 1 ms each). 64 answers arriving together would
# otherwise hold every timer and every other task up for tens of milliseconds.
_TURN_BUDGET = 0.002


class AsyncSystemUserClient(ClientCore):
    """Exchange system user tokens for validated system user tickets, for many tenants, on asyncio.

    The asyncio twin of :class:`~sut_soap.SystemUserClient`: the same options (but ``session=``:
    see ``transport``), the same decisions, the same errors, with ``await``. One client per
    application, environment and process, shared by every task of its event loop; the tenant
    arrives with each call. Building it loads the key and parses the WSDL (milliseconds, once)
    but sends nothing. Use it as an async context manager, or call :meth:`aclose`::

        async with AsyncSystemUserClient(client_secret=secret, private_key="partner-key.xml",
                                         environment="online") as client:
            ticket = await client.get_ticket(context_identifier="Cust12345",
                                             system_user_token=system_user_token)

    Args:
        client_secret, private_key, password, environment, endpoint, jwks_url, public_key,
        timeout, deadline, allow_insecure_tls, wsdl, leeway, expected_serial, clock,
        ticket_lifetime, refresh_ahead, retry, rejection_cooldown, protocol: as for
        :class:`~sut_soap.SystemUserClient`. ``deadline`` bounds every ``await`` of a call,
            waits for another task's exchange included. An injected ``clock``'s ``sleep`` (or a
            ``RetryPolicy(sleep=)``) is called as it is, for tests; the system's sleep becomes
            :func:`asyncio.sleep`.
        transport: your own :class:`~sut_soap.AsyncTransport`, through which every request goes,
            the JWKS included. Default: an :class:`~sut_soap.transport.AiohttpTransport` (the
            ``timeout`` and ``deadline`` given; needs ``sut-soap[async]``); for your own
            ``requests.Session`` or sync transport, pass
            ``ThreadedAsyncTransport(HttpTransport(session))``. Turns retrying off unless
            ``retry`` is given.
        cache: where :meth:`get_ticket` keeps tickets. The default
            :class:`~sut_soap.InMemoryTicketCache` is called on the loop (it never waits). An
            :class:`~sut_soap.AsyncTicketCache` (such as :class:`~sut_soap.AsyncRedisTicketCache`,
            for a fleet) is awaited on the loop, each await within the call's deadline, its
            fleet-wide lease included; its ``get_local``, if it has one, serves the warm path
            without an await. Any other sync store is called in a worker thread
            (``asyncio.to_thread``), its fleet-wide lease included, except by :meth:`invalidate`,
            which calls it directly.

    Attributes:
        endpoint, protocol, environment, jwks_url, deadline, ticket_lifetime, refresh_ahead,
        retry, rejection_cooldown: as for :class:`~sut_soap.SystemUserClient`.

    Raises:
        ConfigurationError: any option out of range or of the wrong type, as for the sync
            client; a ``transport`` that is not an :class:`~sut_soap.AsyncTransport`.
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
        transport: AsyncTransport | None = None,
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
            allow_insecure_tls=allow_insecure_tls, protocol=protocol, wsdl=wsdl, async_store=True,
        )
        # An async store is seen by the shared decisions through _AwaitedStore: each call returns
        # the awaitable that _perform awaits, a lease's __enter__/__exit__ its __aenter__/__aexit__.
        self._store: TicketCache | AsyncTicketCache = self._cache
        self._store_awaits = is_async_store(self._cache)
        self._peek: Callable[[str, str, str], CachedTicket | None] | None = None
        if self._store_awaits:
            get_local = getattr(self._cache, "get_local", None)
            self._get_local: Callable[[str], object] | None = get_local if callable(get_local) else None
            if self._get_local is not None:
                self._peek = self._read_local
            self._cache = cast(TicketCache, _AwaitedStore(self._cache, self._store_failed))
        elif type(self._cache) is InMemoryTicketCache:
            self._peek = self._read
        self._invalidations: set[asyncio.Task[None]] = set()
        self._transport: AsyncTransport = make_async_transport(
            transport, timeout=timeout_pair, deadline=self.deadline, clock=self._clock
        )
        self._bridge = _LoopBridge(self._transport)
        self._configure_exchange(
            network=self._transport, jwks_transport=self._bridge, public_key=public_key, jwks_url=jwks_url,
            leeway=leeway, expected_serial=expected_serial, wsdl=wsdl, allow_insecure_tls=allow_insecure_tls,
        )
        # On the loop, JWTs are validated with the keys already cached only: a fetch would block.
        self._loop_validator = self._validator
        if isinstance(self._key_source, JwksKeySource):
            self._loop_validator = TokenValidator(
                _CachedKeys(self._key_source), leeway=leeway, expected_serial=expected_serial, clock=self._clock
            )
        self._store_waits = not self._store_awaits and self._peek is None
        self._turns = _Turns(_TURN_BUDGET)
        self._leaders: dict[Flight, asyncio.Task[SystemUserTicket]] = {}
        # Signing (0.3 to 1 ms of RSA) runs on the loop, taking its turn like the other pieces of
        # work. Measured on 2 cores over recorded answers, against signing in worker threads: loop
        # lag max 5.0 against 10.6 ms and the longest callback 2.2 against 5.8 ms (the threads
        # hold the GIL between their signatures), warm-up 0.92 against 0.97 s; bench/run.py,
        # section 12, measures both.
        self._sign_in_thread = False

    @property
    def cache(self) -> TicketCache | AsyncTicketCache:  # type: ignore[override]
        """The ticket store: the ``cache=`` given (sync or async), else an :class:`~sut_soap.InMemoryTicketCache`.

        Its entries are secrets: each holds a ticket for the tenant's APIs.
        """
        return self._store

    @property
    def transport(self) -> AsyncTransport:
        """The :class:`~sut_soap.AsyncTransport` every request of this client goes through."""
        return self._transport

    async def authenticate(self, *, context_identifier: str, system_user_token: str) -> SystemUserTicket:
        """Sign the tenant's system user token, exchange it and return the validated ticket.

        Exactly one exchange, as :meth:`SystemUserClient.authenticate
        <sut_soap.SystemUserClient.authenticate>`: no cache, no retry, no remembered rejection.
        Cancelling the call cancels the exchange.

        Raises:
            The errors of :meth:`SystemUserClient.authenticate <sut_soap.SystemUserClient.authenticate>`.
        """
        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        return await self._within_deadline(lambda: self._drive(self._exchange(context, token, None)), context)

    async def get_ticket(self, *, context_identifier: str, system_user_token: str) -> SystemUserTicket:
        """Return the tenant's cached ticket while it is fresh, else exchange (once) and cache it.

        The semantics of :meth:`SystemUserClient.get_ticket <sut_soap.SystemUserClient.get_ticket>`,
        across tasks: any number of tasks asking for one tenant cause one exchange, and share its
        ticket or its error. That exchange runs in a task of its own: cancelling the task that
        started it cancels only that task's wait; the others still get the outcome, and the
        next call after any failure tries again. A fresh ticket in the in-memory store (or in
        an async store's ``get_local``, such as :class:`~sut_soap.AsyncRedisTicketCache`'s local
        tier) costs microseconds and never leaves the loop.

        Raises:
            The errors of :meth:`SystemUserClient.get_ticket <sut_soap.SystemUserClient.get_ticket>`;
            a ``TransportError`` (retryable) when the call's deadline passed.
        """
        peek = self._peek
        if peek is not None and type(context_identifier) is str and type(system_user_token) is str:
            key = self._key_prefix + context_identifier
            entry = peek(key, context_identifier, self._fingerprint(system_user_token))
            if entry is not None:
                age = entry.local_age(self._clock.monotonic())
                if age is None:
                    age = self._age(entry)
                if age < self._renew_after:
                    return entry.ticket
        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        key = self._key_prefix + context
        return await self._within_deadline(
            lambda: self._drive(self._renew(key, context, token, self._fingerprint(token))), context
        )

    async def get_tickets(
        self, tenants: Mapping[str, str], *, concurrency: int = DEFAULT_CONCURRENCY
    ) -> dict[str, SystemUserTicket | SutSoapError]:
        """Warm up many tenants: ``{context_identifier: system_user_token}`` -> ticket or error per tenant.

        Runs :meth:`get_ticket` for up to ``concurrency`` tenants at a time (1 to 256), so
        cached tenants cost nothing and cold ones are exchanged concurrently. One tenant's
        failure never fails the batch: its value is the :class:`~sut_soap.errors.SutSoapError`
        instead of a ticket. The result keeps the order of ``tenants``. A transport with
        ``ensure_pool`` (the default's) is asked for ``concurrency`` connections first.

        Args:
            tenants: ``{context_identifier: system_user_token}``.
            concurrency: tenants worked on at a time, 1 to 256; default 64.

        Returns:
            ``{context_identifier: SystemUserTicket or SutSoapError}`` in the order of
            ``tenants``. An unexpected exception for one tenant becomes a non-retryable
            :class:`~sut_soap.errors.SutSoapError` naming only its type.

        Raises:
            ConfigurationError: ``concurrency`` out of range, or ``tenants`` not a mapping.
        """
        check_max_workers(concurrency, name="concurrency")
        if not isinstance(tenants, Mapping):
            raise ConfigurationError("tenants must be a mapping of context identifier to system user token")
        items = list(tenants.items())
        if not items:
            return {}
        workers = min(concurrency, len(items))
        ensure_pool = getattr(self._transport, "ensure_pool", None)
        if callable(ensure_pool):
            ensure_pool(workers)
        results: list[SystemUserTicket | SutSoapError | None] = [None] * len(items)
        todo = iter(enumerate(items))

        async def work() -> None:
            for index, (context, token) in todo:
                try:
                    results[index] = await self.get_ticket(context_identifier=context, system_user_token=token)
                except SutSoapError as error:
                    results[index] = error
                except Exception as exc:  # a bug, or a caller's transport misbehaving: keep the batch going
                    results[index] = SutSoapError(
                        f"unexpected {type(exc).__name__} while getting the ticket", retryable=False
                    )

        await asyncio.gather(*(work() for _ in range(workers)))
        return {context: result for (context, _), result in zip(items, results, strict=True)}  # type: ignore[misc]

    def invalidate(self, context_identifier: str, *, ticket: SystemUserTicket | str | None = None) -> Invalidation:
        """Forget the tenant's cached ticket, so the next ``get_ticket`` exchanges; await the result to be sure.

        The semantics of :meth:`SystemUserClient.invalidate <sut_soap.SystemUserClient.invalidate>`
        (``ticket=`` forgets it only if it is still the cached one). It returns an
        :class:`Invalidation`: ``await client.invalidate(...)`` returns once the store has
        forgotten the ticket, so the next ``get_ticket`` cannot read it back; a bare
        ``client.invalidate(...)`` is fine where nothing reads the store right after. With the
        in-memory store (or a sync store, called here on the loop) the work is done before it
        returns. With an async store, this client's own part (renewal back-off, a remembered
        rejection, the store's ``delete_local``: its tier in this process) is done before it
        returns, and the store's shared part runs in a task of its own, within the client's
        deadline, which the :class:`Invalidation` awaits; not awaited, it still completes.
        A store that fails is logged and skipped, never raised; :meth:`aclose` waits for the
        invalidations still running.

        Raises:
            ConfigurationError: an empty ``context_identifier`` or one with control characters;
                an async store's invalidation outside the client's running event loop.
        """
        steps = self._invalidate_steps(context_identifier, ticket)
        value: Any = None
        error: Exception | None = None
        while True:  # the steps in this call, up to the first store call that has to be awaited
            try:
                step = steps.send(value) if error is None else steps.throw(error)
            except StopIteration:
                return Invalidation(None)
            finally:
                error = None
            try:
                value = step.call(*step.args)  # type: ignore[union-attr]  # invalidate yields store steps only
            except Exception as exc:
                value, error = None, exc
                continue
            if inspect.isawaitable(value):
                return Invalidation(self._finish_invalidation(steps, value))

    def _finish_invalidation(self, steps: Steps[None], pending: Awaitable[Any]) -> asyncio.Task[None]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            steps.close()
            getattr(pending, "close", lambda: None)()  # a coroutine never awaited: no warning for it
            raise ConfigurationError(
                "invalidate() with an async store must be called on the client's event loop"
            ) from None
        task = loop.create_task(self._invalidate_in_task(steps, pending))
        self._invalidations.add(task)
        task.add_done_callback(self._invalidations.discard)
        return task

    async def _invalidate_in_task(self, steps: Steps[None], pending: Awaitable[Any]) -> None:
        try:
            await asyncio.wait_for(self._drive(steps, pending), self.deadline)
        except asyncio.TimeoutError as exc:
            self._store_failed("delete", exc)

    async def tenant_state(self, context_identifier: str) -> TenantState:
        """The tenant's state from SuperOffice's tenant state API: running, where its API is, until when.

        The semantics of :meth:`SystemUserClient.tenant_state <sut_soap.SystemUserClient.tenant_state>`
        (the same reading and memory, :mod:`sut_soap.tenantstate`), the GET awaited through the
        client's transport within its ``deadline``: any number of tasks asking for one tenant
        whose state is not kept cause one GET, and share its state or its error.

        Raises:
            The errors of :meth:`SystemUserClient.tenant_state <sut_soap.SystemUserClient.tenant_state>`.
        """
        context = check_text_value(context_identifier, "context identifier")
        return await self._tenant_states.get(context)

    @functools.cached_property
    def _tenant_states(self) -> AsyncTenantStates:
        return AsyncTenantStates(self._transport, state_base(self.environment, self.endpoint), self._clock,
                                 deadline=self.deadline)

    def auth(
        self, *, context_identifier: str, system_user_token: str, base_url: str | None = None
    ) -> AsyncTenantAuth:
        """An auth object for calling the tenant's API with ``httpx.AsyncClient`` or aiohttp.

        Use it as ``httpx.AsyncClient(auth=...)`` or as an aiohttp client middleware
        (``aiohttp.ClientSession(middlewares=(auth,))``, aiohttp 3.12 or later). The semantics of
        :meth:`SystemUserClient.auth <sut_soap.SystemUserClient.auth>`, awaited: each request gets
        the tenant's current ticket from :meth:`get_ticket` and the client secret; a 401
        invalidates exactly that ticket (awaited), and the request is sent once more with a new
        one if its body can be replayed (for httpx a body held in memory, for aiohttp any payload
        it can send again: bytes, text, JSON, a form, a seekable file); an async iterator or a
        stream gets the 401 back unsent, with one WARNING. A second 401 is returned as it is.
        The two headers go only to the tenant's API origin (with httpx and
        ``follow_redirects=True``, add ``auth.redirect_guard`` to the request event hooks; an
        aiohttp middleware sees every hop itself). README: "Calling the tenant's API".

        Args:
            context_identifier: the tenant.
            system_user_token: the tenant's system user token.
            base_url: the tenant's API base URL (https, or http on loopback). Default None: the
                ``Api`` of :meth:`tenant_state`, read on the first request.

        Returns:
            An :class:`~sut_soap.apiauth.AsyncTenantAuth`; with httpx installed also an
            ``httpx.Auth``. ``await auth.base_url()`` is the URL to build requests from.

        Raises:
            ConfigurationError: an empty or malformed value, or a ``base_url`` that is not https
                (http on loopback only) or carries credentials or a fragment.
        """
        from .apiauth import build_async  # noqa: PLC0415 -- the auth adapters load only for callers of the tenant's API

        context = check_text_value(context_identifier, "context identifier")
        token = check_text_value(system_user_token, "system user token")
        return build_async(self, self._client_secret, context, token, base_url)

    async def aclose(self) -> None:
        """Wait for the invalidations still running, then close the transport. The client should not be used afterwards.

        A store you passed is not closed: close it yourself (``await store.aclose()``).
        """
        if self._invalidations:
            await asyncio.gather(*self._invalidations, return_exceptions=True)
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncSystemUserClient:
        """Return the client; the ``async with`` block ends with :meth:`aclose`."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Call :meth:`aclose`; exceptions from the block propagate."""
        await self.aclose()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        """Refuse pickling and copying: a client holds its process's connections, tasks and secrets."""
        raise not_picklable("an AsyncSystemUserClient")

    def __repr__(self) -> str:
        """The endpoint and JWKS URL; the client secret shows as ``***``."""
        return f"AsyncSystemUserClient(endpoint={self.endpoint!r}, jwks_url={self.jwks_url!r}, client_secret='***')"

    # -- performing the steps --------------------------------------------------------------------

    async def _within_deadline(self, call: Callable[[], Awaitable[T]], context: str) -> T:
        """Run ``call()`` inside a budget of the client's deadline, and cut its await shortly after it."""
        budget = _deadline.open_budget(self.deadline, self._clock.monotonic)
        try:
            return await asyncio.wait_for(call(), self.deadline + _GRACE)
        except asyncio.TimeoutError:
            raise TransportError(
                f"the call for tenant {context} did not finish within its deadline ({self.deadline:g} s)",
                retryable=True,
            ) from None
        finally:
            _deadline.leave(budget)

    async def _drive(self, steps: Steps[T], pending: Awaitable[Any] | None = None) -> T:
        """Drive ``steps`` to their end on the loop, awaiting each step; return their outcome.

        The async twin of :func:`sut_soap._steps.run`: a step's exception (a cancellation
        included) is raised into the generator at its ``yield``. ``pending``: the awaitable of a
        step already started (``invalidate``'s), whose result the steps receive first.
        """
        value: Any = None
        error: BaseException | None = None
        if pending is not None:
            try:
                value = await pending
            except BaseException as exc:
                value, error = None, exc
        while True:
            try:
                step = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            finally:
                error = None
            try:
                value = await self._perform(step)
            except BaseException as exc:
                value, error = None, exc

    async def _perform(self, step: Step) -> Any:
        """Perform one step of the shared decisions on the loop."""
        kind = type(step)
        if kind is Store:
            if self._store_awaits:
                return await step.call(*step.args)  # type: ignore[union-attr]
            if self._store_waits:
                return await asyncio.to_thread(step.call, *step.args)  # type: ignore[union-attr]
            return step.call(*step.args)  # type: ignore[union-attr]
        if kind is Attempt:
            return await self._drive(self._attempt_steps(step.context, step.token))  # type: ignore[union-attr]
        if kind is Validate:
            await self._turns.take()
            return await self._validate(step.token, step.context)  # type: ignore[union-attr]
        if kind is Sign:
            if self._sign_in_thread:
                return await asyncio.to_thread(sign_system_user_token, step.token, step.key, at=step.at)  # type: ignore[union-attr]
            await self._turns.take()
            return sign_system_user_token(step.token, step.key, at=step.at)  # type: ignore[union-attr]
        if kind is Send:
            return await self._send(step)  # type: ignore[arg-type]
        if kind is Wait:
            return await self._wait(step.flight, step.timeout)  # type: ignore[union-attr]
        if kind is Sleep:
            if is_system_sleep(step.sleep):  # type: ignore[union-attr]
                return await asyncio.sleep(step.seconds)  # type: ignore[union-attr]
            return step.sleep(step.seconds)  # type: ignore[union-attr]
        return await self._lead_in_task(step)  # type: ignore[arg-type]

    def _read_local(self, key: str, context: str, fingerprint: str) -> CachedTicket | None:
        """The warm path's read of an async store: its ``get_local``, never an await."""
        try:
            entry = self._get_local(key)  # type: ignore[misc]  # set whenever _peek is this method
        except Exception as exc:
            self._store_failed("get", exc)
            return None
        return self._usable(entry, context, fingerprint)

    async def _send(self, step: Send) -> Response:
        response = await acall_transport(self._transport, step.method, step.url, body=step.body, headers=step.headers)
        await self._turns.take()  # the answer is read next, on the loop
        return response

    async def _validate(self, token: str, context: str) -> dict[str, Any]:
        try:
            return self._loop_validator.validate(token, context_identifier=context)
        except _KeysNeeded:
            pass
        # The JWKS must be fetched (or refetched): JwksKeySource's own decisions, in a worker
        # thread, its GET sent on this loop through the client's transport.
        self._bridge.loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._validator.validate, token, context_identifier=context)

    async def _lead_in_task(self, step: Lead) -> SystemUserTicket:
        # The leader's steps run in a task of their own: cancelling this caller does not cancel
        # the exchange the other tasks wait for, and the flight lands whatever happens.
        task = asyncio.get_running_loop().create_task(self._drive(step.steps))
        flight = step.flight
        self._leaders[flight] = task
        task.add_done_callback(lambda done: self._landed(flight, done))
        return await asyncio.shield(task)

    def _landed(self, flight: Flight, task: asyncio.Task[SystemUserTicket]) -> None:
        self._leaders.pop(flight, None)
        if not task.cancelled():
            task.exception()  # retrieved: its caller may have been cancelled, the followers share it

    async def _wait(self, flight: Flight, timeout: float) -> bool:
        # A follower joined while the flight was up, and a flight lands in its leader task's last
        # step: the task is still known here.
        done, _ = await asyncio.wait((self._leaders[flight],), timeout=timeout)
        return bool(done)


class Invalidation:
    """What :meth:`AsyncSystemUserClient.invalidate` returns: awaiting it returns once the store forgot the ticket.

    Awaiting it never raises because of the store (a failing store is logged, as everywhere),
    and cancelling the await does not cancel the invalidation.
    """

    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Task[None] | None) -> None:
        self._task = task

    @property
    def done(self) -> bool:
        """Whether the store's part is over (at once, but for an async store's shared part)."""
        return self._task is None or self._task.done()

    def __await__(self) -> Generator[Any, None, None]:
        """Return once the store's part is done: at once, or when the async store's task for it ended."""
        if self._task is not None:
            yield from asyncio.shield(self._task).__await__()

    def __repr__(self) -> str:
        return f"Invalidation(done={self.done})"


class _AwaitedStore:
    """An :class:`~sut_soap.AsyncTicketCache` as the shared decisions see it: each call returns the awaitable to await.

    ``delete`` and ``delete_if`` first call the store's ``delete_local`` (its tier in this
    process, at once); ``lease`` gives a context manager whose ``__enter__``/``__exit__`` return
    the async lease's ``__aenter__``/``__aexit__``. Only the optional methods the store has are here.
    """

    def __init__(self, store: Any, failed: Callable[[str, Exception], None]) -> None:
        self._store = store
        self._failed = failed
        self.get = store.get
        self.set = store.set
        delete_local = getattr(store, "delete_local", None)
        self._delete_local = delete_local if callable(delete_local) else None
        if callable(getattr(store, "delete_if", None)):
            self.delete_if = self._delete_if
        if callable(getattr(store, "lease", None)):
            self.lease = self._lease
        use_derived_key = getattr(store, "use_derived_key", None)
        if callable(use_derived_key):
            self.use_derived_key = use_derived_key

    def _forget_here(self, key: str, ticket: str | None) -> None:
        if self._delete_local is not None:
            try:
                self._delete_local(key, ticket)
            except Exception as exc:
                self._failed("delete", exc)

    def delete(self, key: str) -> Awaitable[None]:
        self._forget_here(key, None)
        return self._store.delete(key)  # type: ignore[no-any-return]

    def _delete_if(self, key: str, ticket: str) -> Awaitable[bool]:
        self._forget_here(key, ticket)
        return self._store.delete_if(key, ticket)  # type: ignore[no-any-return]

    def _lease(self, key: str, *, lease: float, wait: float) -> _AwaitedLease:
        return _AwaitedLease(self._store.lease(key, lease=lease, wait=wait))


class _AwaitedLease:
    """An async lease as the shared decisions see it: entering and leaving return the awaitables to await."""

    __slots__ = ("_lease",)

    def __init__(self, lease: Any) -> None:
        self._lease = lease

    def __enter__(self) -> Awaitable[object]:
        return self._lease.__aenter__()  # type: ignore[no-any-return]

    def __exit__(self, *exc_info: object) -> Awaitable[object]:
        return self._lease.__aexit__(*exc_info)  # type: ignore[no-any-return]


class _Turns:
    """Hands out the client's share of each event-loop iteration: about ``budget`` seconds of its own work.

    A piece of work takes a turn first. While this iteration's share is not spent (and nobody
    is queued) it goes at once; otherwise it waits for a later iteration, in order. Each
    iteration wakes about as many queued pieces as went in the one before; a woken piece
    still checks the share (pieces differ in cost: a signature against a parsed answer) and,
    when it is spent, goes back to the front of the queue. So the client keeps its pace while
    timers and other tasks get the loop back every few milliseconds.
    """

    def __init__(self, budget: float) -> None:
        self._budget = budget
        self._opened: float | None = None
        self._went = 0
        self._queued: deque[asyncio.Future[None]] = deque()
        self._returned = 0  # woken pieces put back at the front since the last iteration began
        self._scheduled = False

    async def take(self) -> None:
        """Return once this piece of work may run in the current iteration."""
        if self._queued or not self._fits():
            await self._wait()
        self._went += 1

    def _fits(self) -> bool:
        now = time.perf_counter()
        if self._opened is None:
            self._opened, self._went = now, 0
            self._schedule()
            return True
        return now - self._opened < self._budget

    async def _wait(self) -> None:
        place = len(self._queued)
        while True:
            turn = asyncio.get_running_loop().create_future()
            self._queued.insert(place, turn)
            self._schedule()
            await turn
            if self._fits():
                return
            place, self._returned = self._returned, self._returned + 1

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._next_iteration)

    def _next_iteration(self) -> None:
        went, self._opened, self._returned, self._scheduled = self._went, None, 0, False
        woken = 0
        while self._queued and woken < max(1, went):
            turn = self._queued.popleft()
            if not turn.done():  # a cancelled waiter gives its turn up
                turn.set_result(None)
                woken += 1
        if self._queued:
            self._schedule()


class _KeysNeeded(Exception):
    """The JWT names a key the cached JWKS does not hold (or nothing is cached yet): a fetch may be needed."""


class _CachedKeys:
    """A :class:`~sut_soap.keysources.KeySource` view of a JWKS source that never fetches: it raises _KeysNeeded."""

    def __init__(self, source: JwksKeySource) -> None:
        self._source = source

    def get_key(self, kid: str | None) -> RSAPublicKey:
        key = self._source.cached_key(kid)
        if key is None:
            raise _KeysNeeded
        return key


class _LoopBridge:
    """A sync :class:`~sut_soap.Transport` for the JWKS source in worker threads: each request is sent on the loop.

    ``loop`` is set by the client before it validates in a worker thread.
    """

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport
        self.loop: asyncio.AbstractEventLoop | None = None

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        loop = self.loop
        if loop is None or _running_loop() is loop:
            raise RuntimeError("the JWKS is fetched from a worker thread of the client's event loop only")
        request = acall_transport(
            self._transport, method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes
        )
        return asyncio.run_coroutine_threadsafe(request, loop).result()

    def close(self) -> None:
        """Nothing to release: the client closes its transport."""


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

