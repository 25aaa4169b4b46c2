"""The REST form of the exchange without a network: the exact request SuperOffice documents, every shape of
answer the JSON reader meets (statuses, labels, encodings, hostile JSON, the three members), and what
``protocol=`` changes on a client (endpoints, refusals, the request it would send)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from support import KAT_ASCII, FakeResponse

from sut_soap import ConfigurationError, ProtocolError, SystemUserClient, TransportError
from sut_soap.contract import PROBE_VALUE, REST_PATH, SERVICE_PATH
from sut_soap.keys import load_private_key
from sut_soap.rest import MAX_ANSWER_BYTES, REST_HEADERS, build_request, parse_answer, probe_request
from sut_soap.soap import Answer

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
SECRET = "rest-client-secret-4e7a"
TOKEN = "Acme Sync-rest8k8Q7"
JSON_TYPE = "application/json; charset=utf-8"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def read(body: bytes | str, status: int = 200, content_type: str | None = JSON_TYPE, **headers: str) -> Answer:
    """parse_answer on a scripted answer; the client secret and system user token are the secrets."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    given = {"Content-Type": content_type} if content_type is not None else {}
    given.update({name.replace("_", "-"): value for name, value in headers.items()})
    return parse_answer(FakeResponse(data, status, given), secrets=(SECRET, TOKEN))


def refused(body: bytes | str, **kwargs: Any) -> ProtocolError:
    """The ProtocolError parse_answer raises for this answer (status 200 unless given)."""
    with pytest.raises(ProtocolError) as info:
        read(body, **kwargs)
    assert info.value.status == kwargs.get("status", 200)
    return info.value


# --- the request ------------------------------------------------------------------------------------


def test_request_is_byte_for_byte_the_documented_one() -> None:
    """The body is SuperOffice's documented JSON exactly: member order, four-space indent, "JWT", no newline at the end."""
    body, headers = build_request(signed_token=KAT_ASCII, client_secret="CLIENT SECRET", context_identifier="Cust12345")
    expected = (
        b'{\n    "SignedSystemToken": "' + KAT_ASCII.encode() + b'",\n'
        b'    "ApplicationToken": "CLIENT SECRET",\n'
        b'    "ContextIdentifier": "Cust12345",\n'
        b'    "ReturnTokenType": "JWT"\n'
        b"}"
    )
    assert body == expected
    assert headers == {"Content-Type": "application/json", "Accept": "application/json"}


def test_request_headers_are_a_new_dict_each_time() -> None:
    """Changing the returned headers changes neither the next request's headers nor REST_HEADERS."""
    _, headers = build_request(signed_token="t.202601011200.QUJD", client_secret=SECRET, context_identifier="C")
    headers["Accept"] = "text/html"
    assert build_request(signed_token="t.202601011200.QUJD", client_secret=SECRET, context_identifier="C")[1] == dict(
        REST_HEADERS
    )


def test_request_escapes_json_and_writes_utf8() -> None:
    """Quotes and backslashes are JSON-escaped, a slash is left alone, non-ASCII goes as UTF-8: no injection."""
    body, _ = build_request(
        signed_token='x", "ApplicationToken": "evil.202601011200.QUJD',
        client_secret='q"b\\s/é',
        context_identifier="Sørlandet",
    )
    assert b'"ApplicationToken": "q\\"b\\\\s/\xc3\xa9",' in body
    assert b'"ContextIdentifier": "S\xc3\xb8rlandet",' in body
    document = json.loads(body)
    assert document["SignedSystemToken"] == 'x", "ApplicationToken": "evil.202601011200.QUJD'
    assert document["ApplicationToken"] == 'q"b\\s/é'
    assert list(document) == ["SignedSystemToken", "ApplicationToken", "ContextIdentifier", "ReturnTokenType"]


@pytest.mark.parametrize(
    "values",
    [{"client_secret": b"bytes"}, {"context_identifier": None}, {"signed_token": 5}, {"client_secret": "lone \ud800"}],
    ids=["bytes", "none", "int", "lone-surrogate"],
)
def test_request_refuses_values_json_in_utf8_cannot_carry(values: dict[str, Any]) -> None:
    """A value that is not a str, or holds a lone surrogate, is a ConfigurationError that does not show it."""
    given: dict[str, Any] = {"signed_token": "t.202601011200.QUJD", "client_secret": SECRET, "context_identifier": "C"}
    with pytest.raises(ConfigurationError) as info:
        build_request(**{**given, **values})
    assert SECRET not in str(info.value) and "bytes" not in str(info.value).replace("the REST", "")


