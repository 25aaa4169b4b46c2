"""sut_soap._soap: WSDL variants, transport failures, redaction and hostile answers not covered elsewhere (issue 7)."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from lxml import etree

from sut_soap import _soap
from sut_soap._soap import (
    SOAP11_ENV,
    TNS,
    HttpTransport,
    SoapService,
    bundled_wsdl_path,
    parse_answer,
    sanitise,
)
from sut_soap.errors import ConfigurationError, ProtocolError, TransportError

ENDPOINT = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"
WSA = "http://www.w3.org/2005/08/addressing"


@dataclass
class FakeResponse:
    content: bytes
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/xml; charset=utf-8"})


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
    monkeypatch.setattr(_soap.resources, "files", lambda package: tmp_path)
    assert bundled_wsdl_path() == packaged


def test_wsdl_without_header_elements_is_refused(tmp_path: Path) -> None:
    """A WSDL that declares no ApplicationToken/ContextIdentifier elements is a ConfigurationError naming it."""
    text = bundled_wsdl_path().read_text(encoding="utf-8")
    text = re.sub(r'\s*<xs:element name="(ApplicationToken|ContextIdentifier)"[^>]*/>', "", text)
    text = re.sub(r'\s*<message name="AuthenticationRequest_Headers">.*?</message>', "", text, flags=re.S)
    text = re.sub(r"\s*<soap:header [^>]*/>", "", text)
    path = wsdl_variant(tmp_path, "no-headers.wsdl", text)
    with pytest.raises(ConfigurationError) as caught:
        SoapService(endpoint=ENDPOINT, transport=HttpTransport(), wsdl=path)
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
    document = _soap._load_document(str(path.resolve()))
    assert type(next(iter(document.bindings.values()))).__name__ == "Soap12Binding"
    service = SoapService(endpoint=ENDPOINT, transport=HttpTransport(), wsdl=path)
    body, headers = service.build(signed_token="t.202601011200.c2ln", client_secret="s", context_identifier="Cust1")
    assert etree.fromstring(body).tag == f"{{{SOAP11_ENV}}}Envelope"
    assert headers["SOAPAction"] == f'"{_soap.SOAP_ACTION}"'


# --- the envelope -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service() -> SoapService:
    return SoapService(endpoint=ENDPOINT, transport=HttpTransport())


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
    (plugin,) = [p for p in service._client.plugins if isinstance(p, _soap._HeaderPlugin)]
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


# --- sending ----------------------------------------------------------------------------------


class RaisingTransport:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "message", "retryable"),
    [
        (requests.exceptions.SSLError("certificate verify failed"), "TLS handshake with the endpoint failed", False),
        (requests.exceptions.ConnectTimeout("connect timed out"), "connecting to the endpoint timed out", True),
        (requests.exceptions.InvalidURL("bad url"), "HTTP request failed: InvalidURL", False),
        (requests.exceptions.TooManyRedirects("loop"), "HTTP request failed: TooManyRedirects", False),
    ],
    ids=["tls", "connect-timeout", "invalid-url", "too-many-redirects"],
)
def test_requests_failures_become_typed_transport_errors(error: Exception, message: str, retryable: bool) -> None:
    """TLS failures, connect timeouts and other requests errors are TransportErrors with the right retryable flag."""
    service = SoapService(endpoint=ENDPOINT, transport=RaisingTransport(error))
    with pytest.raises(TransportError) as caught:
        service.send(b"<x/>", {})
    assert caught.value.message.startswith(message)
    assert caught.value.retryable is retryable
    assert caught.value.__cause__ is None


def test_tls_failure_hint_points_at_certificates() -> None:
    """A TLS failure's hint names the certificate and the CA bundle, the things to check next."""
    service = SoapService(endpoint=ENDPOINT, transport=RaisingTransport(requests.exceptions.SSLError("x")))
    with pytest.raises(TransportError) as caught:
        service.send(b"<x/>", {})
    assert "certificate" in (caught.value.hint or "")
    assert "CA bundle" in (caught.value.hint or "")


def test_close_calls_the_transports_close_only_if_it_has_one() -> None:
    """SoapService.close() closes a transport that can be closed and accepts one that cannot."""

    class Closable(RaisingTransport):
        closed = 0

        def close(self) -> None:
            self.closed += 1

    closable = Closable(RuntimeError())
    SoapService(endpoint=ENDPOINT, transport=closable).close()
    assert closable.closed == 1
    bare = RaisingTransport(RuntimeError())
    assert not hasattr(bare, "close")
    SoapService(endpoint=ENDPOINT, transport=bare).close()


