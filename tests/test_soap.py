"""The SOAP layer: WSDL, envelope, and every shape of answer: HTTP statuses, faults, the
AuthenticationResponse fields, hostile XML, and the redaction of what error messages quote."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from support import FakeResponse

from sut_soap import soap
from sut_soap.errors import (
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    TransportError,
)
from sut_soap.soap import (
    MAX_TOKEN_CHARS,
    SOAP11_ENV,
    SOAP_ACTION,
    TNS,
    SoapService,
    bundled_wsdl_path,
    parse_answer,
    sanitise,
)

REFERENCE_WSDL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "PartnerSystemUserService.official.wsdl"
ENDPOINT = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"
WSA = "http://www.w3.org/2005/08/addressing"

# The request envelope as SuperOffice documents it (CONTRACT.md), with the same values.
DOCUMENTED_ENVELOPE = """\
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
                   xmlns:tns="http://www.superoffice.com/superid/partnersystemuser/0.1">
  <SOAP-ENV:Header>
    <tns:ApplicationToken>CLIENT SECRET</tns:ApplicationToken>
    <tns:ContextIdentifier>Cust12345</tns:ContextIdentifier>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <tns:AuthenticationRequest>
      <tns:SignedSystemToken>TOKEN.202611281330.BASE64SIG</tns:SignedSystemToken>
      <tns:ReturnTokenType>Jwt</tns:ReturnTokenType>
    </tns:AuthenticationRequest>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""

ENV_OPEN = '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
ENV_CLOSE = "</s:Body></s:Envelope>"
RESP_OPEN = '<AuthenticationResponse xmlns="http://www.superoffice.com/superid/partnersystemuser/0.1">'
NIL = ' i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"'


XSI = 'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"'
SECRET = "Canary-Secret-0123456789"


def answer(inner: str) -> bytes:
    return (ENV_OPEN + RESP_OPEN + inner + "</AuthenticationResponse>" + ENV_CLOSE).encode()


def fault_answer(inner: str) -> bytes:
    return (ENV_OPEN + "<s:Fault>" + inner + "</s:Fault>" + ENV_CLOSE).encode()


def parse(content: bytes | None, status: int = 200, **headers: str) -> Any:
    """parse_answer of an answer with this status and these headers, SECRET being the one secret."""
    return parse_answer(FakeResponse(content, status, dict(headers)), secrets=[SECRET])


def canonical(xml: str | bytes) -> str:
    text = xml.decode() if isinstance(xml, bytes) else xml
    if text.startswith("<?xml"):
        text = text.split("?>", 1)[1]
    return ET.canonicalize(text, rewrite_prefixes=True, strip_text=True)


@pytest.fixture(scope="module")
def service() -> SoapService:
    return SoapService(endpoint=ENDPOINT)


def build(service: SoapService, **overrides: str) -> tuple[bytes, dict[str, str]]:
    values = {
        "signed_token": "TOKEN.202611281330.BASE64SIG",
        "client_secret": "CLIENT SECRET",
        "context_identifier": "Cust12345",
    }
    values.update(overrides)
    return service.build(**values)


def test_envelope_equals_documented(service: SoapService) -> None:
    """The built envelope equals SuperOffice's documented one after canonicalisation."""
    body, _ = build(service)
    assert canonical(body) == canonical(DOCUMENTED_ENVELOPE)


def test_http_headers(service: SoapService) -> None:
    """Content-Type is SOAP 1.1 text/xml and SOAPAction is the quoted Authenticate action."""
    _, headers = build(service)
    assert headers["Content-Type"] == "text/xml; charset=utf-8"
    assert headers["SOAPAction"] == f'"{SOAP_ACTION}"'


def test_envelope_is_byte_identical_between_runs(service: SoapService) -> None:
    """Two builds with the same inputs give the same bytes (no random WS-Addressing ids)."""
    assert build(service)[0] == build(service)[0]
    other = SoapService(endpoint=ENDPOINT)
    assert build(other)[0] == build(service)[0]


def test_special_characters_escaped(service: SoapService) -> None:
    """Markup characters in values are escaped, not injected, and read back unchanged."""
    evil = "a&b<c>d]]>e</tns:ApplicationToken><x/>"
    body, _ = build(service, client_secret=evil, signed_token=evil + ".1.2")
    tree = ET.fromstring(body)
    ns = {"tns": soap.TNS, "s": soap.SOAP11_ENV}
    assert tree.find("s:Header/tns:ApplicationToken", ns).text == evil  # type: ignore[union-attr]
    assert tree.find("s:Body/tns:AuthenticationRequest/tns:SignedSystemToken", ns).text == evil + ".1.2"  # type: ignore[union-attr]
    assert len(tree.find("s:Header", ns)) == 2  # type: ignore[arg-type]


def test_wsdl_parsed_once_per_process() -> None:
    """A second service on the same WSDL reuses the parsed document."""
    path = str(bundled_wsdl_path())
    SoapService(endpoint=ENDPOINT)
    first = soap._documents[path]
    SoapService(endpoint=ENDPOINT)
    assert soap._documents[path] is first


def test_bundled_wsdl_found() -> None:
    """The project's WSDL is found from the package or the source checkout."""
    assert bundled_wsdl_path().is_file()


