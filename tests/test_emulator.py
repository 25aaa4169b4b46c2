"""The PartnerSystemUserService emulator, driven over real HTTP with hand-built envelopes and hand-framed
requests: answers, refusals and faults, its configuration checks, raw HTTP framing (lengths, chunking,
trailers), internal errors, and its command line (Ctrl-C and SIGTERM included)."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwt_factory import self_signed_cert
from lxml import etree

import sut_soap.testing._server as emulator_server
from sut_soap.cli.emulator import main
from sut_soap.client import SystemUserClient
from sut_soap.errors import ConfigurationError, TransportError
from sut_soap.testing.emulator import (
    CLAIM_PREFIX,
    SOAP_ACTION,
    Emulator,
    Fault,
    Headers,
    Reason,
    RecordedRequest,
)

pytestmark = pytest.mark.network

SECRET = "client-secret-0123456789"
CTX = "Cust12345"
OTHER_CTX = "Cust67890"
SYSTEM_TOKEN = "Acme Sync-8k8Q7DmBgo"
OTHER_SYSTEM_TOKEN = "Other Sync.with dots-X1"
SERIAL = "1234567"
NS = "http://www.superoffice.com/superid/partnersystemuser/0.1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
PATH = "/Login/Services/PartnerSystemUserService.svc"
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SOAP_ACTION}"'}

ENVELOPE = """<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:tns="http://www.superoffice.com/superid/partnersystemuser/0.1">
  <SOAP-ENV:Header>
    <tns:ApplicationToken>{app}</tns:ApplicationToken>
    <tns:ContextIdentifier>{ctx}</tns:ContextIdentifier>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <tns:AuthenticationRequest>
      <tns:SignedSystemToken>{signed}</tns:SignedSystemToken>
      <tns:ReturnTokenType>{token_type}</tns:ReturnTokenType>
    </tns:AuthenticationRequest>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PARTNER_KEY = _key()
SIGNING_KEY = _key()


def sign(token: str, at: datetime | None = None, key: rsa.RSAPrivateKey = PARTNER_KEY) -> str:
    stamp = (at or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%d%H%M")
    data = f"{token}.{stamp}"
    signature = key.sign(data.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return f"{data}.{base64.b64encode(signature).decode('ascii')}"


def envelope(signed: str | None = None, *, app: str = SECRET, ctx: str = CTX, token_type: str = "Jwt") -> bytes:
    if signed is None:
        signed = sign(SYSTEM_TOKEN if ctx == CTX else OTHER_SYSTEM_TOKEN)
    return ENVELOPE.format(app=app, ctx=ctx, signed=signed, token_type=token_type).encode("utf-8")


@dataclass
class Answer:
    is_successful: bool
    token: str | None
    error_message: str | None
    members: list[str] = field(default_factory=list)


def parse_answer(response: requests.Response) -> Answer:
    root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    answer = body.find(f"{{{NS}}}AuthenticationResponse")
    assert answer is not None

    def member(name: str) -> str | None:
        element = answer.find(f"{{{NS}}}{name}")
        assert element is not None
        return None if element.get(f"{{{XSI}}}nil") == "true" else (element.text or "")

    return Answer(
        is_successful=member("IsSuccessful") == "true",
        token=member("Token"),
        error_message=member("ErrorMessage"),
        members=[etree.QName(child).localname for child in answer],
    )


class Clock:
    """A shiftable clock for the shared emulator."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed or datetime.now(timezone.utc)


CLOCK = Clock()


# Envelopes framed piece by piece (headers and body given as XML text), and hand-framed HTTP requests.


APP = "<tns:ApplicationToken>{}</tns:ApplicationToken>"


CTX_HEADER = "<tns:ContextIdentifier>{}</tns:ContextIdentifier>"


REQUEST = (
    "<tns:AuthenticationRequest><tns:SignedSystemToken>{}</tns:SignedSystemToken>"
    "<tns:ReturnTokenType>Jwt</tns:ReturnTokenType></tns:AuthenticationRequest>"
)


FRAMED = (
    f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:tns="{NS}" xmlns:i="{XSI}">'
    "<s:Header>{header}</s:Header>"
    "<s:Body>{body}</s:Body></s:Envelope>"
)


def framed_envelope(header: str | None = None, body: str | None = None) -> bytes:
    """An envelope with these SOAP headers and Body content (by default a valid request for CTX)."""
    if header is None:
        header = APP.format(SECRET) + CTX_HEADER.format(CTX)
    if body is None:
        body = REQUEST.format(sign(SYSTEM_TOKEN))
    return FRAMED.format(header=header, body=body).encode("utf-8")


def outcome(response: requests.Response | bytes) -> tuple[bool, str | None]:
    """(IsSuccessful, ErrorMessage) of an AuthenticationResponse."""
    content = response if isinstance(response, bytes) else response.content
    root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
    found = root.find(f"{{{SOAP_ENV}}}Body/{{{NS}}}AuthenticationResponse")
    assert found is not None, content
    successful, message = found.find(f"{{{NS}}}IsSuccessful"), found.find(f"{{{NS}}}ErrorMessage")
    assert successful is not None and message is not None
    return successful.text == "true", None if message.get(f"{{{XSI}}}nil") == "true" else message.text


def fault_of(response: requests.Response) -> tuple[str, str]:
    """(faultcode, faultstring) of a SOAP 1.1 fault."""
    root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
    code = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/faultcode")
    text = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/faultstring")
    assert code is not None and text is not None, response.content
    return code.text or "", text.text or ""


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


def soap_closing(body: bytes | None = None) -> bytes:
    """A hand-framed SOAP POST (by default a valid request for CTX) that asks the server to close afterwards."""
    body = envelope() if body is None else body
    return soap_head(f"Content-Length: {len(body)}\r\nConnection: close\r\n") + body


@dataclass
class Received:
    """Every byte of an answer up to the server's close, and when the first and the last arrived."""

    data: bytes
    first: float
    last: float


def receive_all(emu: Emulator, request: bytes) -> Received:
    """Send one request on a new connection and read until the server closes it (seconds from the send)."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(request)
        started = time.perf_counter()
        chunks: list[bytes] = []
        first = float("nan")
        while chunk := sock.recv(65536):
            if not chunks:
                first = time.perf_counter() - started
            chunks.append(chunk)
        return Received(b"".join(chunks), first, time.perf_counter() - started)


def without_date(answer: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\n", answer)


def start_a_drip(emu: Emulator) -> tuple[socket.socket, threading.Thread]:
    """A connection whose SOAP answer has started dripping (first byte read), and the thread sending it.

    DRIP must be injected; the thread is the one the emulator started for this connection.
    """
    before = set(threading.enumerate())
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
    sock.sendall(soap_closing())
    assert sock.recv(1) == b"H"
    (handler,) = set(threading.enumerate()) - before
    return sock, handler


def chunked(body: bytes, trailer: bytes = b"") -> bytes:
    half = len(body) // 2
    parts = [body[:half], body[half:]]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return soap_head("Transfer-Encoding: chunked\r\n") + framed + b"0\r\n" + trailer + b"\r\n"


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """One HTTP session for the module, without proxies from the environment."""
    with requests.Session() as session:
        session.trust_env = False  # no proxies from the environment for loopback
        yield session


@pytest.fixture(scope="module")
def shared_emu() -> Iterator[Emulator]:
    """One emulator for the module on the shiftable CLOCK, with two tenants."""
    emu = Emulator(SECRET, PARTNER_KEY, clock=CLOCK, signing_key=SIGNING_KEY)
    with emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_SYSTEM_TOKEN, serial="7654321")
        yield emu
        assert emu.internal_errors == []


@pytest.fixture
def emu(shared_emu: Emulator) -> Iterator[Emulator]:
    """The module's emulator with no faults and the real time, before and after the test."""
    shared_emu.clear_faults()
    CLOCK.fixed = None
    yield shared_emu
    shared_emu.clear_faults()
    CLOCK.fixed = None


def post(
    http: requests.Session,
    emu: Emulator,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    url: str | None = None,
) -> requests.Response:
    return http.post(
        url or emu.endpoint,
        data=envelope() if body is None else body,
        headers=HEADERS if headers is None else headers,
        timeout=5,
    )


def decode(token: str, jwks_url: str, http: requests.Session, *, serial: str = SERIAL) -> dict[str, object]:
    jwks = jwt.PyJWKSet.from_dict(http.get(jwks_url, timeout=5).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, object] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=f"spn:{serial}", issuer="SuperOffice AS", leeway=300
    )
    return claims


# -- success -------------------------------------------------------------------------------------


def test_success_answers_a_jwt_that_verifies_with_the_jwks(emu: Emulator, http: requests.Session) -> None:
    """A correct exchange yields IsSuccessful=true and an RS256 JWT verifiable with the served JWKS."""
    response = post(http, emu)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    answer = parse_answer(response)
    assert answer.is_successful and answer.error_message is None and answer.token
    assert jwt.get_unverified_header(answer.token) == {"alg": "RS256", "typ": "JWT", "kid": emu.kid}
    claims = decode(answer.token, emu.jwks_url, http)
    assert claims["aud"] == f"spn:{SERIAL}" and claims["iss"] == "SuperOffice AS"
    assert claims[CLAIM_PREFIX + "ctx"] == CTX
    assert claims[CLAIM_PREFIX + "serial"] == SERIAL
    assert str(claims[CLAIM_PREFIX + "ticket"]).startswith("7T:")
    assert claims[CLAIM_PREFIX + "webapi_url"] == f"{emu.base_url}/{CTX}/api/"
    assert claims[CLAIM_PREFIX + "system_token"] == SYSTEM_TOKEN
    expected = {"ctx", "serial", "ticket", "webapi_url", "netserver_url", "associateid", "is_administrator"}
    expected |= {"system_token", "email", "upn"}
    assert {k.removeprefix(CLAIM_PREFIX) for k in claims if k.startswith(CLAIM_PREFIX)} == expected
    assert claims[CLAIM_PREFIX + "associateid"] == "5" and claims[CLAIM_PREFIX + "is_administrator"] == "False"
    assert isinstance(claims["exp"], int) and isinstance(claims["iat"], int)
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] == claims["iat"]


