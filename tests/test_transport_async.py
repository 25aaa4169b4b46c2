"""The asyncio transport (AiohttpTransport) against real loopback servers: each guarantee of the sync transport."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import logging
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from support import (
    RAW_BODY,
    DrippingServer,
    LogCanary,
    RawServer,
    TlsServer,
    collect,
    error_texts,
    fork_child,
    http_reply,
    make_cert,
    unanswered_port,
    watch_logs,
)

from sut_soap.errors import ConfigurationError, ProtocolError, TransportError
from sut_soap.transport import AiohttpTransport, AsyncTransport, HttpResponse, _aio

pytestmark = [pytest.mark.network]
aio = pytest.mark.asyncio

_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
        "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")
REMOTE = "https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc"
SECRET_HEADER = "canary-header-secret-a10"
SECRET_BODY = b"<ApplicationToken>canary-client-secret-a10</ApplicationToken>"
SECRET_ANSWER = b"<Token>canary-jwt-answer-a10</Token>"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[RawServer]:
    raw = RawServer()
    yield raw
    raw.close()


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[Callable[..., TlsServer]]:
    servers: list[TlsServer] = []

    def start(name: str, *, expired: bool = False) -> TlsServer:
        cert, key = make_cert(tmp_path, name, san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")), expired=expired)
        tls_server = TlsServer(cert, key)
        tls_server.cert = cert  # type: ignore[attr-defined]
        servers.append(tls_server)
        return tls_server

    yield start
    for tls_server in servers:
        tls_server.close()


async def post(transport: AiohttpTransport, url: str, **kwargs: Any) -> HttpResponse:
    try:
        return await transport.request("POST", url, body=b"<x/>", **kwargs)
    finally:
        await transport.aclose()


def refused_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


# --- the seam and the connections -----------------------------------------------------------------


@aio
async def test_answers_come_whole_on_one_kept_connection(server: RawServer) -> None:
    """An AsyncTransport returning HttpResponse values; requests one after another share one connection."""
    transport = AiohttpTransport()
    assert isinstance(transport, AsyncTransport)
    responses = [await transport.request("POST", server.url, body=b"<x/>") for _ in range(3)]
    await transport.aclose()
    assert [(r.status_code, r.content, r.reason, r.tls_version) for r in responses] == [(200, RAW_BODY, "OK", None)] * 3
    assert responses[0].headers["content-length"] == str(len(RAW_BODY))
    assert server.connections == 1
    assert repr(transport) == "AiohttpTransport(timeout=(5.0, 10.0), deadline=30.0, pool_size=256)"


@aio
async def test_connection_close_answer_is_not_kept(server: RawServer) -> None:
    """An answer marked Connection: close leaves nothing to reuse; the next request connects again."""
    server.default = http_reply(close=True)
    transport = AiohttpTransport()
    assert (await transport.request("GET", server.url)).content == RAW_BODY
    assert (await post(transport, server.url)).content == RAW_BODY
    assert server.connections == 2


@aio
async def test_default_headers_are_the_sync_transports(server: RawServer) -> None:
    """User-Agent sut-soap/<version> and Accept-Encoding gzip, deflate; no Content-Type added; a caller's header wins."""
    transport = AiohttpTransport()
    await transport.request("POST", server.url, body=b"<x/>")
    await post(transport, server.url, headers={"user-agent": "mine/1", "Content-Type": "text/xml"})
    first, second = (request.split(b"\r\n\r\n")[0].lower() for request in server.requests)
    assert b"\r\naccept-encoding: gzip, deflate" in first and b"\r\nuser-agent: sut-soap/" in first
    assert b"content-type" not in first
    assert b"\r\nuser-agent: mine/1" in second and b"sut-soap/" not in second and b"content-type: text/xml" in second


@aio
async def test_cookies_are_never_kept(server: RawServer) -> None:
    """A Set-Cookie answer is not sent back on the next request."""
    server.default = http_reply(headers=(("Set-Cookie", "session=abc; Path=/"),))
    transport = AiohttpTransport()
    await transport.request("POST", server.url, body=b"<x/>")
    await post(transport, server.url)
    assert b"cookie" not in server.requests[1].lower()


@aio
async def test_redirect_is_returned_not_followed(server: RawServer) -> None:
    """A 302 comes back as it is; nothing is sent to its Location."""
    other = RawServer()
    try:
        server.default = b"HTTP/1.1 302 Found\r\nLocation: " + other.url.encode() + b"\r\nContent-Length: 0\r\n\r\n"
        response = await post(AiohttpTransport(), server.url)
    finally:
        other.close()
    assert (response.status_code, response.headers["Location"]) == (302, other.url)
    assert len(server.requests) == 1 and other.connections == 0


