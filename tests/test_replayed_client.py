"""SystemUserClient on the recorded fixtures in fixtures/recordings, with every socket disabled."""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import pytest_socket
from jwt_factory import rsa_key

from sut_soap import (
    AuthenticationRejectedError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    SystemUserClient,
    SystemUserTicket,
    TokenValidationError,
    TransportError,
)
from sut_soap.testing import (
    ReplayClient,
    ReplayMismatch,
    ReplayTransport,
    load_recording,
    mint_test_jwt,
    replay_client,
)

pytestmark = pytest.mark.disable_socket

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
CTX = "Cust12345"
ENDPOINT = "https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc"
CLIENT_SECRET = "replay-canary-secret-77ab"
SYSTEM_USER_TOKEN = "Replay Sync-canary4Q"
TICKET = "7T:replay-canary-ticket-0123456789"
_REAL_SOCKET = socket.socket

# folder -> (error class or None for a ticket, TokenValidationError.check)
EXPECTED: dict[str, tuple[type[SutSoapError] | None, str | None]] = {
    "success": (None, None),
    "success-alphabetical": (None, None),
    "two-tenants": (None, None),
    "rejection": (AuthenticationRejectedError, None),
    "invalid-signature": (AuthenticationRejectedError, None),
    "unknown-tenant": (AuthenticationRejectedError, None),
    "soap-fault": (SoapFaultError, None),
    "html-503": (TransportError, None),
    "empty-body": (ProtocolError, None),
    "truncated-body": (ProtocolError, None),
    "disconnect": (TransportError, None),
    "expired-token": (TokenValidationError, "expiry"),
    "wrong-tenant-token": (TokenValidationError, "context"),
    "billion-laughs": (ProtocolError, None),
    "external-entity": (ProtocolError, None),
    "external-dtd": (ProtocolError, None),
}
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


def _texts(error: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None:
        parts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    parts.append("".join(traceback.format_exception(error)))
    return "\n".join(parts)


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
        text = _texts(info.value)
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
    """Every other fixture was recorded by RecordingTransport."""
    for name in set(EXPECTED) - HAND_WRITTEN:
        for exchange in load_recording(RECORDINGS / name).exchanges:
            assert not exchange.hand_written
            assert exchange.source.startswith("recorded by sut_soap.recording.RecordingTransport")
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


def test_more_requests_than_recorded() -> None:
    """A second exchange against a one-exchange recording fails, unless repeat=True."""
    client = _client("success")
    _authenticate(client)
    with pytest.raises(ReplayMismatch, match="holds only 1 exchange"):
        _authenticate(client)
    again = _client("success", repeat=True)
    assert _authenticate(again).ticket == _authenticate(again).ticket == TICKET


def test_client_without_public_key_cannot_fetch_jwks() -> None:
    """A client on a ReplayTransport but without public_key= cannot reach the JWKS: the replay says why."""
    key = rsa_key()
    transport = ReplayTransport(RECORDINGS / "success", jwt=mint_test_jwt(key))
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=key, endpoint=ENDPOINT, transport=transport
    ) as client, pytest.raises(ReplayMismatch, match="public_key"):
        _authenticate(client)