def test_ticket_is_fresh_per_exchange(emu: Emulator, http: requests.Session) -> None:
    """Two exchanges for the same tenant carry two different 7T: tickets."""
    tickets = []
    for _ in range(2):
        token = parse_answer(post(http, emu)).token
        assert token is not None
        tickets.append(jwt.decode(token, options={"verify_signature": False})[CLAIM_PREFIX + "ticket"])
    assert all(t.startswith("7T:") for t in tickets) and tickets[0] != tickets[1]


def test_answer_is_wcf_shaped(emu: Emulator, http: requests.Session) -> None:
    """The answer uses s:, an ActivityId header, a default namespace, i:nil and the WSDL member order."""
    response = post(http, emu)
    text = response.text
    assert text.startswith('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><ActivityId ')
    assert re.search(r'<ActivityId CorrelationId="[0-9a-f-]{36}" xmlns="http://schemas.microsoft.com/2004/09/', text)
    assert f'<AuthenticationResponse xmlns="{NS}"><IsSuccessful>true</IsSuccessful><Token>' in text
    assert f'<ErrorMessage i:nil="true" xmlns:i="{XSI}"/></AuthenticationResponse>' in text
    assert parse_answer(response).members == ["IsSuccessful", "Token", "ErrorMessage"]


def test_alphabetical_member_order_is_available(http: requests.Session) -> None:
    """member_order='alphabetical' answers ErrorMessage, IsSuccessful, Token (DataContract's order)."""
    with Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY, member_order="alphabetical") as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        answer = parse_answer(post(http, emu))
    assert answer.members == ["ErrorMessage", "IsSuccessful", "Token"] and answer.is_successful


def test_system_user_token_with_dots_and_spaces_is_split_from_the_right(emu: Emulator, http: requests.Session) -> None:
    """A system user token containing dots and spaces still exchanges (rsplit on the last two dots)."""
    answer = parse_answer(post(http, emu, envelope(ctx=OTHER_CTX)))
    assert answer.is_successful and answer.token is not None
    claims = decode(answer.token, emu.jwks_url, http, serial="7654321")
    assert claims[CLAIM_PREFIX + "ctx"] == OTHER_CTX


def test_missing_return_token_type_defaults_to_jwt(emu: Emulator, http: requests.Session) -> None:
    """An AuthenticationRequest without ReturnTokenType is answered with a JWT."""
    body = envelope().replace(b"<tns:ReturnTokenType>Jwt</tns:ReturnTokenType>", b"")
    assert parse_answer(post(http, emu, body)).is_successful


def test_any_prefix_is_accepted(emu: Emulator, http: requests.Session) -> None:
    """Namespace prefixes are free: a default-namespace envelope works as well."""
    body = (
        f'<Envelope xmlns="{SOAP_ENV}"><Header><ApplicationToken xmlns="{NS}">{SECRET}</ApplicationToken>'
        f'<ContextIdentifier xmlns="{NS}">{CTX}</ContextIdentifier></Header><Body>'
        f'<AuthenticationRequest xmlns="{NS}"><SignedSystemToken>{sign(SYSTEM_TOKEN)}</SignedSystemToken>'
        "<ReturnTokenType>Jwt</ReturnTokenType></AuthenticationRequest></Body></Envelope>"
    ).encode()
    assert parse_answer(post(http, emu, body)).is_successful


def test_chunked_request_body_is_accepted(emu: Emulator, http: requests.Session) -> None:
    """A request sent with Transfer-Encoding: chunked is read completely."""
    body = envelope()
    response = http.post(emu.endpoint, data=iter([body[:100], body[100:]]), headers=HEADERS, timeout=5)
    assert parse_answer(response).is_successful


# -- HTTP and SOAP level ----------------------------------------------------------------------------


def test_endpoint_path_is_case_insensitive(emu: Emulator, http: requests.Session) -> None:
    """The endpoint path matches in any case, as IIS does."""
    url = emu.base_url + "/login/services/partnersystemuserservice.svc"
    assert parse_answer(post(http, emu, url=url)).is_successful


def test_unknown_path_is_404(emu: Emulator, http: requests.Session) -> None:
    """A POST to another path is answered 404."""
    assert post(http, emu, url=emu.base_url + "/Login/Services/Other.svc").status_code == 404


@pytest.mark.parametrize("content_type", ["application/soap+xml; charset=utf-8", "application/xml", ""])
def test_wrong_content_type_is_415(emu: Emulator, http: requests.Session, content_type: str) -> None:
    """A Content-Type other than text/xml is answered 415 (SOAP 1.1 only)."""
    headers = {**HEADERS, "Content-Type": content_type}
    assert post(http, emu, headers=headers).status_code == 415


