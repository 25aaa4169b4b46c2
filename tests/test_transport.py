"""The default transport: one mapping of HTTP failures, timeouts, deadlines, size caps and no redirects."""

from __future__ import annotations

import gzip
import io
import socket
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import urllib3
from support import QuietServer, serve_in_background

from sut_soap.errors import ProtocolError, TransportError
from sut_soap.transport import HeaderMap, HttpResponse, HttpTransport, Response, call_transport

CANARY = "canary-9f2c-not-to-be-shown"

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

        self.httpd = QuietServer(("127.0.0.1", 0), _H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/Login/Services/PartnerSystemUserService.svc"
        self.thread = serve_in_background(self.httpd)


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


def _post(url: str, body: bytes, headers: dict[str, str], **kwargs: Any) -> Response:
    return HttpTransport(**kwargs).request("POST", url, body=body, headers=headers)


def test_redirect_not_followed(server: _Server) -> None:
    """A 307 is refused as a TransportError and the body with secrets is sent exactly once."""
    server.handler = _reply(307, b"", {"Location": "http://127.0.0.1:9/elsewhere"})
    server.posts = 0
    response = _post(server.url, b"<x/>", {"Content-Type": "text/xml; charset=utf-8"})
    assert response.status_code == 307
    assert server.posts == 1
    from sut_soap.soap import parse_answer

    with pytest.raises(TransportError, match="redirect"):
        parse_answer(response)


def test_response_size_cap(server: _Server) -> None:
    """Reading stops at the cap with a ProtocolError."""
    server.handler = _reply(200, b"<a>" + b"x" * (2 * 1024 * 1024) + b"</a>", {"Content-Type": "text/xml"})
    with pytest.raises(ProtocolError, match="larger than"):
        _post(server.url, b"<x/>", {})


def test_gzip_bomb_capped(server: _Server) -> None:
    """A compressed answer is capped on its decoded size."""
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    server.handler = _reply(200, bomb, {"Content-Type": "text/xml", "Content-Encoding": "gzip"})
    with pytest.raises(ProtocolError, match="larger than"):
        _post(server.url, b"<x/>", {})


def test_read_timeout(server: _Server) -> None:
    """A server that accepts and stays silent gives a retryable TransportError at the read timeout."""

    def silent(h: BaseHTTPRequestHandler) -> None:
        time.sleep(1.5)

    server.handler = silent
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        _post(server.url, b"<x/>", {}, timeout=(1.0, 0.3))
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
        _post(server.url, b"<x/>", {}, timeout=(1.0, 1.0), deadline=0.5)
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
        _post(server.url, b"<x/>", {})


def test_connection_refused() -> None:
    """Nothing listening is a retryable TransportError."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(TransportError, match="cannot connect") as info:
        _post(f"http://127.0.0.1:{port}/x", b"<x/>", {})
    assert info.value.retryable is True
    assert info.value.__cause__ is None


def test_caller_transport_exception_wrapped() -> None:
    """Whatever a caller's transport raises comes out as a TransportError."""

    class Broken:
        def request(self, method: str, url: str, **kwargs: Any) -> Response:
            raise RuntimeError(f"boom {CANARY}")

        def close(self) -> None:
            pass

    with pytest.raises(TransportError, match=r"the transport failed for 127\.0\.0\.1: RuntimeError") as info:
        call_transport(Broken(), "POST", "http://127.0.0.1:9/x", body=b"<x/>")
    assert CANARY not in str(info.value) and info.value.retryable is False and info.value.__cause__ is None
    assert info.value.host == "127.0.0.1"


def test_callers_session_left_untouched() -> None:
    """A session passed in keeps its own User-Agent and is not closed by the transport."""
    session = requests.Session()
    before = dict(session.headers)
    transport = HttpTransport(session)
    transport.close()
    assert dict(session.headers) == before
    assert transport.session is session and transport.owns_session is False
    assert HttpTransport().owns_session is True


def test_declared_oversize_answer_refused_before_reading(server: _Server) -> None:
    """A Content-Length above the cap is refused before the body is read."""
    server.handler = _reply(200, b"x" * 2048, {"Content-Type": "text/xml"})
    with pytest.raises(ProtocolError, match="larger than 1024 bytes") as info:
        HttpTransport().request("POST", server.url, body=b"<x/>", max_bytes=1024)
    assert info.value.status == 200


def test_caller_deadline_cuts_the_transport_deadline(server: _Server) -> None:
    """A caller's deadline shorter than the transport's own ends a dripping answer sooner."""
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.05)

    server.handler = drip
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"within the deadline \(0\.4 s for this request\)"):
        HttpTransport(deadline=30).request("POST", server.url, body=b"<x/>", deadline=0.4)
    assert time.monotonic() - started < 2.0


