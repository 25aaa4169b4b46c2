"""Edges of the bundled emulator that test_emulator.py leaves out: configuration refusals, raw HTTP framing
(missing or bad Content-Length, bad chunking, trailers), malformed SOAP headers and bodies, internal
errors, and the command line's Ctrl-C and SIGTERM exits."""

from __future__ import annotations

import base64
import io
import signal
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from jwt_factory import rsa_key, self_signed_cert
from lxml import etree

import sut_soap.testing._server as emulator_server
from sut_soap.cli.emulator import main
from sut_soap.errors import ConfigurationError
from sut_soap.testing.emulator import SOAP_ACTION, Emulator, Fault, Headers, Reason, RecordedRequest

pytestmark = pytest.mark.network

SECRET = "edge-client-secret-0123456789"
CTX = "Cust24680"
SYSTEM_TOKEN = "Edge Sync-Qw3rTy1234"
SERIAL = "2468024"
PARTNER_KEY = rsa_key(0)
SIGNING_KEY = rsa_key(1)
PATH = "/Login/Services/PartnerSystemUserService.svc"
NS = "http://www.superoffice.com/superid/partnersystemuser/0.1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SOAP_ACTION}"'}

ENVELOPE = (
    f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:tns="{NS}" xmlns:i="{XSI}">'
    "<s:Header>{header}</s:Header>"
    "<s:Body>{body}</s:Body></s:Envelope>"
)
APP = "<tns:ApplicationToken>{}</tns:ApplicationToken>"
CTX_HEADER = "<tns:ContextIdentifier>{}</tns:ContextIdentifier>"
REQUEST = (
    "<tns:AuthenticationRequest><tns:SignedSystemToken>{}</tns:SignedSystemToken>"
    "<tns:ReturnTokenType>Jwt</tns:ReturnTokenType></tns:AuthenticationRequest>"
)


def sign(token: str = SYSTEM_TOKEN) -> str:
    data = f"{token}.{datetime.now(timezone.utc):%Y%m%d%H%M}"
    signature = PARTNER_KEY.sign(data.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return f"{data}.{base64.b64encode(signature).decode('ascii')}"


def envelope(header: str | None = None, body: str | None = None) -> bytes:
    if header is None:
        header = APP.format(SECRET) + CTX_HEADER.format(CTX)
    if body is None:
        body = REQUEST.format(sign())
    return ENVELOPE.format(header=header, body=body).encode("utf-8")


def answer(response: requests.Response | bytes) -> tuple[bool, str | None]:
    """(IsSuccessful, ErrorMessage) of an AuthenticationResponse."""
    content = response if isinstance(response, bytes) else response.content
    root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
    found = root.find(f"{{{SOAP_ENV}}}Body/{{{NS}}}AuthenticationResponse")
    assert found is not None, content
    successful, message = found.find(f"{{{NS}}}IsSuccessful"), found.find(f"{{{NS}}}ErrorMessage")
    assert successful is not None and message is not None
    return successful.text == "true", None if message.get(f"{{{XSI}}}nil") == "true" else message.text


def fault(response: requests.Response) -> tuple[str, str]:
    """(faultcode, faultstring) of a SOAP 1.1 fault."""
    root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
    code = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/faultcode")
    text = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/faultstring")
    assert code is not None and text is not None, response.content
    return code.text or "", text.text or ""


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY) as server:
        server.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        yield server
        assert server.internal_errors == []


def post(http: requests.Session, emu: Emulator, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return http.post(emu.endpoint, data=body, headers=HEADERS if headers is None else headers, timeout=5)


def raw(emu: Emulator, *requests_bytes: bytes) -> list[HTTPResponse]:
    """Send hand-framed HTTP/1.1 requests on one connection; one parsed (and fully read) response each."""
    responses = []
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        for request in requests_bytes:
            sock.sendall(request)
            response = HTTPResponse(sock)
            response.begin()
            response.read()
            responses.append(response)
    return responses


def soap_head(extra: str) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n"
        f'SOAPAction: "{SOAP_ACTION}"\r\n{extra}\r\n'
    ).encode("ascii")


def chunked(body: bytes, trailer: bytes = b"") -> bytes:
    half = len(body) // 2
    parts = [body[:half], body[half:]]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return soap_head("Transfer-Encoding: chunked\r\n") + framed + b"0\r\n" + trailer + b"\r\n"