@pytest.mark.parametrize("content_type", ["text/xml", "Text/XML; charset=UTF-8", 'text/xml; charset="utf-8"'])
def test_text_xml_with_or_without_charset_is_accepted(emu: Emulator, http: requests.Session, content_type: str) -> None:
    """text/xml is accepted with or without a UTF-8 charset parameter."""
    response = post(http, emu, headers={**HEADERS, "Content-Type": content_type})
    assert parse_answer(response).is_successful


def test_unquoted_soap_action_is_accepted(emu: Emulator, http: requests.Session) -> None:
    """The SOAPAction without quotes (as SuperOffice's Node.js sample sends it) is accepted, as WCF does."""
    response = post(http, emu, headers={**HEADERS, "SOAPAction": SOAP_ACTION})
    assert parse_answer(response).is_successful


@pytest.mark.parametrize(
    "action", ['"http://tempuri.org/IService/Authenticate"', "", '""', f'"{SOAP_ACTION}', f"{SOAP_ACTION}/"]
)
def test_wrong_soap_action_is_action_not_supported_fault(emu: Emulator, http: requests.Session, action: str) -> None:
    """A foreign, empty or half-quoted SOAPAction gets WCF's HTTP 500 a:ActionNotSupported fault."""
    response = post(http, emu, headers={**HEADERS, "SOAPAction": action})
    assert response.status_code == 500
    root = etree.fromstring(response.content)
    code = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/faultcode")
    assert code is not None and code.text == "a:ActionNotSupported"
    assert code.nsmap["a"] == "http://schemas.microsoft.com/ws/2005/05/addressing/none"
    assert "ContractFilter mismatch" in response.text


def test_malformed_xml_is_400(emu: Emulator, http: requests.Session) -> None:
    """A body that is not well-formed XML is answered HTTP 400."""
    assert post(http, emu, envelope()[:-30]).status_code == 400


def test_non_envelope_root_is_400(emu: Emulator, http: requests.Session) -> None:
    """Well-formed XML that is not a SOAP envelope is answered HTTP 400."""
    assert post(http, emu, b"<AuthenticationRequest/>").status_code == 400


