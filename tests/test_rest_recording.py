"""Recording and replay of REST exchanges: a recorded REST exchange holds placeholders, not secrets, in its JSON
bodies; replaying it drives a REST client offline to the same ticket and checks the JSON request it sends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sut_soap import AuthenticationRejectedError, SystemUserClient
from sut_soap.keys import load_private_key
from sut_soap.testing import RecordingTransport, load_recording, replay_client, scan_for_secrets
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.testing.replay import ReplayMismatch

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = 'rec-rest-secret-"quoted"-7b'
CTX = "Cust12345"
TOKEN = "Acme Sync-recrest4Q"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, one tenant."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


def record(emu: Emulator, directory: Path) -> tuple[str, str]:
    """One successful REST exchange recorded into ``directory``; the ticket and JWT it gave."""
    recorder = RecordingTransport(directory)
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.rest_endpoint,
                          protocol="rest", transport=recorder, jwks_url=emu.jwks_url) as client:
        got = client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    return got.ticket, got.token


def test_recorded_rest_exchange_holds_placeholders_not_secrets(emu: Emulator, tmp_path: Path) -> None:
    """The saved REST request and answer are JSON with every secret replaced by its placeholder."""
    ticket, jwt = record(emu, tmp_path / "rec")
    texts = [path.read_text(encoding="utf-8") for path in (tmp_path / "rec").iterdir()]
    for secret in (CLIENT_SECRET, json.dumps(CLIENT_SECRET)[1:-1], TOKEN, ticket, jwt):
        assert not [t for t in texts if secret in t]
    exchange = load_recording(tmp_path / "rec").exchanges[0]
    request = json.loads(exchange.request_body or b"")
    assert request["ApplicationToken"] == "{{SUT_SOAP:CLIENT_SECRET}}"
    assert request["SignedSystemToken"] == "{{SUT_SOAP:SIGNED_TOKEN}}" and request["ReturnTokenType"] == "JWT"
    assert json.loads(exchange.response_body or b"")["Token"] == "{{SUT_SOAP:JWT}}"
    assert exchange.url.endswith("/Login/api/PartnerSystemUser/Authenticate")
    assert scan_for_secrets(tmp_path / "rec") == []


def test_replayed_rest_recording_gives_a_ticket_offline(emu: Emulator, tmp_path: Path) -> None:
    """replay_client on a REST recording is a REST client that gets a validated ticket without the network."""
    record(emu, tmp_path / "rec")
    before = emu.exchange_count
    with replay_client(tmp_path / "rec", client_secret=CLIENT_SECRET) as client:
        assert client.protocol == "rest"
        got = client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
        client.replay.assert_all_used()
    assert got.context_identifier == CTX and got.ticket.startswith("7T:")
    assert emu.exchange_count == before


def test_replay_names_the_rest_member_that_differs(emu: Emulator, tmp_path: Path) -> None:
    """A REST request for another tenant is a ReplayMismatch whose diff shows the JSON member, secrets masked."""
    record(emu, tmp_path / "rec")
    with replay_client(tmp_path / "rec", client_secret=CLIENT_SECRET) as client, \
            pytest.raises(ReplayMismatch) as info:
        client.authenticate(context_identifier="Cust99999", system_user_token=TOKEN)
    text = str(info.value)
    assert '"ContextIdentifier" "Cust99999"' in text and CLIENT_SECRET not in text


def test_recorded_rest_rejection_replays_as_a_rejection(emu: Emulator, tmp_path: Path) -> None:
    """A recorded REST rejection replays as the same AuthenticationRejectedError."""
    emu.inject(Fault.REJECT, message="Denied: revoked", times=1)
    with pytest.raises(AuthenticationRejectedError):
        record(emu, tmp_path / "rec")
    with replay_client(tmp_path / "rec", client_secret=CLIENT_SECRET) as client, \
            pytest.raises(AuthenticationRejectedError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.error_message == "Denied: revoked"