@aio
async def test_idempotent_request_is_not_retried_on_a_dropped_connection(server: RawServer) -> None:
    """A GET on a kept connection the server hangs up on fails; aiohttp's silent retry is off."""
    server.replies = [http_reply(), None]
    transport = AiohttpTransport()
    await transport.request("GET", server.url)
    with pytest.raises(TransportError) as caught:
        await transport.request("GET", server.url)
    await transport.aclose()
    assert caught.value.phase == "wait for headers" and caught.value.retryable
    assert len(server.requests) == 2


def test_built_outside_a_loop_and_used_in_two_loops(server: RawServer) -> None:
    """Built with no loop running; each event loop gets connections of its own, closed by that loop's aclose()."""
    transport = AiohttpTransport()

    async def once(close: bool) -> bytes:
        content = (await transport.request("POST", server.url, body=b"<x/>")).content
        if close:
            await transport.aclose()
        return content

    assert asyncio.run(once(close=False)) == asyncio.run(once(close=True)) == RAW_BODY
    assert server.connections == 2 and transport._session is None and transport._retired == []


@aio
async def test_larger_pool_replaces_the_session(server: RawServer) -> None:
    """ensure_pool beyond the pool's size opens a larger pool from the next request; a smaller size changes nothing."""
    transport = AiohttpTransport(pool_size=4)
    await transport.request("POST", server.url, body=b"<x/>")
    first = transport._session
    transport.ensure_pool(2)
    assert transport._session is first
    transport.ensure_pool(300)
    transport.ensure_pool(400)
    await transport.request("POST", server.url, body=b"<x/>")
    assert transport._session is not None and transport._session.connector is not None
    assert transport._session.connector.limit == 400 and transport.pool_size == 400
    await transport.aclose()
    assert first is not None and first.closed and server.connections == 2


@aio
async def test_pool_limits_connections_at_once(server: RawServer) -> None:
    """Beyond pool_size requests wait for a connection rather than open more."""
    transport = AiohttpTransport(pool_size=2)
    answers = await asyncio.gather(*(transport.request("POST", server.url, body=b"<x/>") for _ in range(6)))
    await transport.aclose()
    assert [a.content for a in answers] == [RAW_BODY] * 6 and server.connections == 2


@aio
async def test_after_fork_the_child_opens_its_own_connections(server: RawServer) -> None:
    """A child forked after a request never uses the parent's connection; the parent's stays open and reused."""
    transport = AiohttpTransport()
    await transport.request("POST", server.url, body=b"<x/>")

    def child() -> list[Any]:
        fresh = transport._session is None
        got: list[bytes] = []
        thread = threading.Thread(target=lambda: got.append(asyncio.run(post(transport, server.url)).content))
        thread.start()
        thread.join(5)
        return [fresh, got == [RAW_BODY]]

    assert collect(fork_child(child)) == [[True, True]]
    assert (await post(transport, server.url)).content == RAW_BODY
    assert server.connections == 2


@aio
async def test_fork_reset_sets_the_parents_session_aside_untouched(server: RawServer) -> None:
    """The at-fork reset keeps the parent's sessions open and referenced; the next request opens a new one."""
    transport = AiohttpTransport()
    await transport.request("POST", server.url, body=b"<x/>")
    parent = transport._session
    transport._reset_after_fork()
    assert parent is not None and parent in _aio._LEFT_BY_PARENT and not parent.closed
    await post(transport, server.url)
    assert server.connections == 2
    _aio._LEFT_BY_PARENT.remove(parent)
    await parent.close()


# --- size and content codings -----------------------------------------------------------------------


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@aio
@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("gzip", lambda data: gzip.compress(data[:100]) + gzip.compress(data[100:])),
        ("deflate", zlib.compress),
        ("deflate", _deflate_raw),
        ("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),
        ("identity", lambda data: data),
    ],
    ids=["gzip", "x-gzip", "two-members", "deflate-zlib", "deflate-raw", "two-stages", "identity"],
)
async def test_content_codings_decode(server: RawServer, coding: str, encode: Callable[[bytes], bytes]) -> None:
    """gzip (several members too), deflate (zlib or raw), identity and stacked codings decode to the body."""
    server.default = http_reply(encode(RAW_BODY), headers=(("Content-Encoding", coding),))
    assert (await post(AiohttpTransport(), server.url)).content == RAW_BODY


