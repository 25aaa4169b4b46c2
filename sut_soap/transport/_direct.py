"""The transport's own connections to an origin without a proxy: ``http.client`` kept alive, watched.

urllib3's pool and response layers cost more per request than the round trip itself on
loopback (``make bench``, section 2), and the transport needs little of them: one request
at a time per connection, no retries, no redirects, its own body reader. So a connection to
an origin reached directly is an ``http.client`` connection of the standard library, kept in
a small pool here; a proxied origin still goes through urllib3's ``ProxyManager``
(:mod:`sut_soap.transport._pools`).

What this module keeps of the transport's policy:

- **TLS**: the transport's one ``ssl.SSLContext`` (certificates and host names verified),
  the handshake bounded by the connect timeout and watched by the deadline.
- **Keep-alive**: up to ``maxsize`` idle connections per origin, the most recently used
  first; a connection the server closed or wrote to while idle (readable before a request)
  is closed, not reused; beyond ``maxsize`` a connection is closed when given back, so no
  thread ever waits for one. An answer not read to its end, one the server marked
  ``Connection: close`` and one cut by the deadline close their connection.
- **Phases**: each step (connect, TLS, send, wait for headers) tells the deadline's watchdog
  its socket and phase, and a failure carries the phase it happened in
  (:class:`~sut_soap.transport._errors.Failed`).
- **Content-Encoding**: ``gzip`` (several members too), ``deflate`` (zlib or raw) and
  ``identity``, up to five stages, decoded in bounded steps so a compression bomb stops at
  the cap; anything else does not decode.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import urllib3.exceptions

from .._watchdog import WATCHDOG, Watch
from ._errors import Failed
from ._values import HeaderMap, Sent
from ._watched import local

__all__ = ["ACCEPT_ENCODING", "DecodedBody", "DirectPool", "decoder"]

#: What the transport's own connections accept: exactly what :class:`DecodedBody` decodes.
ACCEPT_ENCODING = "gzip, deflate"
# urllib3 allows as many; more is a server playing games.
_MAX_STAGES = 5


class _Connection(http.client.HTTPConnection):
    """An ``http.client`` connection that tells the watchdog its socket and phase while watched."""

    watch: Watch | None = None
    tls: ssl.SSLContext | None = None
    step = "connect"  # how far connect() got, for a failure no watch saw
    holding = False  # the next send() is the header block: keep it for the body's send
    held: bytes | None = None

    def send(self, data: Any) -> None:
        """Write ``data``; a held header block goes out with it, so a request is one write, not two."""
        if self.holding:
            self.holding, self.held = False, bytes(data)
            return
        if self.held is not None:
            data, self.held = self.held + bytes(data), None
        super().send(data)

    def connect(self) -> None:
        """Connect (and shake hands, for TLS) within the connect timeout, the watchdog told each step."""
        watch = local.watch
        if watch is not None:
            watch.phase = "connect"
            WATCHDOG.attach(watch, self, None)
        http.client.HTTPConnection.connect(self)
        if watch is not None:  # cut at once if the deadline passed meanwhile
            WATCHDOG.attach(watch, self, self.sock, duplicate=self.tls is not None)
        if self.tls is not None:
            self.step = "TLS"
            if watch is not None:
                watch.phase = "TLS"
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)


class DecodedBody:
    """The body of an answer, read in steps of at most ``amount`` bytes after decoding.

    Quacks like the part of urllib3's response :func:`~sut_soap.transport._watched.read_capped`
    uses (``read1(amount, decode_content=True)``, ``connection``); an encoding it cannot decode
    raises urllib3's ``DecodeError``, which the reader maps.
    """

    __slots__ = ("_encoding", "_read", "_response", "connection")

    def __init__(self, response: http.client.HTTPResponse, connection: _Connection, encoding: str) -> None:
        self.connection = connection
        self._response = response
        self._encoding = encoding
        self._read: Callable[[int], bytes] | None = None

    def _raw(self, amount: int) -> bytes:
        response = self._response
        data = response.read1(amount)
        if not data and response.length:  # read1 takes an early EOF for the end; read() would not
            raise http.client.IncompleteRead(b"", response.length)
        return data

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        """Up to ``amount`` bytes of the decoded body; ``b""`` at its end."""
        if self._read is None:  # here, not at construction: the reader maps a DecodeError
            self._read = decoder(self._raw, self._encoding)
        return self._read(amount)


def decoder(read: Callable[[int], bytes], encoding: str) -> Callable[[int], bytes]:
    """A reader of up to ``amount`` decoded bytes over ``read`` (the raw body), for ``Content-Encoding`` ``encoding``.

    Each call decodes a bounded step, so the caller counts the decoded size as it goes. Any
    exception ``read`` raises before returning data passes through and leaves the stages as
    they were, so a reader fed from elsewhere (the asyncio transport) can raise to ask for
    more input and call again.

    Raises:
        urllib3.exceptions.DecodeError: a coding other than gzip, deflate or identity, more
            than five stages, or (when reading) a stream that does not decode.
    """
    stages = [s for s in (part.strip().lower() for part in encoding.split(",")) if s and s != "identity"]
    if len(stages) > _MAX_STAGES:
        raise urllib3.exceptions.DecodeError(f"more than {_MAX_STAGES} content codings")
    for stage in reversed(stages):  # listed in the order applied: the last one is undone first
        if stage not in ("gzip", "x-gzip", "deflate"):
            raise urllib3.exceptions.DecodeError("unknown content coding")
        read = _Inflater(read, gzip=stage != "deflate").read
    return read


class _Inflater:
    """One decoding stage over ``source``: gzip members one after another, or deflate (zlib or raw)."""

    __slots__ = ("_decoder", "_fed", "_gzip", "_pending", "_probing", "_seen", "_source")

    def __init__(self, source: Callable[[int], bytes], *, gzip: bool) -> None:
        self._source = source
        self._gzip = gzip
        self._decoder = zlib.decompressobj(31 if gzip else 15)
        self._pending = b""
        self._seen = False  # any input at all: an empty body declared compressed is an empty body
        self._probing = not gzip  # deflate: zlib-wrapped until the first output, else raw
        self._fed = b""  # deflate: the input before the first output, to feed again as raw deflate

    def read(self, amount: int) -> bytes:
        """Up to ``amount`` decoded bytes, ``b""`` at the end; ``DecodeError`` for a bad or truncated stream."""
        while True:
            data = self._pending or self._source(amount)
            if not data:
                if self._decoder.eof or not self._seen:
                    return b""
                raise urllib3.exceptions.DecodeError("truncated content coding")
            self._seen = True
            if self._decoder.eof:  # more after the end of a stream: a gzip member follows
                if not self._gzip:
                    raise urllib3.exceptions.DecodeError("data after the end of the deflate stream")
                self._decoder = zlib.decompressobj(31)
            try:
                out = self._decoder.decompress(data, amount)
            except zlib.error:
                if not self._probing:
                    raise urllib3.exceptions.DecodeError("content coding does not decode") from None
                self._probing = False  # deflate sent without its zlib wrapper, as some servers do
                self._decoder = zlib.decompressobj(-15)
                self._pending, self._fed = self._fed + data, b""
                continue
            if self._probing:
                self._fed += data
                if out or self._decoder.eof:
                    self._probing, self._fed = False, b""
            self._pending = self._decoder.unconsumed_tail or self._decoder.unused_data
            if out:
                return out


class DirectPool:
    """Kept-alive ``http.client`` connections to one origin (``host``, ``port``; TLS with ``context``)."""

    def __init__(self, host: str, port: int | None, *, maxsize: int, context: ssl.SSLContext | None) -> None:
        self.host = host
        self.port = port or (443 if context is not None else 80)
        self.maxsize = maxsize
        self._context = context
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _checkout(self, connect_timeout: float | None) -> _Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = _Connection(self.host, self.port, timeout=connect_timeout)
                conn.tls = self._context
                return conn
            if _still_open(conn.sock):  # only connections with a socket are kept
                return conn
            conn.close()

    def send(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str], timeout: tuple[Any, Any]
    ) -> Sent:
        """Send one request on an idle or new connection; the answer's headers read, its body not yet."""
        connect_timeout, read_timeout = timeout
        conn = self._checkout(connect_timeout)
        watch = local.watch
        phase = "connect"
        try:
            if conn.sock is None:
                conn.timeout, conn.step = connect_timeout, "connect"
                conn.connect()
            phase = "send"
            sock = conn.sock
            if sock.gettimeout() != read_timeout:
                sock.settimeout(read_timeout)
            if watch is not None:
                watch.phase = "send"
                WATCHDOG.attach(watch, conn, sock)
            conn.holding = body is not None
            conn.request(method, target, body=body, headers=headers)
            if conn.held is not None:  # no body after all
                conn.send(b"")
            phase = "wait for headers"
            if watch is not None:
                watch.phase = phase
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if watch is not None and watch.connection is not None:
                phase = watch.phase
            elif phase == "connect":
                phase = conn.step
            raise Failed(phase) from exc
        if watch is not None and not watch.cut:  # cut: the shut socket's EOF may have ended the headers
            watch.phase = "body"
        headers_read = HeaderMap.joined(response.msg.raw_items())
        raw = DecodedBody(response, conn, headers_read.get("Content-Encoding", ""))

        def release() -> None:
            self._give_back(conn, response)

        return Sent(raw, response.status, headers_read, response.reason or "", release)

    def _give_back(self, conn: _Connection, response: http.client.HTTPResponse) -> None:
        watch = conn.watch
        # Read to its end: its length counted down to 0 (the reader stops there, before the
        # read that would close it), or closed by http.client (a chunked answer's last chunk).
        ended = response.isclosed() or response.length == 0
        response.close()
        if ended and not response.will_close and conn.sock is not None and (watch is None or not watch.cut):
            with self._lock:
                if not self._closed and len(self._idle) < self.maxsize:
                    self._idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; one in use is closed when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _still_open(sock: socket.socket) -> bool:
    """Whether an idle connection can carry a request: nothing (an EOF, stray bytes) arrived since its answer.

    Bytes that came with the answer went with its buffered reader; anything later, a TLS
    record included, makes the socket itself readable.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)