class _Raw:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        raise self.error

    def close(self) -> None:
        pass


class _Session:
    def __init__(self, raw: Any, headers: dict[str, str] | None = None) -> None:
        self.raw = raw
        self.headers = headers or {}

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.headers.update(self.headers)
        response.raw = self.raw
        return response

    def close(self) -> None:
        pass


def test_read_timeout_while_reading_the_answer_is_retryable() -> None:
    """A read timeout while the answer streams in is a retryable TransportError, urllib3's exception not attached."""
    raw = _Raw(urllib3.exceptions.ReadTimeoutError(None, ENDPOINT, "Read timed out."))  # type: ignore[arg-type]
    transport = HttpTransport(session=_Session(raw))  # type: ignore[arg-type]
    with pytest.raises(TransportError) as caught:
        transport.post(ENDPOINT, b"<x/>", {})
    assert caught.value.message == "the endpoint stopped sending within the read timeout"
    assert caught.value.retryable
    assert caught.value.status == 200
    assert caught.value.__cause__ is None


def test_answer_with_undecodable_content_encoding_is_a_protocol_error() -> None:
    """An answer declared gzip whose bytes are not gzip is a non-retryable ProtocolError."""
    raw = urllib3.HTTPResponse(
        body=io.BytesIO(b"this is not gzip data at all"),
        headers={"Content-Encoding": "gzip"},
        status=200,
        preload_content=False,
    )
    transport = HttpTransport(session=_Session(raw, {"Content-Encoding": "gzip"}))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError) as caught:
        transport.post(ENDPOINT, b"<x/>", {})
    assert caught.value.message == "the answer's Content-Encoding could not be decoded"
    assert not caught.value.retryable


# --- zeep's transport log ---------------------------------------------------------------------


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
    """A DTD in a UTF-16 answer (invisible to the byte-level check) is still refused after parsing."""
    text = (
        '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE s:Envelope [<!ENTITY e "x">]>'
        f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Body/></s:Envelope>'
    )
    body = text.encode("utf-16")
    assert b"<!DOCTYPE" not in body
    with pytest.raises(ProtocolError) as caught:
        parse_answer(FakeResponse(body))
    assert caught.value.message == "the answer carries a DTD; refused"


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


# --- the call budget and Retry-After (retries) ------------------------------------------------


class _RecordingSession:
    def __init__(self) -> None:
        self.timeouts: list[Any] = []

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        self.timeouts.append(kwargs["timeout"])
        response = requests.Response()
        response.status_code = 200
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(b"<x/>"), status=200, preload_content=False)
        return response

    def close(self) -> None:
        pass


def test_spent_budget_refuses_to_send() -> None:
    """With no time left of the call's deadline, nothing is sent: a retryable TransportError instead."""
    session = _RecordingSession()
    transport = HttpTransport(session=session)  # type: ignore[arg-type]
    with _soap.call_budget(0), pytest.raises(TransportError) as caught:
        transport.post(ENDPOINT, b"<x/>", {})
    assert caught.value.message == "the call's total deadline passed before the request was sent"
    assert caught.value.retryable
    assert session.timeouts == []


@pytest.mark.parametrize(("timeout", "expected"), [(10.0, 2.5), (1.0, 1.0), ((5.0, 10.0), (2.5, 2.5))])
def test_budget_cuts_a_single_or_paired_timeout(timeout: Any, expected: Any) -> None:
    """A single timeout or a (connect, read) pair is cut down to what is left of the call's budget."""
    session = _RecordingSession()
    transport = HttpTransport(session=session, timeout=timeout)  # type: ignore[arg-type]
    with _soap.call_budget(2.5):
        assert transport.post(ENDPOINT, b"<x/>", {}).content == b"<x/>"
    assert session.timeouts == [expected]


def test_tls_failure_names_the_openssl_reason() -> None:
    """A TLS failure that is not a certificate check carries OpenSSL's reason in the message."""
    import ssl

    inner = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    inner.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
    service = SoapService(endpoint=ENDPOINT, transport=RaisingTransport(requests.exceptions.SSLError(inner)))
    with pytest.raises(TransportError) as caught:
        service.send(b"<x/>", {})
    assert caught.value.message == "TLS handshake with the endpoint failed: WRONG_VERSION_NUMBER"
    assert not caught.value.retryable


def test_retry_after_date_without_zone_is_read_as_utc() -> None:
    """A Retry-After HTTP-date with the '-0000' (no zone information) offset is taken as UTC."""
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert _soap.parse_retry_after("Wed, 21 Oct 2015 07:28:30 -0000", now=now) == 30.0
