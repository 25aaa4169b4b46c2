"""The one network seam: every HTTP request the library makes goes through a :class:`Transport`.

The SOAP POST of an exchange, the JWKS GET behind JWT validation and the command line's
``doctor`` probes all call :meth:`Transport.request`. The SOAP layer and the validator never
touch the network themselves, so a test (or a recording, or a replay) swaps one object to
see or script everything that goes over the wire.

:class:`HttpTransport`, the default, is the only module that imports the HTTP library
(requests). Its policy, in one place:

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
- **Environment**: for its own session, proxies and the CA bundle are read from the
  environment once, for the URLs the client will call, not on every request.
- **Errors**: one mapping from the HTTP library's exceptions to
  :class:`~sut_soap.errors.TransportError` (network, timeout, TLS, the deadline; each names
  the host and the phase, and from ``send`` on says the request may have reached the
  server) and
  :class:`~sut_soap.errors.ProtocolError` (an answer too large or not decodable). Nothing
  is logged but the method, host, status and time; never a body or a header value.

Write your own transport by implementing :class:`Transport` (one ``request`` method and
``close``); exceptions it raises that are not a :class:`~sut_soap.errors.SutSoapError` reach
the caller as a non-retryable ``TransportError`` naming only the exception's type.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.cookies
import requests.utils
import urllib3
import urllib3.connection
import urllib3.poolmanager

from . import __version__, _deadline, _fork
from ._clock import SYSTEM_CLOCK, Clock
from ._text import sanitise
from ._watchdog import WATCHDOG, Watch
from .environments import is_loopback_host
from .errors import ConfigurationError, ProtocolError, SutSoapError, TransportError

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "PHASES",
    "HeaderMap",
    "HttpResponse",
    "HttpTransport",
    "Response",
    "Transport",
    "call_transport",
]

#: ``(connect, read)`` seconds of the default transport.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 10.0)
#: Seconds one request may take in all, answer included.
DEFAULT_DEADLINE = 30.0
#: Bytes of answer read at most (after decompression).
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
#: Connections per host in the pool of a session the transport creates.
DEFAULT_POOL_SIZE = 16
_USER_AGENT = f"sut-soap/{__version__}"
#: Where a request can be when it fails, in order (:attr:`TransportError.phase <sut_soap.errors.TransportError>`).
PHASES = ("connect", "TLS", "send", "wait for headers", "body")
_DURING = {
    "connect": "connecting to {host}",
    "TLS": "doing the TLS handshake with {host}",
    "send": "sending the request to {host}",
    "wait for headers": "waiting for the response headers from {host}",
    "body": "reading the response body from {host}",
}
# From here on the request (with the signed token) may have reached the server.
_SENT = frozenset({"send", "wait for headers", "body"})

_log = logging.getLogger("sut_soap.transport")


@runtime_checkable
class Response(Protocol):
    """What the library reads of an HTTP answer: status, headers and the whole body."""

    @property
    def status_code(self) -> int:
        """The HTTP status code."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers (looked up case-insensitively by the default transport)."""
        ...

    @property
    def content(self) -> bytes:
        """The answer's body, decompressed."""
        ...


