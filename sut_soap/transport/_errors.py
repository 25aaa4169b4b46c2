"""The one mapping of the HTTP libraries' failures (http.client's, urllib3's, requests') to TransportError.

Every way :class:`~sut_soap.HttpTransport` sends (its own ``http.client`` connections, urllib3
through a proxy, or a ``session=`` of yours through requests) ends here, so a failure reads
the same whichever sent the request:
the host, the phase the watched connection reported (or the exception's kind tells), and
from ``"send"`` on that the request may have reached the server. Messages never carry the
exception's text beyond OpenSSL's verdict and the DNS or refusal cause.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from .. import _deadline
from .._text import sanitise
from .._watchdog import Watch
from ..errors import TransportError

__all__ = [
    "DURING", "HTTP_ERRORS", "PHASES", "Failed", "budgeted", "cut_timeout", "failure", "foreign_failure", "host_of",
    "late", "not_sent", "request_error",
]

#: Where a request can be when it fails, in order (:attr:`TransportError.phase <sut_soap.errors.TransportError>`).
PHASES = ("connect", "TLS", "send", "wait for headers", "body")
DURING = {
    "connect": "connecting to {host}",
    "TLS": "doing the TLS handshake with {host}",
    "send": "sending the request to {host}",
    "wait for headers": "waiting for the response headers from {host}",
    "body": "reading the response body from {host}",
}
# From here on the request (with the signed token) may have reached the server.
_SENT = frozenset({"send", "wait for headers", "body"})

class Failed(Exception):
    """A request on one of the transport's own connections failed in ``phase``; ``__cause__`` says how."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


#: The exceptions :func:`request_error` maps, from every way of sending.
HTTP_ERRORS = (Failed, requests.exceptions.RequestException, urllib3.exceptions.HTTPError)


def host_of(url: str) -> str:
    """The URL's host name, or ``"the endpoint"`` when it has none or does not parse."""
    try:
        return urlsplit(url).hostname or "the endpoint"
    except ValueError:
        return "the endpoint"


def not_sent(url: str) -> TransportError:
    """The error for a request whose deadline passed before it was sent."""
    host = host_of(url)
    return TransportError(
        f"the call's deadline passed before the request to {host} was sent",
        retryable=True, host=host, phase="connect",
    )


def budgeted(url: str, deadline: float | None) -> float | None:
    """``deadline`` cut to what is left of the running call's budget; raise :func:`not_sent` when nothing is left."""
    left = _deadline.remaining()
    if left is None:
        return deadline
    if left <= 0:
        raise not_sent(url)
    return left if deadline is None else min(deadline, left)


def foreign_failure(url: str, exc: BaseException) -> TransportError:
    """The error for any exception of a caller's own transport: only its type (its text may carry what was sent)."""
    host = host_of(url)
    return TransportError(f"the transport failed for {host}: {type(exc).__name__}", retryable=False, host=host)


def cut_timeout(timeout: Any, budget: float) -> Any:
    """``timeout`` (one number or a ``(connect, read)`` pair) with each part at most ``budget``."""
    if isinstance(timeout, tuple):
        return tuple(budget if t is None else min(float(t), budget) for t in timeout)
    return budget if timeout is None else min(float(timeout), budget)


def late(host: str, phase: str, limit: float | None, status: int | None = None) -> TransportError:
    """The error for a request the watchdog cut at its deadline."""
    sent = "; the request may have reached the server" if phase in _SENT and phase != "body" else ""
    return TransportError(
        f"no complete answer from {host} within the deadline ({limit or 0:.3g} s for this request): cut while "
        f"{DURING[phase].format(host=host)}{sent}",
        status=status, retryable=True, host=host, phase=phase,
        hint="the endpoint's health; a larger deadline= if it is merely slow",
    )


def _direct_kind(exc: Failed) -> str:
    """What failed on a direct connection, from the standard library's exception behind ``exc``."""
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):  # a certificate's verdict too (SSLCertVerificationError)
        return "tls"
    if isinstance(cause, TimeoutError):
        return "connect-timeout" if exc.phase in ("connect", "TLS") else "timeout"
    if isinstance(cause, (OSError, http.client.HTTPException)):
        return "connection"
    return "other"


