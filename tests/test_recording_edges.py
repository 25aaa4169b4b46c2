"""Recordings at their edges: damaged input, odd envelopes, replay diffs, the secret scan and `sut-soap replay`."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jwt_factory import mint, rsa_key
from support import run_replay as _run

import sut_soap.cli.replay as replay_cli
import sut_soap.testing.storage as storage_module
from sut_soap.errors import (
    AuthenticationRejectedError,
    ConfigurationError,
    ProtocolError,
    TokenValidationError,
    TransportError,
)
from sut_soap.testing import (
    Exchange,
    RecordedError,
    Recording,
    RecordingTransport,
    ReplayMismatch,
    ReplayTransport,
    load_recording,
    mint_test_jwt,
    placeholder,
    redact_exchange,
    replay_client,
    save_recording,
    scan_for_secrets,
)
from sut_soap.testing.minting import sign_jwt
from sut_soap.tokens import CLAIM_PREFIX, CLAIM_TICKET, StaticKeySource, TokenValidator, decode_unverified
from sut_soap.transport import HeaderMap, HttpResponse

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
URL = "https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc"
CTX = "Cust12345"
CLIENT_SECRET = "edges-canary-secret-51c2"
SYSTEM_USER_TOKEN = "Edges Sync-canary8W"
SOAP_ACTION = '"http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate"'
XML_HEADERS = {"SOAPAction": SOAP_ACTION, "Content-Type": "text/xml; charset=utf-8"}
SIGNATURE = "QUJD" * 86 + "=="
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _request(secret: str, signed: str, *, extra: str = "", ctx: str = CTX) -> bytes:
    return (
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:tns="http://www.superoffice.com/superid/partnersystemuser/0.1"><e:Header>'
        f"<tns:ApplicationToken>{secret}</tns:ApplicationToken>"
        f"<tns:ContextIdentifier>{ctx}</tns:ContextIdentifier>{extra}</e:Header><e:Body>"
        f"<tns:AuthenticationRequest><tns:SignedSystemToken>{signed}</tns:SignedSystemToken>"
        "<tns:ReturnTokenType>Jwt</tns:ReturnTokenType></tns:AuthenticationRequest></e:Body></e:Envelope>"
    ).encode()


def _answer(token: str = "", message: str = "") -> bytes:
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        '<AuthenticationResponse xmlns="http://www.superoffice.com/superid/partnersystemuser/0.1">'
        f"<IsSuccessful>{'true' if token else 'false'}</IsSuccessful><Token>{token}</Token>"
        f"<ErrorMessage>{message}</ErrorMessage></AuthenticationResponse></s:Body></s:Envelope>"
    ).encode()


def _signed(token: str = SYSTEM_USER_TOKEN, stamp: str = "202611281330") -> str:
    return f"{token}.{stamp}.{SIGNATURE}"


def _template(extra: str = "") -> bytes:
    return _request(placeholder("CLIENT_SECRET"), placeholder("SIGNED_TOKEN"), extra=extra)


def _exchange(**kwargs: Any) -> Exchange:
    options: dict[str, Any] = {
        "url": URL,
        "request_body": _template(),
        "request_headers": XML_HEADERS,
        "status": 200,
        "reason": "OK",
        "response_headers": {"Content-Type": "text/xml; charset=utf-8"},
        "response_body": _answer("", "Denied"),
    }
    options.update(kwargs)
    return Exchange(**options)


def _transport(*exchanges: Exchange, **kwargs: Any) -> ReplayTransport:
    return ReplayTransport(Recording(tuple(exchanges), Path("inline"), {}), **kwargs)


def _post(transport: ReplayTransport, body: bytes, headers: dict[str, str] | None = None) -> HttpResponse:
    return transport.request("POST", URL, body=body, headers=XML_HEADERS if headers is None else headers)


def _token_of(response: HttpResponse) -> str:
    match = re.search(rb"<Token>([^<]+)</Token>", response.content)
    assert match is not None
    return match.group(1).decode()


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(RECORDINGS / name, target)
    return target


def _edit(directory: Path, change: Any, number: str = "01") -> None:
    path = directory / f"{number}-exchange.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")


# --- the model and redaction -------------------------------------------------------------------------


def test_exchange_repr_names_the_error_type_not_its_message() -> None:
    """An errored Exchange's repr names the exception type and never its (possibly echoing) message."""
    exchange = Exchange(
        url=URL, request_body=b"<x/>",
        error=RecordedError(type="requests.exceptions.ConnectionError", message=f"refused {CLIENT_SECRET}"),
    )
    assert repr(exchange) == f"Exchange(POST {URL!r}, request=4 bytes, error=requests.exceptions.ConnectionError)"


