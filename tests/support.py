"""Test helpers and data shared by several test files: known-answer signatures, envelope patterns and
answer builders, clocks, a log canary, loopback HTTP and TLS servers, a scripted caller's transport,
the per-test emulator reset, a client factory, a driver over both clients, and callers of a tenant's API with
requests or httpx."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import socketserver
import ssl
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sut_soap.async_client import AsyncSystemUserClient
from sut_soap.cli import main as cli_main
from sut_soap.cli.replay import replay_main
from sut_soap.client import SystemUserClient
from sut_soap.errors import (
    AuthenticationRejectedError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    TokenValidationError,
    TransportError,
)
from sut_soap.retry import RetryPolicy
from sut_soap.testing import Exchange, placeholder
from sut_soap.testing.emulator import Emulator

PATH = "/Login/Services/PartnerSystemUserService.svc"
SOD_ENDPOINT = "https://sod.superoffice.com" + PATH
RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"

# What replaying each folder of fixtures/recordings gives, in either client: None for a ticket,
# else the one error class, and for a TokenValidationError the check named.
FIXTURE_OUTCOMES: dict[str, tuple[type[SutSoapError] | None, str | None]] = {
    "success": (None, None),
    "success-alphabetical": (None, None),
    "two-tenants": (None, None),
    "rest-success": (None, None),
    "rest-rejection": (AuthenticationRejectedError, None),
    "rejection": (AuthenticationRejectedError, None),
    "invalid-signature": (AuthenticationRejectedError, None),
    "unknown-tenant": (AuthenticationRejectedError, None),
    "soap-fault": (SoapFaultError, None),
    "html-503": (TransportError, None),
    "empty-body": (ProtocolError, None),
    "truncated-body": (ProtocolError, None),
    "disconnect": (TransportError, None),
    "expired-token": (TokenValidationError, "expiry"),
    "wrong-tenant-token": (TokenValidationError, "context"),
    "billion-laughs": (ProtocolError, None),
    "external-entity": (ProtocolError, None),
    "external-dtd": (ProtocolError, None),
}
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "http://www.superoffice.com/superid/partnersystemuser/0.1"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def run_cli(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    """``sut-soap ARGV`` in process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin) if stdin is not None else None)
    return code, out.getvalue(), err.getvalue()


def run_replay(*argv: str) -> tuple[int, str, str]:
    """``sut-soap replay ARGV`` in process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = replay_main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def reset_emulator(emulator: Emulator) -> Iterator[Emulator]:
    """Body of a per-test fixture over a module's emulator: no faults before or after, no internal error."""
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()
    assert emulator.internal_errors == []


class ClientFactory:
    """Makes SystemUserClients from shared options (a call's own win) and closes every one at teardown."""

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults
        self.made: list[SystemUserClient] = []

    def __call__(self, *endpoint: str | None, **options: Any) -> SystemUserClient:
        if endpoint:  # a positional endpoint, None included (no endpoint), replaces the default
            (options["endpoint"],) = endpoint
        client = SystemUserClient(**{**self.defaults, **options})
        self.made.append(client)
        return client

    def close(self) -> None:
        for client in self.made:
            client.close()

