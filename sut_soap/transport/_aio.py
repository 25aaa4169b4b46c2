"""The asyncio transport: aiohttp's connections under the sync transport's policy (``sut-soap[async]``).

:class:`AiohttpTransport` keeps every rule of :class:`~sut_soap.HttpTransport` (the
:mod:`sut_soap.transport` docstring), each held here rather than left to aiohttp's defaults:

- **Time**: the total ``deadline`` per request is a timer on the event loop that cancels the
  request wherever it is (waiting for a pooled connection, resolving, connecting, the TLS
  handshake, sending, waiting for headers, reading the body), so a server that drips one byte
  at a time is cut within a loop iteration of the deadline; the caller gets a retryable
  ``TransportError`` naming the phase. A cancellation that is not the deadline's passes through
  as it is. aiohttp's own timeouts bound each connect and each read (``timeout=``); the host
  name is resolved in a thread aiohttp waits for, so the deadline bounds a slow resolver too.
- **Size**: aiohttp's decompression is off; the body is read as it arrives and decoded in
  bounded steps by the sync transport's own reader (:func:`~sut_soap.transport._direct.decoder`:
  gzip members, deflate zlib or raw, up to five stages), so at most ``max_bytes`` are held after
  decoding and a compression bomb stops at the cap.
- **No redirects, no retries**: a 3xx comes back as it is; aiohttp's one silent retry of an
  idempotent request on a reused connection is off; no cookies are kept.
- **TLS**: one ``ssl.SSLContext`` per transport, built as the sync transport builds its own (the
  system store, or the bundle ``verify=``, ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` names,
  which must exist); ``verify=False`` towards a remote https host is refused unless
  :meth:`AiohttpTransport.prepare` was told ``allow_insecure_tls=True`` for it.
- **Environment**: proxies (``*_proxy``, ``no_proxy``) are read once per origin with the sync
  transport's reading, never per request; ``.netrc`` is never read (aiohttp's ``trust_env`` is off).
- **Pools**: one ``aiohttp.ClientSession`` per event loop, created on the first request (so the
  transport can be built outside a running loop), with room for ``pool_size`` connections
  (default 256, ``get_tickets``' largest concurrency); a request beyond them waits for one,
  within its deadline. In a child forked after the session was created, the parent's session
  is left untouched (closing it would write to the parent's sockets and change its event loop's
  watched set) and the child opens connections of its own.
- **Errors and logs**: aiohttp's failures map to the same ``TransportError`` (host, phase, "may
  have reached the server" from ``send`` on) and ``ProtocolError`` as the sync transport's, in
  its words; only the method, host, status and time are logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.connector
import requests.utils
import urllib3.exceptions
import urllib3.util
import yarl

from .. import _fork
from .._clock import SYSTEM_CLOCK, Clock
from ..errors import ConfigurationError, SutSoapError
from ._direct import decoder
from ._errors import failure, host_of, late, not_sent
from ._pools import (
    DIRECT_HEADERS,
    environment_bundle,
    invalid_url,
    merge_headers,
    missing_bundle,
    proxy_from_environment,
    system_trust_context,
)
from ._session import https_hosts
from ._values import HeaderMap, HttpResponse
from ._watched import body_failed, too_large, undecodable

__all__ = ["DEFAULT_ASYNC_POOL_SIZE", "AiohttpTransport"]

#: Connections the asyncio transport may hold at once: room for ``get_tickets(concurrency=256)``.
DEFAULT_ASYNC_POOL_SIZE = 256
_READ_STEP = 64 * 1024

_log = logging.getLogger("sut_soap.transport")
# The sessions a forked child found: never closed, never collected (either would touch the parent's sockets).
_LEFT_BY_PARENT: list[aiohttp.ClientSession] = []


class _Flight:
    """One request under way: the phase it reached, its socket (to tell TCP from TLS), whether the deadline cut it."""

    __slots__ = ("body", "cut", "phase", "sock", "status", "tls")

    def __init__(self, *, tls: bool, body: bool) -> None:
        self.phase = "connect"
        self.status: int | None = None  # once the answer's headers arrived
        self.sock: socket.socket | None = None
        self.cut: str | None = None  # the phase the deadline found it in
        self.tls = tls
        self.body = body

    def now(self) -> str:
        """The phase, with a new https connection whose TCP connect is done counted as the TLS handshake."""
        if self.phase == "connect" and self.tls and self.sock is not None:
            try:
                self.sock.getpeername()
            except OSError:  # not connected yet (or never)
                return "connect"
            return "TLS"
        return self.phase


# The request the socket factory works for: aiohttp creates sockets deep inside, in the request's own
# context; outside any request (never, today) a socket is remembered by nobody's flight.
_NOBODY = _Flight(tls=False, body=False)
_flight: contextvars.ContextVar[_Flight] = contextvars.ContextVar("sut_soap_aio_flight", default=_NOBODY)


def _socket(addr_info: Any) -> socket.socket:
    """aiohttp's socket factory: a plain socket, remembered by the request it is for."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    _flight.get().sock = sock
    return sock