def test_unknown_signed_tokens_are_redacted_by_shape() -> None:
    """Signed tokens nobody named are found by their .stamp.signature tail and replaced back to the last space."""
    first, second = _signed("Tok1-abc"), _signed("Tok2-def", "202611281331")
    exchange = Exchange(
        url=URL, request_body=None,
        error=RecordedError(type="builtins.OSError", message=f"a {first} b {second} c"),
    )
    message = redact_exchange(exchange).error.message  # type: ignore[union-attr]
    assert message == "a {{SUT_SOAP:SIGNED_TOKEN}} b {{SUT_SOAP:SIGNED_TOKEN}} c"


def test_given_system_user_token_is_redacted_wherever_it_is_echoed() -> None:
    """system_user_token= given to redact_exchange replaces an echo the envelope alone would not reveal."""
    exchange = Exchange(url=URL, request_body=None, status=503, response_headers={"X-Debug": f"for {SYSTEM_USER_TOKEN}"},
                        response_body=f"busy: {SYSTEM_USER_TOKEN}".encode())
    redacted = redact_exchange(exchange, system_user_token=SYSTEM_USER_TOKEN)
    assert redacted.response_body == b"busy: {{SUT_SOAP:SYSTEM_USER_TOKEN}}"
    assert redacted.response_headers == {"X-Debug": "for {{SUT_SOAP:SYSTEM_USER_TOKEN}}"}


def test_oversized_jwt_shape_is_still_redacted() -> None:
    """A JWT whose header is too large to decode (over 8 KiB) is still replaced whole by its eyJ shape."""
    key = rsa_key()
    header = {"alg": "RS256", "pad": "x" * 9000}
    huge = sign_jwt({"sub": "x"}, key, header=header)
    exchange = Exchange(url=URL, request_body=None, status=500, response_body=f"echo {huge} end".encode())
    assert redact_exchange(exchange).response_body == b"echo {{SUT_SOAP:JWT}} end"


def test_secrets_inside_claim_lists_are_redacted() -> None:
    """Recorded JWT claims are scrubbed inside lists too (a ticket in an array claim)."""
    exchange = Exchange(
        url=URL, request_body=None, status=200, response_body=b"",
        jwt_header={"alg": "RS256"}, jwt_claims={"amr": ["pwd", "7T:abcdefghijklmnopqr"], "aud": "spn:1"},
    )
    redacted = redact_exchange(exchange)
    assert redacted.jwt_claims == {"amr": ["pwd", "{{SUT_SOAP:TICKET}}"], "aud": "spn:1"}


def test_malformed_signed_token_is_redacted_everywhere() -> None:
    """A SignedSystemToken that is not <token>.<stamp>.<sig> is still redacted, echo included, with no signed_at."""
    exchange = _exchange(
        request_body=_request(CLIENT_SECRET, "garbled-signed-value"),
        response_body=_answer("", "bad token garbled-signed-value"),
    )
    redacted = redact_exchange(exchange)
    assert b"garbled" not in (redacted.request_body or b"") + (redacted.response_body or b"")
    assert b"<tns:SignedSystemToken>{{SUT_SOAP:SIGNED_TOKEN}}<" in (redacted.request_body or b"")
    assert b"bad token {{SUT_SOAP:SIGNED_TOKEN}}" in (redacted.response_body or b"")
    assert redacted.signed_at is None


