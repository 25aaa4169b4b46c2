"""The one clock: where the library reads wall time and monotonic time, and waits.

Every decision that depends on time (a ticket's age, a retry's deadline, a JWT's ``exp``, a
JWKS refetch cooldown, the timestamp in a signed token, a cache entry's TTL) reads it from a
:class:`Clock`, so a test injects one object instead of patching :mod:`time`.

Wall time says *when* (what a JWT or a signed token carries, what another process can
compare); monotonic time measures *how long* in this process and cannot be set back. A
ticket this process obtained ages on the monotonic clock alone, so a wall clock set back or
jumping ahead neither keeps a dead ticket alive nor discards a fresh one; a ticket read from a
shared store, which another process obtained, can only age on the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

from .errors import ConfigurationError

__all__ = ["SYSTEM_CLOCK", "Clock", "as_clock"]


def _system_now() -> datetime:
    return datetime.now(timezone.utc)


class Clock:
    """Wall time, monotonic time and sleeping, each replaceable for tests.

    Args:
        now: returns the current time as a timezone-aware :class:`~datetime.datetime`
            (default: the system's UTC time). :meth:`wall` is derived from it.
        monotonic: seconds on a clock that never goes back (default :func:`time.monotonic`).
        sleep: blocks for a number of seconds (default :func:`time.sleep`).

    Example, a frozen wall clock for a test::

        frozen = datetime(2026, 11, 28, 14, 0, tzinfo=timezone.utc)
        client = SystemUserClient(..., clock=Clock(now=lambda: frozen))

    ``SystemUserClient(clock=...)`` also accepts the bare ``now`` callable, as it always has.

    Raises:
        ConfigurationError: ``now``, ``monotonic`` or ``sleep`` is not callable.

    Attributes:
        monotonic: the monotonic clock given (seconds).
        sleep: the sleeping function given.
    """

    __slots__ = ("_now", "_wall", "monotonic", "sleep")

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not all(callable(f) for f in (now or _system_now, monotonic, sleep)):
            raise ConfigurationError("a Clock's now, monotonic and sleep must be callables")
        self._now = now or _system_now
        # Plain time.time() unless a clock is injected: the cache reads it on every hit.
        self._wall: Callable[[], float] = time.time if now is None else (lambda: self._now().timestamp())
        self.monotonic = monotonic
        self.sleep = sleep

    def now(self) -> datetime:
        """The current wall time, timezone-aware."""
        return self._now()

    def wall(self) -> float:
        """The current wall time in Unix seconds."""
        return self._wall()

    def __repr__(self) -> str:
        return "Clock(system)" if self is SYSTEM_CLOCK else "Clock(injected)"


#: The system's clock: UTC wall time, :func:`time.monotonic`, :func:`time.sleep`.
SYSTEM_CLOCK = Clock()


def as_clock(value: Clock | Callable[[], datetime] | None) -> Clock:
    """A :class:`Clock` from what ``clock=`` accepts: a Clock, a ``now`` callable, or None (system).

    Raises:
        ConfigurationError: ``value`` is neither None, a Clock nor callable.
    """
    if value is None:
        return SYSTEM_CLOCK
    if isinstance(value, Clock):
        return value
    if not callable(value):
        raise ConfigurationError("clock must be a Clock or a callable returning an aware datetime")
    return Clock(now=value)
