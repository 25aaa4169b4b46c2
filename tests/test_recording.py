"""Recording exchanges: RecordingTransport against the emulator, redaction of secrets to placeholders,
recordings on disk (save and load, and every refusal of a damaged file), and the test JWT minter."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from jwt_factory import rsa_key
from support import (
    RECORDINGS,
    SOD_ENDPOINT,
    XML_HEADERS,
    answer_envelope,
    copy_recording,
    edit_exchange,
    recorded_exchange,
    request_envelope,
    signed_token,
)

import sut_soap.testing.storage as storage_module
from sut_soap import (
    AuthenticationRejectedError,
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SystemUserClient,
    TransportError,
)
from sut_soap.testing import (
    Exchange,
    RecordedError,
    RecordingTransport,
    ReplayTransport,
    load_recording,
    mint_test_jwt,
    placeholder,
    redact_exchange,
    replay_client,
    save_recording,
)
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.testing.minting import sign_jwt
from sut_soap.tokens import CLAIM_PREFIX, CLAIM_TICKET, StaticKeySource, TokenValidator, decode_unverified
from sut_soap.transport import HeaderMap, HttpResponse, HttpTransport

PARTNER_KEY = rsa_key(7)
CLIENT_SECRET = "recording-canary-secret-3e9f"
CTX = "Cust12345"
SYSTEM_USER_TOKEN = "Recording Sync-canary5Z"
SIGNED = signed_token(SYSTEM_USER_TOKEN)
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with the tenant CTX."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_USER_TOKEN, serial="1234567")
        yield emu


def _record(
    emu: Emulator, directory: Path | None, **transport_options: object
) -> tuple[SystemUserClient, RecordingTransport]:
    transport = RecordingTransport(directory, **transport_options)  # type: ignore[arg-type]
    client = SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint,
        public_key=emu.public_key, transport=transport,
    )
    return client, transport


def _all_bytes(directory: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(directory.iterdir()))


def _secrets_of(transport: RecordingTransport) -> list[str]:
    raw = transport.exchanges[0].request_body or b""
    signed = raw.split(b"<tns:SignedSystemToken>")[1].split(b"<")[0].decode()
    return [CLIENT_SECRET, SYSTEM_USER_TOKEN, signed]


# --- recording against the emulator -----------------------------------------------------------


def test_round_trip_same_ticket_fields(emu: Emulator, tmp_path: Path) -> None:
    """Record against the emulator, save redacted, load with the JWT, replay: the same ticket."""
    client, transport = _record(emu, tmp_path / "ok")
    with client:
        original = client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == [
        "01-exchange.json", "01-request.xml", "01-response.xml",
    ]
    on_disk = _all_bytes(tmp_path / "ok")
    for secret in [*_secrets_of(transport), original.token, original.ticket]:
        assert secret.encode() not in on_disk
    assert placeholder("JWT").encode() in on_disk

    recording = load_recording(tmp_path / "ok", jwt=original.token)
    replay = ReplayTransport(recording, client_secret=CLIENT_SECRET)
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint,
        public_key=emu.public_key, transport=replay,
    ) as again:
        replayed = again.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert replayed == dataclasses.replace(original, obtained_at=replayed.obtained_at)
    assert dict(replayed.claims) == dict(original.claims)
    assert replayed.token == original.token


def test_round_trip_with_resigned_claims(emu: Emulator, tmp_path: Path) -> None:
    """replay_client signs the recorded claims again with a test key: same tenant fields, given ticket."""
    client, _ = _record(emu, tmp_path / "ok")
    with client:
        original = client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    ticket = "7T:the-ticket-my-test-expects"
    replayed = replay_client(tmp_path / "ok", ticket=ticket).authenticate(
        context_identifier=CTX, system_user_token="anything"
    )
    assert replayed.ticket == ticket
    for name in ("context_identifier", "serial", "webapi_url", "netserver_url", "associate_id"):
        assert getattr(replayed, name) == getattr(original, name)
    assert abs((replayed.expires_at - original.expires_at).total_seconds()) < 120


def test_exchange_json_is_readable(emu: Emulator, tmp_path: Path) -> None:
    """The JSON names status, headers, bodies, the signing minute and the claims, with placeholders."""
    client, _ = _record(emu, tmp_path / "ok")
    with client:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    document = json.loads((tmp_path / "ok" / "01-exchange.json").read_text())
    assert document["format"] == "sut-soap-recording/1"
    assert document["request"]["headers"] == XML_HEADERS
    assert document["request"]["body"] == "01-request.xml"
    assert len(document["request"]["signed_at"]) == 12
    assert document["response"]["status"] == 200
    assert document["response"]["headers"]["Content-Type"] == "text/xml; charset=utf-8"
    assert "Content-Length" not in document["response"]["headers"]
    assert document["error"] is None
    assert document["jwt"]["claims"][CLAIM_TICKET] == placeholder("TICKET")
    assert document["redacted"] == ["CLIENT_SECRET", "JWT", "SIGNED_TOKEN", "SYSTEM_USER_TOKEN", "TICKET"]
    request = (tmp_path / "ok" / "01-request.xml").read_bytes()
    assert b"<tns:ApplicationToken>{{SUT_SOAP:CLIENT_SECRET}}</tns:ApplicationToken>" in request
    assert b"<tns:ContextIdentifier>Cust12345</tns:ContextIdentifier>" in request


@pytest.mark.parametrize(
    ("fault", "options", "status", "error"),
    [
        (Fault.SOAP_FAULT_500, {}, 500, SoapFaultError),
        (Fault.SERVICE_UNAVAILABLE_HTML, {"retry_after": 30}, 503, TransportError),
        (Fault.EMPTY_BODY, {}, 200, ProtocolError),
    ],
)
def test_failed_exchanges_are_recorded(
    emu: Emulator, tmp_path: Path, fault: Fault, options: dict[str, object], status: int, error: type[Exception]
) -> None:
    """An answer the client rejects is on disk with its status and raw bytes, and replays the same error."""
    emu.inject(fault, times=1, **options)  # type: ignore[arg-type]
    client, transport = _record(emu, tmp_path / "r")
    with client, pytest.raises(error):
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    (raw,) = transport.exchanges
    loaded = load_recording(tmp_path / "r").exchanges[0]
    assert loaded.status == raw.status == status
    assert loaded.response_body == raw.response_body
    if options:
        assert loaded.response_headers["Retry-After"] == "30"
    with pytest.raises(error):
        replay_client(tmp_path / "r").authenticate(context_identifier=CTX, system_user_token="x")


def test_connection_refused_is_an_error_entry(tmp_path: Path) -> None:
    """A transport that raises leaves an error entry, and its replay raises the same TransportError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, public_key=PARTNER_KEY.public_key(),
        endpoint=f"http://127.0.0.1:{port}/Login/Services/PartnerSystemUserService.svc",
        transport=RecordingTransport(tmp_path / "refused", timeout=2),
    )
    with client, pytest.raises(TransportError) as recorded:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    document = json.loads((tmp_path / "refused" / "01-exchange.json").read_text())
    assert document["response"] is None
    assert document["error"] == {
        "type": "sut_soap.errors.TransportError", "message": "cannot connect to 127.0.0.1 (connection refused)", "status": None,
        "retryable": True, "context": None, "host": "127.0.0.1", "phase": "connect",
    }
    assert not (tmp_path / "refused" / "01-response.xml").exists()
    with pytest.raises(TransportError) as replayed:
        replay_client(tmp_path / "refused").authenticate(context_identifier=CTX, system_user_token="x")
    assert replayed.value.message == recorded.value.message
    assert (replayed.value.host, replayed.value.phase) == ("127.0.0.1", "connect")
    assert replayed.value.retryable is True