def test_undecodable_token_is_redacted_and_no_claims_are_kept() -> None:
    """A Token that is not a JWT is replaced in the body and in echoing headers; no JWT claims are invented."""
    exchange = _exchange(
        response_headers={"X-Token": "opaque-token-value-123"},
        response_body=_answer("opaque-token-value-123"),
    )
    redacted = redact_exchange(exchange)
    assert b"<Token>{{SUT_SOAP:JWT}}</Token>" in (redacted.response_body or b"")
    assert redacted.response_headers == {"X-Token": "{{SUT_SOAP:JWT}}"}
    assert redacted.jwt_claims is None and redacted.jwt_header is None


def test_jwt_without_ticket_claim_keeps_its_claims() -> None:
    """A JWT with no ticket claim is redacted; its claims are kept without a ticket placeholder being added."""
    jwt = mint_test_jwt(rsa_key(), claims={CLAIM_TICKET: None, CLAIM_PREFIX + "system_token": SYSTEM_USER_TOKEN})
    redacted = redact_exchange(_exchange(response_body=_answer(jwt)))
    assert redacted.jwt_claims is not None
    assert CLAIM_TICKET not in redacted.jwt_claims
    assert redacted.jwt_claims[CLAIM_PREFIX + "system_token"] == placeholder("SYSTEM_USER_TOKEN")
    assert redacted.jwt_claims[CLAIM_PREFIX + "ctx"] == CTX


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(levels):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    "claims",
    [{"when": datetime(2026, 1, 1, tzinfo=timezone.utc)}, _deep(5000)],
    ids=["not-json", "absurdly-nested"],
)
def test_unstorable_claims_are_left_out_of_the_recording(tmp_path: Path, claims: dict[str, Any]) -> None:
    """Claims that cannot be stored as JSON drop the JWT part entirely, and the rest still saves and loads."""
    exchange = _exchange(jwt_header={"alg": "RS256"}, jwt_claims=claims)
    redacted = redact_exchange(exchange)
    assert redacted.jwt_header is None and redacted.jwt_claims is None
    save_recording(tmp_path / "rec", [exchange])
    assert json.loads((tmp_path / "rec" / "01-exchange.json").read_text())["jwt"] is None
    (loaded,) = load_recording(tmp_path / "rec").exchanges
    assert loaded.jwt_claims is None and loaded.status == 200


# --- loading -----------------------------------------------------------------------------------------


def test_oversized_body_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body file over the size limit is refused as a ConfigurationError naming the file, before it is read."""
    directory = _copy("rejection", tmp_path)
    (directory / "01-response.xml").write_bytes(b" " * 2000 + (directory / "01-response.xml").read_bytes())
    monkeypatch.setattr(storage_module, "_MAX_BODY_FILE", 1500)
    with pytest.raises(ConfigurationError) as caught:
        load_recording(directory)
    assert caught.value.message == f"the recording file {directory / '01-response.xml'} is larger than 1500 bytes"
    assert caught.value.hint == "re-record, or fix the file by hand"


def test_oversized_exchange_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The NN-exchange.json itself is capped too, before it is parsed."""
    directory = _copy("rejection", tmp_path)
    monkeypatch.setattr(storage_module, "_MAX_BODY_FILE", 10)
    with pytest.raises(ConfigurationError) as caught:
        load_recording(directory)
    assert caught.value.message == f"the recording file {directory / '01-exchange.json'} is larger than 10 bytes"


# --- recording ----------------------------------------------------------------------------------------