def test_answer_is_read_into_an_http_response(server: _Server) -> None:
    """The answer comes back whole, with case-insensitive headers and the reason phrase."""
    server.handler = _reply(200, b"<ok/>", {"Content-Type": "text/xml", "X-Thing": CANARY})
    response = HttpTransport().request("POST", server.url, body=b"<x/>")
    assert isinstance(response, HttpResponse) and isinstance(response, Response)
    assert (response.status_code, response.content, response.reason) == (200, b"<ok/>", "OK")
    assert response.headers["content-type"] == "text/xml" and response.headers.get("X-THING") == CANARY


def test_response_and_header_reprs_hide_values() -> None:
    """Neither a response's repr nor its headers' repr shows a body or a header value."""
    response = HttpResponse(200, HeaderMap({"Set-Cookie": CANARY}), CANARY.encode())
    assert CANARY not in repr(response) and CANARY not in repr(response.headers)
    assert repr(response) == f"HttpResponse(status_code=200, content=<{len(CANARY)} bytes>)"


def test_header_map_is_case_insensitive_and_keeps_the_last_value() -> None:
    """HeaderMap looks names up in any case; a name given twice keeps its last value."""
    headers = HeaderMap([("Retry-After", "1"), ("retry-after", "2")])
    assert headers["RETRY-AFTER"] == "2" and "Retry-after" in headers and 3 not in headers
    assert len(headers) == 1 and list(headers) == ["retry-after"]


def test_sut_soap_errors_of_a_transport_pass_unchanged() -> None:
    """A SutSoapError raised by a caller's transport reaches the caller as it is."""
    error = TransportError("scripted", retryable=True)

    class Scripted:
        def request(self, method: str, url: str, **kwargs: Any) -> Response:
            raise error

        def close(self) -> None:
            pass

    with pytest.raises(TransportError) as info:
        call_transport(Scripted(), "GET", "http://127.0.0.1:9/x")
    assert info.value is error


def test_pool_of_a_callers_session_is_left_alone() -> None:
    """ensure_pool widens the transport's own pool and never mounts adapters on a caller's session."""
    session = requests.Session()
    adapters = dict(session.adapters)
    HttpTransport(session).ensure_pool(64)
    assert dict(session.adapters) == adapters
    own = HttpTransport()
    own.ensure_pool(64)
    own.ensure_pool(8)
    route = own._pools.route(urlsplit("https://x.invalid/"), "https://x.invalid/")
    assert own._pools.size == 64 and route.pool is not None and route.pool.maxsize == 64
    own.close()


# --- the one mapping of requests' exceptions ----------------------------------------------------


class _FakeSession(requests.Session):
    """A session that raises ``error`` or answers with ``raw``, recording each call's timeout."""

    def __init__(self, error: BaseException | None = None, raw: Any = None, headers: dict[str, str] | None = None):
        super().__init__()
        self.error, self.raw, self.answer_headers = error, raw, headers or {}
        self.timeouts: list[Any] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.timeouts.append(kwargs["timeout"])
        if self.error is not None:
            raise self.error
        response = requests.Response()
        response.status_code = 200
        response.headers.update(self.answer_headers)
        response.raw = self.raw
        return response


class _RaisingRaw:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        raise self.error

    def close(self) -> None:
        pass


ENDPOINT = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"


@pytest.mark.parametrize(
    ("error", "message", "retryable", "phase"),
    [
        (requests.exceptions.SSLError("certificate verify failed"), "TLS handshake with 127.0.0.1 failed", False,
         "TLS"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "connecting to 127.0.0.1 timed out", True, "connect"),
        (requests.exceptions.ReadTimeout("read timed out"),
         "the read timeout passed while waiting for the response headers from 127.0.0.1; "
         "the request may have reached the server", True, "wait for headers"),
        (requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")),
         "the connection closed while waiting for the response headers from 127.0.0.1; "
         "the request may have reached the server", True, "wait for headers"),
        (requests.exceptions.InvalidURL("bad url"), "HTTP request to 127.0.0.1 failed: InvalidURL", False, "connect"),
        (requests.exceptions.TooManyRedirects("loop"), "HTTP request to 127.0.0.1 failed: TooManyRedirects", False,
         "connect"),
    ],
    ids=["tls", "connect-timeout", "read-timeout", "dropped-after-send", "invalid-url", "too-many-redirects"],
)
def test_requests_failures_become_typed_transport_errors(
    error: Exception, message: str, retryable: bool, phase: str
) -> None:
    """Failures of requests are TransportErrors naming the host and the phase, with the right retryable flag."""
    with pytest.raises(TransportError) as caught:
        HttpTransport(_FakeSession(error)).request("POST", ENDPOINT, body=b"<x/>")
    assert caught.value.message.startswith(message)
    assert (caught.value.host, caught.value.phase) == ("127.0.0.1", phase)
    assert caught.value.retryable is retryable
    assert caught.value.__cause__ is None


