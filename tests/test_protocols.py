"""SOAP and REST, the same behaviour: every test here runs once per protocol against the bundled emulator over
real HTTP (tickets, caching, single flight, each rejection reason and its memory, every fault knob, retries and
deadlines), then the emulator's REST endpoint on its own (what it refuses, as ASP.NET Core would)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from support import ClientFactory, FrozenClock, Sleeper, watch_logs

from sut_soap import (
    AuthenticationRejectedError,
    ProtocolError,
    SoapFaultError,
    SystemUserClient,
    SystemUserTicket,
    TokenValidationError,
    TransportError,
)
from sut_soap.contract import CLAIM_PREFIX, REST_PATH, SERVICE_PATH
from sut_soap.keys import load_private_key
from sut_soap.signing import sign_system_user_token
from sut_soap.testing.emulator import Emulator, Fault, Reason

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CLIENT_SECRET = "protocols-client-secret-9c2e"
CTX = "Cust12345"
TOKEN = "Acme Sync-protocols7Q"
OTHER_CTX = "Cust67890"
OTHER_TOKEN = "Other Sync-protocols2x"
SERIAL = "1234567"
PROTOCOLS = ["soap", "rest"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, two tenants; it serves both protocols."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial=SERIAL)
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_TOKEN, serial="7654321")
        yield emu


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    """Each test of this module once per protocol."""
    return str(request.param)


def endpoint(emu: Emulator, protocol: str) -> str:
    """The emulator's URL for the protocol."""
    return emu.rest_endpoint if protocol == "rest" else emu.endpoint


@pytest.fixture
def make(emu: Emulator, protocol: str) -> Iterator[ClientFactory]:
    """Clients of the emulator speaking ``protocol``; closed at teardown."""
    factory = ClientFactory(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=endpoint(emu, protocol), protocol=protocol,
        timeout=(2.0, 2.0),
    )
    yield factory
    factory.close()


def ticket(client: SystemUserClient, ctx: str = CTX, token: str = TOKEN) -> SystemUserTicket:
    """get_ticket for a tenant of the emulator."""
    return client.get_ticket(context_identifier=ctx, system_user_token=token)


# --- what is sent and what comes back ---------------------------------------------------------------