# -- configuration -------------------------------------------------------------------------------


def test_empty_client_secret_is_refused() -> None:
    """An empty client_secret is a ConfigurationError at construction."""
    with pytest.raises(ConfigurationError, match="client_secret is empty"):
        Emulator("", PARTNER_KEY, signing_key=SIGNING_KEY)


@pytest.mark.parametrize(
    "options",
    [{"timestamp_tolerance": -1}, {"token_lifetime": 0}, {"token_lifetime": -5.0}],
)
def test_impossible_times_are_refused(options: dict[str, float]) -> None:
    """A negative timestamp_tolerance or a non-positive token_lifetime is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="timestamp_tolerance must be >= 0 and token_lifetime > 0"):
        Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY, **options)  # type: ignore[arg-type]


def test_zero_timestamp_tolerance_is_allowed() -> None:
    """timestamp_tolerance=0 (exact-minute clocks only) is a valid setting, not refused."""
    assert Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY, timestamp_tolerance=0).timestamp_tolerance == 0.0


def test_unknown_member_order_is_refused() -> None:
    """member_order other than 'wsdl' or 'alphabetical' is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="member_order"):
        Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY, member_order="random")  # type: ignore[arg-type]


def test_non_rsa_signing_key_is_refused() -> None:
    """A signing_key that is not an RSA private key is a ConfigurationError (JWTs are RS256)."""
    with pytest.raises(ConfigurationError, match="signing_key must be an RSAPrivateKey"):
        Emulator(SECRET, PARTNER_KEY, signing_key=ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]


def test_host_name_other_than_localhost_is_refused() -> None:
    """A DNS name (not an IP literal, not localhost) counts as non-loopback and is refused."""
    with pytest.raises(ConfigurationError, match=r"non-loopback host 'emulator\.invalid'"):
        Emulator(SECRET, PARTNER_KEY, host="emulator.invalid", signing_key=SIGNING_KEY)


def test_localhost_binds_ipv4_loopback(http: requests.Session) -> None:
    """host='LocalHost' binds 127.0.0.1, so URLs name the IPv4 address and clients never try ::1."""
    with Emulator(SECRET, PARTNER_KEY, host="LocalHost", signing_key=SIGNING_KEY) as emu:
        assert emu.base_url == f"http://127.0.0.1:{emu.port}"
        assert http.get(emu.jwks_url, timeout=5).status_code == 200


def test_partner_key_as_rsa_certificate_pem(http: requests.Session) -> None:
    """partner_public_key may be a PEM certificate; its RSA public key verifies the signed token."""
    pem = self_signed_cert(PARTNER_KEY).public_bytes(serialization.Encoding.PEM)
    with Emulator(SECRET, pem.decode("ascii"), signing_key=SIGNING_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        assert answer(post(http, emu, envelope())) == (True, None)


def test_partner_key_as_ec_public_pem_is_refused() -> None:
    """A well-formed PEM public key that is not RSA is refused as 'must be an RSA key'."""
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigurationError, match="partner_public_key must be an RSA key"):
        Emulator(SECRET, pem, signing_key=SIGNING_KEY)


@pytest.mark.parametrize(("ctx", "token"), [("", SYSTEM_TOKEN), (CTX, "")])
def test_add_tenant_refuses_empty_values(ctx: str, token: str) -> None:
    """add_tenant refuses an empty ContextIdentifier or system user token and registers nothing."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY)
    with pytest.raises(ConfigurationError, match="must not be empty"):
        emu.add_tenant(ctx, system_user_token=token)
    assert emu.tenants == {}


def test_tenant_urls_resolve_only_once_running() -> None:
    """A tenant added before start() has no URLs yet; once running they are derived, explicit ones kept."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY)
    tenant = emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL, webapi_url="https://x.invalid/api/")
    assert (tenant.netserver_url, tenant.email, tenant.upn) == (None, None, None)
    with emu:
        resolved = emu.tenants[CTX]
        assert resolved.webapi_url == "https://x.invalid/api/"
        assert resolved.netserver_url == f"{emu.base_url}/{CTX}/Remote/Services88/"
        assert resolved.email == f"system.user@{CTX.lower()}.invalid" and resolved.upn == f"SystemUser@{CTX}"
    assert emu.tenants[CTX].netserver_url is None