class Driver:
    """One client, sync or async, behind the sync client's calls: an async one runs each call to its end on a loop of its own.

    So one behaviour test runs over both clients: ``kind`` is ``"sync"`` or ``"async"``, ``client``
    the client itself. A sync ``transport=`` (or ``session=``) given to an async driver is run
    by a :class:`~sut_soap.ThreadedAsyncTransport`, as a user of the async client would.
    """

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.loop: asyncio.AbstractEventLoop | None = None
        if kind == "sync":
            self.client: Any = SystemUserClient(**options)
            return
        from sut_soap.transport import HttpTransport, ThreadedAsyncTransport

        session = options.pop("session", None)
        if session is not None:
            options["transport"] = HttpTransport(session)
        transport = options.get("transport")
        if transport is not None and not asyncio.iscoroutinefunction(getattr(transport, "request", None)):
            options["transport"] = ThreadedAsyncTransport(transport)
        self.loop = asyncio.new_event_loop()
        self.client = AsyncSystemUserClient(**options)

    def _run(self, result: Any) -> Any:
        return result if self.loop is None else self.loop.run_until_complete(result)

    def authenticate(self, **kwargs: Any) -> Any:
        return self._run(self.client.authenticate(**kwargs))

    def get_ticket(self, **kwargs: Any) -> Any:
        return self._run(self.client.get_ticket(**kwargs))

    def get_tickets(self, tenants: Mapping[str, str], workers: int = 8) -> Any:
        """``get_tickets`` with ``workers`` threads (sync) or tasks (async)."""
        if self.loop is None:
            return self.client.get_tickets(tenants, max_workers=workers)
        return self._run(self.client.get_tickets(tenants, concurrency=workers))

    def invalidate(self, context_identifier: str, **kwargs: Any) -> None:
        self.client.invalidate(context_identifier, **kwargs)

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            return
        self._run(self.client.aclose())
        self.loop.close()


class Drivers:
    """Makes :class:`Driver` s of one kind from shared options (a call's own win); closes every one at teardown."""

    def __init__(self, kind: str, **defaults: Any) -> None:
        self.kind = kind
        self.defaults = defaults
        self.made: list[Driver] = []

    def __call__(self, **options: Any) -> Driver:
        driver = Driver(self.kind, **{**self.defaults, **options})
        self.made.append(driver)
        return driver

    def close(self) -> None:
        for driver in self.made:
            driver.close()


def b64_int(value: int) -> str:
    """The big-endian Base64 of an integer, as in .NET's <RSAKeyValue>."""
    return base64.b64encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")).decode()


# The signed token and its UTC minute inside a request envelope the client built.
SIGNED_TOKEN = re.compile(rb"<tns:SignedSystemToken>([^<]*)</tns:SignedSystemToken>")
SIGNED_MINUTE = re.compile(rb"<tns:SignedSystemToken>[^<]*\.(\d{12})\.[^<]*</tns:SignedSystemToken>")

# Made with OpenSSL, independently of this library:
#   printf '%s' 'Acme Sync-8k8Q7DmBgo.202611281330' | openssl dgst -sha256 -sign test-partner-pkcs8.pem | base64 -w0
KAT_ASCII = (
    "Acme Sync-8k8Q7DmBgo.202611281330."
    "E1jErSl6K9kyOKOPTSdfOARTjj98MsmyDzUBRZozhU+zEECCgewkzz9/8Di7GWYqEs0cbmNyf/siLfimp+/ANltX8KQ2fi8229Cr3P1Q"
    "ewA5f0xjf+C4SzXQTpEFhiUHKXCgX+cxpPxU/QX8uAb4GTqaTuxbEFAi7B0sPSwH9QwGjFg3cA/7moSKL3Tjmwa8GC3nO4kLRVF+An5G"
    "ZTTuRumipGRNLkrPE98UO61bmavRZhxFTYVLgzSmhAP1/4uB3C3g3NYLMBhdD10OZBL5WhrW/oGQ3uMLU98pNUZ0ezHOJQt3op81WL2S"
    "YF7UwxTvzRnsrESARcCJHA8iaf/PHA=="
)
# The same for a non-ASCII token (UTF-8 bytes signed) at 2026-01-01 13:05 UTC.
KAT_UTF8 = (
    "Sørlandet Å Sync-Ωmega.202601011305."
    "egqsWs8CtYGFDXRJ7GgIdxiJ3Yy6nUIJn4h4Lyj0hkIyhUMISLfhSoN8f+FnDHBbVMU6fbuHiEkt34fQ/9DLAvYX0yxv2BiAAkiRVdyf"
    "IPLsyhkb6inJpFrcx75OsCodgeA4DUXIGXPWuhETXtaUudGu5K/nICwDAmTqOnwxEw6Ev4kjIYuvNpdlBK5Rd8Nn5QFltF7kWOuDxp5t"
    "AH3YRd434nF1GkxPea5SEdJZVLo0ddUhTpwPjG4/0FgijMADC6DbJ0WuhGPq3O+wDu6kyNfWHcBZLjpP0BwHuZtGamBj/GpJHZITS3vm"
    "mjCUq432z8tz6NAYR9yPqYgUB0FCAg=="
)