def _kind(exc: BaseException) -> str:
    """What failed, in the terms of every way of sending: tls, connect-timeout, timeout, connection or other."""
    if isinstance(exc, Failed):
        return _direct_kind(exc)
    if isinstance(exc, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)):
        return "tls"
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        # urllib3's NewConnectionError is a ConnectTimeoutError for compatibility; it is a refusal or DNS.
        isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
        and not isinstance(exc, urllib3.exceptions.NewConnectionError)
    ):
        return "connect-timeout"
    if isinstance(exc, (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError)):
        return "timeout"
    if isinstance(exc, (
        requests.exceptions.ConnectionError, urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.ProtocolError, urllib3.exceptions.ProxyError,
    )):
        return "connection"
    return "other"


def _phase_of(exc: BaseException, kind: str, watch: Watch | None) -> str:
    """Where the request was: as its watched connection said, else as the exception's kind tells."""
    if watch is not None and watch.connection is not None:
        return watch.phase
    if isinstance(exc, Failed):
        return exc.phase
    if kind == "tls":
        return "TLS"
    if kind == "connect-timeout":
        return "connect"
    if kind == "timeout" or _found(exc, urllib3.exceptions.ProtocolError):
        return "wait for headers"
    return "connect"


def request_error(exc: BaseException, host: str, watch: Watch | None, limit: float | None) -> TransportError:
    """The one mapping from the HTTP library's exceptions (before the body) to a TransportError."""
    kind = _kind(exc)
    phase = _phase_of(exc, kind, watch)
    if watch is not None and watch.cut:
        return late(host, phase, limit)
    return failure(exc, kind, phase, host)


def failure(exc: BaseException, kind: str, phase: str, host: str) -> TransportError:
    """The TransportError for ``exc``, a failure of ``kind`` (tls, connect-timeout, timeout, connection) in ``phase``.

    The wording every transport shares; ``exc``'s chain gives OpenSSL's verdict, or the DNS or
    refusal cause, and nothing else of its text.
    """
    during = DURING[phase].format(host=host)
    sent = "; the request may have reached the server" if phase in _SENT else ""
    if kind == "tls" and phase == "TLS":
        # Never retried: an untrusted, expired or misnamed certificate stays so, and the
        # handshake failed before the request (with its secrets) was written.
        reason = _tls_reason(exc)
        return TransportError(
            f"TLS handshake with {host} failed" + (f": {reason}" if reason else ""),
            hint="the endpoint's certificate, the system CA bundle (REQUESTS_CA_BUNDLE) "
                 "and any TLS-intercepting proxy",
            retryable=False, host=host, phase=phase,
        )
    if kind == "connect-timeout":
        return TransportError(f"connecting to {host} timed out", retryable=True, host=host, phase="connect")
    if kind == "timeout":
        return TransportError(
            f"the read timeout passed while {during}{sent}", retryable=True, host=host, phase=phase
        )
    if kind in ("connection", "tls"):
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


def _chain(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``'s chain (causes, contexts, wrapped reasons and arguments), at most 21."""
    seen: dict[int, BaseException] = {}
    pending: list[object] = [exc]
    while pending and len(seen) <= 20:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen[id(current)] = current
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return list(seen.values())


def _found(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in the exception's chain."""
    return any(isinstance(current, kind) for current in _chain(exc))


def _tls_reason(exc: BaseException) -> str:
    """The OpenSSL verdict (e.g. ``certificate has expired``) found in an exception chain."""
    for current in _chain(exc):
        verdict = getattr(current, "verify_message", None)  # absent on one built by hand
        if isinstance(current, ssl.SSLCertVerificationError) and verdict:
            return sanitise(str(verdict), limit=120)
        reason = getattr(current, "reason", None)
        if isinstance(current, ssl.SSLError) and reason:
            return sanitise(str(reason), limit=120)
    return ""


def _connect_reason(exc: BaseException) -> str:
    """Why a connection failed, when the exception chain says: DNS or a refusal."""
    for current in _chain(exc):
        if isinstance(current, socket.gaierror) or type(current).__name__ == "NameResolutionError":
            return "the host name does not resolve"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
    return ""
