"""The emulator's HTTP server: one thread per connection, keep-alive, bodies read with WCF's limits."""


from __future__ import annotations

import contextlib
import io
import socket
import socketserver
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from sut_soap.contract import REST_PATH, SERVICE_PATH
from sut_soap.testing._wcf import (
    _DISPATCHER,
    _WCF_INTERNAL,
    Headers,
    _bad_request,
    _Drip,
    _not_found,
    _Reply,
    _soap_fault,
)

if TYPE_CHECKING:
    from sut_soap.testing.emulator import Emulator

__all__: list[str] = []

_MAX_BODY = 65536  # WCF's default maxReceivedMessageSize; larger requests get HTTP 413
_BACKLOG = 1024  # socketserver's default of 5 drops connections once a few hundred clients arrive at once


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = _BACKLOG

    def __init__(self, address: tuple[str, int], emulator: Emulator, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can take seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, OSError):
            self.emulator._record_error(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # a drip is one small write per byte: avoid the 40 ms ACK stall
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.emulator._lock:
            self.server.emulator._connections.add(self.connection)
            self.server.emulator._connection_count += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.emulator._lock:
                self.server.emulator._connections.discard(self.connection)

    def version_string(self) -> str:
        return "sut-soap-emulator"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: never log requests (their bodies carry secrets)."""

    def _path(self) -> str:
        return self.path.split("?", 1)[0].split("#", 1)[0].lower()

    def _tenant(self, method: str, body: bytes = b"") -> _Reply | None:
        """The emulator's state API or tenant API answer, or None when the path is neither's."""
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        return self.server.emulator._handle_tenant(method, path, Headers(self.headers.items()), body)

    def do_GET(self) -> None:
        def produce() -> _Reply:
            return self._tenant("GET") or self.server.emulator._handle_get(self._path())

        self._respond(produce)

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = self._path()
        if path == SERVICE_PATH.lower():
            handle = self.server.emulator._handle_soap
        elif path == REST_PATH.lower():
            handle = self.server.emulator._handle_rest
        else:
            self._respond(lambda: self._tenant("POST", body) or _not_found())
            return
        headers = Headers(self.headers.items())
        self._respond(lambda: handle(headers, body))

    def do_PUT(self) -> None:
        body = self._read_body()
        if body is None:
            return
        self._respond(lambda: self._tenant("PUT", body) or _not_found())

    def _respond(self, produce: Callable[[], _Reply]) -> None:
        try:
            reply = produce()
        except Exception as exc:  # a bug in the emulator: answer like WCF and keep it for the tests
            self.server.emulator._record_error(exc)
            reply = _soap_fault("a:InternalServiceFault", _WCF_INTERNAL, code_namespace=_DISPATCHER)
        self._send(reply)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413/400 on the caller's behalf."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._send(_Reply(411, content_type=None))
            return None
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(_bad_request())
            return None
        if length > _MAX_BODY:
            self.close_connection = True
            self._send(_Reply(413, content_type=None))
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0:  # "-1" parses, and read(-1) would read to EOF past the size cap
                self.close_connection = True
                self._send(_bad_request())
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                self.close_connection = True
                self._send(_Reply(413, content_type=None))
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)

    def _send(self, reply: _Reply) -> None:
        if reply.disconnect:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        head, wfile = io.BytesIO(), self.wfile
        self.wfile = head  # the status line and headers as bytes, so a drip can send them too
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
        finally:
            self.wfile = wfile
        data = head.getvalue() + reply.body
        if reply.drip is None:
            self.wfile.write(data)
            self.wfile.flush()
        else:
            self._drip(data, reply.drip)

    def _drip(self, data: bytes, drip: _Drip) -> None:
        """Send ``data`` one byte at a time; once the drip is called off, the rest at once (or, on stop, nothing).

        A client that goes away ends it quietly: the socket error closes this connection.
        """
        try:
            for i in range(len(data)):
                if i and drip.called_off.wait(drip.seconds):
                    if self.server.emulator._stopping.is_set():
                        self.close_connection = True
                        return
                    self.wfile.write(data[i:])
                    break
                self.wfile.write(data[i : i + 1])
        except OSError:
            self.close_connection = True


# -- command line ------------------------------------------------------------------------------