def test_start_twice_is_a_no_op(http: requests.Session) -> None:
    """A second start() returns the same running emulator on the same port."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY)
    try:
        assert emu.start() is emu
        port = emu.port
        assert emu.start() is emu and emu.port == port
        assert http.get(emu.jwks_url, timeout=5).status_code == 200
    finally:
        emu.stop()


def test_inject_refuses_a_non_fault(emu: Emulator, http: requests.Session) -> None:
    """inject() with a fault's name instead of a Fault member is a TypeError and injects nothing."""
    for name in ("reject", "REJECT", Fault.REJECT.value):
        with pytest.raises(TypeError, match="fault must be a Fault"):
            emu.inject(name)  # type: ignore[arg-type]
    assert answer(post(http, emu, envelope())) == (True, None)


# -- headers --------------------------------------------------------------------------------------


def test_headers_merge_repeats_case_insensitively() -> None:
    """Headers joins repeated names with ', ', iterates lower-cased names, and has a plain repr."""
    headers = Headers([("X-Trace", "a"), ("Content-Type", "text/xml"), ("x-trace", "b")])
    assert headers["X-TRACE"] == "a, b" and len(headers) == 2
    assert list(headers) == ["x-trace", "content-type"]
    assert dict(headers) == {"x-trace": "a, b", "content-type": "text/xml"}
    assert repr(headers) == "Headers({'x-trace': 'a, b', 'content-type': 'text/xml'})"


# -- malformed SOAP -------------------------------------------------------------------------------


def test_nil_context_identifier_is_unknown_tenant(emu: Emulator, http: requests.Session) -> None:
    """ContextIdentifier with xsi:nil is treated as absent: UnknownTenant naming 'none'."""
    header = APP.format(SECRET) + '<tns:ContextIdentifier i:nil="true"/>'
    assert answer(post(http, emu, envelope(header))) == (
        False,
        f"{Reason.UNKNOWN_TENANT}: no tenant with ContextIdentifier none",
    )


def test_nil_application_token_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """ApplicationToken with xsi:nil="1" is absent, so InvalidApplicationToken (not a crash or a match)."""
    header = '<tns:ApplicationToken i:nil="1"/>' + CTX_HEADER.format(CTX)
    successful, message = answer(post(http, emu, envelope(header)))
    assert not successful and message is not None and message.startswith(Reason.INVALID_APPLICATION_TOKEN + ": ")


def test_envelope_without_body_is_400(emu: Emulator, http: requests.Session) -> None:
    """A SOAP 1.1 Envelope with a Header but no Body is answered HTTP 400 with no content."""
    body = f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:tns="{NS}"><s:Header>{APP.format(SECRET)}</s:Header></s:Envelope>'
    response = post(http, emu, body.encode())
    assert response.status_code == 400 and response.content == b""
    assert "Content-Type" not in response.headers


def test_comments_and_processing_instructions_in_header_are_ignored(emu: Emulator, http: requests.Session) -> None:
    """Comments and processing instructions among the SOAP headers do not disturb the exchange."""
    header = "<!-- c -->" + APP.format(SECRET) + "<?pi x?>" + CTX_HEADER.format(CTX)
    assert answer(post(http, emu, envelope(header))) == (True, None)


@pytest.mark.parametrize("name", ["ApplicationToken", "ContextIdentifier"])
def test_duplicate_service_header_is_client_fault(emu: Emulator, http: requests.Session, name: str) -> None:
    """A service header sent twice gets HTTP 500 s:Client 'Multiple headers' (never first- or last-wins)."""
    header = APP.format(SECRET) + CTX_HEADER.format(CTX)
    header += APP.format(SECRET) if name == "ApplicationToken" else CTX_HEADER.format("Cust00000")
    response = post(http, emu, envelope(header))
    assert response.status_code == 500
    code, text = fault(response)
    assert code == "s:Client"
    assert text == f"Multiple headers with name '{name}' and namespace '{NS}' found."