def test_transport_error_of_our_own_is_an_error_entry(emu: Emulator, tmp_path: Path) -> None:
    """The transport's own refusal (an answer over the size cap) is recorded and replays as the same error."""
    client, _ = _record(emu, tmp_path / "big", max_response_bytes=100)
    with client, pytest.raises(ProtocolError) as recorded:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    error = load_recording(tmp_path / "big").exchanges[0].error
    assert error is not None and error.type == "sut_soap.errors.ProtocolError" and error.status == 200
    with pytest.raises(ProtocolError) as replayed:
        replay_client(tmp_path / "big").authenticate(context_identifier=CTX, system_user_token="x")
    assert replayed.value.message == recorded.value.message


def test_existing_recording_is_not_overwritten(emu: Emulator, tmp_path: Path) -> None:
    """A directory that holds a recording is refused unless overwrite=True, which replaces it."""
    client, _ = _record(emu, tmp_path)
    with client:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    (tmp_path / "README.md").write_text("mine")
    with pytest.raises(ConfigurationError, match="already holds a recording"):
        _record(emu, tmp_path)
    emu.inject(Fault.REJECT, times=1)
    client, _ = _record(emu, tmp_path, overwrite=True)
    with client, pytest.raises(AuthenticationRejectedError):
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert len(load_recording(tmp_path).exchanges) == 1
    assert b"<IsSuccessful>false" in (tmp_path / "01-response.xml").read_bytes()
    assert (tmp_path / "README.md").read_text() == "mine"