def test_soap12_envelope_is_version_mismatch_fault(emu: Emulator, http: requests.Session) -> None:
    """A SOAP 1.2 envelope sent as text/xml gets an HTTP 500 s:VersionMismatch fault."""
    body = envelope().replace(SOAP_ENV.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    response = post(http, emu, body)
    assert response.status_code == 500 and "<faultcode>s:VersionMismatch</faultcode>" in response.text


def test_foreign_body_element_is_deserialization_fault(emu: Emulator, http: requests.Session) -> None:
    """A Body without AuthenticationRequest gets an HTTP 500 a:DeserializationFailed fault."""
    body = envelope().replace(b"tns:AuthenticationRequest>", b"tns:Authenticate>")
    response = post(http, emu, body)
    assert response.status_code == 500 and ">a:DeserializationFailed</faultcode>" in response.text


def test_invalid_return_token_type_is_deserialization_fault(emu: Emulator, http: requests.Session) -> None:
    """A ReturnTokenType outside Jwt|Saml (case-sensitive) gets a:DeserializationFailed."""
    response = post(http, emu, envelope(token_type="JWT"))
    assert response.status_code == 500 and "not a valid value for TokenType" in response.text


def test_must_understand_header_is_fault(emu: Emulator, http: requests.Session) -> None:
    """An unknown header with mustUnderstand="1" (e.g. WS-Addressing) gets s:MustUnderstand."""
    header = '<wsa:Action xmlns:wsa="http://www.w3.org/2005/08/addressing" SOAP-ENV:mustUnderstand="1">x</wsa:Action>'
    body = envelope().replace(b"<SOAP-ENV:Header>", b"<SOAP-ENV:Header>" + header.encode())
    response = post(http, emu, body)
    assert response.status_code == 500 and "<faultcode>s:MustUnderstand</faultcode>" in response.text


def test_unknown_optional_header_is_ignored(emu: Emulator, http: requests.Session) -> None:
    """An extra header without mustUnderstand is ignored, as WCF does."""
    header = b'<wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:uuid:1</wsa:MessageID>'
    body = envelope().replace(b"<SOAP-ENV:Header>", b"<SOAP-ENV:Header>" + header)
    assert parse_answer(post(http, emu, body)).is_successful


def test_oversized_request_is_413(emu: Emulator, http: requests.Session) -> None:
    """A request above WCF's default 64 KiB message size is answered 413."""
    assert post(http, emu, b" " * 70_000 + envelope()).status_code == 413


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:tns="http://www.superoffice.com/superid/partnersystemuser/0.1">
<SOAP-ENV:Header><tns:ApplicationToken>&xxe;</tns:ApplicationToken>
<tns:ContextIdentifier>&lol4;</tns:ContextIdentifier></SOAP-ENV:Header>
<SOAP-ENV:Body><tns:AuthenticationRequest/></SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def test_doctype_request_is_refused_without_expansion(emu: Emulator, http: requests.Session) -> None:
    """A request with a DOCTYPE (entity bomb, XXE) is answered 400 and nothing is expanded."""
    started = time.perf_counter()
    response = post(http, emu, BILLION_LAUGHS)
    assert response.status_code == 400 and response.content == b""
    assert time.perf_counter() - started < 1.0


def test_utf16_doctype_request_is_refused(emu: Emulator, http: requests.Session) -> None:
    """A DOCTYPE hidden from a byte scan by UTF-16 encoding is refused after parsing too."""
    body = BILLION_LAUGHS.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-16"?>')
    response = post(http, emu, body.decode().encode("utf-16"), headers={**HEADERS, "Content-Type": "text/xml"})
    assert response.status_code == 400


def test_unbound_prefixes_answered_not_crashed(emu: Emulator, http: requests.Session) -> None:
    """Tags that keep an unbound prefix (lxml lets them parse) get a WCF-style answer, not an internal error."""
    before = len(emu.internal_errors)
    for body in (
        b'<s:Envelope xmz:s="x"><s:Body/></s:Envelope>',
        envelope().replace(b"<tns:AuthenticationRequest>", b"<q:AuthenticationRequest>").replace(
            b"</tns:AuthenticationRequest>", b"</q:AuthenticationRequest>"
        ),
    ):
        response = post(http, emu, body)
        assert response.status_code in (400, 500)
    assert len(emu.internal_errors) == before


# -- rejections ---------------------------------------------------------------------------------------


def rejected(response: requests.Response) -> str:
    assert response.status_code == 200
    answer = parse_answer(response)
    assert not answer.is_successful and answer.token is None and answer.error_message
    return answer.error_message


def test_wrong_application_token_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """An ApplicationToken other than the client secret is rejected as InvalidApplicationToken."""
    message = rejected(post(http, emu, envelope(app="not-the-secret")))
    assert message.startswith(Reason.INVALID_APPLICATION_TOKEN + ": ")


def test_application_token_is_checked_before_tenant(emu: Emulator, http: requests.Session) -> None:
    """With both a wrong secret and an unknown tenant, the application token is reported."""
    message = rejected(post(http, emu, envelope(app="nope", ctx="Cust00001")))
    assert message.startswith(Reason.INVALID_APPLICATION_TOKEN)


def test_missing_headers_are_rejected(emu: Emulator, http: requests.Session) -> None:
    """An envelope without the two SOAP headers is rejected (they are nillable, not required)."""
    body = re.sub(rb"<SOAP-ENV:Header>.*</SOAP-ENV:Header>", b"", envelope(), flags=re.S)
    assert rejected(post(http, emu, body)).startswith(Reason.INVALID_APPLICATION_TOKEN)


def test_unknown_tenant_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """A ContextIdentifier the emulator does not know is rejected as UnknownTenant."""
    message = rejected(post(http, emu, envelope(sign(SYSTEM_TOKEN), ctx="Cust00001")))
    assert message.startswith(Reason.UNKNOWN_TENANT + ": ") and "Cust00001" in message


def test_wrong_system_user_token_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """A correctly signed system user token of another tenant is rejected as InvalidSystemToken."""
    message = rejected(post(http, emu, envelope(sign(OTHER_SYSTEM_TOKEN), ctx=CTX)))
    assert message.startswith(Reason.INVALID_SYSTEM_TOKEN + ": ")


def test_signature_by_another_key_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """A signature made with a key other than the registered partner key is InvalidSignature."""
    message = rejected(post(http, emu, envelope(sign(SYSTEM_TOKEN, key=SIGNING_KEY))))
    assert message == f"{Reason.INVALID_SIGNATURE}: calculated signature is invalid"


def test_tampered_timestamp_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """Changing the signed minute invalidates the signature."""
    token, stamp, signature = sign(SYSTEM_TOKEN).rsplit(".", 2)
    other = (datetime.strptime(stamp, "%Y%m%d%H%M") + timedelta(minutes=1)).strftime("%Y%m%d%H%M")
    message = rejected(post(http, emu, envelope(f"{token}.{other}.{signature}")))
    assert message.startswith(Reason.INVALID_SIGNATURE)


def test_url_safe_base64_signature_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """A signature in URL-safe Base64 (not the standard alphabet) is InvalidSignature."""
    token, stamp, _ = sign(SYSTEM_TOKEN).rsplit(".", 2)
    message = rejected(post(http, emu, envelope(f"{token}.{stamp}.ab-_cd==")))
    assert message.startswith(Reason.INVALID_SIGNATURE) and "Base64" in message


def test_unsigned_token_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """A bare system user token without timestamp and signature is InvalidSignature."""
    assert rejected(post(http, emu, envelope("AcmeSync"))).startswith(Reason.INVALID_SIGNATURE)


@pytest.mark.parametrize("stamp", ["2026112813", "20261128133000", "2026-11-28T1", "202613281330"])
def test_malformed_timestamp_is_rejected(emu: Emulator, http: requests.Session, stamp: str) -> None:
    """A timestamp that is not a valid 12-digit yyyyMMddHHmm is InvalidTimestamp."""
    message = rejected(post(http, emu, envelope(f"{SYSTEM_TOKEN}.{stamp}.AAAA")))
    assert message.startswith(Reason.INVALID_TIMESTAMP + ": ")


AT = datetime(2026, 11, 28, 13, 30, tzinfo=timezone.utc)


def test_timestamp_too_old_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """A signature more than 15 minutes older than the emulator clock is InvalidTimestamp."""
    CLOCK.fixed = AT + timedelta(minutes=16)
    message = rejected(post(http, emu, envelope(sign(SYSTEM_TOKEN, AT))))
    assert message.startswith(Reason.INVALID_TIMESTAMP) and "behind" in message


def test_timestamp_too_new_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """A signature more than 15 minutes ahead of the emulator clock is InvalidTimestamp."""
    CLOCK.fixed = AT - timedelta(minutes=16)
    message = rejected(post(http, emu, envelope(sign(SYSTEM_TOKEN, AT))))
    assert message.startswith(Reason.INVALID_TIMESTAMP) and "ahead of" in message


@pytest.mark.parametrize("offset", [-900, 900])
def test_timestamp_at_tolerance_is_accepted(emu: Emulator, http: requests.Session, offset: int) -> None:
    """A signature exactly 900 s from the emulator clock (either side) is accepted."""
    CLOCK.fixed = AT + timedelta(seconds=offset)
    assert parse_answer(post(http, emu, envelope(sign(SYSTEM_TOKEN, AT)))).is_successful


@pytest.mark.parametrize("offset", [-901, 901])
def test_timestamp_just_beyond_tolerance_is_rejected(emu: Emulator, http: requests.Session, offset: int) -> None:
    """A signature 901 s from the emulator clock is InvalidTimestamp."""
    CLOCK.fixed = AT + timedelta(seconds=offset)
    assert rejected(post(http, emu, envelope(sign(SYSTEM_TOKEN, AT)))).startswith(Reason.INVALID_TIMESTAMP)


def test_jwt_times_follow_the_emulator_clock(emu: Emulator, http: requests.Session) -> None:
    """iat and exp come from the injected clock."""
    CLOCK.fixed = AT
    token = parse_answer(post(http, emu, envelope(sign(SYSTEM_TOKEN, AT)))).token
    assert token is not None
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iat"] == int(AT.timestamp()) and claims["exp"] == int(AT.timestamp()) + 300


def test_saml_is_refused(emu: Emulator, http: requests.Session) -> None:
    """ReturnTokenType Saml is rejected: only Jwt is emulated."""
    message = rejected(post(http, emu, envelope(token_type="Saml")))
    assert message == f"{Reason.UNSUPPORTED_TOKEN_TYPE}: only Jwt is emulated"


# -- faults --------------------------------------------------------------------------------------------


def test_latency_fault_delays_the_answer(emu: Emulator, http: requests.Session) -> None:
    """LATENCY waits the given seconds and then answers normally."""
    emu.inject(Fault.LATENCY, seconds=0.2)
    started = time.perf_counter()
    response = post(http, emu)
    assert time.perf_counter() - started >= 0.2
    assert parse_answer(response).is_successful


def test_soap_fault_500(emu: Emulator, http: requests.Session) -> None:
    """SOAP_FAULT_500 answers HTTP 500 with WCF's a:InternalServiceFault."""
    emu.inject(Fault.SOAP_FAULT_500)
    response = post(http, emu)
    assert response.status_code == 500 and response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert ">a:InternalServiceFault</faultcode>" in response.text


def test_soap_fault_500_with_code_and_message(emu: Emulator, http: requests.Session) -> None:
    """SOAP_FAULT_500 with code='Client' and a message answers s:Client with that faultstring."""
    emu.inject(Fault.SOAP_FAULT_500, code="Client", message="Bad & sad")
    response = post(http, emu)
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "s:Client" and fault.findtext("faultstring") == "Bad & sad"


def test_service_unavailable_html(emu: Emulator, http: requests.Session) -> None:
    """SERVICE_UNAVAILABLE_HTML answers HTTP 503 with an HTML page and the given Retry-After."""
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, retry_after=2)
    response = post(http, emu)
    assert response.status_code == 503 and response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Retry-After"] == "2" and "Service Unavailable" in response.text


def test_empty_body(emu: Emulator, http: requests.Session) -> None:
    """EMPTY_BODY answers HTTP 200 text/xml with no bytes."""
    emu.inject(Fault.EMPTY_BODY)
    response = post(http, emu)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["Content-Type"].startswith("text/xml")


def test_truncated_body(emu: Emulator, http: requests.Session) -> None:
    """TRUNCATED_BODY answers HTTP 200 with the envelope cut in the middle."""
    emu.inject(Fault.TRUNCATED_BODY)
    response = post(http, emu)
    assert response.status_code == 200 and response.content.startswith(b"<s:Envelope")
    assert int(response.headers["Content-Length"]) == len(response.content) > 100
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content)