class _Inner:
    """A wrapped transport without close(): answers each POST with the next canned response."""

    def __init__(self, *bodies: bytes) -> None:
        self.bodies = list(bodies)
        self.posts = 0

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        self.posts += 1
        return HttpResponse(200, HeaderMap({"Content-Type": "text/xml"}), self.bodies.pop(0), "OK")


def test_recording_transport_saves_each_exchange_as_it_completes(tmp_path: Path) -> None:
    """Each exchange is written when it completes; a later one adds files without clearing the earlier ones."""
    inner = _Inner(_answer("", "first"), _answer("", "second"))
    transport = RecordingTransport(tmp_path / "rec", transport=inner, clock=lambda: T0)
    transport.request("POST", URL, body=_request(CLIENT_SECRET, _signed()), headers=XML_HEADERS)
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["01-exchange.json", "01-request.xml", "01-response.xml"]
    transport.request("POST", URL, body=_request(CLIENT_SECRET, _signed()), headers=XML_HEADERS)
    assert len(list((tmp_path / "rec").iterdir())) == 6
    loaded = load_recording(tmp_path / "rec").exchanges
    assert [b"first" in (e.response_body or b"") for e in loaded] == [True, False]
    assert b"second" in (loaded[1].response_body or b"")
    assert all(e.recorded_at == T0 for e in loaded)
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "rec").iterdir())
    assert CLIENT_SECRET.encode() not in on_disk and SYSTEM_USER_TOKEN.encode() not in on_disk
    assert inner.posts == 2


def test_close_tolerates_a_wrapped_transport_without_close() -> None:
    """close() calls the wrapped transport's close() when it has one, and is a no-op when it has none."""
    RecordingTransport(transport=_Inner()).close()
    closed: list[bool] = []
    inner = _Inner()
    inner.close = lambda: closed.append(True)  # type: ignore[attr-defined]
    RecordingTransport(transport=inner).close()
    assert closed == [True]


# --- test JWTs -----------------------------------------------------------------------------------------


def test_mint_test_jwt_takes_a_pem_key_and_no_kid() -> None:
    """mint_test_jwt accepts PEM bytes as the key, and kid=None leaves kid out of the header."""
    key = rsa_key(2)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    token = mint_test_jwt(pem, kid=None, ticket="7T:edges-ticket-0123456789")
    header, _ = decode_unverified(token)
    assert header == {"alg": "RS256", "typ": "JWT"}
    claims = TokenValidator(StaticKeySource([(None, key.public_key())])).validate(token, context_identifier=CTX)
    assert claims[CLAIM_TICKET] == "7T:edges-ticket-0123456789"


# --- replaying -----------------------------------------------------------------------------------------


def _claims_exchange(recorded_at: datetime | None, claims: dict[str, Any]) -> Exchange:
    return _exchange(
        response_body=_answer(placeholder("JWT")), recorded_at=recorded_at,
        jwt_header={"alg": "RS256", "typ": "JWT"}, jwt_claims=claims,
    )


def test_resigned_claims_move_numeric_and_string_times_and_fill_lists() -> None:
    """Re-signed claims move int and digit-string times by the elapsed time and fill placeholders inside lists."""
    claims = {"iat": 1000, "exp": "1300", "nbf": True, "auth_time": "soon", "amr": ["pwd", placeholder("TICKET")]}
    transport = _transport(_claims_exchange(T0, claims), jwt_key=rsa_key(), ticket="7T:edges-ticket-0123456789",
                           check_request=False, clock=lambda: T0 + timedelta(seconds=90))
    _, replayed = decode_unverified(_token_of(_post(transport, b"x")))
    assert replayed == {"iat": 1090, "exp": "1390", "nbf": True, "auth_time": "soon",
                        "amr": ["pwd", "7T:edges-ticket-0123456789"]}


def test_resigned_claims_without_recording_time_are_not_moved() -> None:
    """Without recorded_at the claims are signed again exactly as recorded (no time shift)."""
    transport = _transport(_claims_exchange(None, {"iat": 1000, "exp": 1300}), jwt_key=rsa_key(),
                           check_request=False, clock=lambda: T0)
    _, replayed = decode_unverified(_token_of(_post(transport, b"x")))
    assert replayed == {"iat": 1000, "exp": 1300}