def test_save_writes_several_exchanges(emu: Emulator, tmp_path: Path) -> None:
    """save() writes what an in-memory recorder saw, numbered in order."""
    client, transport = _record(emu, None)
    with client:
        for _ in range(2):
            client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    written = transport.save(tmp_path / "two")
    assert sorted(p.name for p in written) == [
        "01-exchange.json", "01-request.xml", "01-response.xml",
        "02-exchange.json", "02-request.xml", "02-response.xml",
    ]
    assert len(load_recording(tmp_path / "two").exchanges) == 2


def test_recording_wraps_another_transport(emu: Emulator, tmp_path: Path) -> None:
    """transport= lets another transport do the HTTP while the recorder records what went by."""
    seen: list[str] = []

    class Logging(HttpTransport):
        def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
            seen.append(f"{method} {url}")
            return super().request(method, url, **kwargs)

    client, recorder = _record(emu, tmp_path / "wrapped", transport=Logging())
    with client:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert seen == [f"POST {emu.endpoint}"]
    assert len(recorder.exchanges) == 1
    assert load_recording(tmp_path / "wrapped").exchanges[0].status == 200
    with pytest.raises(ConfigurationError, match="either session= or transport="):
        RecordingTransport(tmp_path / "other", requests.Session(), transport=Logging())


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
    inner = _Inner(answer_envelope("", "first"), answer_envelope("", "second"))
    transport = RecordingTransport(tmp_path / "rec", transport=inner, clock=lambda: T0)
    transport.request("POST", SOD_ENDPOINT, body=request_envelope(CLIENT_SECRET, SIGNED), headers=XML_HEADERS)
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["01-exchange.json", "01-request.xml", "01-response.xml"]
    transport.request("POST", SOD_ENDPOINT, body=request_envelope(CLIENT_SECRET, SIGNED), headers=XML_HEADERS)
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


# --- the model and redaction ------------------------------------------------------------------


def test_exchange_repr_names_the_error_type_not_its_message() -> None:
    """An errored Exchange's repr names the exception type and never its (possibly echoing) message."""
    exchange = Exchange(
        url=SOD_ENDPOINT, request_body=b"<x/>",
        error=RecordedError(type="requests.exceptions.ConnectionError", message=f"refused {CLIENT_SECRET}"),
    )
    assert repr(exchange) == f"Exchange(POST {SOD_ENDPOINT!r}, request=4 bytes, error=requests.exceptions.ConnectionError)"


@pytest.mark.parametrize("prefix", ["", "ns0", "x-y.z"])
def test_redaction_by_element_and_echo(prefix: str) -> None:
    """Secrets go by element whatever the prefix, and again wherever they are echoed."""
    jwt = mint_test_jwt(rsa_key(), ticket="7T:secret-ticket-abcdefghij")
    echoed = f"client secret {CLIENT_SECRET} token {SYSTEM_USER_TOKEN} jwt {jwt}"
    exchange = Exchange(
        url="https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc",
        request_body=request_envelope(CLIENT_SECRET, SIGNED, prefix=prefix or "tns"),
        request_headers=XML_HEADERS,
        status=200,
        response_headers={"Content-Type": "text/xml", "X-Echo": CLIENT_SECRET, "Set-Cookie": "a=b"},
        response_body=answer_envelope(jwt, echoed, prefix),
    )
    redacted = redact_exchange(exchange)
    text = (redacted.request_body or b"") + (redacted.response_body or b"") + json.dumps(
        [dict(redacted.response_headers), redacted.jwt_claims]
    ).encode()
    for secret in (CLIENT_SECRET, SYSTEM_USER_TOKEN, SIGNED, jwt, "7T:secret-ticket-abcdefghij"):
        assert secret.encode() not in text
    assert b"Cust12345" in text
    assert "Set-Cookie" not in redacted.response_headers
    assert redacted.response_headers["X-Echo"] == placeholder("CLIENT_SECRET")
    assert redacted.signed_at == "202611281330"
    assert redacted.jwt_claims is not None and redacted.jwt_claims[CLAIM_TICKET] == placeholder("TICKET")