def test_probe_request_carries_no_secret() -> None:
    """doctor's REST probe is the documented request with the probe value in every field."""
    body, headers = probe_request()
    document = json.loads(body)
    assert document == {
        "SignedSystemToken": f"{PROBE_VALUE}.000000000000.AAAA",
        "ApplicationToken": PROBE_VALUE,
        "ContextIdentifier": PROBE_VALUE,
        "ReturnTokenType": "JWT",
    }
    assert headers == dict(REST_HEADERS)


def test_rest_module_imports_neither_zeep_nor_the_http_library() -> None:
    """Importing sut_soap.rest in a fresh interpreter loads no zeep, lxml, urllib3 or requests."""
    import subprocess

    probe = (
        "import sys, sut_soap.rest\n"
        "print(sorted(m for m in ('zeep', 'lxml', 'urllib3', 'requests') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]"


# --- answers that are read --------------------------------------------------------------------------


def test_success_gives_the_same_answer_value_as_soap() -> None:
    """A documented success is the SOAP layer's Answer: is_successful, the stripped token, no message."""
    answer = read(json.dumps({"IsSuccessful": True, "Token": f"  {JWT}\n", "ErrorMessage": None}))
    assert answer == Answer(is_successful=True, token=JWT, error_message=None)
    assert type(answer) is Answer


@pytest.mark.parametrize(
    "body",
    [
        '{"isSuccessful": true, "token": "%s", "errorMessage": null}',
        '{"ISSUCCESSFUL": true, "TOKEN": "%s"}',
        '{"IsSuccessful": true, "Token": "%s", "Extra": {"nested": [1, 2.5, -3e10, null, false]}, "n": 12}',
    ],
    ids=["camelCase", "upper", "unknown-members"],
)
def test_member_names_match_in_any_case_and_unknown_members_are_ignored(body: str) -> None:
    """ASP.NET's camelCase and other casings are read; members the contract does not name are ignored."""
    assert read(body % JWT) == Answer(is_successful=True, token=JWT, error_message=None)


def test_rejection_is_returned_with_its_message_sanitised() -> None:
    """IsSuccessful false: the Answer carries the message on one line, secrets and the token masked, at most 256 chars."""
    message = f"InvalidSignature: {SECRET} for {TOKEN}\u0085\t\r\n{JWT} " + "z" * 10_000
    answer = read(json.dumps({"IsSuccessful": False, "Token": JWT, "ErrorMessage": message}))
    assert answer.is_successful is False and answer.token == JWT
    assert answer.error_message is not None and len(answer.error_message) <= 256
    assert answer.error_message.startswith("InvalidSignature: *** for *** *** zzz")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", answer.error_message)


def test_rejection_without_message_or_token() -> None:
    """IsSuccessful false with null or blank members is a rejection with neither token nor message."""
    assert read('{"IsSuccessful": false, "Token": "  ", "ErrorMessage": "  "}') == Answer(False, None, None)
    assert read('{"IsSuccessful": false}') == Answer(False, None, None)


def test_lone_surrogate_in_error_message_becomes_a_replacement_character() -> None:
    """An escaped lone surrogate (valid JSON) in ErrorMessage is shown as U+FFFD, so the message can be printed."""
    answer = read('{"IsSuccessful": false, "ErrorMessage": "bad \\ud800 thing"}')
    assert answer.error_message == "bad \ufffd thing"
    assert answer.error_message.encode("utf-8")


@pytest.mark.parametrize(
    "content_type", ["application/json", "APPLICATION/JSON; Charset=\"UTF-8\"", "application/json; charset=utf8"]
)
def test_json_content_types_accepted(content_type: str) -> None:
    """application/json with no charset or a UTF-8 one, in any case, is read."""
    assert read(f'{{"IsSuccessful": true, "Token": "{JWT}"}}', content_type=content_type).token == JWT


def test_plain_dict_headers_of_a_callers_transport_are_read_in_any_case() -> None:
    """A transport of the caller's returning a plain dict with a lower-case content-type name is read."""
    response = FakeResponse(f'{{"IsSuccessful": true, "Token": "{JWT}"}}'.encode(), 200, {"content-type": "application/json"})
    assert parse_answer(response).token == JWT


def test_utf8_byte_order_mark_is_ignored() -> None:
    """One leading UTF-8 BOM is ignored (as the SOAP side's XML parser ignores it); the answer reads as without it."""
    body = b"\xef\xbb\xbf" + f'{{"IsSuccessful": true, "Token": "{JWT}"}}'.encode()
    assert read(body).token == JWT


# --- answers that are refused -----------------------------------------------------------------------


def test_empty_200_is_refused() -> None:
    """HTTP 200 with an empty or blank body is a ProtocolError."""
    for body in (b"", b" \r\n"):
        assert "empty body" in refused(body).message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html><body><h1>Welcome</h1></body></html>", "text/html"),
        ('{"IsSuccessful": true, "Token": "x"}', None),
        ('{"IsSuccessful": true, "Token": "x"}', "text/xml; charset=utf-8"),
        ('{"IsSuccessful": true, "Token": "x"}', "application/json; charset=utf-16"),
        ('{"IsSuccessful": true, "Token": "x"}', "application/problem+json"),
        ("<s:Envelope/>", "text/xml"),
        (bytes(range(256)), "application/octet-stream"),
    ],
    ids=["html", "no-type", "json-as-xml", "utf16-label", "problem-json", "soap", "binary"],
)
def test_200_not_labelled_json_is_refused(body: bytes | str, content_type: str | None) -> None:
    """HOSTILE 37 for REST: HTML, SOAP, binary, or JSON under another label (or none) is a ProtocolError."""
    error = refused(body, content_type=content_type)
    assert "not labelled JSON" in error.message
    assert error.excerpt is not None and "<" not in error.excerpt


