"""The one network seam: every HTTP request the library makes goes through a :class:`Transport`.

The SOAP POST of an exchange, the JWKS GET behind JWT validation and the command line's
``doctor`` probes all call :meth:`Transport.request`. The SOAP layer and the validator never
touch the network themselves, so a test (or a recording, or a replay) swaps one object to
see or script everything that goes over the wire.

:class:`HttpTransport`, the default, is the only package that imports the HTTP libraries
(``http.client`` connections of its own, urllib3 for a host behind a proxy, requests for a
``session=`` of yours). Its policy, in one place:

- **Time**: a ``(connect, read)`` timeout on every socket operation, and a total ``deadline``
  per request. A socket timeout bounds one read, not an answer, so a watchdog thread (one per
  process) shuts down the socket of a request still running at its deadline, whether it is
  connecting, in the TLS handshake, sending, waiting for headers a server drips one byte at a
  time, or reading the body; the caller gets a retryable ``TransportError`` within a few
  milliseconds of the deadline. A caller's ``deadline=`` (what is left of the call's budget,
  which :func:`call_transport` passes on) cuts both. Not bounded: a DNS lookup the system
  resolver takes long over (it cannot be interrupted; ``/etc/resolv.conf`` ``timeout``
  and ``attempts`` bound it).
- **Size**: at most ``max_response_bytes`` (1 MiB) of answer are read, counted after
  decompression, so a compression bomb stops at the cap.
- **No redirects**: a 3xx is returned as it is, never followed, so the client secret and the
  signed token are never re-sent to wherever a ``Location`` points.
- **TLS**: certificates are always verified (the system store, or the CA bundle named by
  ``verify=``/``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, which must exist); a session with
  ``verify=False`` towards a remote https host is refused unless ``allow_insecure_tls``.
- **Environment**: without ``session=``, proxies (``*_proxy``, ``no_proxy``) are read from
  the environment once per origin and the CA bundle once, not on every request (details in
  :mod:`sut_soap.transport._pools`).
- **Errors**: one mapping from the HTTP library's exceptions to
  :class:`~sut_soap.errors.TransportError` (network, timeout, TLS, the deadline; each names
  the host and the phase, and from ``send`` on says the request may have reached the
  server) and
  :class:`~sut_soap.errors.ProtocolError` (an answer too large or not decodable). Nothing
  is logged but the method, host, status and time; never a body or a header value.

Write your own transport by implementing :class:`Transport` (one ``request`` method and
``close``); exceptions it raises that are not a :class:`~sut_soap.errors.SutSoapError` reach
the caller as a non-retryable ``TransportError`` naming only the exception's type.

:class:`AsyncTransport` is the asyncio twin of the seam (``await request(...)``,
``await aclose()``); :class:`AiohttpTransport` (the ``sut-soap[async]`` extra, imported on first
use) keeps the same policy on aiohttp's connections (:mod:`sut_soap.transport._aio`).
"""


from __future__ import annotations

import importlib
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from .. import _fork
from .._clock import SYSTEM_CLOCK, Clock
from .._watchdog import WATCHDOG, Watch
from ..errors import SutSoapError
from . import _session
from ._async import ThreadedAsyncTransport, acall_transport
from ._errors import HTTP_ERRORS, PHASES, budgeted, cut_timeout, foreign_failure, host_of, not_sent, request_error
from ._pools import (
    USER_AGENT,
    Pools,
    Route,
    environment_bundle,
    invalid_url,
    missing_bundle,
    proxy_from_environment,
    system_trust_context,
)
from ._values import HeaderMap, HttpResponse, Response, Sent
from ._watched import local, read_capped, tls_version

if TYPE_CHECKING:
    import requests

    from ._aio import AiohttpTransport

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "PHASES",
    "AiohttpTransport",
    "AsyncTransport",
    "HeaderMap",
    "HttpResponse",
    "HttpTransport",
    "Response",
    "ThreadedAsyncTransport",
    "Transport",
    "acall_transport",
    "call_transport",
]

#: ``(connect, read)`` seconds of the default transport.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 10.0)
#: Seconds one request may take in all, answer included.
DEFAULT_DEADLINE = 30.0
#: Bytes of answer read at most (after decompression).
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
#: Connections kept per host in the transport's own pools.
DEFAULT_POOL_SIZE = 16