def test_redaction_of_escaped_values_and_shapes() -> None:
    """XML-escaped secrets, stray JWTs and 7T: tickets anywhere in a body are replaced."""
    secret = "s3cret&<value>"
    other_jwt = mint_test_jwt(rsa_key(), context_identifier="CustOther")
    message = f"echo s3cret&amp;&lt;value&gt; and 7T:dgBlAHMAdAAxADIAMwA0ADUA== and see.{other_jwt} here"
    exchange = Exchange(
        url="https://x/Login/Services/PartnerSystemUserService.svc",
        request_body=request_envelope("s3cret&amp;&lt;value&gt;", SIGNED),
        status=200,
        response_body=answer_envelope("", message),
    )
    body = redact_exchange(exchange, client_secret=secret).response_body or b""
    assert b"s3cret" not in body and b"7T:dgBl" not in body and other_jwt.encode() not in body
    assert b"echo {{SUT_SOAP:CLIENT_SECRET}} and {{SUT_SOAP:TICKET}} and see.{{SUT_SOAP:JWT}} here" in body


def test_context_identifier_redacted_only_when_asked() -> None:
    """The ContextIdentifier stays unless redact_context_identifier=True."""
    exchange = Exchange(
        url="https://x/Login/Services/PartnerSystemUserService.svc",
        request_body=request_envelope(CLIENT_SECRET, SIGNED, ctx="Cust55555"),
        status=200,
        response_body=answer_envelope("", "no tenant Cust55555"),
    )
    assert b"Cust55555" in (redact_exchange(exchange).response_body or b"")
    redacted = redact_exchange(exchange, redact_context_identifier=True)
    assert b"Cust55555" not in (redacted.request_body or b"") + (redacted.response_body or b"")
    assert b"no tenant {{SUT_SOAP:CONTEXT_IDENTIFIER}}" in (redacted.response_body or b"")


def test_short_values_are_only_redacted_in_their_element() -> None:
    """A secret under 6 characters is replaced in its element but not everywhere (no mangled XML)."""
    exchange = Exchange(url="https://x/y", request_body=request_envelope("s", SIGNED))
    body = redact_exchange(exchange, client_secret="s").request_body or b""
    assert b"<tns:ApplicationToken>{{SUT_SOAP:CLIENT_SECRET}}</tns:ApplicationToken>" in body
    assert b"xmlns:tns" in body


def test_truncated_token_is_redacted() -> None:
    """A body cut inside the Token loses the half token too."""
    jwt = mint_test_jwt(rsa_key())
    body = answer_envelope(jwt)[: answer_envelope(jwt).index(jwt.encode()) + 40]
    redacted = redact_exchange(Exchange(url="https://x/y", request_body=None, status=200, response_body=body))
    assert (redacted.response_body or b"").endswith(b"<Token>{{SUT_SOAP:JWT}}")


def test_unknown_signed_tokens_are_redacted_by_shape() -> None:
    """Signed tokens nobody named are found by their .stamp.signature tail and replaced back to the last space."""
    first, second = signed_token("Tok1-abc"), signed_token("Tok2-def", "202611281331")
    exchange = Exchange(
        url=SOD_ENDPOINT, request_body=None,
        error=RecordedError(type="builtins.OSError", message=f"a {first} b {second} c"),
    )
    message = redact_exchange(exchange).error.message  # type: ignore[union-attr]
    assert message == "a {{SUT_SOAP:SIGNED_TOKEN}} b {{SUT_SOAP:SIGNED_TOKEN}} c"