class HeaderMap(Mapping[str, str]):
    """Read-only HTTP headers, looked up case-insensitively; the repr shows the names only.

    Built from a mapping or ``(name, value)`` pairs; a name given twice keeps the last value.
    Iteration yields the names as they were given (their original case).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {name.lower(): (name, value) for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        """The value of header ``name``, in any case; ``KeyError`` when absent."""
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        """Whether header ``name`` is present, in any case."""
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        """The header names, in their original case."""
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        """The number of distinct headers."""
        return len(self._items)

    def __repr__(self) -> str:
        return f"HeaderMap({sorted(self)!r})"


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer read to the end: ``status_code``, ``headers``, ``content`` (bytes), ``reason``.

    What :class:`HttpTransport` returns, and a ready-made :class:`Response` for transports of
    your own. The repr shows the status and the size only: a body can carry a JWT.

    Attributes:
        status_code: the HTTP status code.
        headers: the answer's headers, looked up case-insensitively (a :class:`HeaderMap`).
        content: the whole body, decompressed.
        reason: the status line's reason phrase, such as ``"OK"``; may be empty.
        tls_version: the TLS version, or None.
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    reason: str = ""
    #: The TLS version the answer came over (such as ``"TLSv1.3"``), None for plain HTTP or unknown.
    tls_version: str | None = None

    def __repr__(self) -> str:
        return f"HttpResponse(status_code={self.status_code}, content=<{len(self.content)} bytes>)"


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
    left = _deadline.remaining()
    if left is not None:
        if left <= 0:
            raise _not_sent(url)
        deadline = left if deadline is None else min(deadline, left)
    try:
        return transport.request(method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes)
    except SutSoapError:
        raise
    except Exception as exc:
        host = _host(url)
        raise TransportError(
            f"the transport failed for {host}: {type(exc).__name__}", retryable=False, host=host
        ) from None


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "the endpoint"
    except ValueError:
        return "the endpoint"


def _not_sent(url: str) -> TransportError:
    host = _host(url)
    return TransportError(
        f"the call's deadline passed before the request to {host} was sent",
        retryable=True, host=host, phase="connect",
    )


class _Local(threading.local):
    watch: Watch | None = None


# The watch of the request this thread is making, for the connection classes below to find.
_local = _Local()


class _WatchedConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection that tells the watchdog its socket and phase while a watched request runs."""

    watch: Watch | None = None
    _tls = False

    def _new_conn(self) -> socket.socket:
        watch = _local.watch
        if watch is None:
            return super()._new_conn()
        watch.phase = "connect"
        WATCHDOG.attach(watch, self, None)
        sock = super()._new_conn()
        WATCHDOG.attach(watch, self, sock, duplicate=self._tls)  # cut at once if the deadline passed meanwhile
        watch.phase = "TLS" if self._tls else "send"
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        """Send the request; the watchdog sees this connection's socket (a pooled one, or the TLS one)."""
        watch = _local.watch
        if watch is not None:
            watch.phase = "send"
            WATCHDOG.attach(watch, self, self.sock)
        super().request(*args, **kwargs)
        if watch is not None:
            watch.phase = "wait for headers"

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        """Read the status line and headers; from here on the watched request reads its body."""
        response = super().getresponse()
        watch = _local.watch
        if watch is not None and not watch.cut:  # cut: http.client took the shut socket's EOF for the headers' end
            watch.phase = "body"
        return response


class _WatchedTlsConnection(_WatchedConnection, urllib3.connection.HTTPSConnection):
    _tls = True


class _WatchedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedTlsPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedTlsConnection


_WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedTlsPool}


def _watch_pools(manager: Any) -> None:
    """Have a urllib3 pool manager build watched pools, unless it was given pool classes of its own."""
    if getattr(manager, "pool_classes_by_scheme", None) == urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = _WATCHED_POOLS


