"""The PartnerSystemUserService emulator, driven over real HTTP with hand-built envelopes."""

from __future__ import annotations

import base64
import io
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from sut_soap.cli.emulator import main
from sut_soap.client import SystemUserClient
from sut_soap.errors import ConfigurationError
from sut_soap.testing.emulator import (
    CLAIM_PREFIX,
    SOAP_ACTION,
    Emulator,
    Fault,
    Reason,
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


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxies from the environment for loopback
        yield session


@pytest.fixture(scope="module")
def shared_emu() -> Iterator[Emulator]:
    emu = Emulator(SECRET, PARTNER_KEY, clock=CLOCK, signing_key=SIGNING_KEY)
    with emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_TOKEN, serial=SERIAL)
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_SYSTEM_TOKEN, serial="7654321")
        yield emu
        assert emu.internal_errors == []


@pytest.fixture
def emu(shared_emu: Emulator) -> Iterator[Emulator]:
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


@pytest.mark.parametrize("action", [SOAP_ACTION, '"http://tempuri.org/IService/Authenticate"', ""])
def test_wrong_soap_action_is_action_not_supported_fault(emu: Emulator, http: requests.Session, action: str) -> None:
    """An unquoted, foreign or empty SOAPAction gets WCF's HTTP 500 a:ActionNotSupported fault."""
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
