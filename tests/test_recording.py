"""sut_soap.recording: record, redact, save, load, replay, and the `sut-soap replay` command."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from jwt_factory import public_pem, rsa_key
from support import reset_emulator
from support import run_replay as _run

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
)
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.tokens import CLAIM_TICKET, StaticKeySource, TokenValidator
from sut_soap.transport import HttpResponse, HttpTransport

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
PARTNER_KEY = rsa_key(7)
CLIENT_SECRET = "recording-canary-secret-3e9f"
CTX = "Cust12345"
SYSTEM_USER_TOKEN = "Recording Sync-canary5Z"
SOAP_ACTION = '"http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate"'
XML_HEADERS = {"SOAPAction": SOAP_ACTION, "Content-Type": "text/xml; charset=utf-8"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_USER_TOKEN, serial="1234567")
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    yield from reset_emulator(emulator)


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


# --- round trip --------------------------------------------------------------------------------


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


# --- recording failures --------------------------------------------------------------------------


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
        "type": "sut_soap.errors.TransportError", "message": "cannot connect to the endpoint (connection refused)", "status": None,
        "retryable": True, "context": None,
    }
    assert not (tmp_path / "refused" / "01-response.xml").exists()
    with pytest.raises(TransportError) as replayed:
        replay_client(tmp_path / "refused").authenticate(context_identifier=CTX, system_user_token="x")
    assert replayed.value.message == recorded.value.message
    assert replayed.value.retryable is True


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


# --- redaction ------------------------------------------------------------------------------------


def _answer(token: str = "", message: str = "", prefix: str = "") -> bytes:
    p = f"{prefix}:" if prefix else ""
    ns = f' xmlns:{prefix}="http://www.superoffice.com/superid/partnersystemuser/0.1"' if prefix else (
        ' xmlns="http://www.superoffice.com/superid/partnersystemuser/0.1"'
    )
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        f"<{p}AuthenticationResponse{ns}><{p}IsSuccessful>{'true' if token else 'false'}</{p}IsSuccessful>"
        f"<{p}Token>{token}</{p}Token><{p}ErrorMessage>{message}</{p}ErrorMessage>"
        f"</{p}AuthenticationResponse></s:Body></s:Envelope>"
    ).encode()


def _request(secret: str, ctx: str, signed: str, prefix: str = "tns") -> bytes:
    return (
        f'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:{prefix}="http://www.superoffice.com/superid/partnersystemuser/0.1"><e:Header>'
        f"<{prefix}:ApplicationToken>{secret}</{prefix}:ApplicationToken>"
        f"<{prefix}:ContextIdentifier>{ctx}</{prefix}:ContextIdentifier></e:Header><e:Body>"
        f"<{prefix}:AuthenticationRequest><{prefix}:SignedSystemToken>{signed}</{prefix}:SignedSystemToken>"
        f"<{prefix}:ReturnTokenType>Jwt</{prefix}:ReturnTokenType></{prefix}:AuthenticationRequest></e:Body>"
        "</e:Envelope>"
    ).encode()


def _signed(token: str = SYSTEM_USER_TOKEN) -> str:
    return f"{token}.202611281330." + "QUJD" * 86 + "=="


@pytest.mark.parametrize("prefix", ["", "ns0", "x-y.z"])
def test_redaction_by_element_and_echo(prefix: str) -> None:
    """Secrets go by element whatever the prefix, and again wherever they are echoed."""
    jwt = mint_test_jwt(rsa_key(), ticket="7T:secret-ticket-abcdefghij")
    echoed = f"client secret {CLIENT_SECRET} token {SYSTEM_USER_TOKEN} jwt {jwt}"
    exchange = Exchange(
        url="https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc",
        request_body=_request(CLIENT_SECRET, CTX, _signed(), prefix or "tns"),
        request_headers=XML_HEADERS,
        status=200,
        response_headers={"Content-Type": "text/xml", "X-Echo": CLIENT_SECRET, "Set-Cookie": "a=b"},
        response_body=_answer(jwt, echoed, prefix),
    )
    redacted = redact_exchange(exchange)
    text = (redacted.request_body or b"") + (redacted.response_body or b"") + json.dumps(
        [dict(redacted.response_headers), redacted.jwt_claims]
    ).encode()
    for secret in (CLIENT_SECRET, SYSTEM_USER_TOKEN, _signed(), jwt, "7T:secret-ticket-abcdefghij"):
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
        request_body=_request("s3cret&amp;&lt;value&gt;", CTX, _signed()),
        status=200,
        response_body=_answer("", message),
    )
    body = redact_exchange(exchange, client_secret=secret).response_body or b""
    assert b"s3cret" not in body and b"7T:dgBl" not in body and other_jwt.encode() not in body
    assert b"echo {{SUT_SOAP:CLIENT_SECRET}} and {{SUT_SOAP:TICKET}} and see.{{SUT_SOAP:JWT}} here" in body


def test_context_identifier_redacted_only_when_asked() -> None:
    """The ContextIdentifier stays unless redact_context_identifier=True."""
    exchange = Exchange(
        url="https://x/Login/Services/PartnerSystemUserService.svc",
        request_body=_request(CLIENT_SECRET, "Cust55555", _signed()),
        status=200,
        response_body=_answer("", "no tenant Cust55555"),
    )
    assert b"Cust55555" in (redact_exchange(exchange).response_body or b"")
    redacted = redact_exchange(exchange, redact_context_identifier=True)
    assert b"Cust55555" not in (redacted.request_body or b"") + (redacted.response_body or b"")
    assert b"no tenant {{SUT_SOAP:CONTEXT_IDENTIFIER}}" in (redacted.response_body or b"")


def test_short_values_are_only_redacted_in_their_element() -> None:
    """A secret under 6 characters is replaced in its element but not everywhere (no mangled XML)."""
    exchange = Exchange(url="https://x/y", request_body=_request("s", CTX, _signed()))
    body = redact_exchange(exchange, client_secret="s").request_body or b""
    assert b"<tns:ApplicationToken>{{SUT_SOAP:CLIENT_SECRET}}</tns:ApplicationToken>" in body
    assert b"xmlns:tns" in body


def test_truncated_token_is_redacted() -> None:
    """A body cut inside the Token loses the half token too."""
    jwt = mint_test_jwt(rsa_key())
    body = _answer(jwt)[: _answer(jwt).index(jwt.encode()) + 40]
    redacted = redact_exchange(Exchange(url="https://x/y", request_body=None, status=200, response_body=body))
    assert (redacted.response_body or b"").endswith(b"<Token>{{SUT_SOAP:JWT}}")


# --- request checks -------------------------------------------------------------------------------


def _exchange_for_check(**kwargs: object) -> Exchange:
    template = _request(placeholder("CLIENT_SECRET"), CTX, placeholder("SIGNED_TOKEN"), "ns0")
    pretty = template.replace(b"><", b">\n  <")
    options: dict[str, object] = {
        "url": "https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc",
        "request_body": b"<?xml version='1.0'?>\n" + pretty,
        "request_headers": XML_HEADERS,
        "status": 200,
        "response_body": _answer("", "Denied"),
    }
    options.update(kwargs)
    return Exchange(**options)  # type: ignore[arg-type]


def _post(transport: ReplayTransport, body: bytes, headers: dict[str, str] | None = None) -> object:
    return transport.request(
        "POST", "https://online.superoffice.com/login/services/PartnerSystemUserService.svc", body=body,
        headers=headers or XML_HEADERS,
    )


def _transport(exchange: Exchange, **kwargs: object) -> ReplayTransport:
    return ReplayTransport(Recording((exchange,), Path("inline"), {}), **kwargs)  # type: ignore[arg-type]


def test_request_check_ignores_prefixes_and_layout() -> None:
    """Other prefixes, whitespace and the XML declaration do not matter; placeholders take any value."""
    transport = _transport(_exchange_for_check())
    response = _post(transport, _request("any secret", CTX, _signed(), "tns"))
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert transport.sent[0].context_identifier == CTX


@pytest.mark.parametrize(
    ("body", "kwargs", "shown"),
    [
        (_request("s", CTX, "Acme.20261128133.QUJD"), {}, '"***.20261128133.***"'),
        (_request("s", CTX, _signed("Other Sync-1")), {"system_user_token": SYSTEM_USER_TOKEN}, '"***.202611281330.***"'),
        (_request("wrong-secret-xyz", CTX, _signed()), {"client_secret": CLIENT_SECRET}, 'tns:ApplicationToken "***"'),
        (_request("s", CTX, _signed()).replace(b"Jwt", b"Saml"), {}, '+      tns:ReturnTokenType "Saml"'),
        (b"not xml", {}, "not well-formed XML"),
    ],
)
def test_request_check_mismatches(body: bytes, kwargs: dict[str, object], shown: str) -> None:
    """A bad signed-token shape, another token or secret than given, or another value: a diff, no secret."""
    transport = _transport(_exchange_for_check(), **kwargs)
    with pytest.raises(ReplayMismatch) as info:
        _post(transport, body)
    text = str(info.value)
    assert "--- recorded request" in text and "+++ sent request" in text
    assert shown in text
    assert "wrong-secret-xyz" not in text and "Other Sync-1" not in text
    assert transport.mismatches


def test_request_check_compares_headers_and_path() -> None:
    """Another SOAPAction or URL path shows in the diff."""
    transport = _transport(_exchange_for_check())
    with pytest.raises(ReplayMismatch, match=r'\+SOAPAction: "urn:other"'):
        _post(transport, _request("s", CTX, _signed()), {**XML_HEADERS, "SOAPAction": '"urn:other"'})
    transport = _transport(_exchange_for_check())
    with pytest.raises(ReplayMismatch, match=r"\+POST /elsewhere"):
        transport.request("POST", "https://x/elsewhere", body=_request("s", CTX, _signed()), headers=XML_HEADERS)


def test_request_check_can_be_turned_off() -> None:
    """check_request=False answers whatever the client sent."""
    transport = _transport(_exchange_for_check(), check_request=False)
    assert _post(transport, b"anything").status_code == 200  # type: ignore[attr-defined]


def test_oversized_replayed_answer_is_refused() -> None:
    """An answer over max_response_bytes fails as it would over the network."""
    exchange = _exchange_for_check(response_body=_answer("", "x" * 5000))
    with pytest.raises(ProtocolError, match="larger than 1000 bytes"):
        _post(_transport(exchange, check_request=False, max_response_bytes=1000), b"x")


def test_redacted_jwt_needs_a_jwt_or_a_key() -> None:
    """Replaying a redacted success without jwt= or jwt_key= is a configuration error, said at once."""
    with pytest.raises(ConfigurationError, match="redacted JWT"):
        ReplayTransport(RECORDINGS / "success")


def test_replay_opens_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replayed exchange, request check and offline JWT check included, never connects anywhere."""
    connects: list[object] = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connects.append(address))
    client = replay_client(RECORDINGS / "rejection")
    with pytest.raises(AuthenticationRejectedError):
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert connects == [] and client.replay.remaining == 0