def test_tls_failure_hint_points_at_certificates() -> None:
    """A TLS failure's hint names the certificate and the CA bundle, the things to check next."""
    with pytest.raises(TransportError) as caught:
        HttpTransport(_FakeSession(requests.exceptions.SSLError("x"))).request("GET", ENDPOINT)
    assert "certificate" in (caught.value.hint or "")
    assert "CA bundle" in (caught.value.hint or "")


def test_tls_failure_names_the_openssl_reason() -> None:
    """A TLS failure that is not a certificate check carries OpenSSL's reason in the message."""
    import ssl

    inner = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    inner.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
    with pytest.raises(TransportError) as caught:
        HttpTransport(_FakeSession(requests.exceptions.SSLError(inner))).request("POST", ENDPOINT, body=b"<x/>")
    assert caught.value.message == "TLS handshake with 127.0.0.1 failed: WRONG_VERSION_NUMBER"
    assert not caught.value.retryable


def test_read_timeout_while_reading_the_answer_is_retryable() -> None:
    """A read timeout while the answer streams in is a retryable TransportError, urllib3's exception not attached."""
    raw = _RaisingRaw(urllib3.exceptions.ReadTimeoutError(None, ENDPOINT, "Read timed out."))  # type: ignore[arg-type]
    with pytest.raises(TransportError) as caught:
        HttpTransport(_FakeSession(raw=raw)).request("POST", ENDPOINT, body=b"<x/>")
    assert caught.value.message == "127.0.0.1 stopped sending the response body within the read timeout"
    assert caught.value.phase == "body"
    assert caught.value.retryable
    assert caught.value.status == 200
    assert caught.value.__cause__ is None


def test_broken_connection_while_reading_is_retryable() -> None:
    """A connection reset while the answer streams in is a retryable TransportError naming the read."""
    with pytest.raises(TransportError) as caught:
        HttpTransport(_FakeSession(raw=_RaisingRaw(ConnectionResetError()))).request("POST", ENDPOINT, body=b"<x/>")
    assert caught.value.message == "the connection broke while reading the response body from 127.0.0.1"
    assert caught.value.retryable and caught.value.__cause__ is None


def test_answer_with_undecodable_content_encoding_is_a_protocol_error() -> None:
    """An answer declared gzip whose bytes are not gzip is a non-retryable ProtocolError."""
    raw = urllib3.HTTPResponse(
        body=io.BytesIO(b"this is not gzip data at all"),
        headers={"Content-Encoding": "gzip"},
        status=200,
        preload_content=False,
    )
    with pytest.raises(ProtocolError) as caught:
        HttpTransport(_FakeSession(raw=raw, headers={"Content-Encoding": "gzip"})).request("POST", ENDPOINT, body=b"")
    assert caught.value.message == "the answer's Content-Encoding from 127.0.0.1 could not be decoded"
    assert not caught.value.retryable


def _answering() -> _FakeSession:
    return _FakeSession(raw=urllib3.HTTPResponse(body=io.BytesIO(b"<x/>"), status=200, preload_content=False))


def test_spent_deadline_refuses_to_send() -> None:
    """With no time left of the caller's deadline, nothing is sent: a retryable TransportError instead."""
    session = _answering()
    with pytest.raises(TransportError) as caught:
        HttpTransport(session).request("POST", ENDPOINT, body=b"<x/>", deadline=0)
    assert caught.value.message == "the call's deadline passed before the request to 127.0.0.1 was sent"
    assert (caught.value.host, caught.value.phase) == ("127.0.0.1", "connect")
    assert caught.value.retryable
    assert session.timeouts == []