def _watch_adapters(session: requests.Session) -> None:
    """Make the requests ``HTTPAdapter`` pools of ``session`` watched ones (other adapters are left alone)."""
    for adapter in session.adapters.values():
        if isinstance(adapter, requests.adapters.HTTPAdapter):
            _watch_pools(adapter.poolmanager)
            for manager in adapter.proxy_manager.values():
                _watch_pools(manager)


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, over connections the watchdog can cut (also through a proxy)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager as requests does, with watched pools."""
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The proxy's pool manager as requests builds it, with watched pools."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _watch_pools(manager)
        return manager


class HttpTransport:
    """The default :class:`Transport`, over a ``requests.Session`` (its own or yours).

    Args:
        session: a ``requests.Session`` to send with (your proxies, CA bundle, adapters); it is
            used as it is and left open by :meth:`close`. Default: a session of its own.
            In a child forked after the transport was built, either gets new connection
            pools, so no socket is shared with the parent (README: "Under gunicorn, ...").
            The pools of your session's requests ``HTTPAdapter`` mounts make connections the
            deadline's watchdog can cut from then on; connections it pooled before, other
            adapters and proxy pools it creates later are bounded by the timeouts and by the
            deadline checked between reads only.
        timeout: seconds for connecting and for each read, a number or a ``(connect, read)``
            pair (default ``(5, 10)``).
        deadline: seconds one request may take in all, answer included (default 30; None
            for no total bound beyond the timeouts).
        max_response_bytes: the largest answer read, after decompression (default 1 MiB).
        clock: the :class:`~sut_soap.Clock` measuring the deadline.
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
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self._clock = clock or SYSTEM_CLOCK
        self._pool_lock = threading.Lock()
        self._pool_size = 0
        self._retired: list[requests.adapters.BaseAdapter] = []
        if self._owns_session:
            self.ensure_pool(DEFAULT_POOL_SIZE)
        else:
            _watch_adapters(self.session)
        _fork.register(self)

    @property
    def owns_session(self) -> bool:
        """Whether the session is the transport's own (tuned and closed by it) rather than yours."""
        return self._owns_session

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
                message says the request may have reached the server.
            ProtocolError: the answer is (or declares itself) larger than the cap, or its
                ``Content-Encoding`` does not decode.
        """
        started = self._clock.monotonic()
        timeout: Any = self.timeout
        limit = self.deadline
        if deadline is not None:
            if deadline <= 0:
                raise _not_sent(url)
            limit = deadline if limit is None else min(limit, deadline)
        if limit is not None:
            # A connect in progress has no socket the watchdog can reach: its timeout must end in time.
            timeout = _cut_timeout(timeout, limit)
        host = _host(url)
        watch = None if limit is None else WATCHDOG.watch(limit)
        _local.watch = watch
        try:
            try:
                response = self.session.request(
                    method,
                    url,
                    data=body,
                    headers={"User-Agent": _USER_AGENT, **(headers or {})},
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.exceptions.RequestException as exc:
                raise _request_error(exc, host, watch, limit) from None
            finally:
                _local.watch = None
            try:
                tls_version = _tls_version(response)
                content = self._read_capped(response, host, watch, limit, max_bytes or self.max_response_bytes)
            finally:
                response.close()
        finally:
            if watch is not None:
                WATCHDOG.release(watch)
        _log.debug(
            "%s %s: HTTP %s in %.1f ms",
            method, host, response.status_code, (self._clock.monotonic() - started) * 1000,
        )
        return HttpResponse(
            response.status_code, HeaderMap(response.headers.items()), content, response.reason or "", tls_version
        )

    def _read_capped(
        self, response: requests.Response, host: str, watch: Watch | None, limit: float | None, cap: int
    ) -> bytes:
        # Decoding is bounded per read1 call, so a compression bomb stops at the cap.
        status = response.status_code
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise ProtocolError(f"the answer from {host} is larger than {cap} bytes; reading stopped", status=status)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = response.raw.read1(64 * 1024, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise ProtocolError(
                        f"the answer from {host} is larger than {cap} bytes; reading stopped", status=status
                    )
                chunks.append(chunk)
        except urllib3.exceptions.DecodeError:
            raise ProtocolError(
                f"the answer's Content-Encoding from {host} could not be decoded", status=status
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if watch is not None and watch.cut:
                raise _late(host, watch.phase, limit, status) from None
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                raise TransportError(
                    f"{host} stopped sending the response body within the read timeout",
                    status=status, retryable=True, host=host, phase="body",
                ) from None
            raise TransportError(
                f"the connection broke while reading the response body from {host}",
                status=status, retryable=True, host=host, phase="body",
            ) from None
        if watch is not None and watch.cut:  # the end of the body may be the socket being shut
            raise _late(host, watch.phase, limit, status)
        return b"".join(chunks)

    def prepare(self, urls: Iterable[str | None], *, allow_insecure_tls: bool = False) -> None:
        """Apply the TLS and proxy policy for the URLs a client will call, once, before any request.

        Raises:
            ConfigurationError: a CA bundle (``verify=``, ``REQUESTS_CA_BUNDLE``,
                ``CURL_CA_BUNDLE``) that does not exist, or ``verify=False`` towards a remote
                https host without ``allow_insecure_tls=True``.
        """
        targets = [url for url in urls if url is not None]
        session = self.session
        if self._owns_session:
            _check_ca_bundle(session, targets, trust_env=True)
            _read_environment_once(session, targets)
        else:
            _check_ca_bundle(session, targets, trust_env=session.trust_env)
        _check_verification(session, targets, allow_insecure_tls=allow_insecure_tls)

    def ensure_pool(self, size: int) -> None:
        """Give the transport's own session a pool of at least ``size`` connections per host.

        A session you passed is left as it is (mount an ``HTTPAdapter(pool_maxsize=...)`` on it).
        """
        if not self._owns_session or size <= self._pool_size:
            return
        with self._pool_lock:
            if size <= self._pool_size:
                return
            session = self.session
            adapter = _WatchedAdapter(pool_maxsize=size)
            old = {id(a): a for a in (session.adapters.get("https://"), session.adapters.get("http://")) if a}
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # Threads may be inside a request on the old pool: close it with the transport, not now.
            self._retired.extend(old.values())
            self._pool_size = size

    def _reset_after_fork(self) -> None:
        """In a forked child: new connection pools and lock, so no socket of the parent is ever reused.

        The parent's pools are dropped, not closed (closing would take their locks, which a
        thread of the parent may have held). A session you passed stays yours and open: each
        requests ``HTTPAdapter`` mounted on it gets new pools, as unpickling it would; an
        adapter of another kind is left as it is. The transport's own session also gets an
        empty cookie jar, whose lock may have been held too.
        """
        self._pool_lock = threading.Lock()
        self._retired = []
        adapters = {id(adapter): adapter for adapter in self.session.adapters.values()}
        for adapter in adapters.values():
            if isinstance(adapter, requests.adapters.HTTPAdapter):
                renewed: Any = adapter  # requests' own pickling methods, missing from its type stubs
                renewed.__setstate__(renewed.__getstate__())
        _watch_adapters(self.session)
        if self._owns_session:
            self.session.cookies = requests.cookies.RequestsCookieJar()

    def close(self) -> None:
        """Close the transport's own session and retired pools (a session you passed stays open)."""
        with self._pool_lock:
            retired, self._retired = self._retired, []
        for adapter in retired:
            adapter.close()
        if self._owns_session:
            self.session.close()

    def __repr__(self) -> str:
        return f"HttpTransport(timeout={self.timeout!r}, deadline={self.deadline!r})"