def test_disconnect(emu: Emulator, http: requests.Session) -> None:
    """DISCONNECT closes the connection without an answer."""
    emu.inject(Fault.DISCONNECT)
    with pytest.raises(requests.ConnectionError):
        post(http, emu)


def test_reject_with_message(emu: Emulator, http: requests.Session) -> None:
    """REJECT answers IsSuccessful=false with the given message."""
    emu.inject(Fault.REJECT, message="Revoked")
    assert rejected(post(http, emu)) == "Revoked"


def test_reject_defaults_to_denied(emu: Emulator, http: requests.Session) -> None:
    """REJECT without a message answers 'Denied'."""
    emu.inject(Fault.REJECT)
    assert rejected(post(http, emu)) == "Denied"


def test_expired_token(emu: Emulator, http: requests.Session) -> None:
    """EXPIRED_TOKEN answers a validly signed JWT that expired an hour ago."""
    emu.inject(Fault.EXPIRED_TOKEN)
    token = parse_answer(post(http, emu)).token
    assert token is not None
    with pytest.raises(jwt.ExpiredSignatureError):
        decode(token, emu.jwks_url, http)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] <= time.time() - 3500


def test_wrong_tenant_token(emu: Emulator, http: requests.Session) -> None:
    """WRONG_TENANT_TOKEN answers a validly signed JWT whose ctx is another tenant."""
    emu.inject(Fault.WRONG_TENANT_TOKEN)
    token = parse_answer(post(http, emu)).token
    assert token is not None
    claims = jwt.decode(token, emu.public_key, algorithms=["RS256"], options={"verify_aud": False})
    assert claims[CLAIM_PREFIX + "ctx"] == OTHER_CTX


def test_token_faults_are_not_consumed_by_failed_exchanges(emu: Emulator, http: requests.Session) -> None:
    """A token fault waits for an exchange that succeeds."""
    emu.inject(Fault.EXPIRED_TOKEN, times=1)
    rejected(post(http, emu, envelope(app="wrong")))
    token = parse_answer(post(http, emu)).token
    assert token is not None
    assert jwt.decode(token, options={"verify_signature": False})["exp"] < time.time()


def test_jwks_unavailable(emu: Emulator, http: requests.Session) -> None:
    """JWKS_UNAVAILABLE answers 503 on the JWKS and the discovery document."""
    emu.inject(Fault.JWKS_UNAVAILABLE, times=2)
    assert http.get(emu.jwks_url, timeout=5).status_code == 503
    assert http.get(emu.openid_configuration_url, timeout=5).status_code == 503
    assert http.get(emu.jwks_url, timeout=5).status_code == 200


def test_drip_sends_the_same_bytes_one_at_a_time(emu: Emulator) -> None:
    """DRIP changes how an answer is sent, not what: the same bytes (an injected 503 here), one every `seconds`."""
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, retry_after=2, times=2)
    at_once = receive_all(emu, soap_closing())
    emu.inject(Fault.DRIP, seconds=0.001, times=1)
    dripped = receive_all(emu, soap_closing())
    assert dripped.data.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 2\r\n" in dripped.data
    assert without_date(dripped.data) == without_date(at_once.data)
    assert dripped.first < 0.5
    assert dripped.last >= (len(dripped.data) - 1) * 0.001
    assert receive_all(emu, soap_closing()).data.startswith(b"HTTP/1.1 200 ")  # both faults consumed


def test_tenant_drip_only_hits_that_tenant(emu: Emulator, http: requests.Session) -> None:
    """A DRIP injected for one tenant leaves the other tenants' answers at full speed."""
    emu.inject(Fault.DRIP, tenant=OTHER_CTX, seconds=5)
    started = time.perf_counter()
    assert parse_answer(post(http, emu)).is_successful
    assert time.perf_counter() - started < 1


def test_drip_is_cut_by_a_client_deadline(emu: Emulator) -> None:
    """A client with deadline=1 against bytes 50 ms apart (each within its read timeout) fails on time, retryably."""
    emu.inject(Fault.DRIP, seconds=0.05, times=1)
    with SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, deadline=1) as client:
        started = time.perf_counter()
        with pytest.raises(TransportError) as info:
            client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_TOKEN)
        elapsed = time.perf_counter() - started
    assert 1 <= elapsed < 1.2
    assert info.value.retryable and info.value.phase == "wait for headers"
    assert emu.internal_errors == []


def test_jwks_drip_is_cut_by_a_client_deadline(emu: Emulator) -> None:
    """JWKS_DRIP holds a client's JWKS fetch: with deadline=1 the call fails on time, retryably, after the exchange."""
    emu.inject(Fault.JWKS_DRIP, seconds=0.05, times=1)
    exchanges, fetches = emu.exchange_count, emu.jwks_count
    with SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, deadline=1) as client:
        started = time.perf_counter()
        with pytest.raises(TransportError) as info:
            client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_TOKEN)
        elapsed = time.perf_counter() - started
    assert 1 <= elapsed < 1.2
    assert info.value.retryable
    assert (emu.exchange_count, emu.jwks_count) == (exchanges + 1, fetches + 1)
    assert emu.internal_errors == []


def test_jwks_drip_sends_the_key_documents_slowly(emu: Emulator, http: requests.Session) -> None:
    """JWKS_DRIP answers the JWKS and the discovery document as usual, one byte at a time."""
    emu.inject(Fault.JWKS_DRIP, seconds=0.0005, times=2)
    started = time.perf_counter()
    jwks = http.get(emu.jwks_url, timeout=5)
    assert time.perf_counter() - started >= len(jwks.content) * 0.0005
    assert jwks.json() == emu.jwks()
    assert http.get(emu.openid_configuration_url, timeout=5).json()["jwks_uri"] == emu.jwks_url
    started = time.perf_counter()
    http.get(emu.jwks_url, timeout=5)
    assert time.perf_counter() - started < 0.2


def test_drip_ends_when_the_client_goes_away() -> None:
    """A client that closes its connection mid-drip ends the drip: the handler thread finishes, nothing is recorded."""
    with Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        emu.inject(Fault.DRIP, seconds=0.02)
        sock, handler = start_a_drip(emu)
        sock.close()
        handler.join(2)  # the whole answer would take about 30 s more
        assert not handler.is_alive()
        assert emu.internal_errors == []


def test_clear_faults_sends_the_rest_of_a_drip_at_once(emu: Emulator) -> None:
    """clear_faults() during a drip returns at once, and the rest of the answer follows at full speed."""
    emu.inject(Fault.DRIP, seconds=10)
    sock, _ = start_a_drip(emu)
    with sock:
        started = time.perf_counter()
        emu.clear_faults()
        assert time.perf_counter() - started < 0.1
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert time.perf_counter() - started < 1
    head, _, body = (b"H" + rest).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and outcome(body) == (True, None)