def _tracer() -> aiohttp.TraceConfig:
    """aiohttp's tracing hooks, moving each request's phase on: connected, request written."""

    async def connected(session: Any, context: Any, params: Any) -> None:
        context.trace_request_ctx.phase = "send"

    async def headers_sent(session: Any, context: Any, params: Any) -> None:
        flight = context.trace_request_ctx
        if not flight.body:
            flight.phase = "wait for headers"

    async def body_sent(session: Any, context: Any, params: Any) -> None:
        context.trace_request_ctx.phase = "wait for headers"

    tracer = aiohttp.TraceConfig()
    tracer.on_connection_create_end.append(connected)
    tracer.on_connection_reuseconn.append(connected)
    tracer.on_request_headers_sent.append(headers_sent)
    tracer.on_request_chunk_sent.append(body_sent)
    tracer.freeze()
    return tracer


_TRACER = _tracer()


class _Response(aiohttp.ClientResponse):
    """aiohttp's answer, noting the TLS version of its connection (given back as soon as the body has arrived)."""

    tls_version: str | None = None

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        """Read the status line and headers, the connection's TLS version noted first."""
        transport = connection.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        self.tls_version = ssl_object.version() if ssl_object is not None else None
        return await super().start(connection)


class _Starved(Exception):
    """The decoder's source has no input yet: read more from the network and ask again."""


def _kind(exc: BaseException) -> str:
    """What failed, in the sync transport's terms: tls, connect-timeout, timeout, connection or other."""
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError, ssl.SSLError)):
        return "tls"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect-timeout"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientResponseError, aiohttp.ClientPayloadError,
                        OSError)):
        return "connection"
    return "other"


def _uncancel(task: asyncio.Task[Any] | None) -> int:
    """Withdraw the deadline's cancellation of ``task``: the cancellations still requested (always 0 before 3.11).

    More than 0: someone else cancelled the task too, and their cancellation must go on.
    """
    return int(getattr(task, "uncancel", lambda: 0)())