def test_given_system_user_token_is_redacted_wherever_it_is_echoed() -> None:
    """system_user_token= given to redact_exchange replaces an echo the envelope alone would not reveal."""
    exchange = Exchange(url=SOD_ENDPOINT, request_body=None, status=503, response_headers={"X-Debug": f"for {SYSTEM_USER_TOKEN}"},
                        response_body=f"busy: {SYSTEM_USER_TOKEN}".encode())
    redacted = redact_exchange(exchange, system_user_token=SYSTEM_USER_TOKEN)
    assert redacted.response_body == b"busy: {{SUT_SOAP:SYSTEM_USER_TOKEN}}"
    assert redacted.response_headers == {"X-Debug": "for {{SUT_SOAP:SYSTEM_USER_TOKEN}}"}


def test_oversized_jwt_shape_is_still_redacted() -> None:
    """A JWT whose header is too large to decode (over 8 KiB) is still replaced whole by its eyJ shape."""
    key = rsa_key()
    header = {"alg": "RS256", "pad": "x" * 9000}
    huge = sign_jwt({"sub": "x"}, key, header=header)
    exchange = Exchange(url=SOD_ENDPOINT, request_body=None, status=500, response_body=f"echo {huge} end".encode())
    assert redact_exchange(exchange).response_body == b"echo {{SUT_SOAP:JWT}} end"


def test_secrets_inside_claim_lists_are_redacted() -> None:
    """Recorded JWT claims are scrubbed inside lists too (a ticket in an array claim)."""
    exchange = Exchange(
        url=SOD_ENDPOINT, request_body=None, status=200, response_body=b"",
        jwt_header={"alg": "RS256"}, jwt_claims={"amr": ["pwd", "7T:abcdefghijklmnopqr"], "aud": "spn:1"},
    )
    redacted = redact_exchange(exchange)
    assert redacted.jwt_claims == {"amr": ["pwd", "{{SUT_SOAP:TICKET}}"], "aud": "spn:1"}


def test_malformed_signed_token_is_redacted_everywhere() -> None:
    """A SignedSystemToken that is not <token>.<stamp>.<sig> is still redacted, echo included, with no signed_at."""
    exchange = recorded_exchange(
        request_body=request_envelope(CLIENT_SECRET, "garbled-signed-value"),
        response_body=answer_envelope("", "bad token garbled-signed-value"),
    )
    redacted = redact_exchange(exchange)
    assert b"garbled" not in (redacted.request_body or b"") + (redacted.response_body or b"")
    assert b"<tns:SignedSystemToken>{{SUT_SOAP:SIGNED_TOKEN}}<" in (redacted.request_body or b"")
    assert b"bad token {{SUT_SOAP:SIGNED_TOKEN}}" in (redacted.response_body or b"")
    assert redacted.signed_at is None


def test_undecodable_token_is_redacted_and_no_claims_are_kept() -> None:
    """A Token that is not a JWT is replaced in the body and in echoing headers; no JWT claims are invented."""
    exchange = recorded_exchange(
        response_headers={"X-Token": "opaque-token-value-123"},
        response_body=answer_envelope("opaque-token-value-123"),
    )
    redacted = redact_exchange(exchange)
    assert b"<Token>{{SUT_SOAP:JWT}}</Token>" in (redacted.response_body or b"")
    assert redacted.response_headers == {"X-Token": "{{SUT_SOAP:JWT}}"}
    assert redacted.jwt_claims is None and redacted.jwt_header is None


def test_jwt_without_ticket_claim_keeps_its_claims() -> None:
    """A JWT with no ticket claim is redacted; its claims are kept without a ticket placeholder being added."""
    jwt = mint_test_jwt(rsa_key(), claims={CLAIM_TICKET: None, CLAIM_PREFIX + "system_token": SYSTEM_USER_TOKEN})
    redacted = redact_exchange(recorded_exchange(response_body=answer_envelope(jwt)))
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
    exchange = recorded_exchange(jwt_header={"alg": "RS256"}, jwt_claims=claims)
    redacted = redact_exchange(exchange)
    assert redacted.jwt_header is None and redacted.jwt_claims is None
    save_recording(tmp_path / "rec", [exchange])
    assert json.loads((tmp_path / "rec" / "01-exchange.json").read_text())["jwt"] is None
    (loaded,) = load_recording(tmp_path / "rec").exchanges
    assert loaded.jwt_claims is None and loaded.status == 200