@aio
async def test_large_plain_body_is_read_whole(server: RawServer) -> None:
    """A body larger than one read step, under the cap, arrives whole."""
    server.default = http_reply(b"y" * 300_000)
    assert (await post(AiohttpTransport(), server.url)).content == b"y" * 300_000


@aio
@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("br", b"\x8b\x02\x80hello\x03"),
        ("gzip", gzip.compress(RAW_BODY)[:40]),
        ("gzip", b"this is not gzip at all"),
        ("deflate", zlib.compress(RAW_BODY) + b"more"),
        ("gzip, gzip, gzip, gzip, gzip, gzip", RAW_BODY),
    ],
    ids=["unknown-coding", "truncated", "not-gzip", "data-after-deflate", "six-stages"],
)
async def test_undecodable_content_is_a_protocol_error(server: RawServer, coding: str, body: bytes) -> None:
    """A coding it does not know, a broken or truncated stream, too many stages: a ProtocolError."""
    server.default = http_reply(body, headers=(("Content-Encoding", coding),))
    with pytest.raises(ProtocolError) as caught:
        await post(AiohttpTransport(), server.url)
    assert caught.value.message == "the answer's Content-Encoding from 127.0.0.1 could not be decoded"


@aio
@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(b"\0" * (16 << 20))),
        ("gzip, gzip", gzip.compress(gzip.compress(b"\0" * (16 << 20)))),
        ("deflate", zlib.compress(b"\0" * (16 << 20))),
        ("deflate", _deflate_raw(b"\0" * (16 << 20))),
    ],
    ids=["gzip", "gzip-stacked", "deflate-zlib", "deflate-raw"],
)
async def test_compression_bomb_stops_at_the_cap(server: RawServer, coding: str, body: bytes) -> None:
    """16 MiB of zeros compressed (once or twice) stop at a 64 KiB cap, counted after decoding."""
    server.default = http_reply(body, headers=(("Content-Encoding", coding),))
    with pytest.raises(ProtocolError) as caught:
        await post(AiohttpTransport(), server.url, max_bytes=64 * 1024)
    assert caught.value.message == "the answer from 127.0.0.1 is larger than 65536 bytes; reading stopped"


@aio
async def test_chunked_answer_over_the_cap_stops(server: RawServer) -> None:
    """A chunked answer (no length declared) stops at the transport's cap."""
    chunk = b"z" * 4000
    server.default = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 5 + b"0\r\n\r\n")
    with pytest.raises(ProtocolError) as caught:
        await post(AiohttpTransport(max_response_bytes=10_000), server.url)
    assert "larger than 10000 bytes" in caught.value.message and caught.value.status == 200


@aio
async def test_declared_length_over_the_cap_is_refused_before_reading(server: RawServer) -> None:
    """A Content-Length above the cap is refused at once, without waiting for a body that never comes."""
    server.default = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\nsmall"
    started = time.monotonic()
    with pytest.raises(ProtocolError) as caught:
        await post(AiohttpTransport(), server.url)
    assert "larger than 1048576 bytes" in caught.value.message and time.monotonic() - started < 2


# --- TLS ------------------------------------------------------------------------------------------------


@aio
async def test_private_ca_from_the_environment_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With REQUESTS_CA_BUNDLE naming the private CA, the handshake verifies; requests share the connection."""
    cert, key = make_cert(tmp_path, "keep", san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls_server = RawServer(tls=context)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    transport = AiohttpTransport()
    try:
        transport.prepare([tls_server.url, None])
        responses = [await transport.request("POST", tls_server.url, body=b"<x/>") for _ in range(2)]
        await transport.aclose()
    finally:
        tls_server.close()
    assert [r.content for r in responses] == [RAW_BODY] * 2 and responses[1].tls_version in ("TLSv1.2", "TLSv1.3")
    assert tls_server.connections == 1


@aio
async def test_verify_names_a_ca_bundle(tls: Callable[..., TlsServer]) -> None:
    """verify= with the path of the private CA verifies against it alone."""
    tls_server = tls("own-bundle")
    response = await post(AiohttpTransport(verify=str(tls_server.cert)), tls_server.url)  # type: ignore[attr-defined]
    assert response.status_code == 503


@aio
@pytest.mark.parametrize(("expired", "reason"), [(False, "self-signed certificate"), (True, "expired")])
async def test_tls_failure_is_final_and_sends_nothing(tls: Callable[..., TlsServer], monkeypatch: pytest.MonkeyPatch,
                                                      expired: bool, reason: str) -> None:
    """An untrusted or expired certificate: a non-retryable TLS error with OpenSSL's verdict; no request bytes sent."""
    tls_server = tls("bad", expired=expired)
    if expired:
        monkeypatch.setenv("CURL_CA_BUNDLE", str(tls_server.cert))  # type: ignore[attr-defined]
    with pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(), tls_server.url)
    error = caught.value
    assert (error.phase, error.retryable, error.host) == ("TLS", False, "127.0.0.1")
    assert error.message.startswith("TLS handshake with 127.0.0.1 failed") and reason in error.message
    assert tls_server.received == b""