# --- loading -----------------------------------------------------------------------------------


def _copy(name: str, target: Path) -> Path:
    target.mkdir()
    for path in (RECORDINGS / name).iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


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
    directory = _copy("rejection", tmp_path / "r")
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


def test_reprs_show_no_bodies() -> None:
    """Exchange and SentRequest reprs show sizes, not contents."""
    client = replay_client(RECORDINGS / "success", client_secret=CLIENT_SECRET)
    client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    text = repr(client.replay.recording.exchanges[0]) + repr(client.replay.sent[0])
    assert CLIENT_SECRET not in text and "bytes" in text


# --- test JWTs ----------------------------------------------------------------------------------


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


# --- sut-soap replay -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "shown"),
    [
        ("success", 0, "result: SystemUserTicket ticket=7T:*** tenant=Cust12345 serial=1234567"),
        ("two-tenants", 0, "serial=7654321"),
        ("rejection", 1, "result: AuthenticationRejectedError: SuperOffice rejected"),
        ("soap-fault", 1, "result: SoapFaultError"),
        ("html-503", 3, "result: TransportError: HTTP 503"),
        ("disconnect", 3, "the transport failed: requests.exceptions.ConnectionError"),
        ("billion-laughs", 3, "result: ProtocolError: the answer carries a DTD"),
        ("expired-token", 4, "result: TokenValidationError: the JWT expired"),
        ("wrong-tenant-token", 4, "result: TokenValidationError"),
        ("unknown-tenant", 1, "UnknownTenant"),
    ],
)
def test_replay_command(name: str, code: int, shown: str) -> None:
    """`sut-soap replay DIR` prints what the client would have done and exits with the CLI's codes."""
    exit_code, out, _ = _run(str(RECORDINGS / name))
    assert exit_code == code
    assert shown in out
    assert "{{SUT_SOAP" not in out


