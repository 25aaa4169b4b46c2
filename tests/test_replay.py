"""Replaying recorded exchanges: SystemUserClient on fixtures/recordings with every socket disabled,
ReplayTransport's request check and its diffs, recorded failures raised again, re-signed JWTs, and
the `sut-soap replay` command."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_socket
from cryptography.hazmat.primitives import serialization
from jwt_factory import public_pem, rsa_key
from support import (
    FIXTURE_OUTCOMES,
    RECORDINGS,
    SIGNATURE,
    SOD_ENDPOINT,
    XML_HEADERS,
    answer_envelope,
    copy_recording,
    edit_exchange,
    error_texts,
    recorded_exchange,
    request_envelope,
    request_template,
    signed_token,
)
from support import run_replay as _run

import sut_soap.cli.replay as replay_cli
from sut_soap import (
    AuthenticationRejectedError,
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    SystemUserClient,
    SystemUserTicket,
    TokenValidationError,
    TransportError,
)
from sut_soap.testing import (
    Exchange,
    RecordedError,
    Recording,
    ReplayClient,
    ReplayMismatch,
    ReplayTransport,
    load_recording,
    mint_test_jwt,
    placeholder,
    replay_client,
)
from sut_soap.tokens import decode_unverified
from sut_soap.transport import HttpResponse

pytestmark = pytest.mark.disable_socket

CTX = "Cust12345"
ONLINE = "https://online.superoffice.com/login/services/PartnerSystemUserService.svc"  # another host, path in lower case
ENDPOINT = SOD_ENDPOINT
CLIENT_SECRET = "replay-canary-secret-77ab"
SYSTEM_USER_TOKEN = "Replay Sync-canary4Q"
SIGNED = signed_token(SYSTEM_USER_TOKEN)
TICKET = "7T:replay-canary-ticket-0123456789"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
_REAL_SOCKET = socket.socket


EXPECTED = FIXTURE_OUTCOMES


HAND_WRITTEN = {"billion-laughs", "external-entity", "external-dtd"}


@pytest.fixture(autouse=True)
def no_connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Record any connect attempt on the real socket class; the test fails if there was one."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("a replay test tried to connect")

    monkeypatch.setattr(_REAL_SOCKET, "connect", refuse)
    monkeypatch.setattr(_REAL_SOCKET, "connect_ex", refuse)
    yield attempts
    assert attempts == []


def _client(name: str, **kwargs: object) -> ReplayClient:
    options: dict[str, object] = {"client_secret": CLIENT_SECRET, "ticket": TICKET}
    options.update(kwargs)
    return replay_client(RECORDINGS / name, **options)  # type: ignore[arg-type]


def _authenticate(client: SystemUserClient, ctx: str = CTX) -> SystemUserTicket:
    return client.authenticate(context_identifier=ctx, system_user_token=SYSTEM_USER_TOKEN)


def _transport(*exchanges: Exchange, **kwargs: Any) -> ReplayTransport:
    return ReplayTransport(Recording(tuple(exchanges), Path("inline"), {}), **kwargs)


def _post(transport: ReplayTransport, body: bytes, headers: dict[str, str] | None = None, url: str = ENDPOINT) -> HttpResponse:
    return transport.request("POST", url, body=body, headers=XML_HEADERS if headers is None else headers)


# The recorded request as a pretty-printed document with another prefix and an XML declaration.
PRETTY_TEMPLATE = b"<?xml version='1.0'?>\n" + request_envelope(
    placeholder("CLIENT_SECRET"), placeholder("SIGNED_TOKEN"), prefix="ns0"
).replace(b"><", b">\n  <")


def _pretty_exchange(**kwargs: Any) -> Exchange:
    return recorded_exchange(request_body=PRETTY_TEMPLATE, **kwargs)


def _token_of(response: HttpResponse) -> str:
    match = re.search(rb"<Token>([^<]+)</Token>", response.content)
    assert match is not None
    return match.group(1).decode()


# --- the client on the recorded fixtures ------------------------------------------------------


def test_sockets_are_blocked() -> None:
    """pytest-socket is active in this module: creating a socket fails."""
    with pytest.warns(UserWarning, match="socket"), pytest.raises(pytest_socket.SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_every_fixture_is_expected() -> None:
    """Each fixture folder has an expected outcome here, and each expected one exists."""
    folders = {p.name for p in RECORDINGS.iterdir() if p.is_dir()}
    assert folders == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_outcome(name: str) -> None:
    """Replaying each fixture gives a ticket or exactly the documented error class."""
    error_class, check = EXPECTED[name]
    client = _client(name)
    contexts = [CTX, "Cust67890"] if name == "two-tenants" else [CTX]
    for ctx in contexts:
        if error_class is None:
            assert _authenticate(client, ctx).context_identifier == ctx
            continue
        with pytest.raises(SutSoapError) as info:
            _authenticate(client, ctx)
        assert type(info.value) is error_class
        if check is not None:
            assert isinstance(info.value, TokenValidationError) and info.value.check == check
        text = "\n".join(error_texts(info.value))
        assert CLIENT_SECRET not in text and SYSTEM_USER_TOKEN not in text and TICKET not in text
    client.replay.assert_all_used()


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_are_marked_and_fast(name: str) -> None:
    """The hostile fixtures say they are hand-written and are refused within 100 ms."""
    recording = load_recording(RECORDINGS / name)
    assert all(exchange.hand_written for exchange in recording.exchanges)
    client = _client(name)
    started = time.perf_counter()
    with pytest.raises(ProtocolError, match="DTD or entity"):
        _authenticate(client)
    assert time.perf_counter() - started < 0.1


def test_recorded_fixtures_are_not_hand_written() -> None:
    """Every other fixture was recorded by RecordingTransport or AsyncRecordingTransport."""
    for name in set(EXPECTED) - HAND_WRITTEN:
        for exchange in load_recording(RECORDINGS / name).exchanges:
            assert not exchange.hand_written
            assert re.match(r"recorded by sut_soap\.(recording|testing)\.(Async)?RecordingTransport", exchange.source)
            assert exchange.recorded_at is not None


def test_success_ticket_fields() -> None:
    """A replayed success gives a validated ticket with the recorded tenant's fields."""
    client = _client("success")
    ticket = _authenticate(client)
    assert ticket.ticket == TICKET
    assert ticket.context_identifier == CTX
    assert ticket.serial == "1234567"
    assert ticket.webapi_url is not None and ticket.webapi_url.endswith(f"/{CTX}/api/")
    assert ticket.netserver_url is not None and ticket.netserver_url.endswith(f"/{CTX}/Remote/Services88/")
    assert ticket.associate_id == 5
    assert ticket.expires_at > datetime.now(timezone.utc)
    assert ticket.claims["iss"] == "SuperOffice AS"
    assert ticket.token.count(".") == 2
    assert TICKET not in repr(ticket)