@aio
async def test_plain_http_answer_to_the_handshake_fails_it() -> None:
    """A server that answers the TLS ClientHello in plain HTTP fails the handshake: final, phase TLS."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_in_plain_http() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer_in_plain_http, daemon=True)
    thread.start()
    try:
        with pytest.raises(TransportError) as caught:
            await post(AiohttpTransport(), f"https://127.0.0.1:{listener.getsockname()[1]}/svc")
    finally:
        thread.join(2)
        listener.close()
    assert caught.value.phase == "TLS" and not caught.value.retryable
    assert caught.value.message.startswith("TLS handshake with 127.0.0.1 failed")


@aio
async def test_missing_ca_bundle_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A CA bundle that does not exist is a ConfigurationError naming the variable, at prepare and at a request."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "nowhere.pem"))
    transport = AiohttpTransport()
    with pytest.raises(ConfigurationError, match="REQUESTS_CA_BUNDLE names a CA bundle that does not exist"):
        transport.prepare(["https://127.0.0.1:9/svc"])
    with pytest.raises(ConfigurationError, match="REQUESTS_CA_BUNDLE"):
        await post(transport, "https://127.0.0.1:9/svc")
    with pytest.raises(ConfigurationError, match="verify= names a CA bundle"):
        AiohttpTransport(verify=str(tmp_path / "none.pem")).prepare(["https://127.0.0.1:9/svc"])


@aio
async def test_verify_off_towards_loopback_is_allowed(tls: Callable[..., TlsServer]) -> None:
    """verify=False towards a loopback https host skips the check (a local test server)."""
    tls_server = tls("loopback")
    transport = AiohttpTransport(verify=False)
    transport.prepare([tls_server.url])
    assert (await post(transport, tls_server.url)).status_code == 503


@aio
async def test_verify_off_towards_a_remote_host_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    """verify=False towards a remote https host is refused unless prepare() allowed it, then warned about."""
    transport = AiohttpTransport(verify=False)
    with pytest.raises(ConfigurationError, match=r"verify=False: the certificate of sod\.superoffice\.com"):
        transport.prepare([REMOTE])
    with pytest.raises(ConfigurationError, match=r"allow_insecure_tls=True\) accepts the risk"):
        await transport.request("POST", REMOTE, body=b"<x/>")
    with caplog.at_level(logging.WARNING, logger="sut_soap.transport"):
        transport.prepare([REMOTE], allow_insecure_tls=True)
    assert "TLS certificate verification is OFF for sod.superoffice.com" in caplog.text
    assert transport._tls_for("sod.superoffice.com") is False


# --- proxies from the environment -------------------------------------------------------------------


@aio
async def test_proxy_from_the_environment_is_used_with_its_credentials(server: RawServer,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY (with user:password) carries an http request in absolute form, with Proxy-Authorization."""
    monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{server.url.split(':')[2].split('/')[0]}")
    response = await post(AiohttpTransport(), "http://upstream.invalid/svc")
    assert response.content == RAW_BODY
    head = server.requests[0].split(b"\r\n\r\n")[0]
    assert head.startswith(b"POST http://upstream.invalid/svc HTTP/1.1\r\n")
    assert b"\r\nProxy-Authorization: Basic dXNlcjpwQHNz" in head  # user:p@ss


