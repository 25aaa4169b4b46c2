"""Behaviour pinned after mutation testing (issue 7, `make mutate`): answer parsing, redaction, endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from sut_soap.environments import is_loopback_host, resolve_endpoint, validate_endpoint
from sut_soap.errors import ConfigurationError, ProtocolError, SoapFaultError, TransportError
from sut_soap.soap import MAX_TOKEN_CHARS, parse_answer, sanitise

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
ENV_OPEN = f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>'
ENV_CLOSE = "</s:Body></s:Envelope>"
RESP_OPEN = '<AuthenticationResponse xmlns="http://www.superoffice.com/superid/partnersystemuser/0.1">'
XSI = 'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"'
SECRET = "Canary-Secret-0123456789"


@dataclass
class FakeResponse:
    content: bytes | None
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def answer(inner: str) -> bytes:
    return (ENV_OPEN + RESP_OPEN + inner + "</AuthenticationResponse>" + ENV_CLOSE).encode()


def fault(inner: str) -> bytes:
    return (ENV_OPEN + "<s:Fault>" + inner + "</s:Fault>" + ENV_CLOSE).encode()


def parse(content: bytes | None, status: int = 200, **headers: str) -> Any:
    return parse_answer(FakeResponse(content, status, dict(headers)), secrets=[SECRET])


# --- HTTP status and the error paths of parse_answer --------------------------------------------

# Bodies that reach each early HTTP-error branch of parse_answer, and the words that branch uses.
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


def test_utf16_dtd_refused_after_parsing() -> None:
    """A DTD that the byte check cannot see (UTF-16) is still refused, with the status."""
    body = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x><x/>'.encode("utf-16")
    with pytest.raises(ProtocolError, match="carries a DTD") as info:
        parse(body)
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
        pytest.param(f'<s:Body xmlns:s="{SOAP11}"/>', id="soap11-namespace-wrong-name"),
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
        pytest.param(f'<s:Envelope xmlns:s="{SOAP11}"/>', "0 Body elements", id="no-body"),
        pytest.param(f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>text<x/></s:Body></s:Envelope>', "holds text", id="text"),
        pytest.param(f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><x/><y/></s:Body></s:Envelope>', "2 elements", id="two"),
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


# --- AuthenticationResponse fields ---------------------------------------------------------------


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


# --- SOAP faults ---------------------------------------------------------------------------------


def test_fault_without_code_or_string() -> None:
    """A Fault without faultcode and faultstring still becomes a SoapFaultError with empty fields."""
    with pytest.raises(SoapFaultError) as info:
        parse(fault(""), 500)
    assert info.value.fault_code == ""
    assert info.value.fault_string == ""
    assert info.value.message.endswith("Fault (no faultcode): (no faultstring)")


def test_fault_message_names_code_and_string() -> None:
    """The fault message carries the faultcode and faultstring, not the placeholders."""
    with pytest.raises(SoapFaultError) as info:
        parse(fault("<faultcode>s:Client</faultcode><faultstring>bad request</faultstring>"), 500)
    assert "s:Client" in info.value.message
    assert "bad request" in info.value.message
    assert "(no" not in info.value.message


def test_fault_code_and_string_redacted_and_code_capped() -> None:
    """Secrets in faultcode and faultstring are masked, and the faultcode is cut to 100 characters."""
    code = f"s:{SECRET}" + "c" * 300
    with pytest.raises(SoapFaultError) as info:
        parse(fault(f"<faultcode>{code}</faultcode><faultstring>echo {SECRET}</faultstring>"), 500)
    assert SECRET not in info.value.fault_code
    assert SECRET not in info.value.fault_string
    assert len(info.value.fault_code) <= 100


@pytest.mark.parametrize("code", ["Server", "s:Server"])
def test_server_fault_retryable_with_or_without_prefix(code: str) -> None:
    """A Server faultcode is retryable whether or not it carries a namespace prefix."""
    with pytest.raises(SoapFaultError) as info:
        parse(fault(f"<faultcode>{code}</faultcode><faultstring>busy</faultstring>"), 500)
    assert info.value.retryable is True


# --- redaction -----------------------------------------------------------------------------------


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


# --- endpoint checks -----------------------------------------------------------------------------


def test_endpoint_errors_name_the_setting() -> None:
    """By default the error names the endpoint; what= renames it."""
    with pytest.raises(ConfigurationError, match=r"^endpoint is empty"):
        validate_endpoint("")
    with pytest.raises(ConfigurationError, match=r"^the JWKS URL is empty"):
        validate_endpoint("", what="the JWKS URL")


def test_printable_ascii_boundaries_in_urls() -> None:
    """'!' (0x21) is allowed in a URL, DEL (0x7f) is refused like other control characters."""
    assert validate_endpoint("https://example.com/a!b") == "https://example.com/a!b"
    assert validate_endpoint("https://example.com/a\x80b") == "https://example.com/a\x80b"
    with pytest.raises(ConfigurationError, match="control characters"):
        validate_endpoint("https://example.com/a\x7fb")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https:///Login/Services/PartnerSystemUserService.svc", "absolute https"),
        ("https://example.com:99999/x", "valid URL"),
        ("https://user@example.com/x", "credentials"),
        ("https://:pw@example.com/x", "credentials"),
    ],
)
def test_more_endpoints_refused(url: str, why: str) -> None:
    """No host, an invalid port, or a user name or password alone are refused."""
    with pytest.raises(ConfigurationError, match=why):
        validate_endpoint(url)


def test_plain_http_refusal_hints_at_https() -> None:
    """Refusing plain http tells the user to use https://."""
    with pytest.raises(ConfigurationError) as info:
        validate_endpoint("http://example.com/x")
    assert info.value.hint.startswith("use https://")
    assert "loopback" in info.value.hint


@pytest.mark.parametrize(
    ("host", "expected"),
    [("app.localhost", True), ("App.LocalHost", True), ("[LOCALHOST]", True),
     ("XLOCALHOST", False), ("localhostX", False), ("x127.0.0.1", False)],
)
def test_loopback_names(host: str, expected: bool) -> None:
    """*.localhost counts as loopback in any case; only brackets are stripped, nothing else."""
    assert is_loopback_host(host) is expected


def test_resolve_endpoint_with_exactly_one_choice() -> None:
    """environment= alone gives the environment's URL; endpoint= alone is validated and returned."""
    assert resolve_endpoint(environment="sod", endpoint=None).startswith("https://sod.superoffice.com/")
    assert resolve_endpoint(environment=None, endpoint="https://x.example/y") == "https://x.example/y"
    with pytest.raises(ConfigurationError, match="plain http"):
        resolve_endpoint(environment=None, endpoint="http://x.example/y")


def test_resolve_endpoint_without_choice_hints_at_both() -> None:
    """With neither environment= nor endpoint=, the hint names both options."""
    with pytest.raises(ConfigurationError, match="no endpoint") as info:
        resolve_endpoint(environment=None, endpoint=None)
    assert "environment=" in info.value.hint
    assert "endpoint=" in info.value.hint