def test_ticket_is_frozen_with_read_only_claims() -> None:
    """The replayed ticket and its claims cannot be changed."""
    ticket = _authenticate(_client("success"))
    with pytest.raises(AttributeError):
        ticket.ticket = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ticket.claims["iss"] = "x"  # type: ignore[index]


def test_rest_headers() -> None:
    """The REST helper gives SOTicket authorization and the application token."""
    ticket = _authenticate(_client("success"))
    assert ticket.rest_headers(CLIENT_SECRET) == {"Authorization": f"SOTicket {TICKET}", "SO-AppToken": CLIENT_SECRET}


def test_request_has_documented_shape() -> None:
    """What the client sent (kept by the replay) has the documented headers and envelope."""
    client = _client("success")
    _authenticate(client)
    (sent,) = client.replay.sent
    assert sent.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert sent.headers["SOAPAction"] == (
        '"http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate"'
    )
    assert sent.context_identifier == CTX
    assert sent.element_text("ApplicationToken") == CLIENT_SECRET
    assert sent.signed_at is not None and len(sent.signed_at) == 12
    assert b"addressing" not in sent.body
    assert sent.address == client.endpoint


def test_each_replay_mints_a_fresh_ticket() -> None:
    """Without ticket=, each replay of a success gives a new random 7T: ticket."""
    first = _authenticate(_client("success", ticket=None))
    second = _authenticate(_client("success", ticket=None))
    assert first.ticket.startswith("7T:") and second.ticket.startswith("7T:")
    assert first.ticket != second.ticket