def test_unknown_wsdl_refused(tmp_path: Path) -> None:
    """A WSDL path that does not exist or is not a WSDL is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        SoapService(endpoint=ENDPOINT, wsdl=tmp_path / "missing.wsdl")
    bad = tmp_path / "bad.wsdl"
    bad.write_text("<nope/>")
    with pytest.raises(ConfigurationError):
        SoapService(endpoint=ENDPOINT, wsdl=bad)


def _signature(wsdl: Path | None) -> tuple[str, str, str, str | None]:
    document = soap._load_document(str(wsdl or bundled_wsdl_path()))
    binding = SoapService._find_binding(document, "x")
    operation = binding._operations["Authenticate"]
    return (
        operation.input.signature(),
        operation.output.signature(as_output=True),
        operation.soapaction,
        str(operation.input.body.qname) if operation.input.body is not None else None,
    )


@pytest.mark.skipif(not REFERENCE_WSDL.is_file(), reason="../shared/reference is not beside the checkout")
def test_same_operation_signature_as_official_wsdl() -> None:
    """zeep sees the same Authenticate signature, headers and SOAPAction in both WSDLs."""
    ours = _signature(None)
    assert ours == _signature(REFERENCE_WSDL)
    assert "_soapheaders={ApplicationToken: xsd:string, ContextIdentifier: xsd:string}" in ours[0]


@pytest.mark.skipif(not REFERENCE_WSDL.is_file(), reason="../shared/reference is not beside the checkout")
def test_official_wsdl_builds_same_envelope(service: SoapService) -> None:
    """With SuperOffice's WSDL (which makes zeep add WS-Addressing) the envelope is the same bytes."""
    official = SoapService(endpoint=ENDPOINT, wsdl=REFERENCE_WSDL)
    assert build(official) == build(service)


# --- answers -----------------------------------------------------------------------------


def test_success_answer() -> None:
    """A WCF-style success gives the token and no error message."""
    result = parse_answer(FakeResponse(answer(f"<ErrorMessage{NIL}/><IsSuccessful>true</IsSuccessful><Token> a.b.c </Token>")))
    assert result.is_successful is True
    assert result.token == "a.b.c"
    assert result.error_message is None
    assert "a.b.c" not in repr(result)


def test_rejection_answer_sanitised() -> None:
    """A rejection keeps SuperOffice's message, trimmed, one line, without control characters."""
    result = parse_answer(
        FakeResponse(answer("<IsSuccessful>false</IsSuccessful><ErrorMessage>\n  Invalid\tsignature \r\n </ErrorMessage>"))
    )
    assert result.is_successful is False
    assert result.error_message == "Invalid signature"


def test_rejection_message_capped_and_scrubbed() -> None:
    """A huge message is cut to 256 characters and secrets echoed in it are masked."""
    result = parse_answer(
        FakeResponse(answer("<IsSuccessful>false</IsSuccessful><ErrorMessage>SECRET " + "x" * 10000 + "</ErrorMessage>")),
        secrets=["SECRET"],
    )
    assert result.error_message is not None
    assert len(result.error_message) == 256
    assert "SECRET" not in result.error_message


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("1", True), ("false", False), ("0", False)])
def test_xsd_booleans(text: str, expected: bool) -> None:
    """IsSuccessful accepts exactly the xs:boolean lexical forms."""
    result = parse_answer(FakeResponse(answer(f"<IsSuccessful>{text}</IsSuccessful><Token>t</Token>")))
    assert result.is_successful is expected


def test_fault_answer() -> None:
    """A SOAP Fault becomes SoapFaultError with its code and text (any HTTP status)."""
    fault = (
        ENV_OPEN + '<s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/ws/2005/05/addressing/none">'
        "a:ActionNotSupported</faultcode><faultstring xml:lang=\"en-US\">The message with Action '' "
        "cannot be processed.</faultstring></s:Fault>" + ENV_CLOSE
    ).encode()
    with pytest.raises(SoapFaultError) as info:
        parse_answer(FakeResponse(fault, status_code=500))
    assert info.value.fault_code == "a:ActionNotSupported"
    assert "cannot be processed" in info.value.fault_string
    assert info.value.status == 500
    assert info.value.retryable is False


HTML_503 = b"<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>"


@pytest.mark.parametrize(
    ("status", "body", "error", "retryable"),
    [
        (503, HTML_503, TransportError, True),
        (502, b"<html><body>Bad Gateway</body></html>", TransportError, True),
        (504, b"", TransportError, True),
        (404, b"<!DOCTYPE html><html>Not found</html>", TransportError, False),
        (401, b"Unauthorized", TransportError, False),
        (500, b"", TransportError, False),
        (500, b"<root>not a fault</root>", TransportError, False),
        (500, (ENV_OPEN + RESP_OPEN + "<IsSuccessful>true</IsSuccessful></AuthenticationResponse>" + ENV_CLOSE).encode(),
         TransportError, False),
        (302, b"", TransportError, False),
        (307, b"moved", TransportError, False),
    ],
)
def test_http_errors(status: int, body: bytes, error: type[SutSoapError], retryable: bool) -> None:
    """HTTP errors without a SOAP fault carry the status and a short excerpt; 5xx gateway errors are retryable."""
    with pytest.raises(error) as info:
        parse_answer(FakeResponse(body, status_code=status))
    assert type(info.value) is error
    assert info.value.retryable is retryable
    if error is TransportError:
        assert info.value.status == status  # type: ignore[attr-defined]


def test_html_error_excerpt_is_text() -> None:
    """The excerpt of an HTML page is its text, short, without tags."""
    with pytest.raises(TransportError) as info:
        parse_answer(FakeResponse(HTML_503, status_code=503))
    assert info.value.excerpt == "503 Service Unavailable Service Unavailable"
    assert "<" not in str(info.value)