def test_answer_over_the_cap_is_refused_unparsed() -> None:
    """A body over MAX_ANSWER_BYTES is a ProtocolError before parsing, even when it is valid JSON."""
    body = json.dumps({"IsSuccessful": True, "Token": JWT, "pad": "x" * MAX_ANSWER_BYTES})
    assert f"larger than {MAX_ANSWER_BYTES} bytes" in refused(body).message


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{\x00}\x00", b'{"IsSuccessful": true, "Token": "\xc3"}', b"\xef\xbb\xbf\xef\xbb\xbf{}"],
    ids=["utf16-bom", "invalid-utf8", "two-boms"],
)
def test_answer_that_is_not_utf8_is_refused(body: bytes) -> None:
    """UTF-16, invalid UTF-8, or a second BOM (not JSON once the first is gone) is a ProtocolError."""
    refused(body)


@pytest.mark.parametrize(
    "body",
    [
        '{"IsSuccessful": true, "Token": "a.b.c"',
        '{"IsSuccessful": true, "Token": "a.b.c"} trailing',
        "{'IsSuccessful': true}",
        '{"IsSuccessful": True}',
        '{"IsSuccessful": true,}',
    ],
    ids=["truncated", "trailing", "single-quotes", "python-true", "trailing-comma"],
)
def test_malformed_json_is_refused_with_its_position_only(body: str) -> None:
    """HOSTILE 38 for REST: JSON that does not parse is a ProtocolError naming line and column, not the text."""
    error = refused(body)
    assert re.search(r"line \d+, column \d+", error.message)
    assert "a.b.c" not in str(error)


@pytest.mark.parametrize(
    ("body", "kind"),
    [("[]", "an array"), ('"text"', "a string"), ("null", "null"), ("3", "a number"), ("true", "a boolean")],
)
def test_top_level_that_is_not_an_object_is_refused(body: str, kind: str) -> None:
    """A JSON array, string, null, number or boolean at the top is a ProtocolError naming what it was."""
    assert f"is {kind} instead of an object" in refused(body).message