def test_two_tenants_in_recorded_order() -> None:
    """A two-exchange recording answers each tenant with its own serial, in order."""
    client = _client("two-tenants", ticket=None)
    first = _authenticate(client, CTX)
    second = _authenticate(client, "Cust67890")
    assert (first.serial, second.serial) == ("1234567", "7654321")
    assert client.replay.remaining == 0


def test_rejection_carries_message_and_hint() -> None:
    """The recorded NeedsReapproval rejection is carried with a hint about approval."""
    with pytest.raises(AuthenticationRejectedError) as info:
        _authenticate(_client("rejection"))
    assert info.value.error_message == "NeedsReapproval"
    assert "approve" in info.value.hint
    assert info.value.retryable is False


def test_invalid_signature_hint() -> None:
    """A recorded InvalidSignature rejection points at the private key."""
    with pytest.raises(AuthenticationRejectedError) as info:
        _authenticate(_client("invalid-signature"))
    assert info.value.error_message.startswith("InvalidSignature")
    assert "private key" in info.value.hint


def test_redacted_tenant_is_filled_from_the_request() -> None:
    """A recording with the ContextIdentifier redacted echoes the tenant the client sent."""
    with pytest.raises(AuthenticationRejectedError) as info:
        _authenticate(_client("unknown-tenant"), "Cust00042")
    assert "'Cust00042'" in info.value.error_message
    assert "{{SUT_SOAP" not in str(info.value)


def test_soap_fault() -> None:
    """The recorded HTTP 500 s:Fault becomes SoapFaultError with code and status."""
    with pytest.raises(SoapFaultError) as info:
        _authenticate(_client("soap-fault"))
    assert info.value.status == 500
    assert info.value.fault_code == "a:InternalServiceFault"


def test_html_503() -> None:
    """The recorded IIS 503 page is a retryable TransportError with a short excerpt."""
    with pytest.raises(TransportError) as info:
        _authenticate(_client("html-503"))
    assert info.value.status == 503
    assert info.value.retryable is True
    assert info.value.excerpt and len(info.value.excerpt) <= 200


def test_recorded_disconnect_is_retryable() -> None:
    """A recorded dropped connection replays as a retryable TransportError."""
    with pytest.raises(TransportError) as info:
        _authenticate(_client("disconnect"))
    assert info.value.retryable is True
    assert info.value.status is None


def test_reprs_show_no_bodies() -> None:
    """Exchange and SentRequest reprs show sizes, not contents."""
    client = replay_client(RECORDINGS / "success", client_secret=CLIENT_SECRET)
    client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    text = repr(client.replay.recording.exchanges[0]) + repr(client.replay.sent[0])
    assert CLIENT_SECRET not in text and "bytes" in text


# --- replay_client and ReplayTransport --------------------------------------------------------


def test_redacted_jwt_needs_a_jwt_or_a_key() -> None:
    """Replaying a redacted success without jwt= or jwt_key= is a configuration error, said at once."""
    with pytest.raises(ConfigurationError, match="redacted JWT"):
        ReplayTransport(RECORDINGS / "success")


def test_replay_client_with_a_given_jwt() -> None:
    """replay_client with jwt= requires public_key= to validate it."""
    key = rsa_key(6)
    with pytest.raises(ConfigurationError, match="public_key"):
        replay_client(RECORDINGS / "success", jwt=mint_test_jwt(key))
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    client = replay_client(RECORDINGS / "success", jwt=mint_test_jwt(key, ticket="7T:given"), public_key=pem)
    assert client.authenticate(context_identifier=CTX, system_user_token="x").ticket == "7T:given"


def test_replay_client_refuses_a_public_key_without_a_jwt() -> None:
    """public_key= without jwt= is refused: the replay signs with jwt_key, so the key would never be used."""
    with pytest.raises(ConfigurationError, match="public_key= is for validating jwt=; give jwt_key="):
        replay_client(RECORDINGS / "rejection", public_key=rsa_key().public_key())