def test_replay_command_on_redacted_jwt_says_how_it_checked() -> None:
    """A redacted JWT is re-signed from the recorded claims and checked as at the recording time."""
    _, out, _ = _run(str(RECORDINGS / "success"), "--public-key", str(RECORDINGS / "nothing.pem"))
    assert "--public-key is not used: the recording's JWT is redacted" in out
    assert "signed again with a stand-in key (kid and signature not checked)" in out
    recorded_at = load_recording(RECORDINGS / "success").exchanges[0].recorded_at
    assert recorded_at is not None and f"as at {recorded_at.isoformat()}" in out


def test_replay_command_with_the_jwt_in_the_recording(tmp_path: Path) -> None:
    """A recording that holds its JWT is validated with --public-key, and skipped without it."""
    key = rsa_key(4)
    now = datetime.now(timezone.utc)
    directory = _copy("success", tmp_path / "kept")
    response = directory / "01-response.xml"
    response.write_bytes(response.read_bytes().replace(b"{{SUT_SOAP:JWT}}", mint_test_jwt(key, now=now).encode()))
    document = json.loads((directory / "01-exchange.json").read_text())
    document["recorded_at"] = now.isoformat()
    (directory / "01-exchange.json").write_text(json.dumps(document))
    pem = tmp_path / "public.pem"
    pem.write_bytes(public_pem(key))
    code, out, _ = _run(str(directory), "--public-key", str(pem))
    assert code == 0 and "JWT: validated with --public-key" in out and "ticket=7T:***" in out
    code, out, _ = _run(str(directory))
    assert code == 0 and "the JWT check was skipped" in out and "ticket=" not in out
    other = tmp_path / "other.pem"
    other.write_bytes(public_pem(rsa_key(5)))
    code, out, _ = _run(str(directory), "--public-key", str(other))
    assert code == 4 and "TokenValidationError" in out