class Sleeper:
    """An injected sleep: records each wait and moves a fake monotonic clock instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def policy(self, **kwargs: Any) -> RetryPolicy:
        """A policy that never really sleeps; random() is 1.0 so each wait is its ceiling."""
        options: dict[str, Any] = {"sleep": self, "random": lambda: 1.0, "monotonic": lambda: self.now}
        return RetryPolicy(**{**options, **kwargs})


class FrozenClock:
    """A wall clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_cert(tmp: Path, name: str, *, san: x509.GeneralName, expired: bool = False) -> tuple[Path, Path]:
    """A self-signed EC certificate and key written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else (
        now - dt.timedelta(minutes=5), now + dt.timedelta(days=1)
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sut-soap test {name}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def read_request(conn: socket.socket, data: bytes = b"") -> tuple[bytes, bytes, bool]:
    """One HTTP request from ``conn`` (after ``data`` already read): its bytes, what came after, whether whole.

    The body is as long as its ``Content-Length`` says (none without one); at an EOF the
    request is what arrived and ``complete`` is False.
    """
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data, b"", False
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return head + b"\r\n\r\n" + rest, b"", False
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:], True


class TlsServer:
    """A loopback TLS server: counts handshakes and any application bytes received, answers HTTP 503."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}{PATH}"
        self.connections = 0
        self.handshakes = 0
        self.received = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            raw.settimeout(2)
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    self.handshakes += 1
                    request, _rest, _complete = read_request(conn)
                    self.received += request
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except (OSError, ssl.SSLError):
                raw.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


# --- forked children reporting through a pipe ------------------------------------------------------

CHILD_TIMEOUT = 10.0


@dataclass
class Child:
    """A forked child: its pid and the read end of the pipe it reports through."""

    pid: int
    fd: int


def fork_child(body: Callable[[], Any]) -> Child:
    """Fork; the child runs ``body``, writes its JSON outcome to a pipe and leaves with os._exit."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs only in the child, which coverage does not follow
        try:
            os.close(read_fd)
            try:
                outcome = {"value": body()}
            except BaseException as exc:
                outcome = {"error": f"{type(exc).__name__}: {exc}"}
            with os.fdopen(write_fd, "wb") as out:
                out.write(json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    return Child(pid, read_fd)


def collect(*children: Child, timeout: float = CHILD_TIMEOUT) -> list[Any]:
    """Each child's value, in order; a child that raised, or did not finish in time (killed), fails the test."""
    deadline = time.monotonic() + timeout
    pending = list(children)
    values = []
    try:
        while pending:
            child = pending[0]
            data = _read_until(child.fd, deadline)
            if data is None:
                pytest.fail(f"a child did not finish within {timeout:g} s (a hang)")
            pending.pop(0)
            os.close(child.fd)
            os.waitpid(child.pid, 0)
            outcome = json.loads(data or b'{"error": "nothing reported"}')
            if "error" in outcome:
                pytest.fail(f"the child failed: {outcome['error']}")
            values.append(outcome["value"])
    finally:
        for child in pending:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            os.close(child.fd)
    return values


def _read_until(fd: int, deadline: float) -> bytes | None:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# --- a loopback server of raw scripted replies ------------------------------------------------------

RAW_BODY = b"<answer>" + b"x" * 3000 + b"</answer>"