_log = logging.getLogger("sut_soap.transport")


@runtime_checkable
class Transport(Protocol):
    """The seam through which every network call of the library goes.

    Implement it to script, record or observe the library's HTTP traffic (sut-soap's own
    :class:`~sut_soap.testing.RecordingTransport` and :class:`~sut_soap.testing.ReplayTransport`
    do). Pass it as ``SystemUserClient(transport=...)``.

    Two methods are optional: a transport that has ``prepare(urls, *, allow_insecure_tls)``
    gets the client's endpoint and JWKS URL once at construction (to apply a TLS and proxy
    policy, as :meth:`HttpTransport.prepare` does), and one that has ``ensure_pool(size)`` is
    asked for that many connections per host before ``get_tickets`` runs that many threads.
    A transport that wraps another should pass both on.
    """

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
        """Send one request and return the answer read to the end; never follow a redirect.

        Args:
            method: ``"POST"`` (the exchange, doctor's probe) or ``"GET"`` (JWKS, probes).
            url: the absolute URL.
            body: the request body, or None.
            headers: the request headers (they can carry the client secret: never log them).
            deadline: seconds this request may take in all, at most; None for the
                transport's own bound.
            max_bytes: the largest answer to read; None for the transport's own cap.

        Raises:
            TransportError: no answer (network, timeout, TLS, the deadline).
            ProtocolError: an answer that is too large or cannot be decoded.
        """
        ...

    def close(self) -> None:
        """Release connections the transport holds."""
        ...


@runtime_checkable
class AsyncTransport(Protocol):
    """The asyncio twin of Transport: the seam through which every network call of AsyncSystemUserClient goes.

    The same contract as :class:`Transport`, awaited: ``request`` returns the same
    :class:`Response` values and raises the same errors, and ``aclose`` releases the
    connections. The optional ``prepare(urls, *, allow_insecure_tls)`` and
    ``ensure_pool(size)`` are plain methods here too. :class:`AiohttpTransport` is the default;
    :class:`ThreadedAsyncTransport` runs any sync transport (a ``requests.Session`` of yours
    through :class:`HttpTransport`, a recording, a replay) in threads. Pass it as
    ``AsyncSystemUserClient(transport=...)``.
    """

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
        """Send one request and return the answer read to the end; never follow a redirect.

        The arguments, the return value and the errors are those of :meth:`Transport.request`.

        Raises:
            TransportError: no answer (network, timeout, TLS, the deadline).
            ProtocolError: an answer that is too large or cannot be decoded.
        """
        ...

    async def aclose(self) -> None:
        """Release connections the transport holds."""
        ...


def __getattr__(name: str) -> Any:
    """``AiohttpTransport``, imported on first use: only ``sut-soap[async]`` installs aiohttp."""
    if name == "AiohttpTransport":
        return importlib.import_module("._aio", __name__).AiohttpTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def call_transport(
    transport: Transport,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    max_bytes: int | None = None,
) -> Response:
    """Call ``transport.request``; an exception that is not a SutSoapError becomes a TransportError.

    Inside a call of the client (``authenticate``, ``get_ticket``), ``deadline`` is cut to what
    is left of the call's ``deadline=`` budget, so every request made for it, a JWKS fetch
    included, ends within the budget; with nothing left, nothing is sent. A caller's own
    transport may raise anything; its message may carry what it was sending, so only the
    exception's type is kept.

    Returns:
        The transport's response, as it returned it.

    Raises:
        SutSoapError: whatever the transport raised of sut-soap's own errors, unchanged
            (``TransportError``, ``ProtocolError``, ...).
        TransportError: the call's budget is spent (retryable), or any other exception of the
            transport (non-retryable, naming only its type).
    """
    deadline = budgeted(url, deadline)
    try:
        return transport.request(method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes)
    except SutSoapError:
        raise
    except Exception as exc:
        raise foreign_failure(url, exc) from None


def _timeout_of(timeout: Any) -> tuple[Any, Any]:
    """``timeout`` as a ``(connect, read)`` pair."""
    return (timeout[0], timeout[1]) if isinstance(timeout, tuple) else (timeout, timeout)