def test_diff_names_unqualified_and_foreign_elements() -> None:
    """Elements without a namespace, or in one without a short name, appear in the diff as local or {ns}local."""
    extra = '<plain>one</plain><f:Note xmlns:f="urn:foreign">two</f:Note>'
    transport = _transport(_exchange(request_body=_template(extra)))
    sent = _request("s", _signed(), extra=extra.replace("one", "uno").replace("two", "dos"))
    with pytest.raises(ReplayMismatch) as caught:
        _post(transport, sent)
    text = str(caught.value)
    assert '-    plain "one"\n' in text and '+    plain "uno"\n' in text
    assert '-    {urn:foreign}Note "two"\n' in text and '+    {urn:foreign}Note "dos"\n' in text


def test_comments_in_the_sent_request_are_ignored() -> None:
    """An XML comment between elements of the sent request is not a mismatch."""
    transport = _transport(_exchange())
    sent = _request("s", _signed()).replace(b"<e:Body>", b"<!-- proxy was here --><e:Body>")
    assert _post(transport, sent).status_code == 200
    assert transport.mismatches == []


def test_recorded_request_without_matched_headers_accepts_any() -> None:
    """A recorded request with no SOAPAction or Content-Type does not check them."""
    transport = _transport(_exchange(request_headers={}))
    assert _post(transport, _request("s", _signed()), {"SOAPAction": '"urn:whatever"'}).status_code == 200


@pytest.mark.parametrize(
    "recorded",
    [
        b"not xml at all",
        b'<!DOCTYPE e [<!ENTITY x "y">]>' + _template(),
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE e [<!ENTITY x "y">]><e>&x;</e>'.encode("utf-16"),
    ],
    ids=["garbage", "dtd", "dtd-in-utf16"],
)
def test_recorded_request_that_is_not_plain_xml_is_a_configuration_error(recorded: bytes) -> None:
    """A recorded request that is not well-formed, DTD-free XML is the recording's fault: ConfigurationError."""
    transport = _transport(_exchange(request_body=recorded))
    with pytest.raises(ConfigurationError) as caught:
        _post(transport, _request("s", _signed()))
    assert caught.value.message == "the recorded request is not well-formed XML"
    assert caught.value.hint == "re-record the exchange"


def test_sent_request_with_a_hidden_dtd_is_a_mismatch() -> None:
    """A sent request carrying a DTD (even UTF-16, where no ASCII <!DOCTYPE shows) is a mismatch, not parsed."""
    sent = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE e [<!ENTITY x "y">]><e>&x;</e>'.encode("utf-16")
    transport = _transport(_exchange())
    with pytest.raises(ReplayMismatch, match=rf"\+\(not well-formed XML, {len(sent)} bytes\)"):
        _post(transport, sent)


def test_structural_mismatch_shows_both_trees_with_secrets_masked() -> None:
    """An extra element shows the whole recorded and sent trees; the sent secret and signed token are masked."""
    transport = _transport(_exchange(), client_secret=CLIENT_SECRET)
    sent = _request(CLIENT_SECRET, _signed(), extra="<tns:Extra>added</tns:Extra>")
    with pytest.raises(ReplayMismatch) as caught:
        _post(transport, sent)
    text = str(caught.value)
    assert '+    tns:ApplicationToken "***"' in text
    assert '+      tns:SignedSystemToken "***.202611281330.***"' in text
    assert '+    tns:Extra "added"' in text
    assert '-    tns:ApplicationToken "{{SUT_SOAP:CLIENT_SECRET}}"' in text
    assert CLIENT_SECRET not in text and SYSTEM_USER_TOKEN not in text and SIGNATURE not in text
    assert text.endswith("(re-record, or pass check_request=False)")
    assert transport.mismatches == [text.removesuffix("\n(re-record, or pass check_request=False)")]