def _tls_version(response: requests.Response) -> str | None:
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    version = getattr(sock, "version", None)
    return version() if callable(version) else None


def _cut_timeout(timeout: Any, budget: float) -> Any:
    if isinstance(timeout, tuple):
        return tuple(budget if t is None else min(float(t), budget) for t in timeout)
    return budget if timeout is None else min(float(timeout), budget)


def _late(host: str, phase: str, limit: float | None, status: int | None = None) -> TransportError:
    """The error for a request the watchdog cut at its deadline."""
    sent = "; the request may have reached the server" if phase in _SENT and phase != "body" else ""
    return TransportError(
        f"no complete answer from {host} within the deadline ({limit or 0:.3g} s for this request): cut while "
        f"{_DURING[phase].format(host=host)}{sent}",
        status=status, retryable=True, host=host, phase=phase,
        hint="the endpoint's health; a larger deadline= if it is merely slow",
    )


def _phase_of(exc: requests.exceptions.RequestException, watch: Watch | None) -> str:
    """Where the request was: as its watched connection said, else as the exception's kind tells."""
    if watch is not None and watch.connection is not None:
        return watch.phase
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect"
    if isinstance(exc, requests.exceptions.Timeout) or _found(exc, urllib3.exceptions.ProtocolError):
        return "wait for headers"
    return "connect"


