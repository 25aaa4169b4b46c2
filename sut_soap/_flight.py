"""Who exchanges, and what the others do meanwhile: single flight and rejection memory.

These are the client's decisions about a tenant's ticket, kept apart from the exchange itself:

- :func:`freshness` says whether a cached ticket is *fresh* (serve it), *due* (serve it while
  one caller renews it) or *dead* (never serve it);
- :class:`Flights` elects one leader per tenant and system user token; the others wait for
  its outcome (a ticket or an error) instead of exchanging too;
- :class:`Rejections` remembers a rejected exchange for a cooldown, so a misconfigured tenant
  is not sent again and again. It holds at most :data:`REJECTION_MEMORY_SIZE` rejections.

Time comes from the injected :class:`~sut_soap.Clock`; waiting is a ``threading.Event`` here,
the only blocking primitive, so another shell (an asyncio client) can reuse the decisions.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from collections.abc import Callable

from . import _fork
from ._clock import Clock
from .errors import AuthenticationRejectedError
from .ticket import SystemUserTicket

__all__ = ["REJECTION_MEMORY_SIZE", "Flight", "Flights", "Freshness", "Rejections", "freshness"]

#: How many rejections a client remembers at most (one per tenant and system user token).
REJECTION_MEMORY_SIZE = 10_000


class Freshness(enum.Enum):
    """What a cached ticket of a given age is good for."""

    FRESH = "fresh"
    """Younger than ``ticket_lifetime - refresh_ahead``: served as it is."""
    DUE = "due"
    """Due for renewal but still valid: served while one caller renews it."""
    DEAD = "dead"
    """At or past ``ticket_lifetime``: never served."""


def freshness(age: float, *, renew_after: float, lifetime: float) -> Freshness:
    """Classify a ticket ``age`` seconds old against the client's lifetime and renewal point.

    Args:
        age: the ticket's age in seconds: monotonic for a ticket this process obtained, on
            the wall clock for one read back from a shared store.
        renew_after: ``ticket_lifetime - refresh_ahead``: from here on the ticket is due.
        lifetime: ``ticket_lifetime``: from here on the ticket is dead.
    """
    if age < renew_after:
        return Freshness.FRESH
    if age < lifetime:
        return Freshness.DUE
    return Freshness.DEAD


class Flight:
    """One exchange in progress for a tenant; the callers that wait for it share its outcome.

    Attributes:
        done: set when the leader landed, whatever the outcome.
        ticket: the leader's ticket, if it got one.
        error: the leader's error, if it raised an ``Exception``; both None when it was
            interrupted (say by ``KeyboardInterrupt``), and followers then try again.
    """

    __slots__ = ("done", "error", "ticket")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ticket: SystemUserTicket | None = None
        self.error: BaseException | None = None


class Flights:
    """The exchanges in progress, one per key: the first caller for a key leads, the rest follow."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        self._lock = threading.Lock()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        """In a forked child: no flight (their leaders were the parent's threads) and a new lock."""
        self._flights = {}
        self._lock = threading.Lock()

    def join(self, key: str) -> tuple[Flight, bool]:
        """Return the key's flight and whether this caller leads it (and so must :meth:`land` it)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def land(self, key: str, flight: Flight) -> None:
        """End the leader's flight: later callers start a new one, waiting callers wake up."""
        with self._lock:
            self._flights.pop(key, None)
        flight.done.set()

    def __len__(self) -> int:
        """The number of flights in progress."""
        return len(self._flights)


class _Rejection:
    """A remembered rejection: the error and when it happened (wall clock and monotonic)."""

    __slots__ = ("error", "monotonic", "wall")

    def __init__(self, error: AuthenticationRejectedError, wall: float, monotonic: float) -> None:
        self.error = error
        self.wall = wall
        self.monotonic = monotonic


class Rejections:
    """Rejected exchanges remembered for ``cooldown`` seconds (0 turns the memory off), bounded in size.

    Age is the larger of the wall-clock and monotonic ages: setting the clock back cannot
    stretch the cooldown, and an injected clock can end it in tests.

    At most ``max_entries`` rejections are kept, oldest first. Remembering one drops the
    rejections whose cooldown is over; when every one held is still live, the new rejection is
    not remembered (its tenant is exchanged again next time) until the oldest cools down, at
    most ``cooldown`` seconds later. So there is no cliff: with more rejected tenants than
    ``max_entries``, ``max_entries`` of them are still answered from memory and only the excess
    is exchanged again, whatever order they are asked in (dropping the oldest instead would
    have every tenant of a round-robin miss).

    Args:
        cooldown: seconds a rejection is remembered; 0 or less remembers nothing.
        clock: the client's :class:`~sut_soap.Clock`.
        max_entries: the most rejections held; default :data:`REJECTION_MEMORY_SIZE` (10,000).
    """

    def __init__(self, cooldown: float, clock: Clock, *, max_entries: int | None = None) -> None:
        self.cooldown = cooldown
        self.max_entries = REJECTION_MEMORY_SIZE if max_entries is None else max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Rejection] = OrderedDict()  # in the order remembered
        self._lock = threading.Lock()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        """In a forked child: a new lock; the rejections stay remembered."""
        self._lock = threading.Lock()

    def remember(self, key: str, error: AuthenticationRejectedError) -> None:
        """Remember that the exchange under ``key`` was rejected with ``error``, now (if there is room)."""
        if self.cooldown <= 0:
            return
        with self._lock:
            entries = self._entries
            entries.pop(key, None)
            # Oldest first, so the cooled-down ones are at the front: each is dropped once.
            while entries and self._age(next(iter(entries.values()))) >= self.cooldown:
                entries.popitem(last=False)
            if len(entries) < self.max_entries:
                entries[key] = _Rejection(error, self._clock.wall(), self._clock.monotonic())

    def recall(self, key: str) -> tuple[AuthenticationRejectedError, float] | None:
        """The remembered error under ``key`` and its age in seconds, if still within the cooldown."""
        if not self._entries:
            return None
        with self._lock:
            rejection = self._entries.get(key)
            if rejection is None:
                return None
            age = self._age(rejection)
            if age >= self.cooldown:
                del self._entries[key]
                return None
        return rejection.error, age

    def forget(self, matches: Callable[[str], bool]) -> None:
        """Forget every remembered rejection whose key ``matches``."""
        with self._lock:
            for key in [k for k in self._entries if matches(k)]:
                del self._entries[key]

    def __len__(self) -> int:
        """The number of rejections held, cooled-down ones not yet dropped included."""
        return len(self._entries)

    def _age(self, rejection: _Rejection) -> float:
        return max(self._clock.wall() - rejection.wall, self._clock.monotonic() - rejection.monotonic)