def test_assert_all_used_names_the_exchanges_never_requested() -> None:
    """assert_all_used fails while recorded exchanges remain, and passes once all were replayed."""
    transport = _transport(_exchange(), _exchange(), check_request=False)
    _post(transport, b"x")
    assert transport.remaining == 1
    with pytest.raises(ReplayMismatch, match=r"^1 of 2 recorded exchanges were never requested$"):
        transport.assert_all_used()
    _post(transport, b"x")
    transport.assert_all_used()


def test_replay_refuses_a_get() -> None:
    """A GET during a replay (a JWKS fetch) is a ReplayMismatch naming the URL and saying to give public_key=."""
    with pytest.raises(ReplayMismatch, match=r"^the client tried to reach GET https://x\.invalid/jwks during a replay; "
                                              r"give the client public_key="):
        _transport(_exchange()).request("GET", "https://x.invalid/jwks")


@pytest.mark.parametrize(
    ("recorded", "expected", "context"),
    [
        (RecordedError("sut_soap.errors.ConfigurationError", "odd", status=502, retryable=True), TransportError, None),
        (RecordedError("sut_soap.errors.NoSuchError", "odd", status=None, retryable=False), TransportError, None),
        (RecordedError("sut_soap.errors.ProtocolError", "short read", status=200, retryable=False), ProtocolError, None),
    ],
    ids=["own-other", "own-unknown", "own-protocol"],
)
def test_recorded_failures_are_raised_again(recorded: RecordedError, expected: type, context: str | None) -> None:
    """A recorded failure of sut-soap's own is rebuilt as the nearest class the client handles, with message and status."""
    transport = _transport(_exchange(status=None, response_body=None, error=recorded))
    with pytest.raises(expected) as caught:
        _post(transport, _request("s", _signed()))
    error = caught.value
    assert type(error) is expected
    if isinstance(error, TransportError | ProtocolError):
        assert (error.message, error.status, error.retryable) == (recorded.message, recorded.status, recorded.retryable)
    else:
        assert str(error) == recorded.message
    assert (None if error.__context__ is None else type(error.__context__).__name__) == context


@pytest.mark.parametrize(
    ("recorded", "message", "retryable"),
    [
        (RecordedError("builtins.OSError", "odd"), "cannot connect to the endpoint (recorded OSError)", True),
        (RecordedError("requests.exceptions.ConnectionError", f"refused {CLIENT_SECRET}"),
         "cannot connect to the endpoint (recorded ConnectionError)", True),
        (RecordedError("requests.exceptions.ReadTimeout", "slow"),
         "the endpoint did not answer in time (recorded ReadTimeout)", True),
        (RecordedError("requests.exceptions.ConnectionError", "gone", context="urllib3.exceptions.ProtocolError"),
         "the connection broke while reading the answer (recorded ConnectionError)", True),
        (RecordedError("requests.exceptions.NotAnException", "odd"), "the transport failed: NotAnException", False),
    ],
    ids=["os-error", "connection", "timeout", "broken-read", "unknown"],
)
def test_recorded_foreign_failures_come_back_as_transport_errors(
    recorded: RecordedError, message: str, retryable: bool
) -> None:
    """A failure recorded from an HTTP library replays as the TransportError the transport maps it to, naming its type only."""
    transport = _transport(_exchange(status=None, response_body=None, error=recorded))
    with pytest.raises(TransportError) as caught:
        _post(transport, _request("s", _signed()))
    assert type(caught.value) is TransportError
    assert (caught.value.message, caught.value.retryable) == (message, retryable)
    assert CLIENT_SECRET not in str(caught.value) and caught.value.__cause__ is None


