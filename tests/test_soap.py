"""The SOAP layer: WSDL, envelope, and every shape of answer."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sut_soap import _soap
from sut_soap._soap import SOAP_ACTION, HttpTransport, SoapService, bundled_wsdl_path, parse_answer
from sut_soap.errors import (
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    TransportError,
)

REFERENCE_WSDL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "PartnerSystemUserService.official.wsdl"
ENDPOINT = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"

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


def answer(inner: str) -> bytes:
    return (ENV_OPEN + RESP_OPEN + inner + "</AuthenticationResponse>" + ENV_CLOSE).encode()


@dataclass
class FakeResponse:
    content: bytes
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/xml; charset=utf-8"})


def canonical(xml: str | bytes) -> str:
    text = xml.decode() if isinstance(xml, bytes) else xml
    if text.startswith("<?xml"):
        text = text.split("?>", 1)[1]
    return ET.canonicalize(text, rewrite_prefixes=True, strip_text=True)


@pytest.fixture(scope="module")
def service() -> SoapService:
    return SoapService(endpoint=ENDPOINT, transport=HttpTransport())


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
    other = SoapService(endpoint=ENDPOINT, transport=HttpTransport())
    assert build(other)[0] == build(service)[0]


def test_special_characters_escaped(service: SoapService) -> None:
    """Markup characters in values are escaped, not injected, and read back unchanged."""
    evil = "a&b<c>d]]>e</tns:ApplicationToken><x/>"
    body, _ = build(service, client_secret=evil, signed_token=evil + ".1.2")
    tree = ET.fromstring(body)
    ns = {"tns": _soap.TNS, "s": _soap.SOAP11_ENV}
    assert tree.find("s:Header/tns:ApplicationToken", ns).text == evil  # type: ignore[union-attr]
    assert tree.find("s:Body/tns:AuthenticationRequest/tns:SignedSystemToken", ns).text == evil + ".1.2"  # type: ignore[union-attr]
    assert len(tree.find("s:Header", ns)) == 2  # type: ignore[arg-type]


def test_wsdl_parsed_once_per_process() -> None:
    """A second service on the same WSDL reuses the parsed document."""
    path = str(bundled_wsdl_path())
    SoapService(endpoint=ENDPOINT, transport=HttpTransport())
    first = _soap._documents[path]
    SoapService(endpoint=ENDPOINT, transport=HttpTransport())
    assert _soap._documents[path] is first


def test_bundled_wsdl_found() -> None:
    """The project's WSDL is found from the package or the source checkout."""
    assert bundled_wsdl_path().is_file()


def test_unknown_wsdl_refused(tmp_path: Path) -> None:
    """A WSDL path that does not exist or is not a WSDL is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        SoapService(endpoint=ENDPOINT, transport=HttpTransport(), wsdl=tmp_path / "missing.wsdl")
    bad = tmp_path / "bad.wsdl"
    bad.write_text("<nope/>")
    with pytest.raises(ConfigurationError):
        SoapService(endpoint=ENDPOINT, transport=HttpTransport(), wsdl=bad)


def _signature(wsdl: Path | None) -> tuple[str, str, str, str | None]:
    document = _soap._load_document(str(wsdl or bundled_wsdl_path()))
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
    official = SoapService(endpoint=ENDPOINT, transport=HttpTransport(), wsdl=REFERENCE_WSDL)
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


def test_server_fault_is_retryable() -> None:
    """A s:Server fault is marked retryable."""
    fault = (ENV_OPEN + "<s:Fault><faultcode>s:Server</faultcode><faultstring>boom</faultstring></s:Fault>" + ENV_CLOSE)
    with pytest.raises(SoapFaultError) as info:
        parse_answer(FakeResponse(fault.encode(), status_code=500))
    assert info.value.retryable is True


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

    root = etree.fromstring(f'<!DOCTYPE r SYSTEM "{dtd}"><r>ok</r>'.encode(), parser=_soap._parser())
    assert root.text == "ok"