def test_replay_command_usage() -> None:
    """Help exits 0; a missing directory or a bad flag exits 2 with the reason on stderr."""
    code, out, _ = _run("--help")
    assert code == 0 and "usage: sut-soap replay" in out
    code, _, err = _run("/nonexistent/recording")
    assert code == 2 and "not a directory" in err
    assert _run("--bogus")[0] == 2


def test_replay_command_never_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay command opens no socket."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("socket opened")

    monkeypatch.setattr(socket, "socket", refuse)
    for name in ("success", "html-503", "external-dtd"):
        assert _run(str(RECORDINGS / name))[0] in (0, 3)


def test_replay_client_with_a_given_jwt() -> None:
    """replay_client with jwt= requires public_key= to validate it."""
    key = rsa_key(6)
    with pytest.raises(ConfigurationError, match="public_key"):
        replay_client(RECORDINGS / "success", jwt=mint_test_jwt(key))
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    client = replay_client(RECORDINGS / "success", jwt=mint_test_jwt(key, ticket="7T:given"), public_key=pem)
    assert client.authenticate(context_identifier=CTX, system_user_token="x").ticket == "7T:given"


def test_save_recording_api(tmp_path: Path) -> None:
    """save_recording redacts hand-built exchanges and load_recording reads them back."""
    exchange = Exchange(
        url="https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc",
        request_body=_request(CLIENT_SECRET, CTX, _signed()),
        request_headers=XML_HEADERS,
        status=200,
        reason="OK",
        response_headers={"Content-Type": "text/xml; charset=utf-8"},
        response_body=_answer("", "Denied"),
        note="built in a test",
    )
    save_recording(tmp_path, [exchange])
    (loaded,) = load_recording(tmp_path).exchanges
    assert loaded.note == "built in a test"
    assert CLIENT_SECRET.encode() not in (loaded.request_body or b"")
    assert loaded.response_body == exchange.response_body


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