MALFORMED = {
    "empty": b"",
    "whitespace": b"  \n ",
    "html": HTML_503,
    "json": b'{"IsSuccessful": true}',
    "binary": bytes(range(256)),
    "truncated": answer("<IsSuccessful>true</IsSuccessful><Token>abc</Token>")[:-30],
    "xhtml": b'<html xmlns="http://www.w3.org/1999/xhtml"><body>hi</body></html>',
    "empty body": (ENV_OPEN + ENV_CLOSE).encode(),
    "self-closed body": b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>',
    "no body": b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/></s:Envelope>',
    "two bodies": (ENV_OPEN + "<a/>" + "</s:Body><s:Body>" + "<a/>" + ENV_CLOSE).encode(),
    "text body": (ENV_OPEN + "just text" + ENV_CLOSE).encode(),
    "two children": (ENV_OPEN + RESP_OPEN + "</AuthenticationResponse><x/>" + ENV_CLOSE).encode(),
    "unexpected element": (ENV_OPEN + "<Other/>" + ENV_CLOSE).encode(),
    "soap 1.2": b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>',
    "unknown envelope": b'<e:Envelope xmlns:e="urn:other"><e:Body/></e:Envelope>',
    "missing IsSuccessful": answer("<Token>t</Token>"),
    "nil IsSuccessful": answer(f"<IsSuccessful{NIL}/><Token>t</Token>"),
    "maybe": answer("<IsSuccessful>maybe</IsSuccessful><Token>t</Token>"),
    "True capitalised": answer("<IsSuccessful>True</IsSuccessful><Token>t</Token>"),
    "success without token": answer("<IsSuccessful>true</IsSuccessful>"),
    "success with nil token": answer(f"<IsSuccessful>true</IsSuccessful><Token{NIL}/>"),
    "success with empty token": answer("<IsSuccessful>true</IsSuccessful><Token>  </Token>"),
    "huge token": answer("<IsSuccessful>true</IsSuccessful><Token>" + "a" * 20000 + "</Token>"),
    "duplicate token": answer("<IsSuccessful>true</IsSuccessful><Token>a</Token><Token>b</Token>"),
    "duplicate flag": answer("<IsSuccessful>true</IsSuccessful><IsSuccessful>false</IsSuccessful><Token>a</Token>"),
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    b"<lolz>&lol2;</lolz>",
    "external entity": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    "external dtd": b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd"><r/>',
    "deep nesting": b"<a>" * 300 + b"</a>" * 300,
    # Found by atheris: lxml keeps an unbound prefix in the tag, and etree.QName then raises ValueError.
    "unbound envelope prefix": b'<s:Envelope xmz:s="x"><s:Body/></s:Envelope>',
    "unbound payload prefix": (ENV_OPEN + "<p:AuthenticationResponse/>" + ENV_CLOSE).encode(),
    "unbound member prefix": answer("<p:IsSuccessful>true</p:IsSuccessful><Token>t</Token>"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_answers(name: str) -> None:
    """Every unacceptable 200 answer is a ProtocolError, never a bare exception."""
    with pytest.raises(ProtocolError):
        parse_answer(FakeResponse(MALFORMED[name]))


def test_token_never_in_rejection_text() -> None:
    """A rejected answer that also carries a token does not echo the token in its message."""
    result = parse_answer(
        FakeResponse(answer("<IsSuccessful>false</IsSuccessful><Token>JWT.JWT.JWT</Token><ErrorMessage>Denied JWT.JWT.JWT</ErrorMessage>"))
    )
    assert result.is_successful is False
    assert result.error_message == "Denied ***"


def test_parser_never_reads_external_subset(tmp_path: Path) -> None:
    """Even past the DOCTYPE pre-check, the parser does not read a DTD file a DOCTYPE points to."""
    dtd = tmp_path / "evil.dtd"
    dtd.write_text("this is not a DTD <<<")
    from lxml import etree

    root = etree.fromstring(f'<!DOCTYPE r SYSTEM "{dtd}"><r>ok</r>'.encode(), parser=soap._parser())
    assert root.text == "ok"


# --- WSDL variants ----------------------------------------------------------------------------


def wsdl_variant(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- WSDL -------------------------------------------------------------------------------------


def test_installed_package_wsdl_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the package holds wsdl/PartnerSystemUserService.wsdl (an installed wheel), that copy is used."""
    packaged = tmp_path / "wsdl" / "PartnerSystemUserService.wsdl"
    packaged.parent.mkdir()
    packaged.write_text("<definitions/>")
    monkeypatch.setattr(soap.resources, "files", lambda package: tmp_path)
    assert bundled_wsdl_path() == packaged


def test_wsdl_without_header_elements_is_refused(tmp_path: Path) -> None:
    """A WSDL that declares no ApplicationToken/ContextIdentifier elements is a ConfigurationError naming it."""
    text = bundled_wsdl_path().read_text(encoding="utf-8")
    text = re.sub(r'\s*<xs:element name="(ApplicationToken|ContextIdentifier)"[^>]*/>', "", text)
    text = re.sub(r'\s*<message name="AuthenticationRequest_Headers">.*?</message>', "", text, flags=re.S)
    text = re.sub(r"\s*<soap:header [^>]*/>", "", text)
    path = wsdl_variant(tmp_path, "no-headers.wsdl", text)
    with pytest.raises(ConfigurationError) as caught:
        SoapService(endpoint=ENDPOINT, wsdl=path)
    assert caught.value.message == f"the WSDL {path.resolve()} does not declare the request headers"


def test_soap12_binding_listed_first_is_passed_over(tmp_path: Path) -> None:
    """In a WSDL whose first binding is SOAP 1.2, the SOAP 1.1 binding is the one used."""
    soap12_binding = """  <binding name="PartnerSystemUserServiceSoap12" type="psu:IPartnerSystemUserService">
    <soap12:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Authenticate">
      <soap12:operation style="document" soapAction="urn:soap12"/>
      <input name="AuthenticationRequest"><soap12:body use="literal"/></input>
      <output name="AuthenticationResponse"><soap12:body use="literal"/></output>
    </operation>
  </binding>

"""
    text = bundled_wsdl_path().read_text(encoding="utf-8")
    text = text.replace('  <binding name="PartnerSystemUserServiceSoap11"', soap12_binding + '  <binding name="PartnerSystemUserServiceSoap11"', 1)
    text = text.replace(
        'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"',
        'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"',
        1,
    )
    path = wsdl_variant(tmp_path, "soap12-first.wsdl", text)
    document = soap._load_document(str(path.resolve()))
    assert type(next(iter(document.bindings.values()))).__name__ == "Soap12Binding"
    service = SoapService(endpoint=ENDPOINT, wsdl=path)
    body, headers = service.build(signed_token="t.202601011200.c2ln", client_secret="s", context_identifier="Cust1")
    assert etree.fromstring(body).tag == f"{{{SOAP11_ENV}}}Envelope"
    assert headers["SOAPAction"] == f'"{soap.SOAP_ACTION}"'


# --- the envelope and its headers ---------------------------------------------------------------


def test_value_xml_cannot_carry_is_a_configuration_error_without_the_value(service: SoapService) -> None:
    """A signed token with a NUL byte cannot be built into XML: ConfigurationError, value not echoed, no cause."""
    secret = "SignedCanary\x00Value.202601011200.c2ln"
    with pytest.raises(ConfigurationError) as caught:
        service.build(signed_token=secret, client_secret="s", context_identifier="Cust1")
    assert caught.value.message == "cannot build the request envelope: ValueError"
    assert "SignedCanary" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_header_plugin_keeps_foreign_headers_and_drops_ws_addressing(service: SoapService) -> None:
    """Headers another plugin added survive after ours; zeep's WS-Addressing headers are removed."""
    (plugin,) = [p for p in service._client.plugins if isinstance(p, soap._HeaderPlugin)]
    envelope = etree.fromstring(
        f'<s:Envelope xmlns:s="{SOAP11_ENV}" xmlns:wsa="{WSA}" xmlns:t="urn:trace">'
        "<s:Header><wsa:Action>x</wsa:Action><t:Trace>42</t:Trace><wsa:MessageID>m</wsa:MessageID></s:Header>"
        "<s:Body/></s:Envelope>"
    )
    result, http_headers = plugin.egress(envelope, {"X": "1"}, None, {"sut_soap_headers": ("secret", "Cust1")})
    header = result.find(f"{{{SOAP11_ENV}}}Header")
    assert [child.tag for child in header] == [
        f"{{{TNS}}}ApplicationToken",
        f"{{{TNS}}}ContextIdentifier",
        "{urn:trace}Trace",
    ]
    assert [child.text for child in header] == ["secret", "Cust1", "42"]
    assert http_headers == {"X": "1"}


# --- zeep's log, redaction, odd answers ----------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_zeep_transport_log_never_carries_envelopes() -> None:
    """zeep's 'HTTP Post to' / 'HTTP Response from' DEBUG records (whole envelopes) are dropped; others pass."""
    logger = logging.getLogger("zeep.transports")
    capture = _Capture()
    level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("HTTP Post to %s:\n%s", ENDPOINT, "<ApplicationToken>SecretCanary</ApplicationToken>")
        logger.debug("HTTP Response from %s (status: %d):\n%s", ENDPOINT, 200, "<Token>JwtCanary</Token>")
        logger.debug("Loading remote data from: %s", "urn:x")
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
    assert capture.messages == ["Loading remote data from: urn:x"]


# --- redaction and hostile answers ------------------------------------------------------------


def test_empty_secret_does_not_mangle_text() -> None:
    """An empty string among the secrets is skipped; replacing it would put *** between every character."""
    assert sanitise("rejected: bad token", secrets=("", "bad")) == "rejected: *** token"


def test_dtd_hidden_by_utf16_encoding_is_refused() -> None:
    """A DTD in a UTF-16 answer (invisible to the byte-level check) is still refused after parsing, with the status."""
    text = (
        '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE s:Envelope [<!ENTITY e "x">]>'
        f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Body/></s:Envelope>'
    )
    body = text.encode("utf-16")
    assert b"<!DOCTYPE" not in body
    with pytest.raises(ProtocolError) as caught:
        parse_answer(FakeResponse(body))
    assert caught.value.message == "the answer carries a DTD; refused"
    assert caught.value.status == 200


def test_elements_of_other_namespaces_in_the_response_are_ignored() -> None:
    """Inside AuthenticationResponse, elements outside the service namespace (even one named Token) are skipped."""
    body = (
        f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Body><AuthenticationResponse xmlns="{TNS}">'
        '<x:Token xmlns:x="urn:other">forged</x:Token><IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>'
        "</AuthenticationResponse></s:Body></s:Envelope>"
    ).encode()
    answer = parse_answer(FakeResponse(body))
    assert answer.is_successful
    assert answer.token == "a.b.c"


def test_retry_after_date_without_zone_is_read_as_utc() -> None:
    """A Retry-After HTTP-date with the '-0000' (no zone information) offset is taken as UTC."""
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert soap.parse_retry_after("Wed, 21 Oct 2015 07:28:30 -0000", now=now) == 30.0


def test_soap_layer_refuses_to_do_io(service: SoapService) -> None:
    """The transport zeep is given refuses to send or fetch: only the client's Transport does I/O."""
    zeep_transport = service._client.transport
    with pytest.raises(ConfigurationError, match="the SOAP layer sends nothing"):
        zeep_transport.post(ENDPOINT, b"<x/>", {})
    with pytest.raises(ConfigurationError, match="the SOAP layer fetches nothing"):
        zeep_transport.get(ENDPOINT, {}, {})


def test_probe_request_carries_only_the_probe_value() -> None:
    """probe_request builds the Authenticate request with the dummy value in every field, and its SOAPAction."""
    from sut_soap.cli._common import _DOCTOR_PROBE
    from sut_soap.soap import PROBE_VALUE, probe_request

    body, headers = probe_request(ENDPOINT)
    root = etree.fromstring(body)
    values = [element.text for element in root.iter() if not len(element)]
    assert values == [PROBE_VALUE, PROBE_VALUE, f"{PROBE_VALUE}.000000000000.AAAA", "Jwt"]
    assert headers["SOAPAction"] == f'"{SOAP_ACTION}"'
    assert _DOCTOR_PROBE == PROBE_VALUE  # the CLI's help names the same value without loading zeep


# --- HTTP statuses and the error paths of parse_answer ----------------------------------------


ERROR_BODIES = [
    pytest.param(b"", "with an empty body", id="empty"),
    pytest.param(f'<!DOCTYPE x><x>{SECRET}</x>'.encode(), "not a SOAP answer", id="dtd"),
    pytest.param(f"<html><body>{SECRET}".encode(), "not a SOAP answer", id="malformed"),
    pytest.param(f"<html><body>{SECRET}</body></html>".encode(), "not a SOAP answer", id="not-envelope"),
    pytest.param(answer(f"<IsSuccessful>true</IsSuccessful><Token>{SECRET}</Token>"),
                 "neither a fault nor a success", id="success-with-error-status"),
]


@pytest.mark.parametrize(("body", "words"), ERROR_BODIES)
@pytest.mark.parametrize("status", [400, 503])
def test_http_error_statuses_become_transport_errors(body: bytes, words: str, status: int) -> None:
    """From 400 up, every non-fault answer is a TransportError with its status, reason, Retry-After and no secret."""
    with pytest.raises(TransportError) as info:
        parse(body, status, **{"Retry-After": "7"})
    error = info.value
    assert error.status == status
    assert f"HTTP {status}" in error.message
    assert words in error.message
    assert error.retry_after == 7.0
    assert SECRET not in str(error)
    assert SECRET not in (error.excerpt or "")


@pytest.mark.parametrize("status", [300, 302, 399])
def test_redirects_refused_without_echoing_the_body(status: int) -> None:
    """Every 3xx is refused as a redirect, and the redirect body is never echoed."""
    with pytest.raises(TransportError) as info:
        parse(f"<html>{SECRET} moved</html>".encode(), status)
    assert "redirect" in info.value.message
    assert info.value.excerpt == ""
    assert "moved" not in str(info.value)


def test_status_400_is_not_a_redirect() -> None:
    """HTTP 400 is an error answer, not a redirect."""
    with pytest.raises(TransportError) as info:
        parse(b"", 400)
    assert "redirect" not in info.value.message
    assert "empty body" in info.value.message


def test_response_without_headers_attribute_is_parsed() -> None:
    """A caller's transport may return an object without headers; the answer is still parsed."""

    class Bare:
        status_code = 200
        content = answer("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>")

    assert parse_answer(Bare()).token == "a.b.c"  # type: ignore[arg-type]


@pytest.mark.parametrize("content", [b"", None])
def test_empty_body_is_reported_as_empty(content: bytes | None) -> None:
    """A 200 with no body at all is a ProtocolError saying the body is empty."""
    with pytest.raises(ProtocolError, match="empty body") as info:
        parse(content)
    assert info.value.status == 200


def test_entity_declaration_without_doctype_refused_unparsed() -> None:
    """An answer with <!ENTITY (even without <!DOCTYPE) is refused before parsing."""
    with pytest.raises(ProtocolError, match="DTD or entity declaration") as info:
        parse(b'<x><!ENTITY e "v"></x>')
    assert info.value.status == 200


def test_malformed_answer_excerpt_is_redacted() -> None:
    """A malformed 200 answer carries an excerpt of its text, with secrets masked."""
    with pytest.raises(ProtocolError, match="not well-formed") as info:
        parse(f"<html><body>Gateway says {SECRET}".encode())
    assert info.value.status == 200
    assert info.value.excerpt is not None
    assert "Gateway says ***" in info.value.excerpt


def test_soap12_answer_has_status_and_hint() -> None:
    """A SOAP 1.2 envelope is refused with the status and a hint naming the basicHttpBinding endpoint."""
    body = b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>'
    with pytest.raises(ProtocolError, match=r"SOAP 1\.2") as info:
        parse(body)
    assert info.value.status == 200
    assert "basicHttpBinding" in info.value.hint


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(f'<s:Body xmlns:s="{SOAP11_ENV}"/>', id="soap11-namespace-wrong-name"),
        pytest.param('<s:Envelope xmlns:s="urn:other"><s:Body/></s:Envelope>', id="envelope-wrong-namespace"),
    ],
)
def test_root_must_be_soap11_envelope(body: str) -> None:
    """The root must be both in the SOAP 1.1 namespace and named Envelope."""
    with pytest.raises(ProtocolError, match="not a SOAP envelope") as info:
        parse(f"{body}<!-- {SECRET} -->".encode())
    assert info.value.status == 200
    assert info.value.excerpt is not None
    assert SECRET not in info.value.excerpt


def test_foreign_element_names_echoed_at_most_40_characters() -> None:
    """Element names from the answer appear in messages cut to 40 characters."""
    name = "n" * 100
    with pytest.raises(ProtocolError) as root_info:
        parse(f"<{name}/>".encode())
    with pytest.raises(ProtocolError) as payload_info:
        parse((ENV_OPEN + f"<{name}/>" + ENV_CLOSE).encode())
    with pytest.raises(ProtocolError) as duplicate_info:
        parse(answer(f"<{name}>1</{name}><{name}>2</{name}>"
                     .replace(f"<{name}>", f'<t:{name} xmlns:t="http://www.superoffice.com/superid/partnersystemuser/0.1">')
                     .replace(f"</{name}>", f"</t:{name}>")))
    for info in (root_info, payload_info, duplicate_info):
        assert "n" * 37 + "..." in info.value.message
        assert "n" * 38 not in info.value.message
        assert info.value.status == 200


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(f'<s:Envelope xmlns:s="{SOAP11_ENV}"/>', "0 Body elements", id="no-body"),
        pytest.param(f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Body>text<x/></s:Body></s:Envelope>', "holds text", id="text"),
        pytest.param(f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Body><x/><y/></s:Body></s:Envelope>', "2 elements", id="two"),
        pytest.param(answer("<Token>a.b.c</Token>"), "no IsSuccessful", id="no-flag"),
        pytest.param(answer("<IsSuccessful>yes</IsSuccessful>"), "not an xs:boolean", id="not-boolean"),
        pytest.param(answer("<IsSuccessful>true</IsSuccessful>"), "no Token", id="no-token"),
        pytest.param(answer("<IsSuccessful>true</IsSuccessful><Token>" + "t" * (MAX_TOKEN_CHARS + 1) + "</Token>"),
                     "longer than", id="long-token"),
    ],
)
def test_protocol_errors_carry_the_http_status(body: str | bytes, words: str) -> None:
    """Every ProtocolError from a 200 answer reports status 200."""
    content = body.encode() if isinstance(body, str) else body
    with pytest.raises(ProtocolError, match=words) as info:
        parse(content)
    assert info.value.status == 200


# --- AuthenticationResponse fields ------------------------------------------------------------


def test_token_of_exactly_the_cap_accepted() -> None:
    """A Token of exactly MAX_TOKEN_CHARS characters is accepted."""
    token = "t" * MAX_TOKEN_CHARS
    result = parse(answer(f"<IsSuccessful>true</IsSuccessful><Token>{token}</Token>"))
    assert result.token == token


@pytest.mark.parametrize("nil", ["true", "1", " true "])
def test_nil_token_with_text_is_no_token(nil: str) -> None:
    """A Token marked xsi:nil (true or 1) counts as absent even when it has text."""
    with pytest.raises(ProtocolError, match="no Token"):
        parse(answer(f'<IsSuccessful>true</IsSuccessful><Token i:nil="{nil}" {XSI}>a.b.c</Token>'))


def test_nil_flag_with_text_is_no_flag() -> None:
    """An IsSuccessful marked xsi:nil counts as absent even when it says true."""
    with pytest.raises(ProtocolError, match="no IsSuccessful"):
        parse(answer(f'<IsSuccessful i:nil="true" {XSI}>true</IsSuccessful><Token>a.b.c</Token>'))


def test_nil_false_token_is_kept() -> None:
    """xsi:nil="false" does not hide the Token."""
    result = parse(answer(f'<IsSuccessful>true</IsSuccessful><Token i:nil="false" {XSI}>a.b.c</Token>'))
    assert result.token == "a.b.c"


def test_value_split_by_a_comment_is_joined() -> None:
    """Text split by an XML comment is read as one value."""
    result = parse(answer("<IsSuccessful>true</IsSuccessful><Token>a.b<!-- c -->.c</Token>"))
    assert result.token == "a.b.c"


# --- SOAP faults ------------------------------------------------------------------------------


def test_fault_without_code_or_string() -> None:
    """A Fault without faultcode and faultstring still becomes a SoapFaultError with empty fields."""
    with pytest.raises(SoapFaultError) as info:
        parse(fault_answer(""), 500)
    assert info.value.fault_code == ""
    assert info.value.fault_string == ""
    assert info.value.message.endswith("Fault (no faultcode): (no faultstring)")


def test_fault_message_names_code_and_string() -> None:
    """The fault message carries the faultcode and faultstring, not the placeholders."""
    with pytest.raises(SoapFaultError) as info:
        parse(fault_answer("<faultcode>s:Client</faultcode><faultstring>bad request</faultstring>"), 500)
    assert "s:Client" in info.value.message
    assert "bad request" in info.value.message
    assert "(no" not in info.value.message


def test_fault_code_and_string_redacted_and_code_capped() -> None:
    """Secrets in faultcode and faultstring are masked, and the faultcode is cut to 100 characters."""
    code = f"s:{SECRET}" + "c" * 300
    with pytest.raises(SoapFaultError) as info:
        parse(fault_answer(f"<faultcode>{code}</faultcode><faultstring>echo {SECRET}</faultstring>"), 500)
    assert SECRET not in info.value.fault_code
    assert SECRET not in info.value.fault_string
    assert len(info.value.fault_code) <= 100


@pytest.mark.parametrize("code", ["Server", "s:Server"])
def test_server_fault_retryable_with_or_without_prefix(code: str) -> None:
    """A Server faultcode is retryable whether or not it carries a namespace prefix."""
    with pytest.raises(SoapFaultError) as info:
        parse(fault_answer(f"<faultcode>{code}</faultcode><faultstring>busy</faultstring>"), 500)
    assert info.value.retryable is True


@pytest.mark.parametrize("code", ["s:Server.Busy", "s:Server.Database.Down"])
def test_server_fault_dotted_refinement_retryable(code: str) -> None:
    """A dotted refinement of the SOAP envelope's Server code (s:Server.Busy) is a retryable server fault."""
    with pytest.raises(SoapFaultError) as info:
        parse(fault_answer(f"<faultcode>{code}</faultcode><faultstring>busy</faultstring>"), 500)
    assert info.value.retryable is True


@pytest.mark.parametrize(
    "code",
    [
        '<faultcode xmlns:x="urn:vendor">x:Server</faultcode>',
        "<faultcode>undeclared:Server</faultcode>",
    ],
)
def test_server_fault_in_foreign_namespace_not_retryable(code: str) -> None:
    """A Server code whose prefix resolves to another namespace (or to none declared) is not a server fault."""
    with pytest.raises(SoapFaultError) as info:
        parse(fault_answer(f"{code}<faultstring>busy</faultstring>"), 500)
    assert info.value.retryable is False


# --- sanitise and excerpts --------------------------------------------------------------------


def test_sanitise_replaces_control_characters_with_spaces() -> None:
    """Control characters become single spaces."""
    assert sanitise("a\x00b\x1fc\x7fd") == "a b c d"


def test_sanitise_keeps_text_of_exactly_the_limit() -> None:
    """Text as long as the limit is kept whole; one more character is cut with an ellipsis."""
    assert sanitise("x" * 10, limit=10) == "x" * 10
    assert sanitise("x" * 11, limit=10) == "x" * 7 + "..."


def test_excerpt_reads_only_the_first_4_kib_and_at_most_200_characters() -> None:
    """Error excerpts look at the first 4096 bytes only and are at most 200 characters."""
    tags_only = b"<ab>" * 1024  # exactly 4096 bytes of markup
    with pytest.raises(TransportError) as info:
        parse(tags_only + b"TAIL", 500)
    assert info.value.excerpt == ""
    with pytest.raises(TransportError) as long_info:
        parse(b"<html>" + b"w " * 2000 + b"</html>", 500)
    assert long_info.value.excerpt is not None
    assert 0 < len(long_info.value.excerpt) <= 200


# --- the envelope template: zeep's bytes, values substituted ------------------------------------

SIGNED = "Acme Sync-8k8Q7DmBgo.202611281330." + "QUJD" * 85 + "+/=="
#: Values a substitution could get wrong, each tried in every one of the three positions.
HOSTILE_VALUES = [
    pytest.param("Cust12345", id="plain"),
    pytest.param("&<>\"'", id="markup"),
    pytest.param("]]>", id="cdata-end"),
    pytest.param("a]]>b]]&gt;", id="cdata-end-and-entity"),
    pytest.param("&amp;&lt;&#13;&#x26;", id="entity-lookalikes"),
    pytest.param("</tns:ApplicationToken><x/><!-- -->", id="tags"),
    pytest.param("\r\n\t \r", id="whitespace-and-cr"),
    pytest.param("", id="empty"),
    pytest.param("  padded  ", id="spaces"),
    pytest.param("é", id="latin1"),
    pytest.param("中文", id="cjk"),
    pytest.param("😀🇳🇴", id="emoji"),
    pytest.param("\x7f\x85\xa0\u2028\u2029\ufeff\ufffd\U0010ffff", id="odd-but-valid"),
    pytest.param("é&中<文>😀\r", id="non-ascii-markup"),
    pytest.param("T" * 10_000, id="long-10k"),
    pytest.param(("é&<>\"'中文😀" * 1000)[:10_000], id="long-10k-hostile"),
    pytest.param(SIGNED, id="signed-token"),
]
FIELDS = ("client_secret", "context_identifier", "signed_token")
#: What lxml refuses in element text: C0 controls but tab, LF and CR; lone surrogates; U+FFFE, U+FFFF.
REFUSED = [*map(chr, [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF]), "\ud800", "\udfff"]


def values(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"client_secret": SECRET, "context_identifier": "Cust12345", "signed_token": SIGNED}
    base.update(overrides)
    return base


def substituted(service: SoapService, **overrides: Any) -> bytes:
    """The template's envelope for these values; fails the test if the template would hand them to zeep."""
    assert service._template is not None
    body = service._template.fill(**values(**overrides))
    assert body is not None, "the template fell back to zeep"
    return body


def zeep_built(service: SoapService, **overrides: Any) -> bytes:
    return service._build_with_zeep(**values(**overrides))[0]


def test_template_is_made_for_the_bundled_wsdl(service: SoapService) -> None:
    """The bundled WSDL gets a template, cut into four pieces around the three values, in document order."""
    assert service._template is not None
    assert len(service._template.pieces) == 4
    assert service._template.order == (0, 1, 2)


@pytest.mark.skipif(not REFERENCE_WSDL.is_file(), reason="../shared/reference is not beside the checkout")
def test_template_of_the_official_wsdl_is_the_same(service: SoapService) -> None:
    """SuperOffice's WSDL (zeep adds WS-Addressing, the plugin drops it) gives the very same template."""
    official = SoapService(endpoint=ENDPOINT, wsdl=REFERENCE_WSDL)
    assert official._template == service._template


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_substituted_envelope_is_byte_identical_to_zeep(service: SoapService, field: str, value: str) -> None:
    """For every hostile value in every position, the template's bytes are the bytes zeep serialises."""
    assert substituted(service, **{field: value}) == zeep_built(service, **{field: value})


def test_all_hostile_values_at_once_are_byte_identical_to_zeep(service: SoapService) -> None:
    """Hostile values in all three positions together give zeep's bytes, and build() returns them."""
    hostile = {"client_secret": "s&<>\"'é😀\r", "context_identifier": "C]]>中文 ", "signed_token": "&amp;\r\n" * 500}
    assert service.build(**hostile)[0] == substituted(service, **hostile) == zeep_built(service, **hostile)


def test_every_xml_character_is_written_as_lxml_writes_it(service: SoapService) -> None:
    """All 1,111,998 characters of XML 1.0's Char production, in one value, give zeep's bytes."""
    every = "".join(
        map(chr, [0x09, 0x0A, 0x0D, *range(0x20, 0xD800), *range(0xE000, 0xFFFE), *range(0x10000, 0x110000)])
    )
    for field in FIELDS:
        assert substituted(service, **{field: every}) == zeep_built(service, **{field: every})


def test_escaping_facts_the_template_relies_on() -> None:
    """lxml writes &, <, > and CR as references, quotes and non-ASCII as UTF-8, and ]]> as ]]&gt;."""
    element = etree.Element("v")
    element.text = "&<>\r\"'é中😀]]>\t\n"
    assert etree.tostring(element, encoding="utf-8", xml_declaration=False) == (
        "<v>&amp;&lt;&gt;&#13;\"'é中😀]]&gt;\t\n</v>".encode()
    )
    assert soap._text_bytes("&<>\r\"'é中😀]]>\t\n") == "&amp;&lt;&gt;&#13;\"'é中😀]]&gt;\t\n".encode()


@pytest.mark.parametrize("field", FIELDS)
def test_placeholder_text_in_a_value_cannot_collide(service: SoapService, field: str) -> None:
    """A value holding every placeholder, or the placeholder envelope itself, still gives zeep's bytes."""
    assert service._template is not None
    inside = " ".join(soap._PLACEHOLDERS) + b"|".join(service._template.pieces).decode()
    assert substituted(service, **{field: inside}) == zeep_built(service, **{field: inside})
    assert etree.fromstring(service.build(**values(**{field: inside}))[0]) is not None


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("char", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
def test_value_lxml_refuses_goes_to_zeep_and_raises_as_before(service: SoapService, field: str, char: str) -> None:
    """A character lxml refuses is not substituted: zeep builds the request and its ConfigurationError is raised."""
    value = f"ok{char}ok"
    assert soap._text_bytes(value) is None
    with pytest.raises(ConfigurationError) as by_zeep:
        service._build_with_zeep(**values(**{field: value}))
    with pytest.raises(ConfigurationError) as by_build:
        service.build(**values(**{field: value}))
    assert by_build.value.message == by_zeep.value.message
    assert "ok" not in str(by_build.value)


class _OddStr(str):
    def __str__(self) -> str:
        return "what zeep writes"


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [b"bytes\xc3\xa9&", None, _OddStr("what the template would write")],
                         ids=["bytes", "none", "str-subclass"])
def test_values_that_are_not_plain_str_are_built_by_zeep(service: SoapService, field: str, value: Any) -> None:
    """bytes, None and str subclasses are not substituted: build() returns what zeep makes of them."""
    assert service.build(**values(**{field: value})) == service._build_with_zeep(**values(**{field: value}))


def test_hot_path_does_not_call_zeep(service: SoapService, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a template, build() makes the envelope without zeep, for any tenant and hostile values."""
    expected = [zeep_built(service, context_identifier=f"Cust{n}&<>", signed_token=SIGNED + str(n)) for n in range(3)]

    def no_zeep(**_: Any) -> Any:
        raise AssertionError("zeep was called")

    monkeypatch.setattr(service, "_build_with_zeep", no_zeep)
    got = [service.build(**values(context_identifier=f"Cust{n}&<>", signed_token=SIGNED + str(n)))[0] for n in range(3)]
    assert got == expected


def test_http_headers_equal_zeeps_and_are_a_new_dict_each_call(service: SoapService) -> None:
    """The headers equal zeep's; changing the returned dict changes neither the template nor the next call."""
    _, first = service.build(**values())
    assert first == service._build_with_zeep(**values())[1]
    first["SOAPAction"] = "changed"
    first["X-Extra"] = "1"
    _, second = service.build(**values())
    assert second == service._build_with_zeep(**values())[1]
    assert second is not first


def test_template_holds_no_value_and_no_secret(service: SoapService) -> None:
    """After builds with a secret, neither the service, its template nor their reprs contain it."""
    canary = "Template-Secret-Canary-73"
    service.build(**values(client_secret=canary, context_identifier="Cust-Canary-Tenant"))
    template = service._template
    assert template is not None
    everything = repr(service) + repr(template) + repr(vars(service)) + repr(template.pieces)
    assert canary not in everything
    assert "Cust-Canary-Tenant" not in everything
    assert not hasattr(template, "__dict__")  # slots: nothing can be stored on it later


def test_many_tenants_share_one_template(service: SoapService) -> None:
    """A thousand tenants leave one template and no per-tenant state: nothing to bound or evict."""
    template, attributes = service._template, set(vars(service))
    for n in range(1000):
        service.build(**values(context_identifier=f"Cust{n}"))
    assert service._template is template
    assert set(vars(service)) == attributes


def test_concurrent_builds_give_each_thread_its_own_bytes(service: SoapService) -> None:
    """Sixteen threads building for their own tenants and tokens at once each get zeep's bytes for their values."""
    import threading

    cases = [values(context_identifier=f"Cust{n}&", signed_token=f"{SIGNED}{n}é<{n}") for n in range(16)]
    expected = [service._build_with_zeep(**case)[0] for case in cases]
    start = threading.Barrier(len(cases))
    wrong: list[int] = []

    def run(n: int) -> None:
        start.wait()
        for _ in range(300):
            if service.build(**cases[n])[0] != expected[n]:
                wrong.append(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_wsdl_whose_values_are_not_strings_gets_no_template(tmp_path: Path) -> None:
    """When a WSDL types SignedSystemToken as anything but xs:string, zeep builds every request."""
    text = bundled_wsdl_path().read_text(encoding="utf-8").replace(
        '<xs:element name="SignedSystemToken" type="xs:string"', '<xs:element name="SignedSystemToken" type="xs:int"'
    )
    other = SoapService(endpoint=ENDPOINT, wsdl=wsdl_variant(tmp_path, "int-token.wsdl", text))
    assert other._template is None
    assert other.build(**values(signed_token="12")) == other._build_with_zeep(**values(signed_token="12"))


def test_request_zeep_cannot_build_gets_no_template_and_build_still_raises(tmp_path: Path) -> None:
    """A WSDL whose request needs a field sut-soap does not send: the service is made, each build raises."""
    text = bundled_wsdl_path().read_text(encoding="utf-8").replace(
        '<xs:element name="ReturnTokenType" type="psu:TokenType" minOccurs="0"/>',
        '<xs:element name="ReturnTokenType" type="psu:TokenType" minOccurs="0"/>\n'
        '            <xs:element name="Required" type="xs:string"/>',
    )
    other = SoapService(endpoint=ENDPOINT, wsdl=wsdl_variant(tmp_path, "required-field.wsdl", text))
    assert other._template is None
    with pytest.raises(ConfigurationError, match="cannot build the request envelope"):
        other.build(**values())


def test_placeholder_found_twice_in_the_envelope_gets_no_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """A placeholder that also stands elsewhere in zeep's envelope (here an element name) disables the template."""
    monkeypatch.setattr(soap, "_PLACEHOLDERS", ("ApplicationToken", *soap._PLACEHOLDERS[1:]))
    other = SoapService(endpoint=ENDPOINT)
    assert other._template is None
    assert other.build(**values()) == other._build_with_zeep(**values())


def test_substitution_unlike_zeep_is_caught_when_the_template_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """If escaping ever differed from lxml's (here: > left as it is), the check at construction drops the template."""
    real = soap._text_bytes
    monkeypatch.setattr(soap, "_text_bytes", lambda value: None if real(value) is None else str(value).encode())
    other = SoapService(endpoint=ENDPOINT)
    assert other._template is None
    monkeypatch.undo()
    assert other.build(**values(signed_token="a>b")) == other._build_with_zeep(**values(signed_token="a>b"))


#: Any text, surrogates included, weighted towards the characters escaping is about.
_ANY_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from("&<>\"'\r\n\t]]> sutsoapPH0a8f2c71e9d4"), st.characters(exclude_categories=())), max_size=60
)


@settings(derandomize=True, max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=_ANY_TEXT, context=_ANY_TEXT, token=_ANY_TEXT)
def test_build_equals_zeep_for_any_text(service: SoapService, secret: str, context: str, token: str) -> None:
    """For any three strings, build() returns zeep's bytes and headers, or raises zeep's ConfigurationError."""
    given_values = {"client_secret": secret, "context_identifier": context, "signed_token": token}
    try:
        expected = service._build_with_zeep(**given_values)
    except ConfigurationError as by_zeep:
        with pytest.raises(ConfigurationError) as by_build:
            service.build(**given_values)
        assert by_build.value.message == by_zeep.message
    else:
        assert service.build(**given_values) == expected