def test_callers_session_without_a_deadline_is_not_watched() -> None:
    """HttpTransport(session, deadline=None) reads the answer with no watch on the watchdog."""
    from sut_soap._watchdog import WATCHDOG

    before = len(WATCHDOG)
    assert HttpTransport(_answering(), deadline=None).request("GET", ENDPOINT).content == b"<x/>"
    assert len(WATCHDOG) == before


@pytest.mark.parametrize(("timeout", "expected"), [(10.0, 2.5), (1.0, 1.0), ((5.0, 10.0), (2.5, 2.5))])
def test_deadline_cuts_a_single_or_paired_timeout(timeout: Any, expected: Any) -> None:
    """A single timeout or a (connect, read) pair is cut down to what is left of the caller's deadline."""
    session = _answering()
    assert HttpTransport(session, timeout=timeout).request("POST", ENDPOINT, body=b"", deadline=2.5).content == b"<x/>"
    assert session.timeouts == [expected]


def test_refused_connection_says_refused() -> None:
    """A connection refused is named as such in the TransportError, which stays retryable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError) as caught:
        HttpTransport(timeout=2).request("GET", f"http://127.0.0.1:{port}/x")
    assert caught.value.message == "cannot connect to 127.0.0.1 (connection refused)"
    assert (caught.value.host, caught.value.phase) == ("127.0.0.1", "connect")
    assert caught.value.retryable


def test_unresolvable_host_says_dns() -> None:
    """A host name that does not resolve is named as such; no lookup leaves loopback (.invalid never resolves)."""
    error = requests.exceptions.ConnectionError(socket.gaierror(-2, "Name or service not known"))
    with pytest.raises(TransportError) as caught:
        HttpTransport(_FakeSession(error)).request("GET", "https://x.invalid/")
    assert caught.value.message == "cannot connect to x.invalid (the host name does not resolve)"


def test_plain_http_answer_has_no_tls_version(server: _Server) -> None:
    """An answer over plain HTTP reports no TLS version."""
    server.handler = _reply(200, b"<ok/>", {"Content-Type": "text/xml"})
    assert HttpTransport().request("POST", server.url, body=b"").tls_version is None


def test_transport_without_deadline_is_not_watched(server: _Server) -> None:
    """HttpTransport(deadline=None) sends over the same connections, with no watch on the watchdog."""
    from sut_soap._watchdog import WATCHDOG

    seen: list[int] = []

    def answer(h: BaseHTTPRequestHandler) -> None:
        seen.append(len(WATCHDOG))
        _reply(200, b"<ok/>")(h)

    before = len(WATCHDOG)
    server.handler = answer
    assert HttpTransport(deadline=None).request("POST", server.url, body=b"").content == b"<ok/>"
    assert seen == [before]


def test_connection_error_without_a_known_cause_names_the_host() -> None:
    """A connection failure whose cause is neither DNS nor a refusal still names the host and the connect phase."""
    with pytest.raises(TransportError) as caught:
        HttpTransport(_FakeSession(requests.exceptions.ConnectionError("odd"))).request("GET", ENDPOINT)
    assert caught.value.message == "cannot connect to 127.0.0.1"
    assert (caught.value.host, caught.value.phase, caught.value.retryable) == ("127.0.0.1", "connect", True)


def test_failing_transport_of_an_unparsable_url_is_named_generically() -> None:
    """A caller's transport that fails for a URL that does not parse is named as 'the endpoint', never raising anew."""

    class Broken:
        def request(self, method: str, url: str, **kwargs: Any) -> Response:
            raise RuntimeError("boom")

        def close(self) -> None:
            pass

    with pytest.raises(TransportError) as caught:
        call_transport(Broken(), "GET", "http://[::1/x")
    assert caught.value.message == "the transport failed for the endpoint: RuntimeError"


def test_callers_session_proxy_pools_become_watched() -> None:
    """Proxy pool managers a caller's session already built make connections the watchdog can cut."""
    import urllib3.poolmanager

    session = requests.Session()
    adapter = session.get_adapter("http://x")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    manager = adapter.proxy_manager_for("http://127.0.0.1:3128")
    assert manager.pool_classes_by_scheme == urllib3.poolmanager.pool_classes_by_scheme
    HttpTransport(session)
    assert manager.pool_classes_by_scheme != urllib3.poolmanager.pool_classes_by_scheme
    assert adapter.poolmanager.pool_classes_by_scheme != urllib3.poolmanager.pool_classes_by_scheme
    session.close()
