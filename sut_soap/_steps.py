"""The steps the client's decisions ask for, and the driver that performs them in the calling thread.

The decisions of :meth:`~sut_soap.SystemUserClient.get_ticket` and ``authenticate`` (read the
store, classify the ticket, join the tenant's single flight, take the fleet lease, sign, send,
validate, retry within the deadline, fall back to a still-valid ticket) are written once, as
generators (:mod:`sut_soap._renewal`, :mod:`sut_soap._core`). Where a decision needs the
outside world it yields one of the steps below and receives the step's result (or has the
step's exception raised at the ``yield``). Two shells perform them:

- the sync client, with :func:`run`: in the calling thread, blocking;
- :class:`~sut_soap.AsyncSystemUserClient`: awaiting (the network, sleeps, another task's
  flight), running a store that does I/O in a thread, and leading each flight in a task of its
  own, so cancelling the caller that started an exchange does not cancel it for the others.

So the two clients cannot drift apart: the only code each has of its own is how a step is
performed. The hot path of ``get_ticket`` (a fresh ticket in the store) yields nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from ._flight import Flight
    from .ticket import SystemUserTicket

__all__ = [
    "Attempt", "Lead", "Send", "Sign", "Sleep", "Step", "Steps", "Store", "Validate", "Wait", "is_system_sleep", "run",
]

T = TypeVar("T")


class Store(NamedTuple):
    """Call the ticket store: ``call(*args)`` (``get``, ``set``, entering or leaving a lease)."""

    call: Callable[..., Any]
    args: tuple[Any, ...]


class Sign(NamedTuple):
    """Sign ``token`` with ``key`` at ``at`` (:func:`~sut_soap.sign_system_user_token`); the result: the signed text."""

    token: str
    key: RSAPrivateKey
    at: Any


class Send(NamedTuple):
    """Send the exchange's request through the client's transport; the result is the Response."""

    method: str
    url: str
    body: bytes
    headers: Mapping[str, str]


class Attempt(NamedTuple):
    """One attempt at the exchange for ``context``: sign, send, read the answer; the result: ``(Answer, signed at)``.

    A step of its own (its parts are the steps of ``ClientCore._attempt_steps``) so each shell
    has one place that makes an attempt.
    """

    context: str
    token: str


class Validate(NamedTuple):
    """Validate the answer's JWT for tenant ``context`` (a JWKS fetch may be needed); the result is its claims."""

    token: str
    context: str


class Sleep(NamedTuple):
    """Wait ``seconds`` before the next attempt, with ``sleep`` (the system's when it is :func:`time.sleep`)."""

    seconds: float
    sleep: Callable[[float], None]


class Wait(NamedTuple):
    """Wait at most ``timeout`` seconds for another caller's ``flight`` to land; the result: whether it did."""

    flight: Flight
    timeout: float


class Lead(NamedTuple):
    """Run a flight's leader ``steps`` (which land ``flight`` whatever happens); the result is their ticket."""

    flight: Flight
    steps: Steps[SystemUserTicket]


Step = Store | Sign | Send | Attempt | Validate | Sleep | Wait | Lead
#: Decisions as a generator: they yield steps and return their outcome.
Steps = Generator[Step, Any, T]


def run(steps: Steps[T], perform: Callable[[Step], Any]) -> T:
    """Drive ``steps`` to their end in this thread, performing each step with ``perform``; return their outcome.

    A step's exception (``BaseException`` included, so an interrupt still lands a flight) is
    raised into the generator at its ``yield``; whatever the generator lets out propagates.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            error = None  # no reference cycle through the traceback
        try:
            value = perform(step)
        except BaseException as exc:
            value, error = None, exc


def is_system_sleep(sleep: Callable[[float], None]) -> bool:
    """Whether ``sleep`` is the system's blocking sleep (a shell may wait its own way instead)."""
    return sleep is time.sleep