def test_stop_cuts_a_drip_short() -> None:
    """stop() during a drip returns promptly, ends the drip's thread and closes the connection without the rest."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY).start()
    emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
    emu.inject(Fault.DRIP, seconds=10)
    sock, handler = start_a_drip(emu)
    with sock:
        started = time.perf_counter()
        emu.stop()
        assert time.perf_counter() - started < 1
        try:
            rest = sock.recv(65536)
        except ConnectionResetError:
            rest = b""
        handler.join(1)
        assert not handler.is_alive() and time.perf_counter() - started < 1
    assert rest == b""
    assert emu.internal_errors == []


def test_tenant_fault_only_hits_that_tenant(emu: Emulator, http: requests.Session) -> None:
    """A fault injected for one tenant leaves the other tenants alone."""
    emu.inject(Fault.REJECT, tenant=OTHER_CTX, message="Denied")
    assert parse_answer(post(http, emu)).is_successful
    assert rejected(post(http, emu, envelope(ctx=OTHER_CTX))) == "Denied"


def test_global_fault_hits_every_tenant(emu: Emulator, http: requests.Session) -> None:
    """A fault injected without a tenant applies to every exchange."""
    emu.inject(Fault.REJECT, message="Denied")
    assert rejected(post(http, emu)) == "Denied"
    assert rejected(post(http, emu, envelope(ctx=OTHER_CTX))) == "Denied"


def test_tenant_fault_wins_over_global_fault(emu: Emulator, http: requests.Session) -> None:
    """When a tenant fault and a global fault both match, the tenant's applies."""
    emu.inject(Fault.REJECT, message="global")
    emu.inject(Fault.REJECT, tenant=CTX, message="tenant")
    assert rejected(post(http, emu)) == "tenant"


def test_used_up_tenant_faults_fall_back_to_global_ones_in_injection_order(
    emu: Emulator, http: requests.Session
) -> None:
    """A tenant's one-shot faults go first, in injection order, then the global ones, in theirs."""
    emu.inject(Fault.REJECT, message="global 1", times=1)
    emu.inject(Fault.REJECT, tenant=CTX, message="tenant 1", times=1)
    emu.inject(Fault.REJECT, message="global 2", times=1)
    emu.inject(Fault.REJECT, tenant=CTX, message="tenant 2", times=1)
    emu.inject(Fault.REJECT, tenant=OTHER_CTX, message="other", times=1)
    assert [rejected(post(http, emu)) for _ in range(4)] == ["tenant 1", "tenant 2", "global 1", "global 2"]
    assert parse_answer(post(http, emu)).is_successful
    assert rejected(post(http, emu, envelope(ctx=OTHER_CTX))) == "other"


def test_tenant_and_global_latencies_add_up_and_are_used_up(emu: Emulator, http: requests.Session) -> None:
    """LATENCY for the tenant and a global one both apply to an exchange, and both count a time."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.15, times=1)
    emu.inject(Fault.LATENCY, seconds=0.15, times=1)
    started = time.perf_counter()
    assert parse_answer(post(http, emu)).is_successful
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    assert parse_answer(post(http, emu)).is_successful
    assert time.perf_counter() - started < 0.15


def test_one_shot_fault(emu: Emulator, http: requests.Session) -> None:
    """A fault with times=1 hits the next exchange only."""
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    assert post(http, emu).status_code == 503
    assert parse_answer(post(http, emu)).is_successful


def test_permanent_fault_lasts_until_cleared(emu: Emulator, http: requests.Session) -> None:
    """A fault without times applies until clear_faults()."""
    emu.inject(Fault.EMPTY_BODY)
    assert [post(http, emu).content for _ in range(3)] == [b"", b"", b""]
    emu.clear_faults()
    assert parse_answer(post(http, emu)).is_successful


@pytest.mark.parametrize(
    ("fault", "options"),
    [
        (Fault.LATENCY, {}),
        (Fault.REJECT, {"seconds": 1.0}),
        (Fault.EMPTY_BODY, {"times": 0}),
        (Fault.SOAP_FAULT_500, {"code": "Receiver"}),
        (Fault.JWKS_UNAVAILABLE, {"tenant": CTX}),
        (Fault.DRIP, {}),
        (Fault.DRIP, {"seconds": 0}),
        (Fault.DRIP, {"seconds": 0.1, "message": "slow"}),
        (Fault.JWKS_DRIP, {}),
        (Fault.JWKS_DRIP, {"seconds": 0.1, "tenant": CTX}),
    ],
)
def test_inject_refuses_meaningless_options(emu: Emulator, fault: Fault, options: dict[str, object]) -> None:
    """inject() refuses options the fault does not use, and impossible values."""
    with pytest.raises(ValueError):
        emu.inject(fault, **options)  # type: ignore[arg-type]


# -- keys and discovery ------------------------------------------------------------------------------


def test_jwks_serves_the_signing_key(emu: Emulator, http: requests.Session) -> None:
    """The JWKS lists the signing key as an RS256 signature key with its kid."""
    response = http.get(emu.jwks_url, timeout=5)
    assert response.headers["Content-Type"].startswith("application/json")
    (key,) = response.json()["keys"]
    assert {key["kty"], key["use"], key["alg"], key["kid"]} == {"RSA", "sig", "RS256", emu.kid}
    loaded = jwt.PyJWK.from_dict(key).key
    assert isinstance(loaded, rsa.RSAPublicKey)
    assert loaded.public_numbers() == SIGNING_KEY.public_key().public_numbers()


def test_jwks_path_is_case_insensitive(emu: Emulator, http: requests.Session) -> None:
    """The JWKS path matches in any case."""
    assert http.get(emu.base_url + "/Login/.Well-Known/JWKS", timeout=5).status_code == 200


def test_key_rotation_publishes_both_keys_and_signs_with_the_new(http: requests.Session) -> None:
    """After rotate_key the JWKS lists old and new keys and new JWTs carry the new kid."""
    with Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        old_kid = emu.kid
        new_kid = emu.rotate_key(PARTNER_KEY)
        assert new_kid != old_kid and emu.kid == new_kid
        kids = [k["kid"] for k in http.get(emu.jwks_url, timeout=5).json()["keys"]]
        assert kids == [old_kid, new_kid]
        token = parse_answer(post(http, emu)).token
        assert token is not None
        assert jwt.get_unverified_header(token)["kid"] == new_kid
        decode(token, emu.jwks_url, http)
        jwt.decode(token, PARTNER_KEY.public_key(), algorithms=["RS256"], audience=f"spn:{SERIAL}")


def test_key_rotation_can_drop_old_keys(http: requests.Session) -> None:
    """rotate_key(keep_old=False) publishes the new key only."""
    with Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY) as emu:
        new_kid = emu.rotate_key(PARTNER_KEY, keep_old=False)
        assert [k["kid"] for k in http.get(emu.jwks_url, timeout=5).json()["keys"]] == [new_kid]


def test_openid_configuration_points_at_the_jwks(emu: Emulator, http: requests.Session) -> None:
    """The discovery document names the issuer and the absolute JWKS URL."""
    document = http.get(emu.openid_configuration_url, timeout=5).json()
    assert document["jwks_uri"] == emu.jwks_url and document["issuer"]
    assert http.get(document["jwks_uri"], timeout=5).status_code == 200


def test_get_on_endpoint_is_a_help_page(emu: Emulator, http: requests.Session) -> None:
    """A GET on the .svc answers a small HTML page, as WCF does."""
    response = http.get(emu.endpoint, timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")


# -- connection handling and bookkeeping ---------------------------------------------------------------


def test_listen_backlog_queues_512_connections_before_accept(emu: Emulator) -> None:
    """The listening socket completes 512 handshakes nobody has accepted yet (Python's default backlog is 5)."""
    server = emulator_server._Server(("127.0.0.1", 0), emu, socket.AF_INET)  # bound and listening, never serving
    clients: list[socket.socket] = []
    try:
        for _ in range(512):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            clients.append(client)
            client.settimeout(2)
            client.connect(server.server_address)  # a SYN dropped by a full queue times out here
    finally:
        for client in clients:
            client.close()
        server.server_close()
    assert len(clients) == 512


def test_keep_alive_reuses_one_connection(emu: Emulator) -> None:
    """Two exchanges on one requests.Session travel over one TCP connection."""
    before = emu.connection_count
    with requests.Session() as session:
        session.trust_env = False
        first = post(session, emu)
        second = post(session, emu)
    assert emu.connection_count == before + 1
    assert parse_answer(first).is_successful and parse_answer(second).is_successful


def test_exchange_count_counts_every_soap_post(emu: Emulator, http: requests.Session) -> None:
    """exchange_count counts successful and failed SOAP POSTs, not GETs."""
    before = emu.exchange_count
    post(http, emu)
    post(http, emu, envelope(app="wrong"))
    post(http, emu, headers={**HEADERS, "Content-Type": "application/json"})
    http.get(emu.jwks_url, timeout=5)
    assert emu.exchange_count == before + 3


def test_requests_are_recorded_with_headers_and_body(emu: Emulator, http: requests.Session) -> None:
    """The last SOAP POSTs are kept as (headers, body) with case-insensitive header lookup."""
    body = envelope()
    post(http, emu, body)
    headers, recorded = emu.requests[-1]
    assert recorded == body and headers["soapaction"] == f'"{SOAP_ACTION}"'
    assert headers["CONTENT-TYPE"] == "text/xml; charset=utf-8"


def test_recorded_requests_are_bounded(emu: Emulator, http: requests.Session) -> None:
    """At most the last 100 requests are kept."""
    body = b"<x/>"
    for _ in range(105):
        post(http, emu, body, headers={"Content-Type": "text/plain"})
    assert len(emu.requests) == 100


def test_jwks_count(emu: Emulator, http: requests.Session) -> None:
    """jwks_count counts JWKS fetches, so a client's key cache can be tested."""
    before = emu.jwks_count
    http.get(emu.jwks_url, timeout=5)
    assert emu.jwks_count == before + 1


def test_tenant_urls_are_derived_from_the_base_url(emu: Emulator) -> None:
    """add_tenant without URLs derives webapi_url and netserver_url from the base URL and ctx."""
    tenant = emu.tenants[CTX]
    assert tenant.webapi_url == f"{emu.base_url}/{CTX}/api/"
    assert tenant.netserver_url == f"{emu.base_url}/{CTX}/Remote/Services88/"


def test_removed_tenant_is_unknown(http: requests.Session) -> None:
    """remove_tenant makes later exchanges fail with UnknownTenant."""
    with Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN)
        emu.remove_tenant(CTX)
        assert rejected(post(http, emu)).startswith(Reason.UNKNOWN_TENANT)


