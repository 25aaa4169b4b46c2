"""Connections the deadline's watchdog can cut, and the capped read of an answer's body.

The connection classes tell :mod:`sut_soap._watchdog` which socket the request of this thread
uses and where it is (connect, TLS, send, wait for headers, body), so a request still running
at its deadline is cut whatever it is doing. Both ways of sending (urllib3's pools directly,
a caller's requests session) use them, and both read the body with :func:`read_capped`.
"""

from __future__ import annotations

import http.client
import socket
import threading
from typing import Any

import urllib3
import urllib3.connection
import urllib3.poolmanager

from .._watchdog import WATCHDOG, Watch
from ..errors import ProtocolError, TransportError
from ._errors import late

__all__ = [
    "WATCHED_POOLS", "body_failed", "local", "read_capped", "tls_version", "too_large", "undecodable", "watch_pools",
]


class _Local(threading.local):
    watch: Watch | None = None


#: The watch of the request this thread is making, for the connection classes below to find.
local = _Local()


class WatchedConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection that tells the watchdog its socket and phase while a watched request runs."""

    watch: Watch | None = None
    _tls = False

    def _new_conn(self) -> socket.socket:
        watch = local.watch
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
        watch = local.watch
        if watch is not None:
            watch.phase = "send"
            WATCHDOG.attach(watch, self, self.sock)
        super().request(*args, **kwargs)
        if watch is not None:
            watch.phase = "wait for headers"

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        """Read the status line and headers; from here on the watched request reads its body."""
        response = super().getresponse()
        watch = local.watch
        if watch is not None and not watch.cut:  # cut: http.client took the shut socket's EOF for the headers' end
            watch.phase = "body"
        return response


class WatchedTlsConnection(WatchedConnection, urllib3.connection.HTTPSConnection):
    """The TLS twin of :class:`WatchedConnection`."""

    _tls = True


class WatchedPool(urllib3.HTTPConnectionPool):
    """A pool of :class:`WatchedConnection`."""

    ConnectionCls = WatchedConnection


class WatchedTlsPool(urllib3.HTTPSConnectionPool):
    """A pool of :class:`WatchedTlsConnection`."""

    ConnectionCls = WatchedTlsConnection


WATCHED_POOLS = {"http": WatchedPool, "https": WatchedTlsPool}


def watch_pools(manager: Any) -> None:
    """Have a urllib3 pool manager build watched pools, unless it was given pool classes of its own."""
    if getattr(manager, "pool_classes_by_scheme", None) == urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = WATCHED_POOLS


def tls_version(raw: Any) -> str | None:
    """The TLS version of the connection an answer came over (``raw``: urllib3's response), or None."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    version = getattr(sock, "version", None)
    return version() if callable(version) else None


def too_large(host: str, cap: int, status: int) -> ProtocolError:
    """The error for an answer larger than ``cap`` bytes (declared, or counted after decoding)."""
    return ProtocolError(f"the answer from {host} is larger than {cap} bytes; reading stopped", status=status)


def undecodable(host: str, status: int) -> ProtocolError:
    """The error for an answer whose ``Content-Encoding`` does not decode."""
    return ProtocolError(f"the answer's Content-Encoding from {host} could not be decoded", status=status)


def body_failed(host: str, status: int, *, timed_out: bool) -> TransportError:
    """The error for a body the read timeout ended (``timed_out``) or a broken connection cut short."""
    if timed_out:
        return TransportError(
            f"{host} stopped sending the response body within the read timeout",
            status=status, retryable=True, host=host, phase="body",
        )
    return TransportError(
        f"the connection broke while reading the response body from {host}",
        status=status, retryable=True, host=host, phase="body",
    )


def read_capped(
    raw: Any, *, status: int, declared: str, host: str, watch: Watch | None, limit: float | None, cap: int
) -> bytes:
    """Read urllib3's response ``raw`` to the end, at most ``cap`` bytes after decompression.

    Decoding is bounded per ``read1`` call, so a compression bomb stops at the cap; a declared
    ``Content-Length`` above the cap is refused before reading.
    """
    if declared.isdigit() and int(declared) > cap:
        raise too_large(host, cap, status)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = raw.read1(64 * 1024, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                raise too_large(host, cap, status)
            chunks.append(chunk)
    except urllib3.exceptions.DecodeError:
        raise undecodable(host, status) from None
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        if watch is not None and watch.cut:
            raise late(host, watch.phase, limit, status) from None
        timed_out = isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError))
        raise body_failed(host, status, timed_out=timed_out) from None
    if watch is not None and watch.cut:  # the end of the body may be the socket being shut
        raise late(host, watch.phase, limit, status)
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]