def test_replay_client_refuses_a_public_key_without_a_jwt() -> None:
    """public_key= without jwt= is refused: the replay signs with jwt_key, so the key would never be used."""
    with pytest.raises(ConfigurationError, match="public_key= is for validating jwt=; give jwt_key="):
        replay_client(RECORDINGS / "rejection", public_key=rsa_key().public_key())


def test_replay_client_uses_a_given_endpoint() -> None:
    """endpoint= replaces the recorded URL; the request still matches when the path is the same."""
    client = replay_client(RECORDINGS / "rejection", endpoint=URL)
    with pytest.raises(AuthenticationRejectedError, match="NeedsReapproval"):
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert [sent.address for sent in client.replay.sent] == [URL]


# --- sut-soap replay ---------------------------------------------------------------------------------


def test_replay_command_redacted_jwt_without_claims_long_ago(tmp_path: Path) -> None:
    """A redacted JWT with no recorded claims is a success with the check skipped, however old the recording."""
    directory = _copy("success", tmp_path)
    _edit(directory, lambda d: d.update(jwt=None, recorded_at="2020-01-01T00:00:00+00:00"))
    code, out, err = _run(str(directory))
    assert code == 0, out
    assert "  JWT: not validated: the recording's JWT is redacted and its claims were not recorded\n" in out
    assert out.endswith("  result: the answer is a success; the JWT check was skipped\n")
    assert err == ""


def test_replay_command_prints_no_empty_note(tmp_path: Path) -> None:
    """An exchange without a note prints no note line."""
    directory = _copy("rejection", tmp_path)
    _edit(directory, lambda d: d.update(note=""))
    code, out, _ = _run(str(directory))
    assert code == 1
    assert "note:" not in out


def test_replay_command_tampered_recording_exits_2(tmp_path: Path) -> None:
    """A tampered recording exits 2 with the reason and what to do on stderr, and replays nothing."""
    directory = _copy("success", tmp_path)
    _edit(directory, lambda d: d["response"].update(body="../../../etc/passwd"))
    code, out, err = _run(str(directory))
    assert code == 2
    assert out == ""
    assert "names a body file '../../../etc/passwd', which is not a file of this directory" in err
    assert err.endswith("  check: re-record, or fix the file by hand\n")


def test_replay_command_unreadable_public_key_exits_2(tmp_path: Path) -> None:
    """A recording holding its JWT with a --public-key that cannot be read exits 2 (configuration)."""
    directory = _copy("success", tmp_path)
    response = directory / "01-response.xml"
    response.write_bytes(response.read_bytes().replace(b"{{SUT_SOAP:JWT}}", mint_test_jwt(rsa_key()).encode()))
    code, out, _ = _run(str(directory), "--public-key", str(tmp_path / "missing.pem"))
    assert code == 2
    assert "result: ConfigurationError:" in out
    assert "eyJ" not in out


def test_replay_command_exit_code_follows_the_last_exchange(tmp_path: Path) -> None:
    """With several exchanges (a retry: failure, then success) every one is shown and the last one sets the code."""
    directory = tmp_path / "retry"
    directory.mkdir()
    for name in ("01-exchange.json", "01-request.xml"):
        shutil.copy(RECORDINGS / "disconnect" / name, directory / name)
    for name in ("exchange.json", "request.xml", "response.xml"):
        shutil.copy(RECORDINGS / "rejection" / f"01-{name}", directory / f"02-{name}")

    def renumber(document: dict[str, Any]) -> None:
        document["request"]["body"] = "02-request.xml"
        document["response"]["body"] = "02-response.xml"

    _edit(directory, renumber, "02")
    code, out, _ = _run(str(directory))
    assert "exchange 1 of 2" in out and "the transport failed: requests.exceptions.ConnectionError" in out
    assert "exchange 2 of 2" in out and "AuthenticationRejectedError" in out
    assert code == 1
    _edit(directory, lambda d: d.update(response=None, error={"type": "requests.exceptions.ConnectionError", "message": "x"}),
          "02")
    assert _run(str(directory))[0] == 3