def test_replay_client_uses_a_given_endpoint() -> None:
    """endpoint= replaces the recorded SOD_ENDPOINT; the request still matches when the path is the same."""
    client = replay_client(RECORDINGS / "rejection", endpoint=SOD_ENDPOINT)
    with pytest.raises(AuthenticationRejectedError, match="NeedsReapproval"):
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert [sent.address for sent in client.replay.sent] == [SOD_ENDPOINT]


def test_client_without_public_key_cannot_fetch_jwks() -> None:
    """A client on a ReplayTransport but without public_key= cannot reach the JWKS: the replay says why."""
    key = rsa_key()
    transport = ReplayTransport(RECORDINGS / "success", jwt=mint_test_jwt(key))
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=key, endpoint=ENDPOINT, transport=transport
    ) as client, pytest.raises(ReplayMismatch, match="public_key"):
        _authenticate(client)


def test_more_requests_than_recorded() -> None:
    """A second exchange against a one-exchange recording fails, unless repeat=True."""
    client = _client("success")
    _authenticate(client)
    with pytest.raises(ReplayMismatch, match="holds only 1 exchange"):
        _authenticate(client)
    again = _client("success", repeat=True)
    assert _authenticate(again).ticket == _authenticate(again).ticket == TICKET


def test_assert_all_used_names_the_exchanges_never_requested() -> None:
    """assert_all_used fails while recorded exchanges remain, and passes once all were replayed."""
    transport = _transport(recorded_exchange(), recorded_exchange(), check_request=False)
    _post(transport, b"x")
    assert transport.remaining == 1
    with pytest.raises(ReplayMismatch, match=r"^1 of 2 recorded exchanges were never requested$"):
        transport.assert_all_used()
    _post(transport, b"x")
    transport.assert_all_used()


def test_replay_refuses_a_get() -> None:
    """A GET during a replay (a JWKS fetch) is a ReplayMismatch naming the SOD_ENDPOINT and saying to give public_key=."""
    with pytest.raises(ReplayMismatch, match=r"^the client tried to reach GET https://x\.invalid/jwks during a replay; "
                                              r"give the client public_key="):
        _transport(recorded_exchange()).request("GET", "https://x.invalid/jwks")


def test_oversized_replayed_answer_is_refused() -> None:
    """An answer over max_response_bytes fails as it would over the network."""
    exchange = _pretty_exchange(response_body=answer_envelope("", "x" * 5000))
    with pytest.raises(ProtocolError, match="larger than 1000 bytes"):
        _post(_transport(exchange, check_request=False, max_response_bytes=1000), b"x")


# --- the request check ------------------------------------------------------------------------


def test_request_check_ignores_prefixes_and_layout() -> None:
    """Other prefixes, whitespace and the XML declaration do not matter; placeholders take any value."""
    transport = _transport(_pretty_exchange())
    response = _post(transport, request_envelope("any secret", SIGNED), url=ONLINE)
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert transport.sent[0].context_identifier == CTX


@pytest.mark.parametrize(
    ("body", "kwargs", "shown"),
    [
        (request_envelope("s", "Acme.20261128133.QUJD"), {}, '"***.20261128133.***"'),
        (request_envelope("s", signed_token("Other Sync-1")), {"system_user_token": SYSTEM_USER_TOKEN}, '"***.202611281330.***"'),
        (request_envelope("wrong-secret-xyz", SIGNED), {"client_secret": CLIENT_SECRET}, 'tns:ApplicationToken "***"'),
        (request_envelope("s", SIGNED).replace(b"Jwt", b"Saml"), {}, '+      tns:ReturnTokenType "Saml"'),
        (b"not xml", {}, "not well-formed XML"),
    ],
)
def test_request_check_mismatches(body: bytes, kwargs: dict[str, object], shown: str) -> None:
    """A bad signed-token shape, another token or secret than given, or another value: a diff, no secret."""
    transport = _transport(_pretty_exchange(), **kwargs)
    with pytest.raises(ReplayMismatch) as info:
        _post(transport, body)
    text = str(info.value)
    assert "--- recorded request" in text and "+++ sent request" in text
    assert shown in text
    assert "wrong-secret-xyz" not in text and "Other Sync-1" not in text
    assert transport.mismatches