def test_unknown_placeholder_name_is_refused() -> None:
    """placeholder() refuses a name outside PLACEHOLDER_NAMES, listing the valid ones."""
    assert placeholder("TICKET") == "{{SUT_SOAP:TICKET}}"
    with pytest.raises(ValueError, match="unknown placeholder 'PASSWORD'; expected one of"):
        placeholder("PASSWORD")


# --- saving -----------------------------------------------------------------------------------


def test_save_recording_api(tmp_path: Path) -> None:
    """save_recording redacts hand-built exchanges and load_recording reads them back."""
    exchange = Exchange(
        url="https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc",
        request_body=request_envelope(CLIENT_SECRET, SIGNED),
        request_headers=XML_HEADERS,
        status=200,
        reason="OK",
        response_headers={"Content-Type": "text/xml; charset=utf-8"},
        response_body=answer_envelope("", "Denied"),
        note="built in a test",
    )
    save_recording(tmp_path, [exchange])
    (loaded,) = load_recording(tmp_path).exchanges
    assert loaded.note == "built in a test"
    assert CLIENT_SECRET.encode() not in (loaded.request_body or b"")
    assert loaded.response_body == exchange.response_body


@pytest.mark.parametrize(
    ("headers", "body", "suffix"),
    [
        ({"Content-Type": "text/html; charset=utf-8"}, b"<p>busy</p>", ".html"),
        ({"Content-Type": "application/json"}, b"{}", ".json"),
        ({}, b"  <!DOCTYPE html><html><body>busy</body></html>", ".html"),
        ({}, b"<s:Envelope/>", ".xml"),
        ({}, b"plain words", ".txt"),
        ({}, b"\xff\xfe\x00binary", ".bin"),
    ],
    ids=["html-type", "json-type", "sniffed-html", "sniffed-xml", "text", "binary"],
)
def test_saved_response_file_is_named_by_its_content(tmp_path: Path, headers: dict[str, str], body: bytes, suffix: str) -> None:
    """A saved answer's file extension follows its Content-Type, else what its bytes look like."""
    exchange = Exchange(url="http://127.0.0.1:9/x", request_body=None, status=503, response_headers=headers, response_body=body)
    written = save_recording(tmp_path / "rec", [exchange])
    assert [path.name for path in written if "response" in path.name] == [f"01-response{suffix}"]
    (loaded,) = load_recording(tmp_path / "rec").exchanges
    assert loaded.response_body == body


def test_recording_directory_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    """Saving under a path whose parent is a file is a ConfigurationError naming the directory."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    exchange = Exchange(url="http://127.0.0.1:9/x", request_body=b"<x/>")
    with pytest.raises(ConfigurationError) as caught:
        save_recording(blocker / "rec", [exchange])
    assert caught.value.message.startswith(f"cannot prepare the recording directory {blocker / 'rec'}: ")


def test_unwritable_recording_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body file that cannot be written (disk full) is a ConfigurationError naming the file."""

    def full(self: Path, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    exchange = Exchange(url="http://127.0.0.1:9/x", request_body=b"<x/>")
    with pytest.raises(ConfigurationError) as caught:
        save_recording(tmp_path / "rec", [exchange])
    assert caught.value.message == f"cannot write the recording file {tmp_path / 'rec' / '01-request.xml'}: No space left on device"
    assert caught.value.hint == "that the recording directory is writable"


# --- loading ----------------------------------------------------------------------------------


def load_refused(directory: Path) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        load_recording(directory)
    assert caught.value.hint == "re-record, or fix the file by hand"
    return caught.value


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["request"].update(body="../../etc/passwd"), "not a file of this directory"),
        (lambda d: d.update(format="other/9"), "not in the format"),
        (lambda d: d.update(error={"type": "x", "message": "y"}), "exactly one of response and error"),
        (lambda d: d["response"].update(status=99), "not an HTTP status"),
    ],
)
def test_bad_recordings_are_refused(tmp_path: Path, change: object, match: str) -> None:
    """Path traversal, unknown formats and inconsistent entries are configuration errors."""
    directory = copy_recording("rejection", tmp_path)
    document = json.loads((directory / "01-exchange.json").read_text())
    change(document)  # type: ignore[operator]
    (directory / "01-exchange.json").write_text(json.dumps(document))
    with pytest.raises(ConfigurationError, match=match):
        load_recording(directory)


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    """A path that is not a recording directory is refused."""
    with pytest.raises(ConfigurationError, match="not a directory"):
        load_recording(tmp_path / "nothing")
    with pytest.raises(ConfigurationError, match=r"no NN-exchange\.json"):
        load_recording(tmp_path)


