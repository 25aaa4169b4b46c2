"""The transport's own urllib3 pools: proxies from the environment, headers, keep-alive, URLs, the mapping of urllib3's failures."""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
from support import QuietServer, serve_in_background

from sut_soap._watchdog import WATCHDOG, Watch
from sut_soap.errors import ConfigurationError, TransportError
from sut_soap.transport import HeaderMap, HttpTransport, _errors, _pools

CANARY = "canary-proxy-pass-7d1e"
_PROXY_ENV = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
              "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_ENV:
        monkeypatch.delenv(name, raising=False)


class _Recorder:
    """A loopback HTTP server that records each request line, its headers and the connections it saw."""

    def __init__(self, answer: bytes = b"<direct/>") -> None:
        self.lines: list[str] = []
        self.headers: list[list[tuple[str, str]]] = []
        self.ports: set[int] = set()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                outer.lines.append(self.requestline)
                outer.headers.append(list(self.headers.items()))
                outer.ports.add(self.client_address[1])

            def do_GET(self) -> None:
                self._record()
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.send_header("X-Twice", "a")
                self.send_header("X-Twice", "b")
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_GET

            def do_CONNECT(self) -> None:
                self._record()
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), _H)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        serve_in_background(self.httpd)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Recorder]:
    s = _Recorder()
    yield s
    s.close()


@pytest.fixture
def proxy() -> Iterator[_Recorder]:
    s = _Recorder(b"<via-proxy/>")
    yield s
    s.close()


# --- proxies from the environment ---------------------------------------------------------------