class HttpTransport:
    """The default :class:`Transport`: kept-alive connections of its own, or a ``requests.Session`` of yours.

    Args:
        session: a ``requests.Session`` to send with (your proxies, CA bundle, adapters); it is
            used as it is and left open by :meth:`close`. Default: no session; the transport
            keeps connection pools of its own (one per origin), the system trust store (or the CA
            bundle ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` names, read now), proxies from the
            environment read once per origin. In a child forked after the transport was built,
            either gets new connection pools, so no socket is shared with the parent (README:
            "Under gunicorn, ..."). The pools of your session's requests ``HTTPAdapter`` mounts
            make connections the deadline's watchdog can cut from then on; connections it
            pooled before, other adapters and proxy pools it creates later are bounded by the
            timeouts and by the deadline checked between reads only.
        timeout: seconds for connecting and for each read, a number or a ``(connect, read)``
            pair (default ``(5, 10)``).
        deadline: seconds one request may take in all, answer included (default 30; None
            for no total bound beyond the timeouts).
        max_response_bytes: the largest answer read, after decompression (default 1 MiB).
        clock: the :class:`~sut_soap.Clock` measuring the deadline.

    Attributes:
        session: the session you passed, or None when the transport sends on its own pools.
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        deadline: float | None = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self._clock = clock or SYSTEM_CLOCK
        self._timeout = _timeout_of(timeout)
        self._pool_lock = threading.Lock()
        self._retired: list[Pools] = []
        # Read once, for the transport's life (its own pools only): the CA bundle now, proxies per origin.
        self._ca_bundle = environment_bundle() if session is None else None
        self._tls: ssl.SSLContext | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._pools = Pools(DEFAULT_POOL_SIZE, self._tls_context, self._proxies)
        if session is not None:
            _session.watch_adapters(session)
        _fork.register(self)

    @property
    def owns_session(self) -> bool:
        """Whether the transport sends on pools of its own (tuned and closed by it) rather than your session."""
        return self.session is None

    def _tls_context(self) -> ssl.SSLContext:
        # Called under a Pools lock; two generations racing build two equal contexts at worst.
        if self._tls is None:
            self._tls = system_trust_context(self._ca_bundle)
        return self._tls

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> HttpResponse:
        """Send one request and read the answer within the timeouts, the deadline and the size cap.

        See :meth:`Transport.request` for the arguments. A 3xx is returned, not followed. The
        ``User-Agent`` is ``sut-soap/<version>`` unless ``headers`` sets one.

        Returns:
            An :class:`HttpResponse` with the whole body read.

        Raises:
            TransportError: ``deadline`` already passed (retryable); the TLS handshake failed
                (not retryable; the reason, such as an expired certificate, in the message);
                connecting or reading timed out, the host does not resolve, the connection was
                refused or closed before or during the answer, or the answer did not complete
                within the deadline, in whatever phase the watchdog found the request (all
                retryable). ``.host`` and ``.phase`` say where; from ``"send"`` on, the
                message says the request may have reached the server. A URL that is not
                http or https (not retryable).
            ProtocolError: the answer is (or declares itself) larger than the cap, or its
                ``Content-Encoding`` does not decode.
            ConfigurationError: the first request to an origin finds the environment's CA
                bundle or proxy unusable (:meth:`prepare` finds it at construction instead).
        """
        started = self._clock.monotonic()
        timeout: Any = self.timeout
        limit = self.deadline
        if deadline is not None:
            if deadline <= 0:
                raise not_sent(url)
            limit = deadline if limit is None else min(limit, deadline)
        if limit is not None:
            # A connect in progress has no socket the watchdog can reach: its timeout must end in time.
            timeout = cut_timeout(timeout, limit)
        if self.session is not None:
            host = host_of(url)
            session = self.session

            def send() -> Sent:
                response = _session.send(
                    session, method, url, body=body, headers={"User-Agent": USER_AGENT, **(headers or {})},
                    timeout=timeout,
                )
                return Sent(
                    response.raw, response.status_code, HeaderMap(response.headers.items()), response.reason or "",
                    response.close,
                )
        else:
            try:
                parts = urlsplit(url)
            except ValueError:
                raise invalid_url("the endpoint") from None
            route: Route = self._pools.route(parts, url)
            host = route.host
            target = url if route.absolute else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            pair = self._timeout if timeout == self.timeout else _timeout_of(timeout)

            def send() -> Sent:
                return route.send(method, target, body, headers, pair)

        sent, content, version = self._send_watched(send, host, limit, max_bytes or self.max_response_bytes)
        if _log.isEnabledFor(logging.DEBUG):
            elapsed = (self._clock.monotonic() - started) * 1000
            _log.debug("%s %s: HTTP %s in %.1f ms", method, host, sent.status, elapsed)
        return HttpResponse(sent.status, sent.headers, content, sent.reason, version)

    @staticmethod
    def _send_watched(
        send: Callable[[], Sent], host: str, limit: float | None, cap: int
    ) -> tuple[Sent, bytes, str | None]:
        """``send()`` and the capped read of its answer's body, watched until the deadline ``limit``.

        The one sequence both ways of sending share: the watch is on from the connect to the
        last byte, the HTTP library's failures are mapped once, and the connection is given
        back (or closed) whatever happens.
        """
        watch: Watch | None = None if limit is None else WATCHDOG.watch(limit)
        local.watch = watch
        try:
            try:
                sent = send()
            except HTTP_ERRORS as exc:
                raise request_error(exc, host, watch, limit) from None
            finally:
                local.watch = None
            try:
                version = tls_version(sent.raw)
                content = read_capped(
                    sent.raw, status=sent.status, declared=sent.headers.get("Content-Length", ""), host=host,
                    watch=watch, limit=limit, cap=cap,
                )
            finally:
                sent.close()
        finally:
            if watch is not None:
                WATCHDOG.release(watch)
        return sent, content, version

    def prepare(self, urls: Iterable[str | None], *, allow_insecure_tls: bool = False) -> None:
        """Apply the TLS and proxy policy for the URLs a client will call, once, before any request.

        Without a session of yours, the proxy of each URL's origin is read from the environment
        now (and never again); the CA bundle was read when the transport was built.

        Raises:
            ConfigurationError: a CA bundle (``verify=``, ``REQUESTS_CA_BUNDLE``,
                ``CURL_CA_BUNDLE``) that does not exist, or ``verify=False`` towards a remote
                https host without ``allow_insecure_tls=True``.
        """
        targets = [url for url in urls if url is not None]
        session = self.session
        if session is not None:
            _session.check_ca_bundle(session, targets)
            _session.check_verification(session, targets, allow_insecure_tls=allow_insecure_tls)
            return
        https = any(urlsplit(url).scheme == "https" for url in targets)
        if https and self._ca_bundle is not None:
            variable, path = self._ca_bundle
            if not os.path.exists(path):
                raise missing_bundle(path, variable)
        for url in targets:
            parts = urlsplit(url)
            key = (parts.scheme, parts.netloc)
            with self._pool_lock:
                if key not in self._proxies:
                    self._proxies[key] = proxy_from_environment(url)

    def ensure_pool(self, size: int) -> None:
        """Keep at least ``size`` connections per host in the transport's own pools.

        Larger pools replace the current ones; the old ones close with the transport (threads
        may still be using them). A session you passed is left as it is (mount an
        ``HTTPAdapter(pool_maxsize=...)`` on it).
        """
        if self.session is not None or size <= self._pools.size:
            return
        with self._pool_lock:
            if size <= self._pools.size:
                return
            self._retired.append(self._pools)
            self._pools = Pools(size, self._tls_context, self._proxies)

    def _reset_after_fork(self) -> None:
        """In a forked child: new connection pools and lock, so no socket of the parent is ever reused.

        The parent's pools are dropped, not closed (closing would take their locks, which a
        thread of the parent may have held). A session you passed stays yours and open: each
        requests ``HTTPAdapter`` mounted on it gets new pools, as unpickling it would; an
        adapter of another kind is left as it is.
        """
        self._pool_lock = threading.Lock()
        self._retired = []
        self._pools = Pools(self._pools.size, self._tls_context, self._proxies)
        if self.session is not None:
            _session.renew_adapters(self.session)

    def close(self) -> None:
        """Close the transport's own pools (a session you passed stays open); it can still be used after."""
        with self._pool_lock:
            retired, self._retired = self._retired, []
        for pools in (*retired, self._pools):
            pools.close()

    def __repr__(self) -> str:
        return f"HttpTransport(timeout={self.timeout!r}, deadline={self.deadline!r})"