# -- lifecycle and configuration ------------------------------------------------------------------------


def test_starts_fast_and_stops_idempotently(http: requests.Session) -> None:
    """start() takes milliseconds, stop() closes the port and may be called twice."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY)
    started = time.perf_counter()
    emu.start()
    assert time.perf_counter() - started < 0.5
    url = emu.jwks_url
    assert http.get(url, timeout=5).status_code == 200
    emu.stop()
    emu.stop()
    assert not emu.running
    with pytest.raises(requests.ConnectionError):
        http.get(url, timeout=2)


def test_stop_closes_idle_keep_alive_connections(http: requests.Session) -> None:
    """stop() does not wait for idle keep-alive connections."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY).start()
    with requests.Session() as session:
        session.trust_env = False
        session.get(emu.jwks_url, timeout=5)
        started = time.perf_counter()
        emu.stop()
        assert time.perf_counter() - started < 1.0


def test_stop_cuts_an_injected_latency_short() -> None:
    """stop() during a LATENCY wait ends the wait at once (a 503 or a closed connection), not after the delay."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY)
    emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
    outcome: list[object] = []

    def call() -> None:
        with requests.Session() as session:
            session.trust_env = False
            try:
                outcome.append(session.post(emu.endpoint, data=envelope(), headers=HEADERS, timeout=30).status_code)
            except requests.ConnectionError as exc:
                outcome.append(exc)

    with emu:
        emu.inject(Fault.LATENCY, seconds=30)
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        deadline = time.monotonic() + 5
        while emu.exchange_count == 0:
            assert time.monotonic() < deadline, "the request never arrived"
            time.sleep(0.01)
        started = time.perf_counter()
    caller.join(5)
    assert not caller.is_alive() and time.perf_counter() - started < 5
    assert len(outcome) == 1 and (outcome[0] == 503 or isinstance(outcome[0], requests.ConnectionError))
    assert emu.internal_errors == []


def test_urls_need_a_running_emulator() -> None:
    """base_url and friends raise before start()."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY)
    with pytest.raises(RuntimeError):
        _ = emu.endpoint