@pytest.mark.parametrize(
    "body",
    [
        '{"IsSuccessful": true, "Token": "a.b.c", "Token": "d.e.f"}',
        '{"IsSuccessful": false, "IsSuccessful": true, "Token": "a.b.c"}',
        '{"IsSuccessful": true, "Token": "a.b.c", "x": {"k": 1, "k": 2}}',
        '{"IsSuccessful": true, "Token": "a.b.c", "token": "d.e.f"}',
    ],
    ids=["two-tokens", "two-flags", "nested", "differing-case"],
)
def test_duplicate_members_are_refused(body: str) -> None:
    """HOSTILE 43 for REST: a member named twice, at any depth or in another case, is a ProtocolError (no last-wins)."""
    assert "more than one" in refused(body).message or "more than once" in refused(body).message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals_are_refused(literal: str) -> None:
    """NaN and Infinity, which Python's json accepts by default, are a ProtocolError."""
    assert "which JSON does not allow" in refused(f'{{"IsSuccessful": true, "Token": "a.b.c", "n": {literal}}}').message


@pytest.mark.parametrize("number", ["1" * 33, "1e999", "-1e999", "0." + "1" * 40, "1" * 5000])
def test_huge_numbers_are_refused(number: str) -> None:
    """A number over 32 characters, or one a double cannot hold, is a ProtocolError (no 5,000-digit int() call)."""
    error = refused(f'{{"IsSuccessful": true, "Token": "a.b.c", "n": {number}}}')
    assert "number" in error.message and number[:20] not in error.message


@pytest.mark.parametrize("depth", [5_000, 30_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    """HOSTILE 74-like: thousands of nested arrays are a ProtocolError, not a RecursionError."""
    body = '{"IsSuccessful": true, "Token": "a.b.c", "n": ' + "[" * depth + "]" * depth + "}"
    assert "nested too deeply" in refused(body).message


@pytest.mark.parametrize(
    ("flag", "shown"),
    [(None, "no IsSuccessful"), ("null", "no IsSuccessful"), ('"true"', "a string"), ("1", "a number"),
     ("0", "a number"), ("[]", "an array"), ("{}", "an object")],
    ids=["missing", "null", "string", "one", "zero", "array", "object"],
)
def test_is_successful_must_be_a_json_boolean(flag: str | None, shown: str) -> None:
    """HOSTILE 44 for REST: IsSuccessful missing, null, "true", 1 or 0 is a ProtocolError; only true/false count."""
    member = "" if flag is None else f'"IsSuccessful": {flag}, '
    assert shown in refused(f'{{{member}"Token": "a.b.c"}}').message


@pytest.mark.parametrize(
    "token",
    [None, "null", '""', '"   "', "123", "true", '["a.b.c"]', '{"t": "a.b.c"}', '"' + "a" * (16 * 1024 + 1) + '"'],
    ids=["missing", "null", "empty", "blank", "number", "boolean", "array", "object", "over-16KiB"],
)
def test_success_without_a_usable_string_token_is_refused(token: str | None) -> None:
    """HOSTILE 45 for REST: IsSuccessful true with the Token missing, null, blank, not a string or over 16 KiB."""
    member = "" if token is None else f', "Token": {token}'
    refused(f'{{"IsSuccessful": true{member}}}')


@pytest.mark.parametrize("value", ["5", '["x"]', '{"x": 1}', "false"])
def test_rejection_with_a_non_string_token_or_message_is_refused(value: str) -> None:
    """A Token or ErrorMessage that is neither a string nor null is a ProtocolError, rejection or not."""
    assert "not a string" in refused(f'{{"IsSuccessful": false, "Token": {value}}}').message
    assert "not a string" in refused(f'{{"IsSuccessful": false, "ErrorMessage": {value}}}').message


# --- HTTP statuses: the SOAP layer's mapping, shared ------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_a_transport_error_and_never_read(status: int) -> None:
    """HOSTILE 25/26 for REST: a 3xx is a non-retryable TransportError whatever it carries."""
    with pytest.raises(TransportError) as info:
        read('{"IsSuccessful": true, "Token": "a.b.c"}', status=status, Location="https://evil.example/")
    assert info.value.status == status and info.value.retryable is False
    assert "redirects are not followed" in str(info.value)


def test_503_with_retry_after_is_retryable_with_its_delay() -> None:
    """HOSTILE 30 for REST: 503 with Retry-After: 2 is a retryable TransportError with retry_after 2."""
    with pytest.raises(TransportError) as info:
        read(b"", status=503, content_type=None, Retry_After="2")
    assert (info.value.status, info.value.retryable, info.value.retry_after) == (503, True, 2.0)
    assert "empty body" in info.value.message


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_gateway_html_is_retryable_with_a_tag_free_excerpt(status: int) -> None:
    """HOSTILE 32 for REST: 429/502/503/504 HTML is retryable; the excerpt has no markup and at most 256 chars."""
    page = "<html><head><title>Bad Gateway</title></head><body><h1>nginx</h1>" + "<p>x</p>" * 500 + "</body></html>"
    with pytest.raises(TransportError) as info:
        read(page, status=status, content_type="text/html")
    assert info.value.retryable is True and info.value.excerpt is not None
    assert "<" not in info.value.excerpt and len(info.value.excerpt) <= 256 and "nginx" in info.value.excerpt


@pytest.mark.parametrize(
    "status", [400, 401, 403, 404, 415, 500],
)
def test_error_status_with_a_json_body_is_final_and_scrubbed(status: int) -> None:
    """HOSTILE 33/36 for REST: another error status is a non-retryable TransportError; its excerpt masks secrets."""
    body = json.dumps({"IsSuccessful": False, "ErrorMessage": f"bad {SECRET}", "title": "One or more errors"})
    with pytest.raises(TransportError) as info:
        read(body, status=status, content_type="application/problem+json")
    error = info.value
    assert error.status == status and error.retryable is False
    assert SECRET not in str(error) and error.excerpt is not None and "***" in error.excerpt
    if status == 404:
        assert REST_PATH in str(error) and SERVICE_PATH not in str(error)


# --- the client's protocol= -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["SOAP", "Rest", "json", "", None, 1, b"rest"])
def test_client_refuses_an_unknown_protocol(protocol: Any) -> None:
    """protocol= other than "soap" or "rest" is a ConfigurationError naming the choices."""
    with pytest.raises(ConfigurationError) as info:
        SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, environment="sod", protocol=protocol)
    assert "'soap' or 'rest'" in info.value.message


def test_client_refuses_a_wsdl_for_rest() -> None:
    """wsdl= with protocol="rest" is a ConfigurationError: the REST exchange has no WSDL."""
    with pytest.raises(ConfigurationError) as info:
        SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, environment="sod", protocol="rest",
                         wsdl="any.wsdl")
    assert "wsdl=" in info.value.message