def test_empty_body_is_deserialization_fault(emu: Emulator, http: requests.Session) -> None:
    """A Body with no element (only whitespace) gets a:DeserializationFailed ending at 'EndElement'."""
    response = post(http, emu, envelope(body="  "))
    assert response.status_code == 500
    code, text = fault(response)
    assert code == "a:DeserializationFailed"
    assert text.endswith("Found node type 'EndElement'.") and "'AuthenticationRequest'" in text


@pytest.mark.parametrize("content_type", ["text/xml; charset=iso-8859-1", "text/xml; charset=utf-16"])
def test_non_utf8_charset_is_415(emu: Emulator, http: requests.Session, content_type: str) -> None:
    """text/xml with a charset other than UTF-8 is answered 415, naming the refused content type."""
    response = post(http, emu, envelope(), {**HEADERS, "Content-Type": content_type})
    assert response.status_code == 415
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert f"content type '{content_type}'" in response.text


# -- HTTP framing ---------------------------------------------------------------------------------


def test_missing_content_length_is_411_and_closes(emu: Emulator) -> None:
    """A POST with neither Content-Length nor chunking gets 411 and Connection: close."""
    (response,) = raw(emu, soap_head(""))
    assert response.status == 411 and response.getheader("Connection") == "close"


@pytest.mark.parametrize("length", ["abc", "-1"])
def test_bad_content_length_is_400_and_closes(emu: Emulator, length: str) -> None:
    """A non-numeric or negative Content-Length gets 400 and Connection: close, never a hang."""
    (response,) = raw(emu, soap_head(f"Content-Length: {length}\r\n") + b"<x/>")
    assert response.status == 400 and response.getheader("Connection") == "close"


@pytest.mark.parametrize("size", [b"zz", b"-1", b""])
def test_bad_chunk_size_is_400_and_closes(emu: Emulator, size: bytes) -> None:
    """A chunk size that is not hex digits (garbage, negative, empty) gets 400 at once, not a read to EOF."""
    (response,) = raw(emu, soap_head("Transfer-Encoding: chunked\r\n") + size + b"\r\n<x/>\r\n0\r\n\r\n")
    assert response.status == 400 and response.getheader("Connection") == "close"


def test_chunked_trailers_are_consumed_and_keep_alive_continues(emu: Emulator) -> None:
    """Trailer fields after the last chunk are skipped, so a second request on the connection still parses."""
    first, second = raw(emu, chunked(envelope(), b"X-Checksum: 1\r\nX-Other: 2\r\n"), chunked(envelope()))
    assert first.status == 200 and second.status == 200
    assert first.getheader("Connection") is None


def test_chunked_body_over_the_cap_is_413(emu: Emulator) -> None:
    """Chunks adding up to more than 64 KiB get 413 as soon as the size is announced, before the data."""
    head = soap_head("Transfer-Encoding: chunked\r\n")
    (response,) = raw(emu, head + b"8000\r\n" + b"a" * 0x8000 + b"\r\n8001\r\n")
    assert response.status == 413 and response.getheader("Connection") == "close"


# -- internal errors ------------------------------------------------------------------------------


class TurningClock:
    """Aware at start(), then naive: a clock bug that only shows inside a request."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        now = datetime.now(timezone.utc)
        return now if self.calls == 1 else now.replace(tzinfo=None)


def test_exception_while_answering_is_internal_service_fault(http: requests.Session) -> None:
    """An exception while answering gives WCF's a:InternalServiceFault and lands in internal_errors."""
    with Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY, clock=TurningClock()) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        response = post(http, emu, envelope())
        assert response.status_code == 500
        assert fault(response)[0] == "a:InternalServiceFault"
        (error,) = emu.internal_errors
        assert isinstance(error, ConfigurationError) and "timezone-aware" in str(error)
        assert emu.exchange_count == 1


@pytest.mark.parametrize(
    ("boom", "recorded"), [(RuntimeError("handler bug"), True), (ConnectionResetError("peer went away"), False)]
)
def test_exception_outside_the_answer_is_recorded(
    monkeypatch: pytest.MonkeyPatch, http: requests.Session, boom: Exception, recorded: bool
) -> None:
    """A bug in the request handler lands in internal_errors (connection dropped); socket errors do not."""

    def broken(_items: Any) -> Headers:
        raise boom

    with Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY) as emu:
        monkeypatch.setattr(emulator_server, "Headers", broken)
        with pytest.raises(requests.ConnectionError):
            post(http, emu, envelope())
        monkeypatch.undo()
        assert emu.internal_errors == ([boom] if recorded else [])
        assert http.get(emu.jwks_url, timeout=5).status_code == 200  # the server keeps serving