def test_request_check_compares_headers_and_path() -> None:
    """Another SOAPAction or URL path shows in the diff."""
    transport = _transport(_pretty_exchange())
    with pytest.raises(ReplayMismatch, match=r'\+SOAPAction: "urn:other"'):
        _post(transport, request_envelope("s", SIGNED), {**XML_HEADERS, "SOAPAction": '"urn:other"'})
    transport = _transport(_pretty_exchange())
    with pytest.raises(ReplayMismatch, match=r"\+POST /elsewhere"):
        transport.request("POST", "https://x/elsewhere", body=request_envelope("s", SIGNED), headers=XML_HEADERS)


def test_request_check_can_be_turned_off() -> None:
    """check_request=False answers whatever the client sent."""
    transport = _transport(_pretty_exchange(), check_request=False)
    assert _post(transport, b"anything").status_code == 200  # type: ignore[attr-defined]


def test_diff_names_unqualified_and_foreign_elements() -> None:
    """Elements without a namespace, or in one without a short name, appear in the diff as local or {ns}local."""
    extra = '<plain>one</plain><f:Note xmlns:f="urn:foreign">two</f:Note>'
    transport = _transport(recorded_exchange(request_body=request_template(extra)))
    sent = request_envelope("s", SIGNED, extra=extra.replace("one", "uno").replace("two", "dos"))
    with pytest.raises(ReplayMismatch) as caught:
        _post(transport, sent)
    text = str(caught.value)
    assert '-    plain "one"\n' in text and '+    plain "uno"\n' in text
    assert '-    {urn:foreign}Note "two"\n' in text and '+    {urn:foreign}Note "dos"\n' in text


def test_comments_in_the_sent_request_are_ignored() -> None:
    """An XML comment between elements of the sent request is not a mismatch."""
    transport = _transport(recorded_exchange())
    sent = request_envelope("s", SIGNED).replace(b"<e:Body>", b"<!-- proxy was here --><e:Body>")
    assert _post(transport, sent).status_code == 200
    assert transport.mismatches == []


def test_recorded_request_without_matched_headers_accepts_any() -> None:
    """A recorded request with no SOAPAction or Content-Type does not check them."""
    transport = _transport(recorded_exchange(request_headers={}))
    assert _post(transport, request_envelope("s", SIGNED), {"SOAPAction": '"urn:whatever"'}).status_code == 200


@pytest.mark.parametrize(
    "recorded",
    [
        b"not xml at all",
        b'<!DOCTYPE e [<!ENTITY x "y">]>' + request_template(),
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE e [<!ENTITY x "y">]><e>&x;</e>'.encode("utf-16"),
    ],
    ids=["garbage", "dtd", "dtd-in-utf16"],
)
def test_recorded_request_that_is_not_plain_xml_is_a_configuration_error(recorded: bytes) -> None:
    """A recorded request that is not well-formed, DTD-free XML is the recording's fault: ConfigurationError."""
    transport = _transport(recorded_exchange(request_body=recorded))
    with pytest.raises(ConfigurationError) as caught:
        _post(transport, request_envelope("s", SIGNED))
    assert caught.value.message == "the recorded request is not well-formed XML"
    assert caught.value.hint == "re-record the exchange"


def test_sent_request_with_a_hidden_dtd_is_a_mismatch() -> None:
    """A sent request carrying a DTD (even UTF-16, where no ASCII <!DOCTYPE shows) is a mismatch, not parsed."""
    sent = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE e [<!ENTITY x "y">]><e>&x;</e>'.encode("utf-16")
    transport = _transport(recorded_exchange())
    with pytest.raises(ReplayMismatch, match=rf"\+\(not well-formed XML, {len(sent)} bytes\)"):
        _post(transport, sent)