class AiohttpTransport:
    """The default asyncio transport (:class:`~sut_soap.transport.AsyncTransport`), on aiohttp's connections.

    Args:
        timeout: seconds for connecting and for each read, a number or a ``(connect, read)``
            pair (default ``(5, 10)``).
        deadline: seconds one request may take in all, answer included (default 30; None for
            no total bound beyond the timeouts).
        max_response_bytes: the largest answer read, after decompression (default 1 MiB).
        pool_size: connections held at most (default 256); :meth:`ensure_pool` raises it.
        verify: True (the system trust store, or the CA bundle ``REQUESTS_CA_BUNDLE`` or
            ``CURL_CA_BUNDLE`` names), the path of a CA bundle (a PEM file or directory), or
            False: no certificate check, refused towards a remote https host unless
            :meth:`prepare` got ``allow_insecure_tls=True`` for it.
        clock: the :class:`~sut_soap.Clock` timing the debug log line (the deadline runs on
            the event loop's clock).

    It can be built anywhere; its connections are made in the event loop of the first request.
    Use one per event loop and ``await aclose()`` before the loop ends; a request from another
    loop (after ``asyncio.run`` again) gets connections of its own.
    """

    def __init__(
        self,
        *,
        timeout: float | tuple[float, float] = (5.0, 10.0),
        deadline: float | None = 30.0,
        max_response_bytes: int = 1024 * 1024,
        pool_size: int = DEFAULT_ASYNC_POOL_SIZE,
        verify: bool | str = True,
        clock: Clock | None = None,
    ) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self.pool_size = pool_size
        self.verify = verify
        self._clock = clock or SYSTEM_CLOCK
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._timeouts = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect, sock_read=read)
        # Read once, for the transport's life: the CA bundle now, proxies per origin.
        if isinstance(verify, str):
            self._ca_bundle: tuple[str, str] | None = ("verify=", verify)
        else:
            self._ca_bundle = environment_bundle() if verify else None
        self._tls: ssl.SSLContext | bool | None = None
        self._proxies: dict[tuple[str, str], tuple[str, dict[str, str]] | None] = {}
        self._insecure_allowed: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's
        self._retired: list[tuple[aiohttp.ClientSession, asyncio.AbstractEventLoop | None]] = []
        _fork.register(self)

    # --- policy, decided once ------------------------------------------------------------------

    def prepare(self, urls: Iterable[str | None], *, allow_insecure_tls: bool = False) -> None:
        """Apply the TLS and proxy policy for the URLs a client will call, once, before any request.

        The proxy of each URL's origin is read from the environment now (and never again).

        Raises:
            ConfigurationError: a CA bundle (``verify=``, ``REQUESTS_CA_BUNDLE``,
                ``CURL_CA_BUNDLE``) that does not exist, ``verify=False`` towards a remote https
                host without ``allow_insecure_tls=True``, or a proxy that is not http or https.
        """
        targets = [url for url in urls if url is not None]
        if any(urlsplit(url).scheme == "https" for url in targets) and self._ca_bundle is not None:
            variable, path = self._ca_bundle
            if not os.path.exists(path):
                raise missing_bundle(path, variable)
        if self.verify is False and (hosts := https_hosts(targets)):
            if not allow_insecure_tls:
                raise ConfigurationError(
                    f"the transport has verify=False: the certificate of {hosts[0]} would not be checked, so "
                    "anyone on the path could read the client secret and the signed token",
                    hint="leave verify on (or give verify= a CA bundle); allow_insecure_tls=True accepts the risk",
                )
            self._insecure_allowed.update(hosts)
            _log.warning(
                "TLS certificate verification is OFF for %s (allow_insecure_tls=True): the client secret and "
                "signed tokens can be read by anyone who can intercept the connection", ", ".join(sorted(set(hosts))),
            )
        for url in targets:
            parts = urlsplit(url)
            self._proxy((parts.scheme, parts.netloc), url)

    def _proxy(self, origin: tuple[str, str], url: str) -> tuple[str, dict[str, str]] | None:
        """The proxy of ``origin`` (its URL without credentials, and their header), read on first use."""
        if origin in self._proxies:
            return self._proxies[origin]
        proxy = proxy_from_environment(url)
        route = None
        if proxy is not None:
            parts = urlsplit(proxy)
            if parts.scheme not in ("http", "https"):
                raise ConfigurationError(
                    f"the proxy the environment names is not an http or https proxy ({parts.scheme}://...)",
                    hint="set HTTPS_PROXY/HTTP_PROXY to an http:// or https:// proxy, or NO_PROXY for the endpoint",
                )
            user, password = requests.utils.get_auth_from_url(proxy)
            auth = urllib3.util.make_headers(proxy_basic_auth=f"{user}:{password}") if user else {}
            bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            route = (bare, {"Proxy-Authorization": auth["proxy-authorization"]} if auth else {})
        self._proxies[origin] = route
        return route

    def _tls_for(self, host: str) -> ssl.SSLContext | bool:
        """What aiohttp checks the certificate of ``host`` with: the one context, or False when allowed."""
        if self.verify is False:
            if host in self._insecure_allowed or not https_hosts([f"https://{host}/"]):
                return False
            raise ConfigurationError(
                f"the transport has verify=False: the certificate of {host} would not be checked, so "
                "anyone on the path could read the client secret and the signed token",
                hint="leave verify on (or give verify= a CA bundle); prepare(..., allow_insecure_tls=True) "
                     "accepts the risk",
            )
        if self._tls is None:
            self._tls = system_trust_context(self._ca_bundle)
        return self._tls

    def ensure_pool(self, size: int) -> None:
        """Allow at least ``size`` connections at once; a larger pool replaces the current one from the next request.

        The current session finishes what it carries and closes with :meth:`aclose`.
        """
        if size <= self.pool_size:
            return
        self.pool_size = size
        if self._session is not None:
            self._retired.append((self._session, self._loop))
            self._session = None

    def _session_here(self) -> aiohttp.ClientSession:
        """The session of the running event loop, created on first use."""
        session = self._session
        loop = asyncio.get_running_loop()
        if session is not None and self._loop is loop:
            return session
        if session is not None:  # another loop's: closed by an aclose() in that loop, else left to the process
            self._retired.append((session, self._loop))
        connector = aiohttp.TCPConnector(
            limit=self.pool_size, limit_per_host=self.pool_size, socket_factory=_socket, enable_cleanup_closed=False,
        )
        session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeouts, auto_decompress=False, trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(), trace_configs=[_TRACER], response_class=_Response,
            skip_auto_headers=("Content-Type",),
        )
        session._retry_connection = False  # RFC 9112's retry of an idempotent request: the policy is no retries
        self._session, self._loop = session, loop
        return session

    # --- one request ---------------------------------------------------------------------------

    async def request(
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

        See :meth:`~sut_soap.transport.AsyncTransport.request` for the arguments. A 3xx is
        returned, not followed. The ``User-Agent`` is ``sut-soap/<version>`` and
        ``Accept-Encoding`` what the transport decodes (``gzip, deflate``) unless ``headers``
        sets them.

        Returns:
            An :class:`~sut_soap.transport.HttpResponse` with the whole body read.

        Raises:
            TransportError: as :meth:`sut_soap.HttpTransport.request` raises it: ``deadline``
                already passed, the TLS handshake failed (not retryable), a timeout, a host that
                does not resolve, a refused or broken connection, or the deadline reached in any
                phase (retryable); from ``"send"`` on, the message says the request may have
                reached the server. A URL that is not http or https (not retryable).
            ProtocolError: the answer is (or declares itself) larger than the cap, or its
                ``Content-Encoding`` does not decode.
            ConfigurationError: the environment's CA bundle or proxy is unusable, or
                ``verify=False`` towards a remote https host not allowed by :meth:`prepare`.
        """
        started = self._clock.monotonic()
        limit = self.deadline
        if deadline is not None:
            if deadline <= 0:
                raise not_sent(url)
            limit = deadline if limit is None else min(limit, deadline)
        try:
            parts = urlsplit(url)
            host, _port = parts.hostname, parts.port  # a port that is not a number raises here
        except ValueError:
            raise invalid_url(host_of(url)) from None
        if parts.scheme not in ("http", "https") or not host:
            raise invalid_url(host or "the endpoint")
        https = parts.scheme == "https"
        proxy = self._proxy((parts.scheme, parts.netloc), url)
        tls = self._tls_for(host) if https else True
        session = self._session_here()
        flight = _Flight(tls=https and proxy is None, body=bool(body))
        task = asyncio.current_task()
        timer = None
        if limit is not None and task is not None:
            timer = asyncio.get_running_loop().call_later(limit, self._cut, task, flight)
        error: Exception
        try:
            response = await self._exchange(
                session, method, url, body=body, headers=headers, proxy=proxy, tls=tls, flight=flight,
                max_bytes=max_bytes,
            )
        except asyncio.CancelledError:
            if flight.cut is None or _uncancel(task) > 0:
                raise
            error = late(host, flight.cut, limit, flight.status)
        except SutSoapError:
            raise
        except Exception as exc:  # aiohttp's and the body reader's; anything else names only its type
            error = self._mapped(exc, host, flight.status, flight.now())
        else:
            if _log.isEnabledFor(logging.DEBUG):
                elapsed = (self._clock.monotonic() - started) * 1000
                _log.debug("%s %s: HTTP %s in %.1f ms", method, host, response.status_code, elapsed)
            return response
        finally:
            if timer is not None:
                timer.cancel()
        raise error  # here, outside the except blocks: aiohttp's exception (with the request's headers) is not kept

    @staticmethod
    def _cut(task: asyncio.Task[Any], flight: _Flight) -> None:
        """The deadline: note where the request was, and cancel it there."""
        flight.cut = flight.now()
        task.cancel()

    @staticmethod
    def _mapped(exc: BaseException, host: str, status: int | None, phase: str) -> Exception:
        """The one mapping of aiohttp's failures (and the body reader's) to TransportError and ProtocolError.

        ``status`` is the answer's once its headers arrived (the body failed), ``phase`` where
        the request was.
        """
        if status is not None and isinstance(exc, (aiohttp.ClientError, OSError, urllib3.exceptions.DecodeError)):
            if isinstance(exc, urllib3.exceptions.DecodeError):
                return undecodable(host, status)
            return body_failed(host, status, timed_out=isinstance(exc, asyncio.TimeoutError))
        if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
            phase = "TLS"
        return failure(exc, _kind(exc), phase, host)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        proxy: tuple[str, dict[str, str]] | None,
        tls: ssl.SSLContext | bool,
        flight: _Flight,
        max_bytes: int | None,
    ) -> HttpResponse:
        """Send, then read the body under the cap; the connection is kept only after an answer read to its end."""
        sent = merge_headers(headers, DIRECT_HEADERS)
        if proxy is not None and url.startswith("http:"):  # sent to the proxy itself; for https, on its CONNECT
            sent.update(proxy[1])
        token = _flight.set(flight)
        try:
            response = await session.request(
                method, yarl.URL(url, encoded=True), data=body, headers=sent,
                allow_redirects=False, ssl=tls, proxy=proxy[0] if proxy else None,
                proxy_headers=proxy[1] if proxy else None, trace_request_ctx=flight,
            )
        finally:
            _flight.reset(token)
        flight.phase = "body"
        try:
            status = response.status
            flight.status = status
            answer_headers = HeaderMap.joined(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers
            )
            version = response.tls_version if isinstance(response, _Response) else None
            cap = max_bytes or self.max_response_bytes
            declared = answer_headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise too_large(host_of(url), cap, status)
            content = await _read_capped(response.content, answer_headers.get("Content-Encoding", ""), cap,
                                         host_of(url), status)
        except BaseException:
            response.close()
            raise
        response.release()
        return HttpResponse(status, answer_headers, content, response.reason or "", version)

    # --- lifecycle -----------------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's sessions are set aside untouched; the next request opens a session here."""
        _LEFT_BY_PARENT.extend(session for session, _ in self._sessions())
        self._session, self._retired = None, []

    async def aclose(self) -> None:
        """Close the connections of the running loop's sessions; the transport can still be used after."""
        loop = asyncio.get_running_loop()
        sessions = self._sessions()
        self._session, self._retired = None, []
        for session, owner in sessions:
            if owner is loop:  # another loop's would be closed on the wrong loop: it is left to the process
                await session.close()

    def _sessions(self) -> list[tuple[aiohttp.ClientSession, asyncio.AbstractEventLoop | None]]:
        """Every session the transport holds, with its event loop: the current one and the retired ones."""
        current = [(self._session, self._loop)] if self._session is not None else []
        return [*self._retired, *current]

    def __repr__(self) -> str:
        return f"AiohttpTransport(timeout={self.timeout!r}, deadline={self.deadline!r}, pool_size={self.pool_size})"


async def _read_capped(stream: aiohttp.StreamReader, encoding: str, cap: int, host: str, status: int) -> bytes:
    """The body from ``stream`` to its end, decoded in bounded steps, at most ``cap`` bytes after decoding."""
    pending = b""
    ended = False

    def source(amount: int) -> bytes:
        nonlocal pending
        if pending:
            data, pending = pending[:amount], pending[amount:]
            return data
        if ended:
            return b""
        raise _Starved

    read: Callable[[int], bytes] = decoder(source, encoding)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = read(_READ_STEP)
        except _Starved:
            pending = await stream.readany()
            ended = not pending
            continue
        if not chunk:
            break
        size += len(chunk)
        if size > cap:
            raise too_large(host, cap, status)
        chunks.append(chunk)
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]
