"""The time left of the call in progress, shared by every request and wait inside it.

:meth:`~sut_soap.SystemUserClient.authenticate` and ``get_ticket`` each open a budget of the
client's ``deadline=`` seconds. Every request made inside it, the SOAP POST and a JWKS fetch
deep inside JWT validation alike, is cut to what is left (:func:`~sut_soap.call_transport`
passes it on as the request's ``deadline=``), and so is every wait: a retry's pause, another
thread's exchange for the same tenant, the JWKS lock. The budget lives in a
:mod:`contextvars` variable, so each thread (and each asyncio task) has its own, and a budget
opened inside another can only shorten it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

__all__ = ["leave", "open_budget", "remaining"]

_Budget = tuple[Callable[[], float], float]

_current: ContextVar[_Budget | None] = ContextVar("sut_soap_deadline", default=None)


def open_budget(seconds: float, monotonic: Callable[[], float]) -> Token[_Budget | None]:
    """Start a budget of ``seconds`` measured on ``monotonic``; pass the result to :func:`leave`.

    Inside a budget already open, the earlier of the two ends wins.
    """
    ends = monotonic() + seconds
    outer = _current.get()
    if outer is not None:
        outer_monotonic, outer_ends = outer
        ends = min(ends, monotonic() + (outer_ends - outer_monotonic()))
    return _current.set((monotonic, ends))


def leave(token: Token[_Budget | None]) -> None:
    """End the budget :func:`open_budget` returned ``token`` for; the outer one (if any) is current again."""
    _current.reset(token)


def remaining() -> float | None:
    """Seconds left of the current budget (zero or less once it passed); None outside any budget."""
    current = _current.get()
    if current is None:
        return None
    monotonic, ends = current
    return ends - monotonic()