def test_structural_mismatch_shows_both_trees_with_secrets_masked() -> None:
    """An extra element shows the whole recorded and sent trees; the sent secret and signed token are masked."""
    transport = _transport(recorded_exchange(), client_secret=CLIENT_SECRET)
    sent = request_envelope(CLIENT_SECRET, SIGNED, extra="<tns:Extra>added</tns:Extra>")
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


def test_request_mismatch_fails_with_a_diff() -> None:
    """Asking for another tenant than recorded fails the test with a diff naming both."""
    client = _client("success")
    with pytest.raises(ReplayMismatch) as info:
        _authenticate(client, "Cust67890")
    text = str(info.value)
    assert '-    tns:ContextIdentifier "Cust12345"' in text
    assert '+    tns:ContextIdentifier "Cust67890"' in text
    assert CLIENT_SECRET not in text and SYSTEM_USER_TOKEN not in text
    assert client.replay.mismatches == [text.rsplit("\n(re-record", 1)[0]]


def test_mismatch_escapes_except_exception() -> None:
    """Code under test that catches Exception cannot hide a mismatch."""
    client = _client("success")

    def code_under_test() -> str:
        try:
            return _authenticate(client, "Cust67890").ticket
        except Exception:
            return "fallback"

    with pytest.raises(ReplayMismatch):
        code_under_test()


# --- recorded failures and re-signed JWTs -----------------------------------------------------


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
    transport = _transport(recorded_exchange(status=None, response_body=None, error=recorded))
    with pytest.raises(expected) as caught:
        _post(transport, request_envelope("s", SIGNED))
    error = caught.value
    assert type(error) is expected
    if isinstance(error, TransportError | ProtocolError):
        assert (error.message, error.status, error.retryable) == (recorded.message, recorded.status, recorded.retryable)
    else:
        assert str(error) == recorded.message
    assert (None if error.__context__ is None else type(error.__context__).__name__) == context


@pytest.mark.parametrize(
    ("recorded", "message", "retryable", "phase"),
    [
        (RecordedError("builtins.OSError", "odd"), "cannot connect to sod.superoffice.com (recorded OSError)",
         True, "connect"),
        (RecordedError("requests.exceptions.ConnectionError", f"refused {CLIENT_SECRET}"),
         "cannot connect to sod.superoffice.com (recorded ConnectionError)", True, "connect"),
        (RecordedError("requests.exceptions.ConnectTimeout", "slow"),
         "connecting to sod.superoffice.com timed out (recorded ConnectTimeout)", True, "connect"),
        (RecordedError("requests.exceptions.ReadTimeout", "slow"),
         "the read timeout passed while waiting for the response headers from sod.superoffice.com; "
         "the request may have reached the server (recorded ReadTimeout)", True, "wait for headers"),
        (RecordedError("requests.exceptions.ConnectionError", "gone", context="urllib3.exceptions.ProtocolError"),
         "the connection closed while waiting for the response headers from sod.superoffice.com; "
         "the request may have reached the server (recorded ConnectionError)", True, "wait for headers"),
        (RecordedError("requests.exceptions.ChunkedEncodingError", "cut"),
         "the connection broke while reading the response body from sod.superoffice.com "
         "(recorded ChunkedEncodingError)", True, "body"),
        (RecordedError("requests.exceptions.NotAnException", "odd"),
         "the transport failed for sod.superoffice.com: NotAnException", False, None),
    ],
    ids=["os-error", "connection", "connect-timeout", "timeout", "dropped-after-send", "broken-read", "unknown"],
)
def test_recorded_foreign_failures_come_back_as_transport_errors(
    recorded: RecordedError, message: str, retryable: bool, phase: str | None
) -> None:
    """A failure recorded from an HTTP library replays as the TransportError the transport maps it to, naming its type only."""
    transport = _transport(recorded_exchange(status=None, response_body=None, error=recorded))
    with pytest.raises(TransportError) as caught:
        _post(transport, request_envelope("s", SIGNED))
    assert type(caught.value) is TransportError
    assert (caught.value.message, caught.value.retryable) == (message, retryable)
    assert (caught.value.host, caught.value.phase) == ("sod.superoffice.com", phase)
    assert CLIENT_SECRET not in str(caught.value) and caught.value.__cause__ is None