def test_replay_command_prints_no_empty_check_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors without a hint print no dangling 'check:' line, while loading or while replaying."""

    def no_hint_load(directory: object) -> Recording:
        raise ConfigurationError("cannot load", hint="")

    with monkeypatch.context() as patch:
        patch.setattr(replay_cli, "load_recording", no_hint_load)
        code, _, err = _run(str(RECORDINGS / "rejection"))
    assert (code, err) == (2, "sut-soap replay: cannot load\n")

    def no_hint_authenticate(self: object, **kwargs: object) -> None:
        raise TokenValidationError("no good", check="exp", hint="")

    monkeypatch.setattr(replay_cli.SystemUserClient, "authenticate", no_hint_authenticate)
    code, out, _ = _run(str(RECORDINGS / "rejection"))
    assert code == 4
    assert out.endswith("  result: TokenValidationError: no good\n")
    assert "check:" not in out


# --- the secret scan ---------------------------------------------------------------------------------


def test_scan_finds_a_jwt_right_after_a_jwt_like_word(tmp_path: Path) -> None:
    """A JWT glued after a long e-word (a near miss read as its first segment) is still found, at the JWT."""
    jwt = mint(rsa_key())
    (tmp_path / "log.txt").write_text(f"line one\neventually_everything.{jwt}\n")
    (finding,) = scan_for_secrets(tmp_path)
    assert (finding.kind, finding.line, finding.excerpt) == ("JWT", 2, jwt[:8] + "...")


@pytest.mark.parametrize(
    "segment",
    [
        "eyJhbGciOiJSUzI1NiJ9A",  # 21 characters: not base64 at all
        "eyJhbGciOiBicm9rZW4",  # {"alg": broken
        "e________________w",  # "{" then bytes that are not UTF-8
        "eW91cl9iYXNlNjRfaGVyZQ",  # your_base64_here: not an object
    ],
    ids=["bad-base64", "bad-json", "bad-utf8", "not-an-object"],
)
def test_scan_ignores_jwt_shapes_without_a_json_header(tmp_path: Path, segment: str) -> None:
    """A dotted e-word whose first segment does not decode to a JSON header with alg is not reported."""
    (tmp_path / "notes.md").write_text(f"see {segment}.payloadpart.signaturepart and {segment}.x.y\n")
    assert scan_for_secrets(tmp_path) == []


@pytest.mark.parametrize("name", ["01-response.xml", "01-exchange.json"])
def test_symlink_out_of_the_recording_is_refused(tmp_path: Path, name: str) -> None:
    """A body or exchange file that links outside the recording directory is refused: a replay never reads elsewhere."""
    recording = _copy("rejection", tmp_path)
    inside = recording / name
    outside = tmp_path / name
    outside.write_bytes(inside.read_bytes())
    inside.unlink()
    inside.symlink_to(outside)
    with pytest.raises(ConfigurationError, match="outside the recording directory"):
        load_recording(recording)


def test_symlink_inside_the_recording_is_followed(tmp_path: Path) -> None:
    """A link to another file of the same recording is fine (nothing leaves the directory)."""
    recording = _copy("rejection", tmp_path)
    body = recording / "01-response.xml"
    kept = recording / "kept-response.bin"
    body.rename(kept)
    body.symlink_to(kept.name)
    assert load_recording(recording).exchanges


def test_fifo_body_is_refused_not_read(tmp_path: Path) -> None:
    """A body that is a FIFO is refused at once instead of blocking the replay forever."""
    recording = _copy("rejection", tmp_path)
    body = recording / "01-response.xml"
    body.unlink()
    os.mkfifo(body)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_recording(recording)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # blocked opening the FIFO: release it so the suite does not hang, then fail
        with open(body, "wb"):
            pass
        worker.join(10)
        pytest.fail("load_recording blocked on a FIFO body file")
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigurationError)
    assert "not a regular file" in outcome[0].message
