"""When an exchange is tried again, and how long sut-soap waits first.

Only failures that say nothing about the request itself are retried; anything the server
decided about it (a rejection, a client fault, 4xx), anything wrong locally (configuration,
TLS trust, a JWT that fails validation) and any answer that is not the protocol would come
back the same way, so it is raised at once:

- retried: connection refused or reset, DNS failure, connect or read timeout, a connection
  that broke mid-answer; HTTP 502, 503 and 504; HTTP 429 when it says how long to wait
  (``Retry-After``) within the cap; a SOAP ``s:Server`` fault.
- never retried: TLS failures (untrusted, expired or misnamed certificate); HTTP 3xx, other 4xx
  (401, 403, 404, ...) and 500 without a SOAP fault; 429 without ``Retry-After``; any status
  whose ``Retry-After`` exceeds the cap; SOAP ``s:Client`` and other faults;
  ``AuthenticationRejectedError`` (IsSuccessful=false), ``ProtocolError``,
  ``TokenValidationError``, ``ConfigurationError`` and anything else.

The wait before attempt *n + 1* is the server's ``Retry-After`` when it sent one (seconds or
an HTTP-date; beyond ``retry_after_cap`` the call fails at once instead of sleeping), else
"full jitter" as botocore does it: uniform in ``[0, min(backoff_cap, backoff_base * 2**(n-1))]``.
No attempt starts, and no wait is begun that would end, later than ``deadline`` seconds after
the first attempt started; each attempt's own network timeouts are cut to what is left.
"""

from __future__ import annotations

import logging
import math
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ._clock import Clock
from .errors import ConfigurationError, SoapFaultError, SutSoapError, TransportError

__all__ = ["DEFAULT_RETRY", "RetryPolicy", "RetrySchedule"]

_log = logging.getLogger("sut_soap.retry")

T = TypeVar("T")

_MAX_ATTEMPTS = 10
_MAX_SECONDS = 3600.0
_TRANSIENT_STATUS = frozenset({502, 503, 504})


