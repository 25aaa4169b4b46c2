"""The asyncio side of the seam: calling an :class:`~sut_soap.AsyncTransport`, and a sync transport run in threads.

:func:`acall_transport` is :func:`~sut_soap.call_transport` for an async transport: the
request's ``deadline=`` is cut to what is left of the call's budget, and the await itself is
bounded by it (an ``asyncio`` timeout, a few milliseconds after the deadline), so a transport
that overruns its deadline cannot hold a call beyond it.

:class:`ThreadedAsyncTransport` runs a sync :class:`~sut_soap.Transport` (the default
:class:`~sut_soap.HttpTransport`, one over your own ``requests.Session``, a recording) in
worker threads of its own, so the event loop never waits for the network.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .. import _fork
from ..errors import ConfigurationError, SutSoapError, TransportError
from ._errors import budgeted, foreign_failure, host_of

if TYPE_CHECKING:
    from . import AsyncTransport, Response, Transport

__all__ = ["ThreadedAsyncTransport", "acall_transport"]

_log = logging.getLogger("sut_soap.transport")

# How long past the request's deadline the await is given before it is cut: a transport ends
# its own request at the deadline, with a more precise error than this cut can give.
_GRACE = 0.05
_MAX_WORKERS = 256


async def acall_transport(
    transport: AsyncTransport,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    max_bytes: int | None = None,
) -> Response:
    """Await ``transport.request``; an exception that is not a SutSoapError becomes a TransportError.

    Inside a call of the async client, ``deadline`` is cut to what is left of the call's
    budget; with nothing left, nothing is sent. With a deadline, the await is cut shortly after
    it (the transport's own error, if it ends its request in time, is raised as it is).

    Returns:
        The transport's response, as it returned it.

    Raises:
        SutSoapError: whatever the transport raised of sut-soap's own errors, unchanged.
        TransportError: the call's budget is spent or the await outlived the deadline
            (retryable), or any other exception of the transport (non-retryable, naming only
            its type).
    """
    deadline = budgeted(url, deadline)
    request = transport.request(method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes)
    try:
        if deadline is None:
            return await request
        return await asyncio.wait_for(request, deadline + _GRACE)
    except SutSoapError:
        raise
    except asyncio.TimeoutError:
        host = host_of(url)
        raise TransportError(
            f"no complete answer from {host} within the deadline ({deadline or 0:.3g} s for this request); "
            "the request may have reached the server",
            retryable=True, host=host,
        ) from None
    except Exception as exc:
        raise foreign_failure(url, exc) from None


class ThreadedAsyncTransport:
    """An :class:`~sut_soap.AsyncTransport` that runs a sync :class:`~sut_soap.Transport` in threads of its own.

    Each request runs ``transport.request`` in a worker thread (at most ``max_workers`` at a
    time; more wait for a thread), with the caller's context, so the event loop goes on while
    the request waits for the network. The answer, the errors and every guarantee (TLS,
    deadline, size cap, no redirects) are the sync transport's. Cancelling the await leaves the
    request to finish in its thread, bounded by its deadline; its answer is dropped.

    For a ``requests.Session`` of yours, or a sync transport of your own, with
    :class:`~sut_soap.AsyncSystemUserClient`::

        transport = ThreadedAsyncTransport(HttpTransport(session))
        client = AsyncSystemUserClient(..., transport=transport)

    Args:
        transport: the sync transport to run, such as an :class:`~sut_soap.HttpTransport`.
        max_workers: threads running requests at most, 1 to 256. Default 16 (the connections
            :class:`~sut_soap.HttpTransport` keeps per host); :meth:`ensure_pool` raises it.

    Raises:
        ConfigurationError: ``transport`` has no ``request`` method, or ``max_workers`` is out
            of range.

    Attributes:
        transport: the sync transport requests run on.
    """

    def __init__(self, transport: Transport, *, max_workers: int = 16) -> None:
        if not callable(getattr(transport, "request", None)):
            raise ConfigurationError("transport must be a sut_soap.Transport: an object with request(method, url, ...)")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or not 1 <= max_workers <= _MAX_WORKERS:
            raise ConfigurationError(f"max_workers must be an integer from 1 to {_MAX_WORKERS}")
        self.transport = transport
        self._max_workers = max_workers
        self._executor = self._new_executor(max_workers)
        self._retired: list[ThreadPoolExecutor] = []
        _fork.register(self)

    @staticmethod
    def _new_executor(size: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=size, thread_name_prefix="sut-soap-transport")

    def _reset_after_fork(self) -> None:
        """In a forked child: new worker threads (the parent's do not exist there)."""
        self._executor = self._new_executor(self._max_workers)
        self._retired = []

    @property
    def max_workers(self) -> int:
        """The threads that run requests at most."""
        return self._max_workers

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        """Run the sync transport's ``request`` in a worker thread and return its response.

        See :meth:`~sut_soap.Transport.request` for the arguments, the result and the errors.
        """
        call = functools.partial(
            contextvars.copy_context().run, self.transport.request, method, url,
            body=body, headers=headers, deadline=deadline, max_bytes=max_bytes,
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def prepare(self, urls: Iterable[str | None], *, allow_insecure_tls: bool = False) -> None:
        """Pass the client's URLs on to the sync transport's ``prepare``, if it has one."""
        prepare = getattr(self.transport, "prepare", None)
        if callable(prepare):
            prepare(urls, allow_insecure_tls=allow_insecure_tls)

    def ensure_pool(self, size: int) -> None:
        """Run up to ``size`` requests at a time (at most 256), and ask the sync transport for as many connections."""
        ensure_pool = getattr(self.transport, "ensure_pool", None)
        if callable(ensure_pool):
            ensure_pool(size)
        size = min(size, _MAX_WORKERS)
        if size > self._max_workers:
            # A pool cannot grow: requests running on the old one finish there.
            self._retired.append(self._executor)
            self._executor, self._max_workers = self._new_executor(size), size

    async def aclose(self) -> None:
        """Close the sync transport (in a worker thread) and let the worker threads end."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.transport.close)
        for executor in (*self._retired, self._executor):
            executor.shutdown(wait=False)
        self._retired = []

    def __repr__(self) -> str:
        return f"ThreadedAsyncTransport(transport={self.transport!r}, max_workers={self._max_workers})"