@aio
async def test_proxy_is_read_once_per_origin(server: RawServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy prepare() read stays the origin's after the environment changes."""
    port = server.url.split(":")[2].split("/")[0]
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    transport = AiohttpTransport()
    transport.prepare(["http://upstream.invalid/svc"])
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{refused_port()}")
    assert (await post(transport, "http://upstream.invalid/svc")).content == RAW_BODY
    assert server.requests[0].startswith(b"POST http://upstream.invalid/svc ")


@aio
async def test_no_proxy_goes_direct(server: RawServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host in NO_PROXY is reached directly, not through HTTP_PROXY."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{refused_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert (await post(AiohttpTransport(), server.url)).content == RAW_BODY
    assert server.requests[0].startswith(b"POST /svc ")


@aio
async def test_proxy_that_is_not_http_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SOCKS proxy in the environment is a ConfigurationError naming its scheme only."""
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:secret@127.0.0.1:1080")
    with pytest.raises(ConfigurationError) as caught:
        await post(AiohttpTransport(), REMOTE)
    assert "(socks5://...)" in caught.value.message and "secret" not in caught.value.message


# --- the deadline ------------------------------------------------------------------------------------


@aio
@pytest.mark.parametrize(("mode", "phase"), [("headers", "wait for headers"), ("body", "body")])
async def test_dripping_server_is_cut_at_the_deadline(mode: str, phase: str) -> None:
    """One byte every 50 ms (each within the read timeout): cut within a few ms of the deadline, naming the phase."""
    with DrippingServer(mode, interval=0.05) as dripping:
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await post(AiohttpTransport(timeout=(1, 1)), dripping.url, deadline=0.4)
        elapsed = time.monotonic() - started
    error = caught.value
    assert 0.4 <= elapsed < 0.5
    assert (error.phase, error.retryable, error.status) == (phase, True, 200 if mode == "body" else None)
    assert error.message.startswith("no complete answer from 127.0.0.1 within the deadline (0.4 s for this request)")
    assert ("may have reached the server" in error.message) == (mode == "headers")


@aio
async def test_silent_tls_handshake_is_cut_in_the_tls_phase() -> None:
    """A server that accepts the TCP connection and never answers the TLS handshake: cut in the TLS phase."""
    with DrippingServer("silent") as silent, pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(timeout=(5, 5)), silent.url.replace("http://", "https://"), deadline=0.3)
    assert caught.value.phase == "TLS" and caught.value.retryable
    assert "cut while doing the TLS handshake with 127.0.0.1" in caught.value.message


@aio
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_connect_that_hangs_is_cut_in_the_connect_phase(scheme: str) -> None:
    """A TCP handshake that never completes is cut at the deadline, in the connect phase, nothing sent."""
    with unanswered_port() as port, pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(timeout=(5, 5)), f"{scheme}://127.0.0.1:{port}/svc", deadline=0.3)
    assert caught.value.phase == "connect" and "may have reached" not in caught.value.message


@aio
async def test_spent_deadline_sends_nothing(server: RawServer) -> None:
    """deadline=0 raises at once, retryable, without connecting."""
    with pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(), server.url, deadline=0)
    assert caught.value.retryable and "deadline passed before the request to 127.0.0.1 was sent" in caught.value.message
    assert server.connections == 0


@aio
async def test_callers_cancellation_passes_through() -> None:
    """A task cancelled by its caller ends with CancelledError, not a TransportError."""
    with DrippingServer("headers", interval=0.05) as dripping:
        transport = AiohttpTransport()
        task = asyncio.ensure_future(transport.request("POST", dripping.url, body=b"<x/>", deadline=5))
        assert await asyncio.to_thread(dripping.wait_for_requests)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await transport.aclose()


class _CancelledTwice(AiohttpTransport):
    """A transport whose deadline fires just as the caller cancels too."""

    @staticmethod
    def _cut(task: asyncio.Task[Any], flight: Any) -> None:
        AiohttpTransport._cut(task, flight)
        task.cancel()


@aio
async def test_callers_cancellation_at_the_deadline_is_not_swallowed() -> None:
    """When the caller cancels at the deadline's moment, the cancellation wins over the deadline's error."""
    with DrippingServer("headers", interval=0.05) as dripping:
        transport = _CancelledTwice()
        task = asyncio.ensure_future(transport.request("POST", dripping.url, body=b"<x/>", deadline=0.2))
        with pytest.raises(asyncio.CancelledError):
            await task
        await transport.aclose()


# --- errors ------------------------------------------------------------------------------------------


@aio
async def test_refused_connection_is_retryable_and_names_the_cause() -> None:
    """Connection refused: retryable, phase connect, nothing sent."""
    with pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(), f"http://127.0.0.1:{refused_port()}/svc")
    error = caught.value
    assert (error.message, error.phase, error.retryable) == (
        "cannot connect to 127.0.0.1 (connection refused)", "connect", True)


@aio
async def test_connect_timeout_is_retryable() -> None:
    """A connect slower than the connect timeout (no deadline) is a retryable connect timeout."""
    with unanswered_port() as port, pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(timeout=(0.2, 5), deadline=None), f"http://127.0.0.1:{port}/svc")
    assert (caught.value.message, caught.value.phase) == ("connecting to 127.0.0.1 timed out", "connect")


@aio
@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("silent", "the read timeout passed while waiting for the response headers from 127.0.0.1; the request may "
                   "have reached the server"),
        ("body", "127.0.0.1 stopped sending the response body within the read timeout"),
    ],
)
async def test_read_timeout_names_the_phase(mode: str, message: str) -> None:
    """A read slower than the read timeout (no deadline): retryable, in the phase it waited in."""
    with DrippingServer(mode, interval=1.0) as slow, pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(timeout=(1, 0.3), deadline=None), slow.url)
    assert caught.value.message == message and caught.value.retryable


@aio
async def test_server_hanging_up_before_answering(server: RawServer) -> None:
    """No answer at all: the connection closed while waiting for headers, may have reached the server."""
    server.replies = [None]
    with pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(), server.url)
    assert caught.value.message == ("the connection closed while waiting for the response headers from 127.0.0.1; "
                                    "the request may have reached the server")


@aio
async def test_body_cut_short_is_a_broken_connection(server: RawServer) -> None:
    """A body shorter than its Content-Length, then the connection closed: retryable, phase body, status kept."""
    server.default = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort"
    with pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(), server.url)
    error = caught.value
    assert error.message == "the connection broke while reading the response body from 127.0.0.1"
    assert (error.phase, error.status, error.retryable) == ("body", 200, True)


@aio
@pytest.mark.parametrize("url", ["ftp://127.0.0.1/svc", "http:///svc", "http://127.0.0.1:port/svc", "http://[::1/svc"])
async def test_url_that_is_not_http_is_refused(url: str) -> None:
    """A URL that is not an absolute http(s) URL: a non-retryable InvalidURL error, nothing sent."""
    with pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(), url)
    assert caught.value.message.endswith("failed: InvalidURL") and not caught.value.retryable


@aio
async def test_header_the_library_refuses_names_only_the_exceptions_type(server: RawServer) -> None:
    """A header value aiohttp will not send (a line break in it): non-retryable, the value nowhere in the error."""
    refused = {"X-Partner": "canary-value\r\nInjected: 1"}  # the traceback shows the line that sends it: not this one
    with pytest.raises(TransportError) as caught:
        await post(AiohttpTransport(), server.url, headers=refused)
    assert caught.value.message == "HTTP request to 127.0.0.1 failed: ValueError" and not caught.value.retryable
    assert not any("canary-value" in text for text in error_texts(caught.value)) and server.requests == []


def test_unknown_failure_names_only_its_type() -> None:
    """An aiohttp failure of no known kind: non-retryable, naming only the exception's type."""
    error = AiohttpTransport._mapped(aiohttp.ClientError("carrying canary-text"), "h.example", None, "connect")
    assert isinstance(error, TransportError)
    assert (error.message, error.retryable) == ("HTTP request to h.example failed: ClientError", False)


# --- secrets -----------------------------------------------------------------------------------------


@pytest.fixture
def canary() -> Iterator[LogCanary]:
    yield from watch_logs(SECRET_HEADER, SECRET_BODY.decode(), SECRET_ANSWER.decode(), "canary-client-secret-a10",
                          "canary-jwt-answer-a10")


@aio
async def test_logs_and_errors_carry_no_secret(server: RawServer, canary: LogCanary,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG on every logger (aiohttp's and asyncio's too): method, host, status, time; no header or body."""
    server.replies = [http_reply(SECRET_ANSWER), b"NOT HTTP AT ALL\r\n\r\n"]
    transport = AiohttpTransport()
    headers = {"X-Partner-Secret": SECRET_HEADER, "Content-Type": "text/xml"}
    with caplog.at_level(logging.DEBUG):
        response = await transport.request("POST", server.url, body=SECRET_BODY, headers=headers)
        with pytest.raises(TransportError) as caught:
            await transport.request("POST", server.url, body=SECRET_BODY, headers=headers)
        await transport.aclose()
    assert response.content == SECRET_ANSWER and SECRET_ANSWER.decode() not in repr(response)
    assert "POST 127.0.0.1: HTTP 200 in" in caplog.text
    assert caught.value.phase == "wait for headers"
    canary.check(caplog.text, *error_texts(caught.value))