def _seconds(name: str, value: object, *, low: float = 0.0, allow_zero: bool = True) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < low
        or (value == 0 and not allow_zero)
        or value > _MAX_SECONDS
    ):
        bound = "above 0" if not allow_zero else "from 0"
        raise ConfigurationError(f"RetryPolicy {name} must be a number of seconds {bound} to {_MAX_SECONDS:g}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How ``get_ticket`` retries a transient failure of the exchange (see the module docstring).

    ``attempts`` counts the first try: 3 means at most two retries, 1 disables retrying.
    ``sleep``, ``random`` and ``monotonic`` are injectable so tests need not wait.

    Args:
        attempts: tries in all, the first included, 1 to 10. Default 3.
        backoff_base: seconds; the jitter ceiling after attempt n is
            ``min(backoff_cap, backoff_base * 2**(n-1))``. Default 0.5.
        backoff_cap: the largest jitter ceiling, seconds. Default 20.
        retry_after_cap: the longest ``Retry-After`` waited for; a longer one fails the call
            at once. Default 30.
        deadline: seconds after the first attempt started within which every attempt and wait
            must fit, above 0. Default 30.
        sleep: waits a number of seconds. Default :func:`time.sleep` (the client's clock's
            ``sleep`` when called through the client).
        random: returns a float in ``[0, 1)`` for the jitter. Default :func:`random.random`.
        monotonic: monotonic seconds for the deadline. Default :func:`time.monotonic` (the
            client's clock when called through the client).

    Raises:
        ConfigurationError: an out-of-range or non-numeric value, or a non-callable stand-in.
            Every number of seconds is at most 3600.
    """

    attempts: int = 3
    backoff_base: float = 0.5
    backoff_cap: float = 20.0
    retry_after_cap: float = 30.0
    deadline: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or not 1 <= self.attempts <= _MAX_ATTEMPTS
        ):
            raise ConfigurationError(f"RetryPolicy attempts must be an integer from 1 to {_MAX_ATTEMPTS}")
        _seconds("backoff_base", self.backoff_base)
        _seconds("backoff_cap", self.backoff_cap)
        _seconds("retry_after_cap", self.retry_after_cap)
        _seconds("deadline", self.deadline, allow_zero=False)
        for name in ("sleep", "random", "monotonic"):
            if not callable(getattr(self, name)):
                raise ConfigurationError(f"RetryPolicy {name} must be callable")

    def delay(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait after ``attempt`` (1-based) failed with ``error``; None: do not retry.

        None when the attempts are spent, the error is not transient, a ``Retry-After`` exceeds
        ``retry_after_cap``, or a 429 did not say how long to wait. Never raises.
        """
        if attempt >= self.attempts or not is_transient(error):
            return None
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool):
            return float(retry_after) if 0 <= retry_after <= self.retry_after_cap else None
        if isinstance(error, TransportError) and error.status == 429:
            return None  # throttled without saying for how long: guessing would only add load
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        return self.random() * ceiling

    def call(
        self, attempt: Callable[[float], T], *, what: str, clock: Clock | None = None, budget: float | None = None
    ) -> T:
        """Run ``attempt(seconds_left)`` until it returns or the policy gives up; raise the last error.

        ``clock`` (the client's) measures the deadline and waits, unless this policy was given
        its own ``monotonic=`` or ``sleep=``. Each retry is logged at DEBUG on
        ``sut_soap.retry`` (what, attempt, error class, HTTP status, wait), never a secret.

        Args:
            attempt: called with the seconds left until the deadline; returns the result.
            what: names the call in log lines, such as ``"exchange for Cust12345"``.
            clock: the :class:`~sut_soap.Clock` to measure and wait with.
            budget: the seconds the caller allows in all (the client's ``deadline=``, or what
                is left of it), when shorter than this policy's ``deadline``; None: the
                policy's alone.

        Returns:
            What ``attempt`` returned.

        Raises:
            SutSoapError: the last attempt's error, unchanged, once no retry is left, the error
                is not transient, or the next wait would pass the deadline. Exceptions that are
                not a ``SutSoapError`` are never retried and propagate at once.
        """
        schedule = self.schedule(what=what, clock=clock, budget=budget)
        while True:
            try:
                return attempt(schedule.left())
            except SutSoapError as error:
                wait = schedule.wait_after(error)
                if wait is None:
                    raise
            schedule.sleep(wait)

    def schedule(self, *, what: str, clock: Clock | None = None, budget: float | None = None) -> RetrySchedule:
        """Start the retry schedule of one call, for a caller that runs the attempts itself.

        :meth:`call` is this schedule driven in the calling thread; the async client drives the
        same schedule with awaited waits. The deadline starts now. The arguments are
        :meth:`call`'s.
        """
        monotonic = clock.monotonic if clock is not None and self.monotonic is time.monotonic else self.monotonic
        sleep = clock.sleep if clock is not None and self.sleep is time.sleep else self.sleep
        allowed = self.deadline if budget is None else min(self.deadline, budget)
        return RetrySchedule(self, what, monotonic, sleep, allowed)


class RetrySchedule:
    """The retries of one call: the seconds left, and whether (and how long) to wait after a failure.

    Built by :meth:`RetryPolicy.schedule`.

    Attributes:
        sleep: how to wait between attempts: the policy's ``sleep=``, else the client clock's.
    """

    __slots__ = ("_allowed", "_deadline_at", "_monotonic", "_number", "_policy", "_what", "sleep")

    def __init__(
        self,
        policy: RetryPolicy,
        what: str,
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
        allowed: float,
    ) -> None:
        self._policy = policy
        self._what = what
        self._monotonic = monotonic
        self.sleep = sleep
        self._allowed = allowed
        self._deadline_at = monotonic() + allowed
        self._number = 1

    def left(self) -> float:
        """Seconds left until the deadline, for the next attempt."""
        return self._deadline_at - self._monotonic()

    def wait_after(self, error: SutSoapError) -> float | None:
        """Seconds to wait before the next attempt after this one failed with ``error``; None: give up (raise it).

        Each retry and the giving up are logged at DEBUG on ``sut_soap.retry``, never a secret.
        """
        policy, what, number = self._policy, self._what, self._number
        wait = policy.delay(error, number)
        status = getattr(error, "status", None)
        failure = type(error).__name__ + (f", HTTP {status}" if status is not None else "")
        if wait is None:
            if number > 1 or is_transient(error):
                _log.debug("%s: attempt %d of %d failed (%s); giving up", what, number, policy.attempts, failure)
            return None
        if self._monotonic() + wait >= self._deadline_at:
            _log.debug(
                "%s: attempt %d failed (%s); a wait of %.2f s would pass the %g s deadline",
                what, number, failure, wait, self._allowed,
            )
            return None
        _log.debug("%s: attempt %d of %d failed (%s); retrying in %.2f s", what, number, policy.attempts, failure, wait)
        self._number = number + 1
        return wait


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is the kind of failure another attempt may get past.

    A retryable SOAP fault (``s:Server``), or a retryable :class:`~sut_soap.errors.TransportError`
    without a status, with one below 400 (the answer broke off while being read), or with 429,
    502, 503 or 504. Everything else, rejections, protocol and validation errors included, is not.
    """
    if isinstance(error, SoapFaultError):
        return error.retryable
    if not isinstance(error, TransportError) or not error.retryable:
        return False
    status = error.status
    return status is None or status < 400 or status == 429 or status in _TRANSIENT_STATUS


#: The policy ``get_ticket`` uses unless ``retry=`` says otherwise.
DEFAULT_RETRY = RetryPolicy()