def http_reply(body: bytes = RAW_BODY, *, headers: tuple[tuple[str, str], ...] = (), close: bool = False) -> bytes:
    """The bytes of an HTTP/1.1 200 answer with ``body``, its Content-Length and ``headers``."""
    head = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body)]
    head += [f"{name}: {value}".encode("latin-1") for name, value in headers]
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class RawServer:
    """A loopback HTTP/1.1 server (TLS with ``tls``) sending raw scripted replies; it counts connections, keeps requests.

    A reply of ``None`` hangs up without answering. ``hang_up_after`` closes each connection
    once it has answered that many requests on it.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.replies: list[bytes | None] = []
        self.default: bytes | None = http_reply()
        self.hang_up_after = 0
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.sock.getsockname()[1]}/svc"
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        served, data = 0, b""
        with conn:
            while True:
                request, data, complete = read_request(conn, data)
                if not complete:
                    return
                self.requests.append(request)
                reply = self.replies.pop(0) if self.replies else self.default
                if reply is None:
                    return
                conn.sendall(reply)
                served += 1
                if b"Connection: close" in reply or (self.hang_up_after and served >= self.hang_up_after):
                    return

    def close(self) -> None:
        self.sock.close()



# --- SOAP answers and what parse_answer reads of them --------------------------------------------


def soap_envelope(inner: str, namespace: str = SOAP11) -> bytes:
    """A SOAP 1.1 envelope whose Body holds ``inner``."""
    return f'<s:Envelope xmlns:s="{namespace}"><s:Body>{inner}</s:Body></s:Envelope>'.encode()


def soap_fault(code: str, text: str = "busy") -> bytes:
    """A SOAP 1.1 Fault with this faultcode and faultstring."""
    return soap_envelope(f"<s:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring></s:Fault>")


def authentication_response(members: str) -> str:
    """An AuthenticationResponse element holding ``members``."""
    return f'<AuthenticationResponse xmlns="{TNS}" xmlns:i="{XSI}">{members}</AuthenticationResponse>'


def rejection(message: str = "InvalidSignature", token: str | None = None) -> bytes:
    """An IsSuccessful=false answer with this ErrorMessage (and a nil Token unless one is given)."""
    token_xml = f"<Token>{token}</Token>" if token else '<Token i:nil="true"/>'
    return soap_envelope(
        authentication_response(f"<IsSuccessful>false</IsSuccessful>{token_xml}<ErrorMessage>{message}</ErrorMessage>")
    )


@dataclass
class FakeResponse:
    """What parse_answer reads of an HTTP answer."""

    content: bytes | None
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)


# --- secrets in logs, warnings and errors ---------------------------------------------------------


def error_texts(error: BaseException) -> list[str]:
    """str, repr and args of the error and of every error in its __cause__/__context__ chain, plus the traceback."""
    out: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        out += [str(current), repr(current), *(str(a) for a in current.args)]
        pending += [current.__cause__, current.__context__]
    out.append("".join(traceback.format_exception(error)))
    return out


class LogCanary:
    """Every log record at DEBUG on every logger, and every warning, checked for ``secrets``."""

    LOGGERS = ("", "zeep", "zeep.transports", "urllib3", "requests", "httpx", "httpcore", "sut_soap", "aiohttp",
               "asyncio")

    def __init__(self, secrets: Iterable[str]) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setLevel(logging.DEBUG)
        self.handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.secrets: set[str] = set(secrets)
        self.warnings: list[str] = []

    def text(self) -> str:
        return self.stream.getvalue()

    def check(self, *texts: str) -> None:
        haystack = "\n".join((self.text(), *self.warnings, *texts))
        for secret in self.secrets:
            assert secret not in haystack


def watch_logs(*secrets: str) -> Iterator[LogCanary]:
    """Body of a ``canary`` fixture: capture logs and warnings during the test, then check them for secrets."""
    canary = LogCanary(secrets)
    saved = {name: logging.getLogger(name).level for name in LogCanary.LOGGERS}
    logging.getLogger().addHandler(canary.handler)
    for name in LogCanary.LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield canary
    finally:
        logging.getLogger().removeHandler(canary.handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    canary.warnings = [str(w.message) for w in caught]
    canary.check()


# --- a scripted loopback HTTP server ----------------------------------------------------------------


class Reply:
    """One scripted HTTP answer: status, body and headers (a mapping or (name, value) pairs, repeats allowed)."""

    def __init__(
        self, status: int, body: bytes | str = b"", headers: Mapping[str, str] | Iterable[tuple[str, str]] = ()
    ) -> None:
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.headers = list(headers.items()) if isinstance(headers, Mapping) else list(headers)


Step = Reply | Callable[[BaseHTTPRequestHandler], None]


class ScriptedServer:
    """A loopback HTTP server answering POSTs from a script (then ``default``); keeps the bodies, counts GETs (404).

    Use it as a context manager, or call ``close()``; ``release`` is set on close so handlers waiting on it end.
    """

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.default: Step = Reply(503)
        self.bodies: list[bytes] = []
        self.gets = 0
        self.release = threading.Event()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.gets += 1
                self.send_error(404)

            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                step = outer.script.pop(0) if outer.script else outer.default
                if callable(step):
                    step(self)
                    return
                self.send_response(step.status)
                for name, value in step.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(step.body)))
                self.end_headers()
                with suppress(OSError):
                    self.wfile.write(step.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), _H)
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        serve_in_background(self.httpd)

    @property
    def posts(self) -> int:
        return len(self.bodies)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class QuietServer(ThreadingHTTPServer):
    """A loopback ThreadingHTTPServer: daemon threads, no reverse DNS lookup at bind, no tracebacks on stderr."""

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's, which looks the name up (slow without DNS)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def serve_in_background(server: socketserver.BaseServer) -> threading.Thread:
    """Serve on a daemon thread, polling for shutdown every 20 ms so teardown never waits long."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return thread