def test_http_proxy_from_the_environment_is_used_with_its_credentials(
    proxy: _Recorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """HTTP_PROXY sends the request to the proxy in absolute form, with Proxy-Authorization from its URL, never logged."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:{CANARY}%40x@127.0.0.1:{proxy.port}")
    transport = HttpTransport()
    transport.prepare(["http://sut-soap.invalid/Login/x?a=1"])
    response = transport.request("POST", "http://sut-soap.invalid/Login/x?a=1", body=b"<x/>")
    assert response.content == b"<via-proxy/>"
    assert proxy.lines == ["POST http://sut-soap.invalid/Login/x?a=1 HTTP/1.1"]
    sent = {name.lower(): value for name, value in proxy.headers[0]}
    assert sent["host"] == "sut-soap.invalid"
    assert sent["proxy-authorization"] == "Basic " + base64.b64encode(f"user:{CANARY}@x".encode()).decode()
    headers = response.headers
    assert headers["x-twice"] == "a, b" and "X-TWICE" in headers and len(headers) == len(list(headers))
    assert transport.request("GET", "http://other.invalid/").content == b"<via-proxy/>"  # the same proxy's pool
    assert len(proxy.ports) == 1
    transport.close()
    assert caplog.records and CANARY not in caplog.text and "Basic " not in caplog.text


def test_proxied_request_without_a_deadline_is_sent_unwatched(proxy: _Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """With deadline=None a proxied request goes through urllib3's connection without the watchdog."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    before = len(WATCHDOG)
    assert HttpTransport(deadline=None).request("GET", "http://sut-soap.invalid/x").content == b"<via-proxy/>"
    assert len(WATCHDOG) == before and proxy.lines == ["GET http://sut-soap.invalid/x HTTP/1.1"]


def test_proxy_is_read_once_per_origin(proxy: _Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy variable set or unset after the origin's first request changes nothing for it."""
    monkeypatch.setenv("http_proxy", f"127.0.0.1:{proxy.port}")  # no scheme: http:// as requests assumes
    transport = HttpTransport()
    transport.request("GET", "http://sut-soap.invalid/a")
    monkeypatch.delenv("http_proxy")
    transport.request("GET", "http://sut-soap.invalid/b")
    transport.ensure_pool(32)  # a new generation of pools keeps what was read
    transport.request("GET", "http://sut-soap.invalid/c")
    assert [line.split()[1] for line in proxy.lines] == [f"http://sut-soap.invalid/{p}" for p in "abc"]
    transport.close()


def test_no_proxy_goes_direct(proxy: _Recorder, server: _Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host named in NO_PROXY is reached directly, never through the proxy."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    transport = HttpTransport()
    transport.prepare([server.url + "/x"])
    transport.prepare([server.url + "/x"])
    assert transport.request("GET", server.url + "/x").content == b"<direct/>"
    assert proxy.lines == [] and server.lines == ["GET /x HTTP/1.1"]


def test_https_goes_through_a_connect_tunnel(proxy: _Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY tunnels with CONNECT; a proxy that refuses it is a retryable TransportError naming the host."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    transport = HttpTransport(timeout=2)
    with pytest.raises(TransportError) as caught:
        transport.request("POST", "https://sut-soap.invalid/Login/x", body=b"<x/>")
    assert [line.rsplit(" ", 1)[0] for line in proxy.lines] == ["CONNECT sut-soap.invalid:443"]
    assert caught.value.host == "sut-soap.invalid" and caught.value.retryable
    assert caught.value.phase in ("connect", "TLS")
    transport.close()


def test_socks_proxy_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy urllib3 cannot speak (socks) is refused as a ConfigurationError, its URL not shown."""
    monkeypatch.setenv("ALL_PROXY", f"socks5://user:{CANARY}@127.0.0.1:1080")
    with pytest.raises(ConfigurationError, match=r"not an http or https proxy \(socks5://\.\.\.\)") as caught:
        HttpTransport().request("GET", "http://sut-soap.invalid/")
    assert CANARY not in str(caught.value)


# --- what goes over the wire --------------------------------------------------------------------


def test_default_headers_and_a_callers_user_agent(server: _Recorder) -> None:
    """sut-soap's User-Agent and Accept-Encoding go out; a caller's user-agent, in any case, replaces it once."""
    transport = HttpTransport()
    transport.request("GET", server.url + "/")
    transport.request("GET", server.url + "/", headers={"user-agent": "mine", "X-Other": "1"})
    first, second = ({name.lower(): value for name, value in sent} for sent in server.headers)
    assert first["user-agent"].startswith("sut-soap/") and "gzip" in first["accept-encoding"]
    assert [name for name, _ in server.headers[1]].count("user-agent") + [
        name for name, _ in server.headers[1]].count("User-Agent") == 1
    assert second["user-agent"] == "mine" and second["x-other"] == "1"


def test_keep_alive_reuses_one_connection_and_close_keeps_the_transport_usable(server: _Recorder) -> None:
    """Requests to one origin share a pooled connection; after close() the transport connects anew."""
    transport = HttpTransport()
    for _ in range(3):
        transport.request("POST", server.url + "/x", body=b"<x/>")
    assert len(server.ports) == 1
    transport.close()
    transport.request("POST", server.url + "/x", body=b"<x/>")
    assert len(server.ports) == 2
    transport.close()


def test_answer_headers_view(server: _Recorder) -> None:
    """The answer's headers are a HeaderMap: any case, a repeated header joined, names only in repr."""
    headers = HttpTransport().request("GET", server.url + "/").headers
    assert isinstance(headers, HeaderMap)
    assert headers["x-twice"] == "a, b" and headers.get("CONTENT-LENGTH") == "9"
    assert "X-TWICE" in headers and 3 not in headers and "nope" not in headers
    assert len(headers) == len(list(headers)) and "X-Twice" in list(headers)
    assert "a, b" not in repr(headers)


@pytest.mark.parametrize(
    ("url", "host"),
    [("ftp://sut-soap.invalid/x", "sut-soap.invalid"), ("http://[::1/x", "the endpoint"),
     ("http://sut-soap.invalid:99999/", "sut-soap.invalid"), ("/relative", "the endpoint")],
)
def test_a_url_that_is_not_http_is_refused_unsent(url: str, host: str) -> None:
    """A URL that is not an absolute http(s) URL is a non-retryable TransportError naming what it can."""
    with pytest.raises(TransportError) as caught:
        HttpTransport().request("GET", url)
    assert caught.value.message == f"HTTP request to {host} failed: InvalidURL"
    assert (caught.value.retryable, caught.value.phase) == (False, "connect")


def test_concurrent_first_requests_build_one_route() -> None:
    """Two threads reaching a new origin at once share one pool (the second finds the first's)."""
    pools = HttpTransport()._pools
    parts = urlsplit("http://127.0.0.1:9/x")
    first = pools._add(parts, "http://127.0.0.1:9/x")
    assert pools._add(parts, "http://127.0.0.1:9/x") is first is pools.route(parts, "http://127.0.0.1:9/x")


def test_timeout_cut_by_the_deadline_reaches_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The (connect, read) timeout goes to the route as it is, or cut to what the deadline leaves."""
    transport = HttpTransport(timeout=(5.0, 10.0))
    url = "http://127.0.0.1:9/x"
    route = transport._pools.route(urlsplit(url), url)
    seen: list[tuple[Any, Any]] = []

    def capture(method: str, target: str, body: Any, headers: Any, timeout: tuple[Any, Any]) -> Any:
        seen.append(timeout)
        raise urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]

    monkeypatch.setattr(route, "send", capture)
    for deadline in (None, 2.5):
        with pytest.raises(TransportError):
            transport.request("GET", url, deadline=deadline)
    assert seen == [(5.0, 10.0), (2.5, 2.5)]
    assert HttpTransport(timeout=3.0)._timeout == (3.0, 3.0)


def test_connect_and_read_timeouts_apply_to_their_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A direct connection connects within the connect timeout, then reads within the read timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    transport = HttpTransport(timeout=(4.0, 0.3), deadline=None)
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        transport.request("GET", f"http://127.0.0.1:{port}/")  # accepted by the backlog, never answered
    assert 0.25 < time.monotonic() - started < 2.0
    assert (caught.value.phase, caught.value.retryable) == ("wait for headers", True)
    assert caught.value.message.startswith("the read timeout passed while waiting for the response headers")
    listener.close()


# --- the one mapping, for urllib3's own exceptions ----------------------------------------------

ENDPOINT = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"


@pytest.mark.parametrize(
    ("error", "message", "retryable", "phase"),
    [
        (urllib3.exceptions.SSLError(ssl.SSLCertVerificationError(1, "x")), "TLS handshake with 127.0.0.1 failed",
         False, "TLS"),
        (urllib3.exceptions.ConnectTimeoutError(None, "timed out"), "connecting to 127.0.0.1 timed out", True,
         "connect"),
        (urllib3.exceptions.ReadTimeoutError(None, ENDPOINT, "Read timed out."),  # type: ignore[arg-type]
         "the read timeout passed while waiting for the response headers from 127.0.0.1; "
         "the request may have reached the server", True, "wait for headers"),
        (urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()),
         "the connection closed while waiting for the response headers from 127.0.0.1; "
         "the request may have reached the server", True, "wait for headers"),
        (urllib3.exceptions.NewConnectionError(None, "refused"), "cannot connect to 127.0.0.1", True,  # type: ignore[arg-type]
         "connect"),
        (urllib3.exceptions.ProxyError("Unable to connect to proxy", ConnectionRefusedError()),
         "cannot connect to 127.0.0.1 (connection refused)", True, "connect"),
        (urllib3.exceptions.LocationParseError("x"), "HTTP request to 127.0.0.1 failed: LocationParseError", False,
         "connect"),
    ],
    ids=["tls", "connect-timeout", "read-timeout", "dropped-after-send", "new-connection", "proxy", "other"],
)
def test_urllib3_failures_become_typed_transport_errors(
    error: Exception, message: str, retryable: bool, phase: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib3's failures (a proxied origin's) read as requests' do: the host, the phase, the retryable flag, no cause."""
    transport = HttpTransport(deadline=None)
    route = transport._pools.route(urlsplit(ENDPOINT), ENDPOINT)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(route, "send", fail)
    with pytest.raises(TransportError) as caught:
        transport.request("POST", ENDPOINT, body=b"<x/>")
    assert caught.value.message.startswith(message)
    assert (caught.value.host, caught.value.phase, caught.value.retryable) == ("127.0.0.1", phase, retryable)
    assert caught.value.__cause__ is None


def _failed(phase: str, cause: BaseException) -> _errors.Failed:
    failed = _errors.Failed(phase)
    failed.__cause__ = cause
    return failed


@pytest.mark.parametrize(
    ("error", "message", "retryable", "phase"),
    [
        (_failed("TLS", ssl.SSLCertVerificationError(1, "x")), "TLS handshake with h failed", False, "TLS"),
        (_failed("connect", TimeoutError()), "connecting to h timed out", True, "connect"),
        (_failed("TLS", TimeoutError()), "connecting to h timed out", True, "connect"),
        (_failed("wait for headers", TimeoutError()),
         "the read timeout passed while waiting for the response headers from h; the request may have reached "
         "the server", True, "wait for headers"),
        (_failed("connect", ConnectionRefusedError()), "cannot connect to h (connection refused)", True, "connect"),
        (_failed("connect", socket.gaierror(-2, "Name or service not known")),
         "cannot connect to h (the host name does not resolve)", True, "connect"),
        (_failed("send", BrokenPipeError()),
         "the connection closed while sending the request to h; the request may have reached the server", True,
         "send"),
        (_failed("wait for headers", http.client.RemoteDisconnected("gone")),
         "the connection closed while waiting for the response headers from h; the request may have reached the "
         "server", True, "wait for headers"),
        (_failed("send", ssl.SSLEOFError()),
         "the connection closed while sending the request to h; the request may have reached the server", True,
         "send"),
        (_failed("connect", RuntimeError("odd")), "HTTP request to h failed: Failed", False, "connect"),
    ],
    ids=["tls-verdict", "connect-timeout", "handshake-timeout", "read-timeout", "refused", "dns", "broken-pipe",
         "dropped-after-send", "tls-after-handshake", "other"],
)
def test_direct_connection_failures_become_typed_transport_errors(
    error: _errors.Failed, message: str, retryable: bool, phase: str
) -> None:
    """A direct connection's failure reads by the phase it happened in and the standard library's exception behind it."""
    mapped = _errors.request_error(error, "h", None, None)
    assert mapped.message.startswith(message)
    assert (mapped.host, mapped.phase, mapped.retryable) == ("h", phase, retryable)


def test_refused_connection_is_a_retryable_connect_error() -> None:
    """A port nobody listens on is a retryable TransportError in the connect phase, naming the refusal."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(TransportError) as caught:
        HttpTransport(deadline=None).request("POST", f"http://127.0.0.1:{port}/x", body=b"<x/>")
    assert caught.value.message == "cannot connect to 127.0.0.1 (connection refused)"
    assert (caught.value.phase, caught.value.retryable) == ("connect", True)


def test_server_closing_after_the_request_is_a_closed_connection() -> None:
    """A server that reads the request and hangs up without answering: retryable, may have reached the server."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    with pytest.raises(TransportError) as caught:
        HttpTransport(deadline=None).request("POST", f"http://127.0.0.1:{port}/x", body=b"<x/>")
    thread.join()
    listener.close()
    assert caught.value.phase == "wait for headers" and caught.value.retryable
    assert "may have reached the server" in caught.value.message


def test_tls_error_after_the_handshake_is_a_closed_connection() -> None:
    """An SSL error once the request is being sent is a retryable closed connection, not a certificate verdict."""
    watch = Watch(0.0)
    watch.connection, watch.phase = object(), "send"  # type: ignore[assignment]
    error = _errors.request_error(urllib3.exceptions.SSLError("bad record mac"), "h", watch, 1.0)
    assert error.message == "the connection closed while sending the request to h; the request may have reached the server"
    assert error.retryable


# --- trust store ---------------------------------------------------------------------------------


def test_a_bundle_directory_is_loaded_as_a_capath(tmp_path: Path) -> None:
    """REQUESTS_CA_BUNDLE naming a directory loads it as OpenSSL's hashed directory, certificates verified."""
    context = _pools.system_trust_context(("REQUESTS_CA_BUNDLE", str(tmp_path)))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_bundle_removed_before_the_first_request_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without prepare(), a bundle that vanished is found at the first https request, as a ConfigurationError."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "gone.pem"))
    transport = HttpTransport()
    transport.prepare(["http://127.0.0.1:9/x"])  # no https: not checked
    with pytest.raises(ConfigurationError, match="REQUESTS_CA_BUNDLE names a CA bundle that does not exist"):
        transport.request("GET", "https://sut-soap.invalid/")
    with pytest.raises(ConfigurationError, match="does not exist"):
        transport.prepare(["https://sut-soap.invalid/"])


def test_a_tls_answer_reports_its_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer over TLS carries the protocol version the connection negotiated."""
    import ipaddress

    from cryptography import x509
    from support import make_cert

    cert, key = make_cert(tmp_path, "v", san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n<ok>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    transport = HttpTransport(timeout=5)
    response = transport.request("GET", f"https://127.0.0.1:{port}/")
    thread.join(5)
    listener.close()
    assert response.content == b"<ok>" and response.tls_version in ("TLSv1.2", "TLSv1.3")
    context = transport._tls
    transport._pools.route(urlsplit("https://other.invalid/"), "https://other.invalid/")
    assert transport._tls is context  # one trust store per transport, built once