def test_exchange_gives_a_validated_ticket(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """Both protocols end in the same SystemUserTicket: tenant, serial, 7T: ticket, URLs, the JWT's claims."""
    got = make().authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert type(got) is SystemUserTicket
    assert (got.context_identifier, got.serial) == (CTX, SERIAL)
    assert got.ticket.startswith("7T:") and got.webapi_url == f"{emu.base_url}/{CTX}/api/"
    assert got.claims[CLAIM_PREFIX + "ctx"] == CTX and got.token.count(".") == 2


def test_request_goes_to_the_protocols_path_with_its_headers(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """SOAP posts the envelope with SOAPAction; REST posts the documented JSON with Content-Type and Accept JSON."""
    make().authenticate(context_identifier=CTX, system_user_token=TOKEN)
    headers, body = emu.requests[-1]
    if protocol == "rest":
        assert headers["Content-Type"] == "application/json" and headers["Accept"] == "application/json"
        assert "SOAPAction" not in headers
        document = json.loads(body)
        assert list(document) == ["SignedSystemToken", "ApplicationToken", "ContextIdentifier", "ReturnTokenType"]
        assert document["ReturnTokenType"] == "JWT" and document["ContextIdentifier"] == CTX
    else:
        assert headers["Content-Type"] == "text/xml; charset=utf-8" and "SOAPAction" in headers
        assert body.startswith(b"<?xml")


def test_both_protocols_give_tickets_with_the_same_fields(emu: Emulator) -> None:
    """A SOAP and a REST client of one application get tickets of the same shape and tenant: one ticket object."""
    got = {}
    for protocol in PROTOCOLS:
        with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=endpoint(emu, protocol),
                              protocol=protocol) as client:
            got[protocol] = client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    soap, rest = got["soap"], got["rest"]
    assert set(soap.claims) == set(rest.claims)
    assert (soap.context_identifier, soap.serial, soap.webapi_url, soap.netserver_url) == (
        rest.context_identifier, rest.serial, rest.webapi_url, rest.netserver_url
    )
    assert soap.ticket != rest.ticket  # each exchange is a new credential


def test_cached_ticket_costs_no_exchange(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """get_ticket keeps the ticket: a second call is the same ticket and no request."""
    client = make()
    first = ticket(client)
    before = emu.exchange_count
    assert ticket(client) is first
    assert emu.exchange_count == before


def test_cold_cache_under_many_threads_is_one_exchange(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """20 threads asking at once for one tenant cause exactly one exchange and all get its ticket."""
    client = make()
    barrier = threading.Barrier(20)
    results: list[SystemUserTicket] = []
    before = emu.exchange_count

    def ask() -> None:
        barrier.wait()
        results.append(ticket(client))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 20 and len({r.ticket for r in results}) == 1
    assert emu.exchange_count == before + 1


def test_invalidate_exchanges_again(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """After invalidate, the next get_ticket exchanges once more and returns a new ticket."""
    client = make()
    first = ticket(client)
    client.invalidate(CTX, ticket=first)
    before = emu.exchange_count
    assert ticket(client).ticket != first.ticket
    assert emu.exchange_count == before + 1


def test_no_secret_in_logs_at_debug(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """An exchange and a rejection log nothing secret at DEBUG on any logger, whichever the protocol."""
    for canary in watch_logs(CLIENT_SECRET, TOKEN):
        client = make()
        got = ticket(client)
        canary.secrets |= {got.ticket, got.token}
        with pytest.raises(AuthenticationRejectedError):
            ticket(client, OTHER_CTX, "Wrong Sync-token")
        assert "exchange for" in canary.text()


# --- rejections -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "ctx", "token", "reason"),
    [
        ({"client_secret": "not-the-client-secret"}, CTX, TOKEN, Reason.INVALID_APPLICATION_TOKEN),
        ({}, "Cust00000", TOKEN, Reason.UNKNOWN_TENANT),
        ({}, CTX, "Acme Sync-not-this-one", Reason.INVALID_SYSTEM_TOKEN),
        ({"private_key": OTHER_KEY}, CTX, TOKEN, Reason.INVALID_SIGNATURE),
    ],
    ids=["client-secret", "tenant", "system-user-token", "signature"],
)
def test_each_rejection_reason(
    options: dict[str, Any], ctx: str, token: str, reason: str, emu: Emulator, make: ClientFactory, protocol: str
) -> None:
    """Each emulated check fails alike over both protocols: AuthenticationRejectedError with the reason code."""
    with pytest.raises(AuthenticationRejectedError) as info:
        make(**options).authenticate(context_identifier=ctx, system_user_token=token)
    assert info.value.reason == reason and info.value.retryable is False
    assert CLIENT_SECRET not in str(info.value) and TOKEN not in str(info.value)


def test_timestamp_outside_the_tolerance_is_rejected(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """A client clock an hour behind signs a stamp the service refuses: InvalidTimestamp over both protocols."""
    clock = FrozenClock()
    clock.advance(-3600)
    with pytest.raises(AuthenticationRejectedError) as info:
        make(clock=clock).authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.reason == Reason.INVALID_TIMESTAMP


def test_rejection_is_remembered(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """A rejected tenant gets the same error again from memory: one exchange, no retry."""
    sleeper = Sleeper()
    client = make(retry=sleeper.policy())
    emu.inject(Fault.REJECT, tenant=CTX, message="Denied: not approved")
    before = emu.exchange_count
    for _ in range(3):
        with pytest.raises(AuthenticationRejectedError) as info:
            ticket(client)
    assert "remembered" in info.value.message and "Denied: not approved" in info.value.message
    assert emu.exchange_count == before + 1 and sleeper.waits == []


# --- faults -----------------------------------------------------------------------------------------


def test_503_with_retry_after_is_retried_then_succeeds(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """The IIS 503 page with Retry-After: 1 is retried after 1 s (signed again), then the ticket comes."""
    sleeper = Sleeper()
    client = make(retry=sleeper.policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, retry_after=1, times=2)
    before = emu.exchange_count
    assert ticket(client).context_identifier == CTX
    assert sleeper.waits == [1.0, 1.0] and emu.exchange_count == before + 3


def test_503_everywhere_ends_in_a_retryable_transport_error(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """When every attempt gets 503, the third attempt's TransportError(503) is raised, retryable."""
    client = make(retry=Sleeper().policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    with pytest.raises(TransportError) as info:
        ticket(client)
    assert info.value.status == 503 and info.value.retryable is True


@pytest.mark.parametrize("fault", [Fault.EMPTY_BODY, Fault.TRUNCATED_BODY])
def test_empty_or_truncated_answer_is_a_protocol_error(
    fault: Fault, emu: Emulator, make: ClientFactory, protocol: str
) -> None:
    """An empty or half answer is a ProtocolError over both protocols, not retried."""
    sleeper = Sleeper()
    emu.inject(fault, times=1)
    with pytest.raises(ProtocolError) as info:
        ticket(make(retry=sleeper.policy()))
    assert info.value.status == 200 and sleeper.waits == []


def test_disconnect_is_retried(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """A connection closed before the answer is a retryable TransportError; the retry gets the ticket."""
    sleeper = Sleeper()
    emu.inject(Fault.DISCONNECT, times=1)
    assert ticket(make(retry=sleeper.policy())).context_identifier == CTX
    assert len(sleeper.waits) == 1


def test_internal_error_maps_to_the_protocols_error(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """SOAP_FAULT_500: SOAP's s:Fault is a SoapFaultError; REST's 500 ProblemDetails a TransportError(500); both final."""
    emu.inject(Fault.SOAP_FAULT_500, message="boom", times=1)
    expected = TransportError if protocol == "rest" else SoapFaultError
    with pytest.raises(expected) as info:
        ticket(make(retry=Sleeper().policy()))
    assert info.value.retryable is False
    if protocol == "rest":
        assert isinstance(info.value, TransportError) and info.value.status == 500


@pytest.mark.parametrize(
    ("fault", "check"), [(Fault.EXPIRED_TOKEN, "expiry"), (Fault.WRONG_TENANT_TOKEN, "context")]
)
def test_bad_jwt_is_refused(fault: Fault, check: str, emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """An expired JWT, or one for another tenant, fails validation the same way over both protocols."""
    emu.inject(fault, times=1)
    with pytest.raises(TokenValidationError) as info:
        make().authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.check == check


def test_latency_adds_to_the_exchange(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """LATENCY delays the answer of either protocol; the ticket still comes."""
    emu.inject(Fault.LATENCY, seconds=0.2, times=1)
    started = time.monotonic()
    make().authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert time.monotonic() - started >= 0.2


def test_dripped_answer_is_cut_at_the_deadline(emu: Emulator, make: ClientFactory, protocol: str) -> None:
    """An answer dripped one byte per 0.2 s ends in a retryable TransportError at the 1 s deadline, either way."""
    emu.inject(Fault.DRIP, seconds=0.2, times=1)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        make(deadline=1.0).authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert time.monotonic() - started < 2.0 and info.value.retryable is True


# --- the emulator's REST endpoint on its own --------------------------------------------------------


def post(emu: Emulator, body: bytes | str, content_type: str = "application/json", path: str = REST_PATH) -> Any:
    """A raw POST to the emulator."""
    data = body.encode() if isinstance(body, str) else body
    return requests.post(emu.base_url + path, data=data, headers={"Content-Type": content_type}, timeout=5)


def rest_body(**members: Any) -> str:
    """A REST request for the first tenant, signed now, with ``members`` over the documented ones."""
    document = {
        "SignedSystemToken": sign_system_user_token(TOKEN, PARTNER_KEY),
        "ApplicationToken": CLIENT_SECRET,
        "ContextIdentifier": CTX,
        "ReturnTokenType": "JWT",
    }
    document.update(members)
    return json.dumps({k: v for k, v in document.items() if v is not ...})


@pytest.mark.parametrize("content_type", ["text/xml; charset=utf-8", "text/plain", "application/json; charset=latin-1"])
def test_rest_endpoint_refuses_other_content_types_with_415(emu: Emulator, content_type: str) -> None:
    """A REST POST not labelled JSON gets ASP.NET Core's 415 ProblemDetails."""
    answer = post(emu, rest_body(), content_type)
    assert answer.status_code == 415 and answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.json()["status"] == 415


@pytest.mark.parametrize(
    "body",
    ["not json", "[1, 2]", rest_body(ApplicationToken=5), rest_body(ReturnTokenType="Xml"),
     rest_body(ReturnTokenType=True), rest_body(ReturnTokenType=[0])],
    ids=["not-json", "array", "non-string-member", "unknown-token-type", "boolean-token-type", "array-token-type"],
)
def test_rest_endpoint_refuses_what_it_cannot_bind_with_400(emu: Emulator, body: str) -> None:
    """A body that is not an AuthenticationRequest object gets a 400 ProblemDetails naming the member."""
    answer = post(emu, body)
    assert answer.status_code == 400 and answer.json()["errors"]


@pytest.mark.parametrize(
    "members",
    [{"ReturnTokenType": "jwt"}, {"ReturnTokenType": 0}, {"ReturnTokenType": ...}, {"returnTokenType": "Jwt"}],
    ids=["lowercase", "number", "absent", "camelCase-name"],
)
def test_rest_endpoint_binds_as_aspnet_does(emu: Emulator, members: dict[str, Any]) -> None:
    """Token type by name in any case or by number, absent meaning Jwt, member names in any case: a JWT comes back."""
    answer = post(emu, rest_body(**members))
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json; charset=utf-8"
    document = answer.json()
    assert document["IsSuccessful"] is True and document["ErrorMessage"] is None and document["Token"].count(".") == 2


def test_rest_endpoint_refuses_saml_like_soap(emu: Emulator) -> None:
    """ReturnTokenType Saml is a rejection with UnsupportedTokenType and a null Token."""
    document = post(emu, rest_body(ReturnTokenType="Saml")).json()
    assert document["IsSuccessful"] is False and document["Token"] is None
    assert document["ErrorMessage"].startswith(Reason.UNSUPPORTED_TOKEN_TYPE)


def test_rest_and_soap_paths_are_case_insensitive_and_distinct(emu: Emulator) -> None:
    """The REST path answers JSON in any case; POSTing JSON to the SOAP path gets WCF's 415, not a ticket."""
    assert post(emu, rest_body(), path=REST_PATH.upper()).json()["IsSuccessful"] is True
    assert post(emu, rest_body(), path=SERVICE_PATH).status_code == 415
    assert post(emu, rest_body(), path="/Login/api/PartnerSystemUser/Other").status_code == 404


def test_rest_injected_failure_answers_are_json(emu: Emulator) -> None:
    """REJECT and EMPTY_BODY on the REST endpoint answer JSON-labelled bodies, as the real API would."""
    emu.inject(Fault.REJECT, message="Denied", times=1)
    rejected = post(emu, rest_body())
    assert rejected.json() == {"IsSuccessful": False, "Token": None, "ErrorMessage": "Denied"}
    emu.inject(Fault.EMPTY_BODY, times=1)
    empty = post(emu, rest_body())
    assert empty.status_code == 200 and empty.content == b"" and empty.headers["Content-Type"].startswith("application/json")


def test_rest_endpoint_checks_the_timestamp_on_its_clock(emu: Emulator) -> None:
    """The REST endpoint uses the emulator's clock for the timestamp check: a stamp 20 minutes old is refused."""
    old = sign_system_user_token(TOKEN, PARTNER_KEY, at=FrozenClock().now - timedelta(minutes=20))
    document = post(emu, rest_body(SignedSystemToken=old)).json()
    assert document["ErrorMessage"].startswith(Reason.INVALID_TIMESTAMP)