@pytest.mark.parametrize("environment", ["sod", "qaonline", "stage", "online"])
def test_rest_endpoint_per_environment(environment: str) -> None:
    """environment= gives the environment's REST URL for "rest", its SOAP URL for "soap"; the JWKS is the same."""
    host = {"stage": "qaonline"}.get(environment, environment)
    with SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, environment=environment,
                          protocol="rest") as rest_client, \
            SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, environment=environment) as soap_client:
        assert rest_client.endpoint == f"https://{host}.superoffice.com/Login/api/PartnerSystemUser/Authenticate"
        assert soap_client.endpoint == f"https://{host}.superoffice.com{SERVICE_PATH}"
        assert rest_client.jwks_url == soap_client.jwks_url == f"https://{host}.superoffice.com/login/.well-known/jwks"
        assert (rest_client.protocol, soap_client.protocol) == ("rest", "soap")


@pytest.mark.parametrize("protocol", ["soap", "rest"])
def test_explicit_endpoint_is_used_as_given_for_both(protocol: str) -> None:
    """endpoint= is the URL POSTed to whatever the protocol; the endpoint rules apply alike."""
    url = "https://proxy.example.com/custom/path"
    with SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, endpoint=url, protocol=protocol) as client:
        assert client.endpoint == url
    with pytest.raises(ConfigurationError):
        SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, endpoint="http://evil.example/x",
                         protocol=protocol)


def test_rest_client_builds_the_documented_request() -> None:
    """build_envelope of a REST client is the documented JSON and its two headers, with the client's secret."""
    with SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, environment="sod", protocol="rest") as client:
        body, headers = client.build_envelope(context_identifier="Cust12345", signed_system_token=KAT_ASCII)
    assert body == build_request(signed_token=KAT_ASCII, client_secret=SECRET, context_identifier="Cust12345")[0]
    assert headers == dict(REST_HEADERS)
    assert SECRET not in repr(client)
