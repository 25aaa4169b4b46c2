"""The HTTP side of the exchange against misbehaving loopback servers."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from sut_soap._soap import HttpTransport, SoapService
from sut_soap.errors import ProtocolError, TransportError

Handler = Callable[[BaseHTTPRequestHandler], None]


class _Server:
    def __init__(self) -> None:
        self.handler: Handler = lambda h: None
        self.posts = 0
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                outer.posts += 1
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.handler(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class _Quiet(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.httpd = _Quiet(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/Login/Services/PartnerSystemUserService.svc"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handle


def _service(url: str, **kwargs: object) -> SoapService:
    return SoapService(endpoint=url, transport=HttpTransport(**kwargs))  # type: ignore[arg-type]


def test_redirect_not_followed(server: _Server) -> None:
    """A 307 is refused as a TransportError and the body with secrets is sent exactly once."""
    server.handler = _reply(307, b"", {"Location": "http://127.0.0.1:9/elsewhere"})
    server.posts = 0
    service = _service(server.url)
    response = service.send(b"<x/>", {"Content-Type": "text/xml; charset=utf-8"})
    assert response.status_code == 307
    assert server.posts == 1
    from sut_soap._soap import parse_answer

    with pytest.raises(TransportError, match="redirect"):
        parse_answer(response)


def test_response_size_cap(server: _Server) -> None:
    """Reading stops at the cap with a ProtocolError."""
    server.handler = _reply(200, b"<a>" + b"x" * (2 * 1024 * 1024) + b"</a>", {"Content-Type": "text/xml"})
    with pytest.raises(ProtocolError, match="larger than"):
        _service(server.url).send(b"<x/>", {})


def test_gzip_bomb_capped(server: _Server) -> None:
    """A compressed answer is capped on its decoded size."""
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    server.handler = _reply(200, bomb, {"Content-Type": "text/xml", "Content-Encoding": "gzip"})
    with pytest.raises(ProtocolError, match="larger than"):
        _service(server.url).send(b"<x/>", {})


def test_read_timeout(server: _Server) -> None:
    """A server that accepts and stays silent gives a retryable TransportError at the read timeout."""

    def silent(h: BaseHTTPRequestHandler) -> None:
        time.sleep(1.5)

    server.handler = silent
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        _service(server.url, timeout=(1.0, 0.3)).send(b"<x/>", {})
    assert time.monotonic() - started < 1.4
    assert info.value.retryable is True


def test_slow_drip_hits_deadline(server: _Server) -> None:
    """A server dripping bytes below the read timeout is cut off by the total deadline."""

    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        try:
            for _ in range(40):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    server.handler = drip
    started = time.monotonic()
    with pytest.raises(TransportError, match="deadline"):
        _service(server.url, timeout=(1.0, 1.0), deadline=0.5).send(b"<x/>", {})
    assert time.monotonic() - started < 2.0


def test_truncated_content_length(server: _Server) -> None:
    """A body shorter than its Content-Length is a TransportError, not a requests exception."""

    def short(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "500")
        h.end_headers()
        h.wfile.write(b"<a>")
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_WR)

    server.handler = short
    with pytest.raises(TransportError):
        _service(server.url).send(b"<x/>", {})


def test_connection_refused() -> None:
    """Nothing listening is a retryable TransportError."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(TransportError, match="cannot connect") as info:
        _service(f"http://127.0.0.1:{port}/x").send(b"<x/>", {})
    assert info.value.retryable is True
    assert info.value.__cause__ is None


def test_caller_transport_exception_wrapped() -> None:
    """Whatever a caller's transport raises comes out as a TransportError."""

    class Broken(HttpTransport):
        def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
            raise RuntimeError("boom")

    service = SoapService(endpoint="http://127.0.0.1:9/x", transport=Broken())
    with pytest.raises(TransportError, match="RuntimeError"):
        service.send(b"<x/>", {})


def test_callers_session_left_untouched() -> None:
    """A session passed in keeps its own User-Agent and is not closed by the transport."""
    session = requests.Session()
    before = dict(session.headers)
    transport = HttpTransport(session)
    transport.close()
    assert dict(session.headers) == before
    assert transport.session is session
