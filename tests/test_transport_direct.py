"""The transport's own http.client connections: keep-alive, stale and closed connections, one write, content codings."""

from __future__ import annotations

import gzip
import ipaddress
import ssl
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from support import RAW_BODY, RawServer, http_reply, make_cert

from sut_soap.errors import ProtocolError, TransportError
from sut_soap.transport import HttpTransport
from sut_soap.transport._direct import DirectPool, _Connection

BODY = RAW_BODY


@pytest.fixture
def scripted() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


def _post(transport: HttpTransport, server: RawServer, **kwargs: Any) -> bytes:
    return transport.request("POST", server.url, body=b"<x/>", **kwargs).content


# --- keep-alive ---------------------------------------------------------------------------------


def test_answers_read_to_the_end_keep_one_connection(scripted: RawServer) -> None:
    """Requests one after another share one connection while each answer is read to its end."""
    transport = HttpTransport()
    assert [_post(transport, scripted) for _ in range(3)] == [BODY] * 3
    assert scripted.connections == 1


def test_chunked_answers_keep_the_connection_too(scripted: RawServer) -> None:
    """An answer in chunks, read to its last chunk, leaves the connection reusable."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<a/>x\r\n3\r\nyz!\r\n0\r\n\r\n"
    scripted.default = chunked
    transport = HttpTransport()
    assert [_post(transport, scripted) for _ in range(2)] == [b"<a/>xyz!"] * 2
    assert scripted.connections == 1


def test_idle_connection_the_server_closed_is_not_reused(scripted: RawServer) -> None:
    """A connection the server hung up on while idle is dropped before a request, not written to."""
    scripted.hang_up_after = 1
    transport = HttpTransport()
    first = _post(transport, scripted)
    for thread in scripted.threads:
        thread.join(2)  # the server has hung up: the idle socket reads as closed
    assert first == _post(transport, scripted) == BODY
    assert scripted.connections == 2


def test_connection_close_answer_is_not_kept(scripted: RawServer) -> None:
    """An answer marked Connection: close leaves nothing in the pool; the next request connects again."""
    scripted.default = http_reply(close=True)
    transport = HttpTransport()
    assert _post(transport, scripted) == _post(transport, scripted) == BODY
    assert scripted.connections == 2


def test_answer_not_read_to_its_end_closes_its_connection(scripted: RawServer) -> None:
    """An answer over the cap stops reading and closes its connection; the next request gets a new one."""
    transport = HttpTransport()
    with pytest.raises(ProtocolError):
        _post(transport, scripted, max_bytes=100)
    assert _post(transport, scripted) == BODY
    assert scripted.connections == 2


def test_pool_keeps_at_most_maxsize_idle_connections(scripted: RawServer) -> None:
    """Connections given back beyond maxsize are closed, not kept."""
    pool = DirectPool("127.0.0.1", int(scripted.url.split(":")[2].split("/")[0]), maxsize=1, context=None)
    first = pool.send("GET", "/svc", None, {}, (2.0, 2.0))
    second = pool.send("GET", "/svc", None, {}, (2.0, 2.0))
    for sent in (first, second):
        while sent.raw.read1(65536):
            pass
        sent.close()
    assert len(pool._idle) == 1 and scripted.connections == 2
    assert second.raw.connection.sock is None  # the one beyond maxsize was closed
    pool.close()
    assert pool._idle == [] and first.raw.connection.sock is None


def test_connection_given_back_to_a_closed_pool_is_closed(scripted: RawServer) -> None:
    """A connection in use when its pool closes is closed when given back."""
    pool = DirectPool("127.0.0.1", int(scripted.url.split(":")[2].split("/")[0]), maxsize=4, context=None)
    sent = pool.send("GET", "/svc", None, {}, (2.0, 2.0))
    pool.close()
    while sent.raw.read1(65536):
        pass
    sent.close()
    assert pool._idle == [] and sent.raw.connection.sock is None


def test_server_hanging_up_instead_of_answering_closes_the_connection(scripted: RawServer) -> None:
    """No answer on a kept connection is a retryable TransportError; the next request connects afresh."""
    transport = HttpTransport()
    _post(transport, scripted)
    scripted.replies = [None]
    with pytest.raises(TransportError) as caught:
        _post(transport, scripted)
    assert caught.value.phase == "wait for headers" and caught.value.retryable
    assert _post(transport, scripted) == BODY
    assert scripted.connections == 2


def test_tls_connection_is_verified_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over TLS (the CA bundle trusted, no deadline watching) requests share one verified connection."""
    cert, key = make_cert(tmp_path, "keep", san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = RawServer(tls=context)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    transport = HttpTransport(deadline=None)
    try:
        responses = [transport.request("POST", server.url, body=b"<x/>") for _ in range(2)]
    finally:
        server.close()
    assert [r.content for r in responses] == [BODY] * 2 and responses[0].tls_version in ("TLSv1.2", "TLSv1.3")
    assert server.connections == 1


def test_default_port_follows_the_scheme() -> None:
    """A URL without a port reaches 80 over http and 443 over https."""
    assert DirectPool("example.invalid", None, maxsize=1, context=None).port == 80
    assert DirectPool("example.invalid", None, maxsize=1, context=ssl.create_default_context()).port == 443


# --- one write per request ------------------------------------------------------------------------


class _Wire:
    """Stands in for a connected socket and records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


@pytest.mark.parametrize("body", [b"<x/>", b""], ids=["body", "empty-body"])
def test_request_with_a_body_is_one_write(body: bytes) -> None:
    """The header block is held and written together with the body (or alone, when the body is empty)."""
    conn = _Connection("127.0.0.1", 9)
    wire = _Wire()
    conn.sock = wire  # type: ignore[assignment]
    conn.holding = True
    conn.request("POST", "/svc", body=body, headers={"Content-Type": "text/xml"})
    if conn.held is not None:
        conn.send(b"")
    assert len(wire.writes) == 1
    assert wire.writes[0].startswith(b"POST /svc HTTP/1.1\r\n") and wire.writes[0].endswith(b"\r\n\r\n" + body)


def test_empty_body_request_reaches_the_server_whole(scripted: RawServer) -> None:
    """A POST with an empty body is sent (headers flushed) and answered."""
    transport = HttpTransport()
    assert transport.request("POST", scripted.url, body=b"").content == BODY
    assert b"\r\nContent-Length: 0\r\n" in scripted.requests[-1] and scripted.requests[-1].endswith(b"\r\n\r\n")


# --- content codings ------------------------------------------------------------------------------


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("gzip", lambda data: gzip.compress(data[:100]) + gzip.compress(data[100:])),
        ("deflate", zlib.compress),
        ("deflate", _deflate_raw),
        ("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),
        ("identity", lambda data: data),
        ("identity, gzip", gzip.compress),
    ],
    ids=["gzip", "x-gzip", "upper-case", "two-members", "deflate-zlib", "deflate-raw", "two-stages", "identity",
         "identity-stage"],
)
def test_content_codings_decode(scripted: RawServer, coding: str, encode: Callable[[bytes], bytes]) -> None:
    """gzip (several members too), deflate (zlib or raw), identity and chains of them decode to the body."""
    scripted.default = http_reply(encode(BODY), headers=(("Content-Encoding", coding),))
    assert _post(HttpTransport(), scripted) == BODY


def test_deflate_split_across_chunks_decodes(scripted: RawServer) -> None:
    """A zlib stream whose first chunk holds only its header (no output yet) still decodes, whole."""
    stream = zlib.compress(BODY)
    pieces = [stream[:2], stream[2:50], stream[50:]]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    scripted.default = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: deflate\r\n\r\n"
                        + chunks + b"0\r\n\r\n")
    assert _post(HttpTransport(), scripted) == BODY


def test_empty_body_declared_compressed_is_empty(scripted: RawServer) -> None:
    """An empty body with Content-Encoding: gzip reads as empty, not as a broken stream."""
    scripted.default = http_reply(b"", headers=(("Content-Encoding", "gzip"),))
    assert _post(HttpTransport(), scripted) == b""


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("br", b"\x8b\x02\x80hello\x03"),
        ("gzip", gzip.compress(BODY)[:40]),
        ("gzip", b"this is not gzip at all"),
        ("gzip", gzip.compress(BODY) + b"trailing garbage"),
        ("deflate", zlib.compress(BODY) + b"more"),
        ("deflate", b"\xff\xff not deflate either"),
    ],
    ids=["unknown-coding", "truncated", "not-gzip", "garbage-after-member", "data-after-deflate", "not-deflate"],
)
def test_undecodable_content_is_a_protocol_error(scripted: RawServer, coding: str, body: bytes) -> None:
    """A coding it does not know, or a stream that is broken, cut short or followed by junk: a ProtocolError."""
    scripted.default = http_reply(body, headers=(("Content-Encoding", coding),))
    with pytest.raises(ProtocolError) as caught:
        _post(HttpTransport(), scripted)
    assert caught.value.message == "the answer's Content-Encoding from 127.0.0.1 could not be decoded"


def test_decoding_stops_at_the_cap(scripted: RawServer) -> None:
    """Two gzip stages of 8 MiB of zeros stop at the cap, in bounded steps."""
    scripted.default = http_reply(gzip.compress(gzip.compress(b"\0" * (8 << 20))),
                              headers=(("Content-Encoding", "gzip, gzip"),))
    with pytest.raises(ProtocolError) as caught:
        _post(HttpTransport(), scripted, max_bytes=64 * 1024)
    assert "larger than 65536 bytes" in caught.value.message