def test_partner_key_as_pem_bytes(http: requests.Session) -> None:
    """partner_public_key may be PEM bytes of the public key."""
    pem = PARTNER_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with Emulator(SECRET, pem, signing_key=SIGNING_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        assert parse_answer(post(http, emu)).is_successful


@pytest.mark.parametrize("key", [b"not a key", ec.generate_private_key(ec.SECP256R1())])
def test_partner_key_must_be_rsa(key: object) -> None:
    """A partner key that is not an RSA key is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        Emulator(SECRET, key, signing_key=SIGNING_KEY)  # type: ignore[arg-type]


def test_non_loopback_bind_is_refused() -> None:
    """Binding a non-loopback address is refused unless allow_remote=True."""
    with pytest.raises(ConfigurationError):
        Emulator(SECRET, PARTNER_KEY, host="0.0.0.0", signing_key=SIGNING_KEY)
    Emulator(SECRET, PARTNER_KEY, host="0.0.0.0", signing_key=SIGNING_KEY, allow_remote=True)


def test_naive_clock_is_refused_at_start() -> None:
    """A clock returning naive datetimes fails at start(), not inside a request."""
    emu = Emulator(SECRET, PARTNER_KEY, signing_key=SIGNING_KEY, clock=datetime.now)
    with pytest.raises(ConfigurationError):
        emu.start()
    assert not emu.running


# -- configuration ----------------------------------------------------------------------------


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
        assert outcome(post(http, emu, framed_envelope())) == (True, None)


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
    assert outcome(post(http, emu, framed_envelope())) == (True, None)


def test_recorded_request_repr_hides_the_body() -> None:
    """A RecordedRequest's repr shows the headers and the body's size, never the body (it holds the client secret)."""
    request = RecordedRequest(Headers([("Content-Type", "text/xml")]), b"<ApplicationToken>s3cret-canary</ApplicationToken>")
    text = repr(request)
    assert "s3cret-canary" not in text and "ApplicationToken" not in text
    assert f"body=<{len(request.body)} bytes>" in text and "text/xml" in text


# -- headers ----------------------------------------------------------------------------------


def test_headers_merge_repeats_case_insensitively() -> None:
    """Headers joins repeated names with ', ', iterates lower-cased names, and has a plain repr."""
    headers = Headers([("X-Trace", "a"), ("Content-Type", "text/xml"), ("x-trace", "b")])
    assert headers["X-TRACE"] == "a, b" and len(headers) == 2
    assert list(headers) == ["x-trace", "content-type"]
    assert dict(headers) == {"x-trace": "a, b", "content-type": "text/xml"}
    assert repr(headers) == "Headers({'x-trace': 'a, b', 'content-type': 'text/xml'})"


# -- malformed SOAP ---------------------------------------------------------------------------


def test_nil_context_identifier_is_unknown_tenant(emu: Emulator, http: requests.Session) -> None:
    """ContextIdentifier with xsi:nil is treated as absent: UnknownTenant naming 'none'."""
    header = APP.format(SECRET) + '<tns:ContextIdentifier i:nil="true"/>'
    assert outcome(post(http, emu, framed_envelope(header))) == (
        False,
        f"{Reason.UNKNOWN_TENANT}: no tenant with ContextIdentifier none",
    )


def test_nil_application_token_is_rejected(emu: Emulator, http: requests.Session) -> None:
    """ApplicationToken with xsi:nil="1" is absent, so InvalidApplicationToken (not a crash or a match)."""
    header = '<tns:ApplicationToken i:nil="1"/>' + CTX_HEADER.format(CTX)
    successful, message = outcome(post(http, emu, framed_envelope(header)))
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
    assert outcome(post(http, emu, framed_envelope(header))) == (True, None)


@pytest.mark.parametrize("name", ["ApplicationToken", "ContextIdentifier"])
def test_duplicate_service_header_is_client_fault(emu: Emulator, http: requests.Session, name: str) -> None:
    """A service header sent twice gets HTTP 500 s:Client 'Multiple headers' (never first- or last-wins)."""
    header = APP.format(SECRET) + CTX_HEADER.format(CTX)
    header += APP.format(SECRET) if name == "ApplicationToken" else CTX_HEADER.format("Cust00000")
    response = post(http, emu, framed_envelope(header))
    assert response.status_code == 500
    code, text = fault_of(response)
    assert code == "s:Client"
    assert text == f"Multiple headers with name '{name}' and namespace '{NS}' found."


def test_empty_body_is_deserialization_fault(emu: Emulator, http: requests.Session) -> None:
    """A Body with no element (only whitespace) gets a:DeserializationFailed ending at 'EndElement'."""
    response = post(http, emu, framed_envelope(body="  "))
    assert response.status_code == 500
    code, text = fault_of(response)
    assert code == "a:DeserializationFailed"
    assert text.endswith("Found node type 'EndElement'.") and "'AuthenticationRequest'" in text


@pytest.mark.parametrize("content_type", ["text/xml; charset=iso-8859-1", "text/xml; charset=utf-16"])
def test_non_utf8_charset_is_415(emu: Emulator, http: requests.Session, content_type: str) -> None:
    """text/xml with a charset other than UTF-8 is answered 415, naming the refused content type."""
    response = post(http, emu, framed_envelope(), headers={**HEADERS, "Content-Type": content_type})
    assert response.status_code == 415
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert f"content type '{content_type}'" in response.text


# -- HTTP framing -----------------------------------------------------------------------------


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
    first, second = raw(emu, chunked(framed_envelope(), b"X-Checksum: 1\r\nX-Other: 2\r\n"), chunked(framed_envelope()))
    assert first.status == 200 and second.status == 200
    assert first.getheader("Connection") is None


def test_chunked_body_over_the_cap_is_413(emu: Emulator) -> None:
    """Chunks adding up to more than 64 KiB get 413 as soon as the size is announced, before the data."""
    head = soap_head("Transfer-Encoding: chunked\r\n")
    (response,) = raw(emu, head + b"8000\r\n" + b"a" * 0x8000 + b"\r\n8001\r\n")
    assert response.status == 413 and response.getheader("Connection") == "close"


# -- internal errors --------------------------------------------------------------------------


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
        response = post(http, emu, framed_envelope())
        assert response.status_code == 500
        assert fault_of(response)[0] == "a:InternalServiceFault"
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
            post(http, emu, framed_envelope())
        monkeypatch.undo()
        assert emu.internal_errors == ([boom] if recorded else [])
        assert http.get(emu.jwks_url, timeout=5).status_code == 200  # the server keeps serving


# -- command line --------------------------------------------------------------------------------------


def run_main(argv: list[str]) -> tuple[threading.Thread, threading.Event, io.StringIO, list[int]]:
    stop, out, result = threading.Event(), io.StringIO(), []
    thread = threading.Thread(target=lambda: result.append(main(argv, stop=stop, stdout=out)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while "Ctrl-C" not in out.getvalue():
        assert time.monotonic() < deadline and thread.is_alive(), out.getvalue()
        time.sleep(0.01)
    return thread, stop, out, result


def field_of(text: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}:\s+(.+?)$", text, re.M)
    assert match, text
    return match.group(1)


def test_cli_serves_with_printed_credentials_and_stops(http: requests.Session) -> None:
    """`sut-soap emulator` prints working URLs and throwaway credentials, then stops cleanly."""
    thread, stop, out, result = run_main(["--port", "0"])
    try:
        text = out.getvalue()
        endpoint = field_of(text, "endpoint")
        key_path = Path(field_of(text, "partner key").removesuffix(" (deleted on exit)"))
        assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
        partner = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(partner, rsa.RSAPrivateKey)
        ctx = field_of(text, "tenant").split()[0]
        token = field_of(text, "system user token")
        body = ENVELOPE.format(
            app=field_of(text, "client secret"), ctx=ctx, signed=sign(token, key=partner), token_type="Jwt"
        ).encode()
        response = http.post(endpoint, data=body, headers=HEADERS, timeout=5)
        assert ctx == CTX and parse_answer(response).is_successful
    finally:
        stop.set()
        thread.join(5)
    assert result == [0] and not thread.is_alive()
    assert not key_path.exists()


def test_cli_key_out_writes_a_private_file(tmp_path: Path) -> None:
    """--key-out writes the partner key with mode 0600 and keeps it; --tenant registers tenants."""
    key_file = tmp_path / "partner.pem"
    thread, stop, out, result = run_main(["--port", "0", "--key-out", str(key_file), "--tenant", "CustA"])
    stop.set()
    thread.join(5)
    assert result == [0]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and b"PRIVATE KEY" in key_file.read_bytes()
    assert "CustA" in out.getvalue()


def test_cli_refuses_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    """`sut-soap emulator --host 0.0.0.0` exits 2 without --allow-remote."""
    assert main(["--host", "0.0.0.0", "--port", "0"], stop=threading.Event()) == 2
    assert "non-loopback" in capsys.readouterr().err


def test_reset_restores_the_state_of_the_last_start() -> None:
    """reset() clears faults, requests and counters, drops tenants added and keys rotated since start()."""
    partner = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    emu = Emulator(SECRET, partner)
    emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
    with emu:
        kid = emu.kid
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_SYSTEM_TOKEN)
        emu.rotate_key()
        emu.inject(Fault.REJECT)
        requests.get(emu.jwks_url, timeout=5)
        emu.reset()
        assert set(emu.tenants) == {CTX}
        assert emu.kid == kid and len(emu.jwks()["keys"]) == 1
        assert (emu.exchange_count, emu.jwks_count, emu.requests, emu.internal_errors) == (0, 0, [], [])
        assert emu.running
        with SystemUserClient(client_secret=SECRET, private_key=partner, endpoint=emu.endpoint) as client:
            client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_TOKEN)  # REJECT is gone


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


def test_cli_bad_tenant_exits_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """sut-soap emulator --tenant '' is a usage error (exit 2) with the reason, and the port is closed."""
    out = io.StringIO()
    assert main(["--port", "0", "--tenant", ""], stdout=out) == 2
    assert "sut-soap emulator:" in capsys.readouterr().err
    assert "stopped" not in out.getvalue()