def test_load_fills_given_values() -> None:
    """load_recording fills the answer's placeholders with the given values; requests keep theirs."""
    jwt = mint_test_jwt(rsa_key())
    recording = load_recording(RECORDINGS / "success", jwt=jwt)
    (exchange,) = recording.exchanges
    assert jwt.encode() in (exchange.response_body or b"")
    assert placeholder("SIGNED_TOKEN").encode() in (exchange.request_body or b"")
    assert jwt not in repr(recording) and "JWT" in repr(recording)


def test_exchange_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    """An NN-exchange.json that is not JSON is refused, naming the file and the decoding problem."""
    directory = copy_recording("success", tmp_path)
    (directory / "01-exchange.json").write_bytes(b"{not json")
    error = load_refused(directory)
    assert error.message == f"the recording file {directory / '01-exchange.json'} is not readable JSON (JSONDecodeError)"


def test_exchange_without_request_object_is_refused(tmp_path: Path) -> None:
    """An exchange whose request is not an object is refused."""
    directory = copy_recording("success", tmp_path)
    path = edit_exchange(directory, lambda d: d.update(request="POST /"))
    assert load_refused(directory).message == f"the recording file {path} has no request object"


def test_body_name_outside_the_directory_is_refused(tmp_path: Path) -> None:
    """A body file name that leaves the recording directory (../) is refused, never read."""
    directory = copy_recording("success", tmp_path)
    path = edit_exchange(directory, lambda d: d["request"].update(body="../../etc/passwd"))
    error = load_refused(directory)
    assert error.message.startswith(f"the recording file {path} names a body file '../../etc/passwd'")


def test_missing_body_file_is_refused_with_the_os_reason(tmp_path: Path) -> None:
    """A body file the exchange names but the directory lacks is refused with the OS reason."""
    directory = copy_recording("success", tmp_path)
    (directory / "01-response.xml").unlink()
    error = load_refused(directory)
    assert error.message == f"the recording file {directory / '01-response.xml'} cannot be read: No such file or directory"


def test_headers_that_are_not_strings_are_refused(tmp_path: Path) -> None:
    """Response headers that are not a JSON object of strings are refused."""
    directory = copy_recording("success", tmp_path)
    path = edit_exchange(directory, lambda d: d["response"].update(headers={"Content-Length": 12}))
    assert load_refused(directory).message == f"the recording file {path} has response headers that are not a JSON object of strings"


def test_recorded_at_that_is_not_iso_is_refused(tmp_path: Path) -> None:
    """A recorded_at that is not an ISO 8601 time is refused."""
    directory = copy_recording("success", tmp_path)
    path = edit_exchange(directory, lambda d: d.update(recorded_at="yesterday"))
    assert load_refused(directory).message == f"the recording file {path} has a recorded_at that is not an ISO 8601 time"


def test_recorded_at_without_zone_is_read_as_utc(tmp_path: Path) -> None:
    """A recorded_at without a time zone is taken as UTC."""
    directory = copy_recording("success", tmp_path)
    edit_exchange(directory, lambda d: d.update(recorded_at="2026-11-28T14:15:37"))
    (exchange,) = load_recording(directory).exchanges
    assert exchange.recorded_at is not None
    assert exchange.recorded_at.tzinfo is timezone.utc
    assert exchange.recorded_at.hour == 14


def test_error_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    """An exchange with an error that is not an object (and no response) is refused."""
    directory = copy_recording("success", tmp_path)
    path = edit_exchange(directory, lambda d: d.update(response=None, error="boom"))
    assert load_refused(directory).message == f"the recording file {path} has a response or error that is not an object"


def test_request_without_body_or_headers_loads_empty(tmp_path: Path) -> None:
    """An exchange whose request has no body file and no headers loads with body None and no headers."""
    directory = copy_recording("success", tmp_path)
    edit_exchange(directory, lambda d: d["request"].update(body=None, headers=None))
    (exchange,) = load_recording(directory).exchanges
    assert exchange.request_body is None
    assert exchange.request_headers == {}
    assert exchange.response_body