def _request_error(
    exc: requests.exceptions.RequestException, host: str, watch: Watch | None, limit: float | None
) -> TransportError:
    """The one mapping from requests' exceptions (before the body) to a TransportError."""
    phase = _phase_of(exc, watch)
    if watch is not None and watch.cut:
        return _late(host, phase, limit)
    during = _DURING[phase].format(host=host)
    sent = "; the request may have reached the server" if phase in _SENT else ""
    if isinstance(exc, requests.exceptions.SSLError) and phase == "TLS":
        # Never retried: an untrusted, expired or misnamed certificate stays so, and the
        # handshake failed before the request (with its secrets) was written.
        reason = _tls_reason(exc)
        return TransportError(
            f"TLS handshake with {host} failed" + (f": {reason}" if reason else ""),
            hint="the endpoint's certificate, the system CA bundle (REQUESTS_CA_BUNDLE) "
                 "and any TLS-intercepting proxy",
            retryable=False, host=host, phase=phase,
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportError(f"connecting to {host} timed out", retryable=True, host=host, phase="connect")
    if isinstance(exc, requests.exceptions.Timeout):
        return TransportError(
            f"the read timeout passed while {during}{sent}", retryable=True, host=host, phase=phase
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        if phase == "connect":
            cause = _connect_reason(exc)
            return TransportError(
                f"cannot connect to {host}" + (f" ({cause})" if cause else ""), retryable=True, host=host, phase=phase
            )
        return TransportError(
            f"the connection closed while {during}{sent}", retryable=True, host=host, phase=phase
        )
    return TransportError(
        f"HTTP request to {host} failed: {type(exc).__name__}", retryable=False, host=host, phase=phase
    )


def _found(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in the exception's chain (causes, contexts, wrapped reasons)."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen or len(seen) > 20:
            continue
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return False


def _tls_reason(exc: BaseException) -> str:
    """The OpenSSL verdict (e.g. ``certificate has expired``) found in an exception chain."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen or len(seen) > 20:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError) and current.verify_message:
            return sanitise(str(current.verify_message), limit=120)
        if isinstance(current, ssl.SSLError) and current.reason:
            return sanitise(str(current.reason), limit=120)
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return ""


def _connect_reason(exc: BaseException) -> str:
    """Why a connection failed, when the exception chain says: DNS or a refusal."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen or len(seen) > 20:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or type(current).__name__ == "NameResolutionError":
            return "the host name does not resolve"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return ""


def _https_hosts(urls: Iterable[str]) -> list[str]:
    """The hosts among ``urls`` reached over https, loopback excepted."""
    hosts = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname and not is_loopback_host(parts.hostname):
            hosts.append(parts.hostname)
    return hosts


def _check_ca_bundle(session: requests.Session, urls: Iterable[str], *, trust_env: bool) -> None:
    """Refuse a CA bundle that does not exist now rather than fail (or fall back) at the first request."""
    if not any(urlsplit(url).scheme == "https" for url in urls):
        return
    if isinstance(session.verify, str):
        bundle, source = session.verify, "the session's verify="
    elif session.verify is True and trust_env:
        variable = next((v for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(v)), None)
        if variable is None:
            return
        bundle, source = os.environ[variable], variable
    else:
        return
    if not os.path.exists(bundle):
        raise ConfigurationError(
            f"{source} names a CA bundle that does not exist: {bundle[:200]}",
            hint="point it at a PEM file (or directory) of trusted CA certificates, or unset it",
        )


def _check_verification(session: requests.Session, urls: Iterable[str], *, allow_insecure_tls: bool) -> None:
    """Refuse a session that skips certificate checks towards a remote https host, unless opted in."""
    if session.verify is not False:
        return
    hosts = _https_hosts(urls)
    if not hosts:
        return
    if not allow_insecure_tls:
        raise ConfigurationError(
            f"the session has verify=False: the certificate of {hosts[0]} would not be checked, so anyone "
            "on the path could read the client secret and the signed token",
            hint="leave verify on (or give verify= a CA bundle); allow_insecure_tls=True accepts the risk",
        )
    _log.warning(
        "TLS certificate verification is OFF for %s (allow_insecure_tls=True): the client secret and "
        "signed tokens can be read by anyone who can intercept the connection", ", ".join(sorted(set(hosts))),
    )


def _read_environment_once(session: requests.Session, urls: Iterable[str]) -> None:
    """Apply the proxy and CA-bundle environment variables now, as httpx does, not per request.

    With ``trust_env`` on, requests scans the whole environment two or three times (proxies,
    ``no_proxy``) and looks for ``~/.netrc`` on every request: about half a millisecond of CPU
    per exchange with a small environment, more with a large one. The transport's own session
    resolves the proxy for its hosts and the CA bundle once, then stops looking; ``.netrc``
    is not consulted (the library uses no HTTP authentication).
    """
    for url in urls:
        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
        parts = urlsplit(url)
        if proxy and parts.hostname:
            session.proxies[f"{parts.scheme}://{parts.hostname}"] = proxy
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False