# -- command line ---------------------------------------------------------------------------------


class InterruptingEvent(threading.Event):
    """A stop event: the first wait times out at once (after probing the JWKS), the second is Ctrl-C."""

    def __init__(self, out: io.StringIO, http: requests.Session) -> None:
        super().__init__()
        self.out, self.http = out, http
        self.statuses: list[int] = []

    def wait(self, timeout: float | None = None) -> bool:
        if not self.statuses:
            jwks = next(line.split()[-1] for line in self.out.getvalue().splitlines() if "JWKS:" in line)
            self.statuses.append(self.http.get(jwks, timeout=5).status_code)
            return False
        raise KeyboardInterrupt


class SigtermOnFirstWait(threading.Event):
    """A stop event that sends this process SIGTERM on its first wait (main() is waiting by then)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        if self.waits == 1:
            signal.raise_signal(signal.SIGTERM)
        return super().wait(timeout)


def key_path_of(text: str) -> Path:
    line = next(line for line in text.splitlines() if line.strip().startswith("partner key:"))
    return Path(line.split(":", 1)[1].strip().removesuffix(" (deleted on exit)"))


def test_cli_ctrl_c_stops_cleanly(http: requests.Session) -> None:
    """It serves until Ctrl-C, then exits 0, prints 'stopped', closes the port and deletes the temporary key."""
    out = io.StringIO()
    stop = InterruptingEvent(out, http)
    assert main(["--port", "0"], stop=stop, stdout=out) == 0
    assert stop.statuses == [200]
    text = out.getvalue()
    assert text.endswith("sut-soap emulator: stopped\n")
    endpoint = next(line.split()[-1] for line in text.splitlines() if line.strip().startswith("endpoint:"))
    key_path = key_path_of(text)
    assert not key_path.exists() and not key_path.parent.exists()
    with pytest.raises(requests.ConnectionError):
        http.get(endpoint, timeout=2)


def test_cli_sigterm_stops_like_ctrl_c_and_restores_the_handler() -> None:
    """In the main thread SIGTERM stops the emulator (exit 0, key deleted) and the old handler comes back."""
    assert threading.current_thread() is threading.main_thread()
    stray: list[int] = []
    stop = SigtermOnFirstWait()

    def previous(signum: int, _frame: object) -> None:
        stray.append(signum)  # main() did not install its own handler
        stop.set()

    original = signal.signal(signal.SIGTERM, previous)
    try:
        out = io.StringIO()
        assert main(["--port", "0"], stop=stop, stdout=out) == 0
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, original)
    assert stray == []
    assert out.getvalue().endswith("sut-soap emulator: stopped\n")
    assert not key_path_of(out.getvalue()).exists()


@pytest.mark.parametrize("argv", [["--token-lifetime", "0"], ["--timestamp-tolerance", "-1"]])
def test_cli_bad_times_exit_2_without_credentials(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Impossible times make `sut-soap emulator` exit 2 with the reason on stderr and print no credentials."""
    out = io.StringIO()
    assert main(["--port", "0", *argv], stop=threading.Event(), stdout=out) == 2
    assert out.getvalue() == ""
    assert "timestamp_tolerance must be >= 0 and token_lifetime > 0" in capsys.readouterr().err


def test_recorded_request_repr_hides_the_body() -> None:
    """A RecordedRequest's repr shows the headers and the body's size, never the body (it holds the client secret)."""
    request = RecordedRequest(Headers([("Content-Type", "text/xml")]), b"<ApplicationToken>s3cret-canary</ApplicationToken>")
    text = repr(request)
    assert "s3cret-canary" not in text and "ApplicationToken" not in text
    assert f"body=<{len(request.body)} bytes>" in text and "text/xml" in text


def test_cli_bad_tenant_exits_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """python -m sut_soap.emulator --tenant '' is a usage error (exit 2) with the reason, and the port is closed."""
    out = io.StringIO()
    assert main(["--port", "0", "--tenant", ""], stdout=out) == 2
    assert "sut-soap emulator:" in capsys.readouterr().err
    assert "stopped" not in out.getvalue()