# --- a caller's transport and a racing lock ---------------------------------------------------------

CONTEXT_IN_BODY = re.compile(rb"<tns:ContextIdentifier>([^<]*)</tns:ContextIdentifier>")
FORWARD = object()  # a scripted action's "send it to the real server"


class ScriptedTransport:
    """A caller's transport (no ``session``): records each POST, runs scripted actions, else forwards to ``inner``."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.posts: list[tuple[str, str]] = []  # (tenant, thread name)
        self.script: list[Callable[[], Any]] = []
        self.by_tenant: dict[str, Callable[[], Any]] = {}
        self._lock = threading.Lock()

    def request(self, method: str, url: str, *, body: bytes | None = None, **kwargs: Any) -> Any:
        if method != "POST":
            if self.inner is None:
                raise ConnectionError("no server behind this transport")
            return self.inner.request(method, url, body=body, **kwargs)
        match = CONTEXT_IN_BODY.search(body or b"")
        tenant = match.group(1).decode() if match else ""
        with self._lock:
            self.posts.append((tenant, threading.current_thread().name))
            action = self.script.pop(0) if self.script else self.by_tenant.get(tenant)
        answer = action() if action is not None else FORWARD
        if answer is not FORWARD:
            return answer
        if self.inner is None:
            raise ConnectionError("no server behind this transport")
        return self.inner.request(method, url, body=body, **kwargs)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


class HookedLock:
    """A lock that runs ``hook`` once, just before its first acquisition: a deterministic race."""

    def __init__(self, hook: Callable[[], None]) -> None:
        self.real = threading.Lock()
        self.hook: Callable[[], None] | None = hook

    def __enter__(self) -> HookedLock:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        self.real.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.real.release()


# --- recorded exchanges -----------------------------------------------------------------------------

SOAP_ACTION = '"http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate"'
XML_HEADERS = {"SOAPAction": SOAP_ACTION, "Content-Type": "text/xml; charset=utf-8"}
SIGNATURE = "QUJD" * 86 + "=="  # the shape of a real signature, 344 characters


def signed_token(token: str, stamp: str = "202611281330") -> str:
    """A signed system user token of the real shape (the signature is not one)."""
    return f"{token}.{stamp}.{SIGNATURE}"


def request_envelope(secret: str, signed: str, *, ctx: str = "Cust12345", prefix: str = "tns", extra: str = "") -> bytes:
    """An Authenticate request as the client sends it, with ``extra`` appended to the SOAP headers."""
    return (
        f'<e:Envelope xmlns:e="{SOAP11}" xmlns:{prefix}="{TNS}"><e:Header>'
        f"<{prefix}:ApplicationToken>{secret}</{prefix}:ApplicationToken>"
        f"<{prefix}:ContextIdentifier>{ctx}</{prefix}:ContextIdentifier>{extra}</e:Header><e:Body>"
        f"<{prefix}:AuthenticationRequest><{prefix}:SignedSystemToken>{signed}</{prefix}:SignedSystemToken>"
        f"<{prefix}:ReturnTokenType>Jwt</{prefix}:ReturnTokenType></{prefix}:AuthenticationRequest></e:Body>"
        "</e:Envelope>"
    ).encode()


def answer_envelope(token: str = "", message: str = "", prefix: str = "") -> bytes:
    """An AuthenticationResponse: a success when ``token`` is given, else a rejection with ``message``."""
    p = f"{prefix}:" if prefix else ""
    ns = f' xmlns:{prefix}="{TNS}"' if prefix else f' xmlns="{TNS}"'
    return (
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>'
        f"<{p}AuthenticationResponse{ns}><{p}IsSuccessful>{'true' if token else 'false'}</{p}IsSuccessful>"
        f"<{p}Token>{token}</{p}Token><{p}ErrorMessage>{message}</{p}ErrorMessage>"
        f"</{p}AuthenticationResponse></s:Body></s:Envelope>"
    ).encode()


def copy_recording(name: str, tmp_path: Path) -> Path:
    """A copy of fixtures/recordings/NAME at tmp_path/NAME, to tamper with."""
    target = tmp_path / name
    shutil.copytree(RECORDINGS / name, target)
    return target


def edit_exchange(directory: Path, change: Callable[[dict[str, Any]], None], number: str = "01") -> Path:
    """Apply ``change`` to the JSON document of exchange NUMBER of a recording; returns its path."""
    path = directory / f"{number}-exchange.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def request_template(extra: str = "") -> bytes:
    """A recorded request as saved: the client secret and the signed token are placeholders."""
    return request_envelope(placeholder("CLIENT_SECRET"), placeholder("SIGNED_TOKEN"), extra=extra)


def recorded_exchange(**kwargs: Any) -> Exchange:
    """A recorded rejection ("Denied") of a templated request to sod; keyword arguments replace any field."""
    options: dict[str, Any] = {
        "url": SOD_ENDPOINT,
        "request_body": request_template(),
        "request_headers": XML_HEADERS,
        "status": 200,
        "reason": "OK",
        "response_headers": {"Content-Type": "text/xml; charset=utf-8"},
        "response_body": answer_envelope("", "Denied"),
    }
    options.update(kwargs)
    return Exchange(**options)


class SteppingClock:
    """Wall and monotonic time that move only when told: ``advance`` moves both, ``jump_wall`` the wall alone.

    ``clock`` is the :class:`sut_soap.Clock` to inject; its ``sleep`` advances both instead of waiting.
    """

    def __init__(self) -> None:
        from sut_soap import Clock

        self.wall_now = datetime.now(timezone.utc)
        self.monotonic_now = 1000.0
        self.sleeps: list[float] = []
        self.clock = Clock(now=lambda: self.wall_now, monotonic=lambda: self.monotonic_now, sleep=self._sleep)

    def advance(self, seconds: float) -> None:
        self.wall_now += timedelta(seconds=seconds)
        self.monotonic_now += seconds

    def jump_wall(self, seconds: float) -> None:
        self.wall_now += timedelta(seconds=seconds)

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


# --- a loopback server that answers too slowly, or not at all ------------------------------------


class DrippingServer:
    """A loopback HTTP server that reads each request (headers and body), then misbehaves as ``mode`` says.

    ``"headers"`` drips a status line and headers that never end, ``"body"`` sends whole headers and then
    drips a body that never ends, one byte every ``interval`` seconds; ``"silent"`` says nothing (a TLS
    client's handshake included); ``"close"`` closes the connection. A connection is closed after
    ``give_up`` seconds at most, so a client that is never cut fails late instead of hanging. ``requests``
    counts the requests read; use it as a context manager, or call ``close()``.
    """

    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\n"

    def __init__(self, mode: str, *, host: str = "127.0.0.1", interval: float = 0.1, give_up: float = 8.0) -> None:
        if mode not in ("headers", "body", "silent", "close"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.interval = interval
        self.give_up = give_up
        self.host = host
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.base_url = f"http://{host}:{self.port}"
        self.url = self.base_url + PATH
        self.requests = 0
        self.arrived = threading.Condition()
        self.stop = threading.Event()
        self.connections: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Whether ``count`` requests were read within ``timeout`` seconds."""
        with self.arrived:
            return self.arrived.wait_for(lambda: self.requests >= count, timeout)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        ends = threading.Event()
        timer = threading.Timer(self.give_up, ends.set)
        timer.daemon = True
        timer.start()
        try:
            conn.settimeout(self.give_up)
            if not self._read_request(conn):
                return
            with self.arrived:
                self.requests += 1
                self.arrived.notify_all()
            if self.mode == "close":
                return
            if self.mode == "body":
                conn.sendall(self.HEAD + b"Content-Length: 100000\r\n\r\n")
            drip = {"headers": self.HEAD + b"X-Drip: a\r\n" * 1000, "body": b"<" * 100000}.get(self.mode, b"")
            for byte in drip:
                if ends.is_set() or self.stop.wait(self.interval):
                    return
                conn.sendall(bytes([byte]))
            while not (ends.is_set() or self.stop.wait(0.05)):  # silent
                pass
        except OSError:
            pass
        finally:
            timer.cancel()
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
        )
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()
        for conn in self.connections:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(2)

    def __enter__(self) -> DrippingServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full, so a new connection hangs in the TCP handshake (Linux)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)  # fills the queue: later SYNs are dropped
    try:
        yield port
    finally:
        filler.close()
        server.close()


