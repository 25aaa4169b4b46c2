"""Where :meth:`SystemUserClient.get_ticket` keeps tickets: a small, pluggable store.

SuperOffice asks partners not to exchange before every call: each exchange creates a
credential record, and a ticket stays valid for 6 hours after its last use. So the client
keeps one ticket per tenant and exchanges again only when it is due. The decisions (is the
ticket fresh, due for renewal, or dead; who exchanges when many threads ask at once) live
in the client; a store only keeps entries. That keeps a store small enough to be backed by
something shared, so a fleet of processes can share tickets.

The seam, :class:`TicketCache`, is three methods:

- ``get(key) -> CachedTicket | None``
- ``set(key, entry, ttl)``: keep ``entry``; after ``ttl`` seconds it is useless and may go
- ``delete(key)``: forget it (idempotent)

and three optional methods, each used when a store has it:

- ``lease(key, *, lease, wait)`` (:class:`LeasingTicketCache`): a context manager holding a
  fleet-wide lease while one process exchanges, so that a fleet asking for the same cold tenant
  exchanges once, not once per process. ``lease`` is how long the lease lives without its
  holder (seconds; the client passes its exchange bound, the call's deadline plus a margin, so
  the lease cannot run out under a holder that is still exchanging, and a holder that died
  holds the fleet up for at most that long); ``wait`` is how long entering may wait for a lease
  held elsewhere (what is left of the caller's deadline, or 0 when it has a still-valid ticket
  to serve meanwhile). Entering raises :class:`LockWaitTimeout` when the lease is still held
  elsewhere after ``wait``: the client then serves its still-valid ticket, or raises a
  retryable :class:`~sut_soap.TransportError`, and never exchanges just because it waited.
  Any other exception means the store is unavailable: the client carries on with single
  flight in its own process. The client reads the store again once it holds the lease.
- ``delete_if(key, ticket) -> bool``: forget the entry only if it still holds ``ticket`` (the
  ticket string) and say whether it did; :meth:`SystemUserClient.invalidate` uses it for
  ``invalidate(tenant, ticket=T)``, so a slow process never deletes the newer ticket another
  one just stored. A shared store should compare and delete in one step on the server.
  Without it, the client reads the entry and calls ``delete``.
- ``use_derived_key(prefix, key)``: the client calls it once, when it is built, with its
  key prefix (every key it uses starts with it) and 32 bytes derived from its client secret
  by HKDF-SHA256 (info ``b"sut-soap ticket cache at rest v1\\x00"`` + the endpoint). A store
  that encrypts entries at rest may key them with it; the client secret itself never reaches a
  store.

**The async form**, :class:`AsyncTicketCache`, for :class:`~sut_soap.AsyncSystemUserClient`: the
same methods with the same meaning, awaited (``async def``, or any callable returning an
awaitable): ``get``, ``set``, ``delete``, and optionally ``delete_if`` and ``lease(key, *,
lease, wait)``, which returns an *async* context manager (entering raises
:class:`LockWaitTimeout` as above); ``use_derived_key`` stays a plain method. Two more optional
plain methods let a store with a tier in this process keep the async client as fast as the
in-memory store, and an invalidation immediate in this process:

- ``get_local(key) -> CachedTicket | None``: what the store holds for ``key`` in this process,
  answered at once and without I/O (None when it would have to ask elsewhere). The async client's
  warm path reads it first and awaits ``get`` only when it has no fresh ticket there.
- ``delete_local(key, ticket=None)``: forget this process's copy at once (only if it holds
  ``ticket``, when given). ``invalidate`` calls it before it returns, then awaits ``delete_if``
  or ``delete`` in a task of its own.

The client never calls an async store's methods from more than one event loop: build the store
where the loop runs, like the client. :class:`sut_soap.AsyncRedisTicketCache` is the Redis
store in this form. There is no async in-memory store: :class:`InMemoryTicketCache` never waits,
so the async client (its default) calls it on the loop as it is, without an ``await`` per
call; an async wrapper around it would only cost the warm path its speed.

The earlier optional ``lock(key, timeout)`` (:class:`LockingTicketCache`) still works for a
store that has no ``lease``: one number served as both its lease and its wait, and any
exception from it (a redis-py ``LockError`` after a timed-out wait included) counts as the store
being unavailable, so the client goes ahead and exchanges. A ``lock`` that raises
:class:`LockWaitTimeout` is treated like ``lease``. New stores should implement ``lease``.

Keys are ``sut-soap:v1:<namespace>:<ContextIdentifier>``: the namespace is a keyed hash of the
endpoint and the application (client secret), so two applications or environments never
share an entry. An entry holds the ticket with its tenant data, when it was obtained and a
keyed fingerprint of the system user token (never the token itself): a different system user
token for the same tenant never gets the old ticket.

The JSON form for shared stores leaves out the JWT and its ``system_token`` claim, which is
the system user token: a ticket read back from it has ``token == ""`` (the JWT expires within
minutes anyway) and no ``system_token`` claim. The in-memory store keeps the ticket object as
``get_ticket`` returned it.

Entries are secrets: whoever can read the store can call the tenant's APIs as the system
user, and whoever can write it can hand your processes any ticket. A shared store belongs on
a private network with TLS, authentication and access control, and its own persistence and
backups count as secret storage. :meth:`CachedTicket.to_json` / :meth:`CachedTicket.from_json`
are the wire format for such a store. For Redis, use :class:`sut_soap.RedisTicketCache`
(``pip install 'sut-soap[redis]'``): fleet-wide leases, entries encrypted and authenticated
at rest, a local tier in front, invalidation across processes and a circuit breaker. A store
that raises is treated as unavailable: the client logs a warning and carries on without it,
exchanging if it has to; a store that fails costs extra exchanges, never a failed call and
never a stale ticket.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from . import _fork
from ._clock import SYSTEM_CLOCK, Clock
from .contract import CLAIM_SYSTEM_TOKEN
from .errors import ConfigurationError
from .ticket import SystemUserTicket

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "AsyncLeasingTicketCache",
    "AsyncTicketCache",
    "CachedTicket",
    "InMemoryTicketCache",
    "LeasingTicketCache",
    "LockWaitTimeout",
    "LockingTicketCache",
    "TicketCache",
]

#: The most entries an :class:`InMemoryTicketCache` holds unless told otherwise.
DEFAULT_MAX_ENTRIES = 100_000
# set() sweeps out expired entries once per this many calls, or per half the entries if more.
_SWEEP_EVERY = 64

_FORMAT_VERSION = 1
# Left out of the JSON form: the system user token travels in this claim of the JWT.
_SECRET_CLAIMS = frozenset({CLAIM_SYSTEM_TOKEN})

# Marks entries this process created, so their age can also be measured on the monotonic
# clock; an entry read back from another process (pickled or JSON) never matches.
_PROCESS_MARK = os.urandom(8).hex()


class CachedTicket:
    """One tenant's cached ticket, as a :class:`TicketCache` stores it.

    ``ticket`` is the validated :class:`~sut_soap.ticket.SystemUserTicket` (its ``obtained_at``
    is when the exchange started); ``token_fingerprint`` is a keyed hash of the system user
    token it was obtained with. The repr shows neither the ticket nor the JWT.

    The client creates entries; a store of yours only keeps them (by reference, pickled, or as
    :meth:`to_json`). An entry holds a live credential: treat it as a secret.

    Args:
        ticket: the ticket.
        token_fingerprint: the client's keyed fingerprint of the system user token.
        obtained_monotonic: this process's monotonic time when the exchange started, so the
            age can also be measured on a clock that cannot be set back; None for an entry
            read back from elsewhere.

    Raises:
        TypeError: ``ticket`` is not a ``SystemUserTicket`` or the fingerprint is empty.

    Attributes:
        ticket: the :class:`~sut_soap.SystemUserTicket`.
        token_fingerprint: the keyed fingerprint (never the token itself).
        obtained_ts: ``ticket.obtained_at`` as Unix seconds.
    """

    # Two slots rather than a (mark, time) tuple: one fewer object per cached tenant.
    __slots__ = ("_mark", "_monotonic", "obtained_ts", "ticket", "token_fingerprint")

    ticket: SystemUserTicket
    token_fingerprint: str
    obtained_ts: float
    _mark: str | None
    _monotonic: float

    def __init__(
        self, ticket: SystemUserTicket, *, token_fingerprint: str, obtained_monotonic: float | None = None
    ) -> None:
        if not isinstance(ticket, SystemUserTicket):
            raise TypeError("ticket must be a SystemUserTicket")
        if not isinstance(token_fingerprint, str) or not token_fingerprint:
            raise TypeError("token_fingerprint must be a non-empty string")
        self.ticket = ticket
        self.token_fingerprint = token_fingerprint
        self.obtained_ts = ticket.obtained_at.timestamp()
        self._mark = None if obtained_monotonic is None else _PROCESS_MARK
        self._monotonic = 0.0 if obtained_monotonic is None else float(obtained_monotonic)

    def __getstate__(self) -> tuple[None, dict[str, object]]:
        """Pickled in the form of earlier versions (one ``_local`` pair), which read it as well."""
        local = None if self._mark is None else (self._mark, self._monotonic)
        return None, {
            "_local": local, "obtained_ts": self.obtained_ts, "ticket": self.ticket,
            "token_fingerprint": self.token_fingerprint,
        }

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        """Restore from :meth:`__getstate__`, this version's or an earlier one's."""
        slots = state[1]
        self.ticket = slots["ticket"]
        self.token_fingerprint = slots["token_fingerprint"]
        self.obtained_ts = slots["obtained_ts"]
        local = slots.get("_local")
        self._mark, self._monotonic = (None, 0.0) if local is None else local

    @property
    def context_identifier(self) -> str:
        """The tenant the ticket is for."""
        return self.ticket.context_identifier

    @property
    def obtained_at(self) -> datetime:
        """When the exchange that produced the ticket started (timezone-aware)."""
        return self.ticket.obtained_at

    def local_age(self, monotonic_now: float) -> float | None:
        """Seconds since this process obtained the ticket on the monotonic clock, else None.

        None for an entry that did not come from this process (read back from JSON, a pickle,
        another process), whose age only the wall clock can tell.
        """
        if self._mark != _PROCESS_MARK:
            return None
        return monotonic_now - self._monotonic

    def adopt(self, monotonic_start: float) -> None:
        """Age this entry on this process's monotonic clock from now on, as if obtained at ``monotonic_start``.

        For an entry read back from elsewhere, once its wall-clock age is known: later reads of
        the same object then need no wall clock (cheaper, and a wall clock set back or jumping
        ahead no longer changes its age).
        """
        self._monotonic = float(monotonic_start)
        self._mark = _PROCESS_MARK

    def to_json(self) -> str:
        """Serialise for a shared store: the ticket (a secret) and claims, without the JWT or system token.

        Returns:
            Compact JSON with a format version, the claims minus ``system_token``,
            ``obtained_at`` (ISO 8601) and the fingerprint. Still a secret: it carries the ticket.
        """
        return json.dumps(
            {
                "v": _FORMAT_VERSION,
                "claims": {k: v for k, v in self.ticket.claims.items() if k not in _SECRET_CLAIMS},
                "obtained_at": self.ticket.obtained_at.isoformat(),
                "fingerprint": self.token_fingerprint,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> CachedTicket:
        """Rebuild an entry written by :meth:`to_json`; raise ``ValueError`` on anything else.

        The ticket it carries has ``token == ""`` and no ``system_token`` claim; its age is
        measured on the wall clock only.

        Raises:
            ValueError: not JSON, another format version, missing or malformed members, or an
                ``obtained_at`` without a time zone. The message never quotes the input.
        """
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") != _FORMAT_VERSION:
                raise ValueError("not a sut-soap cache entry of a known version")
            claims, fingerprint = data["claims"], data["fingerprint"]
            if not isinstance(claims, Mapping) or not isinstance(fingerprint, str) or not fingerprint:
                raise ValueError("malformed sut-soap cache entry")
            obtained_at = datetime.fromisoformat(data["obtained_at"])
            if obtained_at.tzinfo is None:
                raise ValueError("obtained_at has no time zone")
            ticket = SystemUserTicket.from_claims("", claims, obtained_at=obtained_at)
        except (KeyError, TypeError, OverflowError) as exc:
            raise ValueError(f"malformed sut-soap cache entry ({type(exc).__name__})") from None
        return cls(ticket, token_fingerprint=fingerprint)

    def __repr__(self) -> str:
        return (
            f"CachedTicket(context_identifier={self.context_identifier!r}, "
            f"obtained_at={self.obtained_at.isoformat()!r}, ticket='***')"
        )

    __str__ = __repr__


@runtime_checkable
class TicketCache(Protocol):
    """The store behind the client's ticket cache; see the module docstring.

    Methods may be called from many threads at once. ``get`` returns what ``set`` stored for
    the key (or None); it need not check freshness, the client does. Exceptions are treated
    as the store being unavailable.
    """

    def get(self, key: str) -> CachedTicket | None:
        """Return the entry stored under ``key``, or None when there is none (or it expired)."""
        ...

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        """Store ``entry`` under ``key``, replacing any; after ``ttl`` seconds it may be dropped."""
        ...

    def delete(self, key: str) -> None:
        """Forget the entry under ``key``; a missing key is not an error."""
        ...


@runtime_checkable
class LockingTicketCache(TicketCache, Protocol):
    """A store that can also hold a cross-process lock per key while one process exchanges."""

    def lock(self, key: str, timeout: float) -> AbstractContextManager[object]:
        """Return a context manager that holds the fleet-wide lock for ``key`` while entered.

        The lock must expire by itself (a crashed holder must not block the fleet), and
        entering must give up after ``timeout`` seconds: by raising, which the client treats
        as the store being unavailable, or by letting the caller in.
        """
        ...


class LockWaitTimeout(Exception):
    """Raised by a store's ``lease`` (or ``lock``): the lease is held elsewhere and the wait ran out.

    Not "the store is unavailable": the client never exchanges on it, it serves a still-valid
    ticket or raises a retryable :class:`~sut_soap.TransportError`. The message must name no
    secret (a key holds the tenant's ContextIdentifier at most).
    """


@runtime_checkable
class LeasingTicketCache(TicketCache, Protocol):
    """A store that can hold a fleet-wide lease per key while one process exchanges (module docstring)."""

    def lease(self, key: str, *, lease: float, wait: float) -> AbstractContextManager[object]:
        """Return a context manager that holds the fleet-wide lease for ``key`` while entered.

        The lease lives ``lease`` seconds unless released first (a crashed holder blocks the
        fleet for at most that long). Entering waits up to ``wait`` seconds for a lease held
        elsewhere, then raises :class:`LockWaitTimeout`; any other exception means the store
        is unavailable.
        """
        ...


@runtime_checkable
class AsyncTicketCache(Protocol):
    """The async form of :class:`TicketCache`, for :class:`~sut_soap.AsyncSystemUserClient`; see the module docstring.

    Each method returns an awaitable (write them with ``async def``) with the meaning of its sync
    twin. The client awaits them on its event loop, each within the call's deadline; exceptions
    are treated as the store being unavailable. A runtime ``isinstance`` check cannot tell this
    protocol from the sync one: the client tells them apart by ``get`` being a coroutine function.
    """

    def get(self, key: str) -> Awaitable[CachedTicket | None]:
        """Return the entry stored under ``key``, or None when there is none (or it expired)."""
        ...

    def set(self, key: str, entry: CachedTicket, ttl: float) -> Awaitable[None]:
        """Store ``entry`` under ``key``, replacing any; after ``ttl`` seconds it may be dropped."""
        ...

    def delete(self, key: str) -> Awaitable[None]:
        """Forget the entry under ``key``; a missing key is not an error."""
        ...


@runtime_checkable
class AsyncLeasingTicketCache(AsyncTicketCache, Protocol):
    """An async store that can hold a fleet-wide lease per key while one process exchanges (module docstring)."""

    def lease(self, key: str, *, lease: float, wait: float) -> AbstractAsyncContextManager[object]:
        """Return an async context manager that holds the fleet-wide lease for ``key`` while entered.

        The same meaning as :meth:`LeasingTicketCache.lease`: the lease lives ``lease`` seconds
        unless released first; entering waits up to ``wait`` seconds for a lease held elsewhere,
        then raises :class:`LockWaitTimeout`; any other exception means the store is unavailable.
        """
        ...


class InMemoryTicketCache:
    """The default store: an LRU dict in this process, guarded by one short lock.

    Entries are dropped when their ``ttl`` has passed (on the monotonic clock): on ``get``, and
    by a sweep that ``set`` runs once per 64 calls or per half the entries held, whichever is
    more (so a tenant nobody asks for again does not stay forever, at an amortised cost of a
    few checks per ``set``). Beyond ``max_entries``, ``set`` evicts the entry least recently
    set or read. The store holds at most one entry per tenant and client namespace. Tickets
    stay in process memory, as any in-process credential does.

    Args:
        clock: the :class:`~sut_soap.Clock` whose monotonic time measures the TTLs; default:
            the system clock. The client passes its own.
        max_entries: the most entries held, a positive integer; default
            :data:`DEFAULT_MAX_ENTRIES` (100,000, a few hundred MB of tickets at most). Set it
            above the number of tenants a process serves within a ticket's lifetime: beyond it,
            the least recently used tenant is exchanged again when next asked for.

    Raises:
        ConfigurationError: ``max_entries`` is not a positive integer.

    Attributes:
        max_entries: as given.
    """

    def __init__(self, *, clock: Clock | None = None, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError("max_entries must be a positive integer")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[CachedTicket, float]] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self._monotonic = (clock or SYSTEM_CLOCK).monotonic
        self._sets = 0
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        """In a forked child: a new lock; the entries stay, so the child serves the tickets it inherited."""
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedTicket | None:
        """Return the entry under ``key`` while its TTL lasts, as the most recently used; drop an expired one."""
        entries = self._entries
        item = entries.get(key)  # a single read needs no lock; removal does
        if item is None:
            return None
        if self._monotonic() >= item[1]:
            with self._lock:
                if entries.get(key) is item:
                    del entries[key]
            return None
        # No lock on a hit (it would double its cost): moving a key is one atomic step of the C
        # OrderedDict, and a key another thread removed meanwhile needs no moving. (Not
        # contextlib.suppress: a context manager per hit costs more than the move.)
        try:  # noqa: SIM105
            entries.move_to_end(key)
        except KeyError:
            pass
        return item[0]

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        """Keep ``entry`` under ``key`` for ``ttl`` seconds on the monotonic clock, evicting beyond ``max_entries``."""
        now = self._monotonic()
        with self._lock:
            entries = self._entries
            entries[key] = (entry, now + ttl)
            entries.move_to_end(key)
            self._sets += 1
            if self._sets >= max(_SWEEP_EVERY, len(entries) // 2):
                self._sets = 0
                for stale in [k for k, (_, expires) in entries.items() if now >= expires]:
                    del entries[stale]
            while len(entries) > self.max_entries:
                entries.popitem(last=False)

    def delete(self, key: str) -> None:
        """Forget the entry under ``key``, if any."""
        with self._lock:
            self._entries.pop(key, None)

    def delete_if(self, key: str, ticket: str) -> bool:
        """Forget the entry under ``key`` only if it holds ``ticket`` (the ticket string); say whether it did."""
        with self._lock:
            item = self._entries.get(key)
            if item is None or item[0].ticket.ticket != ticket:
                return False
            del self._entries[key]
            return True

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """The number of entries held, expired ones not yet dropped included."""
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"InMemoryTicketCache(entries={len(self)})"