def test_empty_substitution_is_refused(tmp_path: Path) -> None:
    """load_recording refuses an empty string as a value to fill a placeholder with."""
    with pytest.raises(ConfigurationError, match="the substitution for TICKET must be a non-empty string"):
        load_recording(copy_recording("success", tmp_path), ticket="")


def test_oversized_body_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body file over the size limit is refused as a ConfigurationError naming the file, before it is read."""
    directory = copy_recording("rejection", tmp_path)
    (directory / "01-response.xml").write_bytes(b" " * 2000 + (directory / "01-response.xml").read_bytes())
    monkeypatch.setattr(storage_module, "_MAX_BODY_FILE", 1500)
    with pytest.raises(ConfigurationError) as caught:
        load_recording(directory)
    assert caught.value.message == f"the recording file {directory / '01-response.xml'} is larger than 1500 bytes"
    assert caught.value.hint == "re-record, or fix the file by hand"


def test_oversized_exchange_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The NN-exchange.json itself is capped too, before it is parsed."""
    directory = copy_recording("rejection", tmp_path)
    monkeypatch.setattr(storage_module, "_MAX_BODY_FILE", 10)
    with pytest.raises(ConfigurationError) as caught:
        load_recording(directory)
    assert caught.value.message == f"the recording file {directory / '01-exchange.json'} is larger than 10 bytes"


@pytest.mark.parametrize("name", ["01-response.xml", "01-exchange.json"])
def test_symlink_out_of_the_recording_is_refused(tmp_path: Path, name: str) -> None:
    """A body or exchange file that links outside the recording directory is refused: a replay never reads elsewhere."""
    recording = copy_recording("rejection", tmp_path)
    inside = recording / name
    outside = tmp_path / name
    outside.write_bytes(inside.read_bytes())
    inside.unlink()
    inside.symlink_to(outside)
    with pytest.raises(ConfigurationError, match="outside the recording directory"):
        load_recording(recording)


def test_symlink_inside_the_recording_is_followed(tmp_path: Path) -> None:
    """A link to another file of the same recording is fine (nothing leaves the directory)."""
    recording = copy_recording("rejection", tmp_path)
    body = recording / "01-response.xml"
    kept = recording / "kept-response.bin"
    body.rename(kept)
    body.symlink_to(kept.name)
    assert load_recording(recording).exchanges


def test_fifo_body_is_refused_not_read(tmp_path: Path) -> None:
    """A body that is a FIFO is refused at once instead of blocking the replay forever."""
    recording = copy_recording("rejection", tmp_path)
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


# --- test JWTs --------------------------------------------------------------------------------


def test_mint_test_jwt_validates() -> None:
    """mint_test_jwt gives a JWT the validator accepts with the key's public half."""
    key = rsa_key(3)
    token = mint_test_jwt(key, context_identifier="Cust777", serial="42", ticket="7T:abc")
    claims = TokenValidator(StaticKeySource([(None, key.public_key())])).validate(token, context_identifier="Cust777")
    assert claims[CLAIM_TICKET] == "7T:abc"
    assert claims["aud"] == "spn:42"


def test_mint_test_jwt_claims_and_time() -> None:
    """claims= adds or removes claims and now= sets the times."""
    key = rsa_key(3)
    then = datetime(2026, 1, 1, tzinfo=timezone.utc)
    token = mint_test_jwt(key, now=then, lifetime=60, claims={"extra": "1", "nbf": None})
    validator = TokenValidator(StaticKeySource([(None, key.public_key())]), clock=then.timestamp)
    claims = validator.validate(token, context_identifier="Cust12345")
    assert claims["extra"] == "1" and "nbf" not in claims
    assert claims["exp"] == int((then + timedelta(seconds=60)).timestamp())


def test_mint_test_jwt_takes_a_pem_key_and_no_kid() -> None:
    """mint_test_jwt accepts PEM bytes as the key, and kid=None leaves kid out of the header."""
    key = rsa_key(2)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    token = mint_test_jwt(pem, kid=None, ticket="7T:resigned-ticket-0123456789")
    header, _ = decode_unverified(token)
    assert header == {"alg": "RS256", "typ": "JWT"}
    claims = TokenValidator(StaticKeySource([(None, key.public_key())])).validate(token, context_identifier=CTX)
    assert claims[CLAIM_TICKET] == "7T:resigned-ticket-0123456789"