# --- calling a tenant's API with requests or httpx ----------------------------------------------

HTTP_LIBRARIES = ("requests", "httpx")


class ApiCaller:
    """One request at a time to a tenant's API through ``requests`` or ``httpx`` with the auth object.

    ``follow_redirects`` is requests' default (True) unless told otherwise; ``guard`` adds the
    auth object's ``redirect_guard`` to httpx's request event hooks. A body may be bytes, text, a
    file, a generator or a dict (JSON).
    """

    def __init__(self, library: str, auth: Any, *, follow_redirects: bool = True, guard: bool = False) -> None:
        self.library = library
        if library == "requests":
            import requests

            self.session: Any = requests.Session()
            self.session.auth = auth
        else:
            import httpx

            hooks = {"request": [auth.redirect_guard]} if guard else {}
            self.session = httpx.Client(auth=auth, follow_redirects=follow_redirects, timeout=10, event_hooks=hooks)
        self.follow_redirects = follow_redirects

    def __call__(self, method: str, url: str, body: Any = None) -> Any:
        """The response (a requests or httpx Response; both have ``status_code``, ``content`` and ``json()``)."""
        if self.library == "requests":
            data = None if isinstance(body, dict) else body
            return self.session.request(method, url, data=data, json=body if isinstance(body, dict) else None,
                                        timeout=10, allow_redirects=self.follow_redirects)
        if isinstance(body, dict):
            return self.session.request(method, url, json=body)
        return self.session.request(method, url, content=body)

    def close(self) -> None:
        self.session.close()


class RecordingServer:
    """A loopback HTTP server that records every request (method, path, headers) and answers from a script.

    Each scripted step is ``(status, headers)``; when the script is empty it answers 200. Every
    answer's body is ``body`` (default ``{}``, labelled JSON). Use it as a context manager.
    """

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.body = b"{}"
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if length:
                    self.rfile.read(length)
                outer.seen.append((self.command, self.path, dict(self.headers.items())))
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                body = outer.body
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), _H)
        self.port = int(self.httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        serve_in_background(self.httpd)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
