"""How ``get_ticket`` renews a tenant's ticket once the fast path found no fresh one.

:meth:`SystemUserClient.get_ticket <sut_soap.SystemUserClient.get_ticket>` first reads the
store without any lock and returns a fresh ticket at once. Everything after that lives here, as
the client's :class:`TicketRenewal` base:

1. read the store again and classify the entry (:func:`~sut_soap._flight.freshness`): fresh
   is returned; due is kept as the fallback; dead is never returned;
2. a rejection remembered for this tenant and token is raised again, without an exchange;
3. join the tenant's single flight (:class:`~sut_soap._flight.Flights`). A follower returns the
   due ticket if there is one, else waits for the leader's ticket or error, until its own
   call's deadline at most;
4. the leader takes the store's fleet-wide lease when it has one (``lease``, or the older
   ``lock``), reads the store once more (another process may have renewed meanwhile), and
   exchanges: with the client's retry policy when no valid ticket is at hand, without it
   otherwise. With a still-valid ticket in hand it does not wait for a lease held elsewhere:
   it serves that ticket. Without one it waits up to its own deadline; a wait that runs out
   (:class:`~sut_soap.cache.LockWaitTimeout`) raises a retryable ``TransportError`` and never
   leads to an exchange;
5. a retryable failure of a renewal falls back to the still-valid ticket (one WARNING, then
   no new attempt for 30 s); the new ticket is stored with a TTL of what is left of its
   lifetime.

A store that raises anything else is treated as unavailable: logged (WARNING at most once a minute per
operation, else DEBUG, naming only the exception type) and skipped.

The renewal is written as steps (:mod:`sut_soap._steps`): it yields each store call, wait and
exchange for its shell to perform, so the sync and the async client share every decision above.
The leader's part (:meth:`TicketRenewal._fly`) is one :class:`~sut_soap._steps.Lead` step, which
the async client runs in a task of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from . import _deadline
from ._clock import Clock
from ._flight import Flight, Flights, Freshness, Rejections, freshness
from ._steps import Lead, Steps, Store, Wait
from .cache import CachedTicket, LockWaitTimeout, TicketCache
from .errors import AuthenticationRejectedError, SutSoapError, TransportError
from .retry import RetryPolicy
from .ticket import SystemUserTicket

__all__ = ["TicketRenewal"]

# The client's logger: these lines are the client's, wherever the code lives.
_log = logging.getLogger("sut_soap.client")

# After a failed renewal of a still-valid ticket: how long to keep using it before trying again.
_RENEWAL_BACKOFF = 30.0
# Store failures are logged at WARNING at most this often per operation, else at DEBUG.
_STORE_WARNING_INTERVAL = 60.0


class TicketRenewal:
    """The renewal half of :class:`~sut_soap.SystemUserClient`: store, single flight, fallback.

    A base class, not a component: the client sets the attributes declared here in its
    ``__init__`` and provides ``_exchange`` (the steps of one exchange, optionally retried).
    The renewal is steps (:mod:`sut_soap._steps`): each client drives them its own way.
    """

    ticket_lifetime: float
    retry: RetryPolicy | None
    rejection_cooldown: float
    _clock: Clock
    _now: Callable[[], float]
    _cache: TicketCache
    _renew_after: float
    _exchange_bound: float
    _flights: Flights
    _backoff: dict[str, float]
    _rejections: Rejections
    _store_warned: dict[str, float]
    _fleet_acquire: Callable[[str, float, bool], AbstractContextManager[object]] | None
    _exchange: Callable[[str, str, RetryPolicy | None], Steps[SystemUserTicket]]

    def _init_renewal(self, bound: float) -> None:
        """Set up the renewal state, once ``_cache``, ``_clock`` and ``rejection_cooldown`` are set.

        ``bound`` is the longest a renewal may hold the fleet lock (see
        :func:`~sut_soap._options.exchange_bound`): the lock's timeout.
        """
        self._fleet_acquire = _fleet_acquirer(self._cache, bound)
        self._exchange_bound = bound
        self._flights = Flights()
        self._backoff = {}
        self._rejections = Rejections(self.rejection_cooldown, self._clock)
        self._store_warned = {}

    def _freshness(self, entry: CachedTicket) -> Freshness:
        return freshness(self._age(entry), renew_after=self._renew_after, lifetime=self.ticket_lifetime)

    def _age(self, entry: CachedTicket) -> float:
        # A ticket this process obtained is aged on the monotonic clock alone: a wall clock set
        # back or jumping ahead changes nothing. Only another process's entry needs the wall,
        # once: it is then adopted, so a local tier holding it ages it on the monotonic clock.
        now = self._clock.monotonic()
        local = entry.local_age(now)
        if local is not None:
            return local
        age = self._now() - entry.obtained_ts
        entry.adopt(now - age)
        return age

    def _read(self, key: str, context: str, fingerprint: str) -> CachedTicket | None:
        try:
            entry = self._cache.get(key)
        except Exception as exc:
            self._store_failed("get", exc)
            return None
        # _usable, inlined: this read is the hot path of get_ticket.
        if (
            entry is None
            or not isinstance(entry, CachedTicket)
            or entry.ticket.context_identifier != context
            or entry.token_fingerprint != fingerprint
        ):
            return None
        return entry

    def _read_steps(self, key: str, context: str, fingerprint: str) -> Steps[CachedTicket | None]:
        """:meth:`_read` as a step, so a shell can run a store that does I/O its own way."""
        try:
            entry = yield Store(self._cache.get, (key,))
        except Exception as exc:
            self._store_failed("get", exc)
            return None
        return self._usable(entry, context, fingerprint)

    @staticmethod
    def _usable(entry: object, context: str, fingerprint: str) -> CachedTicket | None:
        if (
            entry is None
            or not isinstance(entry, CachedTicket)
            or entry.ticket.context_identifier != context
            or entry.token_fingerprint != fingerprint
        ):
            return None
        return entry

    def _renew(self, key: str, context: str, token: str, fingerprint: str) -> Steps[SystemUserTicket]:
        flight_key = f"{key}\x00{fingerprint}"
        while True:
            usable: CachedTicket | None = None
            entry = yield from self._read_steps(key, context, fingerprint)
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
                left = _deadline.remaining()
                if not (yield Wait(flight, self._exchange_bound if left is None else max(0.0, left))):
                    raise TransportError(
                        f"the exchange for tenant {context} in another thread did not finish within "
                        "this call's deadline",
                        retryable=True,
                    )
                if flight.ticket is not None:
                    return flight.ticket
                if flight.error is not None:
                    raise flight.error
                continue  # the leader was interrupted without an outcome: try again
            ticket: SystemUserTicket = yield Lead(
                flight, self._fly(key, context, token, fingerprint, flight_key, flight=flight, due=usable)
            )
            return ticket

    def _fly(
        self, key: str, context: str, token: str, fingerprint: str, flight_key: str,
        *, flight: Flight, due: CachedTicket | None,
    ) -> Steps[SystemUserTicket]:
        """The leader's part: renew, then land the flight with the outcome, whatever happens."""
        try:
            try:
                ticket = yield from self._lead(key, context, token, fingerprint, flight_key, due=due)
            except _HeldElsewhere:
                if due is None:
                    raise TransportError(
                        f"the exchange for tenant {context} in another process did not finish within "
                        "this call's deadline",
                        retryable=True,
                        hint="try again: the other process's ticket is then in the shared store",
                    ) from None
                ticket = due.ticket  # another process is renewing it; this one is still valid
            flight.ticket = ticket
            return ticket
        except BaseException as error:
            flight.error = error if isinstance(error, Exception) else None
            raise
        finally:
            self._flights.land(flight_key, flight)

    def _lead(
        self, key: str, context: str, token: str, fingerprint: str, flight_key: str, *, due: CachedTicket | None
    ) -> Steps[SystemUserTicket]:
        held = yield from self._take_fleet_lock(key, wait=due is None)
        try:
            usable: CachedTicket | None = None
            entry = yield from self._read_steps(key, context, fingerprint)  # renewed meanwhile by a thread or process?
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
                ticket = yield from self._exchange(context, token, self.retry if usable is None else None)
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
                yield Store(
                    self._cache.set, (key, fresh, max(1.0, self.ticket_lifetime - (self._clock.monotonic() - started)))
                )
            except Exception as exc:
                self._store_failed("set", exc)
            return ticket
        finally:
            if held is not None:
                try:
                    yield Store(held.__exit__, (None, None, None))
                except Exception as exc:
                    self._store_failed("unlock", exc)

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

    def _take_fleet_lock(self, key: str, *, wait: bool) -> Steps[AbstractContextManager[object] | None]:
        """Enter the store's fleet-wide lease (or lock) for ``key`` if it has one; a failing store is skipped.

        Returns the entered lease, for the caller to leave, or None. Raises _HeldElsewhere when
        the store says the lease is held elsewhere and the wait ran out.
        """
        if self._fleet_acquire is None:
            return None
        # Waiting for the lease is part of this call, so it ends within the call's deadline;
        # the holder's own call ends within its deadline too, so a lease of the exchange
        # bound (deadline + margin) outlives it.
        left = _deadline.remaining()
        timeout = self._exchange_bound if left is None else min(self._exchange_bound, max(0.001, left))
        try:
            candidate = self._fleet_acquire(key, timeout, wait)
            yield Store(candidate.__enter__, ())
        except LockWaitTimeout:
            raise _HeldElsewhere from None
        except Exception as exc:
            self._store_failed("lock", exc)
            return None
        return candidate

    def _store_failed(self, operation: str, exc: Exception) -> None:
        now = self._clock.monotonic()
        last = self._store_warned.get(operation)
        level = logging.DEBUG if last is not None and now - last < _STORE_WARNING_INTERVAL else logging.WARNING
        if level == logging.WARNING:
            self._store_warned[operation] = now
        _log.log(
            level, "ticket cache %s failed (%s); carrying on without the cache", operation, type(exc).__name__
        )


def _fleet_acquirer(
    cache: TicketCache, bound: float
) -> Callable[[str, float, bool], AbstractContextManager[object]] | None:
    """How to take ``cache``'s fleet-wide lease for ``(key, timeout, wait)``: ``lease``, else ``lock``, else None.

    A lease lasts ``bound`` (the longest an exchange may take) and waits ``timeout`` only when
    ``wait``; the older ``lock(key, timeout)`` has one number for both.
    """
    lease = getattr(cache, "lease", None)
    if callable(lease):
        return lambda key, timeout, wait: lease(key, lease=bound, wait=timeout if wait else 0.0)
    lock = getattr(cache, "lock", None)
    if callable(lock):
        return lambda key, timeout, wait: lock(key, timeout)
    return None


class _HeldElsewhere(Exception):
    """The fleet-wide lease is held by another process and this call's wait for it ran out."""