def _claims_exchange(recorded_at: datetime | None, claims: dict[str, Any]) -> Exchange:
    return recorded_exchange(
        response_body=answer_envelope(placeholder("JWT")), recorded_at=recorded_at,
        jwt_header={"alg": "RS256", "typ": "JWT"}, jwt_claims=claims,
    )


def test_resigned_claims_move_numeric_and_string_times_and_fill_lists() -> None:
    """Re-signed claims move int and digit-string times by the elapsed time and fill placeholders inside lists."""
    claims = {"iat": 1000, "exp": "1300", "nbf": True, "auth_time": "soon", "amr": ["pwd", placeholder("TICKET")]}
    transport = _transport(_claims_exchange(T0, claims), jwt_key=rsa_key(), ticket="7T:resigned-ticket-0123456789",
                           check_request=False, clock=lambda: T0 + timedelta(seconds=90))
    _, replayed = decode_unverified(_token_of(_post(transport, b"x")))
    assert replayed == {"iat": 1090, "exp": "1390", "nbf": True, "auth_time": "soon",
                        "amr": ["pwd", "7T:resigned-ticket-0123456789"]}


def test_resigned_claims_without_recording_time_are_not_moved() -> None:
    """Without recorded_at the claims are signed again exactly as recorded (no time shift)."""
    transport = _transport(_claims_exchange(None, {"iat": 1000, "exp": 1300}), jwt_key=rsa_key(),
                           check_request=False, clock=lambda: T0)
    _, replayed = decode_unverified(_token_of(_post(transport, b"x")))
    assert replayed == {"iat": 1000, "exp": 1300}


# --- sut-soap replay --------------------------------------------------------------------------


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
    directory = copy_recording("success", tmp_path)
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


def test_replay_command_redacted_jwt_without_claims_long_ago(tmp_path: Path) -> None:
    """A redacted JWT with no recorded claims is a success with the check skipped, however old the recording."""
    directory = copy_recording("success", tmp_path)
    edit_exchange(directory, lambda d: d.update(jwt=None, recorded_at="2020-01-01T00:00:00+00:00"))
    code, out, err = _run(str(directory))
    assert code == 0, out
    assert "  JWT: not validated: the recording's JWT is redacted and its claims were not recorded\n" in out
    assert out.endswith("  result: the answer is a success; the JWT check was skipped\n")
    assert err == ""


def test_replay_command_prints_no_empty_note(tmp_path: Path) -> None:
    """An exchange without a note prints no note line."""
    directory = copy_recording("rejection", tmp_path)
    edit_exchange(directory, lambda d: d.update(note=""))
    code, out, _ = _run(str(directory))
    assert code == 1
    assert "note:" not in out


def test_replay_command_tampered_recording_exits_2(tmp_path: Path) -> None:
    """A tampered recording exits 2 with the reason and what to do on stderr, and replays nothing."""
    directory = copy_recording("success", tmp_path)
    edit_exchange(directory, lambda d: d["response"].update(body="../../../etc/passwd"))
    code, out, err = _run(str(directory))
    assert code == 2
    assert out == ""
    assert "names a body file '../../../etc/passwd', which is not a file of this directory" in err
    assert err.endswith("  check: re-record, or fix the file by hand\n")


def test_replay_command_unreadable_public_key_exits_2(tmp_path: Path) -> None:
    """A recording holding its JWT with a --public-key that cannot be read exits 2 (configuration)."""
    directory = copy_recording("success", tmp_path)
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

    edit_exchange(directory, renumber, "02")
    code, out, _ = _run(str(directory))
    assert "exchange 1 of 2" in out and "the transport failed: requests.exceptions.ConnectionError" in out
    assert "exchange 2 of 2" in out and "AuthenticationRejectedError" in out
    assert code == 1
    edit_exchange(directory, lambda d: d.update(response=None, error={"type": "requests.exceptions.ConnectionError", "message": "x"}),
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
