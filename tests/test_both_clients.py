"""The behaviour SystemUserClient and AsyncSystemUserClient share, each test run over both (``either_client``):
tickets and errors, hostile and failing answers, deadlines, retries, caching, stale-on-error, rejection
memory, invalidation, stores, and what a client shows. Against the real emulator over loopback HTTP."""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    DrippingServer,
    Drivers,
    FakeResponse,
    LogCanary,
    ScriptedTransport,
    Sleeper,
    SteppingClock,
    error_texts,
    soap_fault,
)

from sut_soap import (
    AuthenticationRejectedError,
    CachedTicket,
    ConfigurationError,
    ProtocolError,
    RetryPolicy,
    SoapFaultError,
    SutSoapError,
    SystemUserTicket,
    TokenValidationError,
    TransportError,
)
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "both-canary-secret-71c2"
CTX, TOKEN = "Cust12345", "Both Sync-canary1a"
OTHER_CTX, OTHER_TOKEN = "Cust67890", "Both Sync-canary2b"
SECRETS = (CLIENT_SECRET, TOKEN, OTHER_TOKEN)
MARGIN = 0.5  # how late after its deadline a cut call may end on a busy test machine


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with two tenants."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_TOKEN, serial="7654321")
        yield emu


@pytest.fixture
def make(either_client: Drivers, emu: Emulator) -> Drivers:
    """Clients of the run's kind with this module's secret and key, towards the emulator unless told otherwise."""
    either_client.defaults = {"client_secret": CLIENT_SECRET, "private_key": PARTNER_KEY, "endpoint": emu.endpoint}
    return either_client


class Store:
    """A shared store of JSON text per key, with a fleet-wide lease per key (a stand-in for Redis)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.leases: list[tuple[float, float]] = []
        self.threads: set[str] = set()

    def get(self, key: str) -> CachedTicket | None:
        self.threads.add(threading.current_thread().name)
        text = self.data.get(key)
        return None if text is None else CachedTicket.from_json(text)

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        self.data[key] = entry.to_json()

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def lease(self, key: str, *, lease: float, wait: float) -> Lease:
        self.leases.append((lease, wait))
        return Lease()


class Lease:
    """A lease that is always granted."""

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class BrokenStore:
    """A store whose every operation fails, like an unreachable Redis."""

    def get(self, key: str) -> CachedTicket | None:
        raise ConnectionError("store down")

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        raise ConnectionError("store down")

    def delete(self, key: str) -> None:
        raise ConnectionError("store down")


# --- tickets --------------------------------------------------------------------------------------


def test_authenticate_is_one_exchange_and_a_validated_ticket(make: Drivers, emu: Emulator) -> None:
    """authenticate exchanges once per call and returns the ticket the validated JWT carries."""
    client = make()
    before = emu.exchange_count
    first = client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    second = client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert isinstance(first, SystemUserTicket) and first.ticket.startswith("7T:")
    assert (first.context_identifier, first.serial) == (CTX, "1234567")
    assert first.ticket != second.ticket
    assert emu.exchange_count == before + 2


def test_warm_ticket_comes_from_the_cache(make: Drivers, emu: Emulator) -> None:
    """A second get_ticket returns the same ticket object without an exchange; another tenant gets its own."""
    client = make()
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    before = emu.exchange_count
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    other = client.get_ticket(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN)
    assert other.context_identifier == OTHER_CTX
    assert emu.exchange_count == before + 1


def test_another_token_for_the_tenant_is_not_served_its_ticket(make: Drivers, emu: Emulator) -> None:
    """A different system user token for a cached tenant exchanges (and is rejected), never gets the ticket."""
    client = make()
    client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    with pytest.raises(AuthenticationRejectedError):
        client.get_ticket(context_identifier=CTX, system_user_token=OTHER_TOKEN)


def test_dead_ticket_is_never_returned(make: Drivers, emu: Emulator) -> None:
    """At ticket_lifetime the cached ticket is dead: the next call exchanges for a new one."""
    clock = SteppingClock()
    client = make(clock=clock.clock, ticket_lifetime=60, refresh_ahead=0)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(59.9)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    clock.advance(0.1)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket != first.ticket


def test_due_ticket_is_renewed_ahead(make: Drivers, emu: Emulator) -> None:
    """Inside the refresh-ahead window the ticket is renewed before it dies."""
    clock = SteppingClock()
    client = make(clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(301)
    second = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert second.ticket != first.ticket
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is second


def test_failed_renewal_serves_the_valid_ticket_with_one_warning(
    make: Drivers, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A transient failure while renewing returns the still-valid ticket, warns once, and backs off."""
    clock = SteppingClock()
    client = make(clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(400)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    before = emu.exchange_count
    caplog.set_level(logging.DEBUG)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    assert emu.exchange_count == before + 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and CTX in warnings[0].getMessage()
    assert first.ticket not in caplog.text


def test_dead_ticket_and_failed_exchange_raise(make: Drivers, emu: Emulator) -> None:
    """A dead ticket is no fallback: when its renewal fails the caller gets the retryable error."""
    clock = SteppingClock()
    client = make(clock=clock.clock, ticket_lifetime=60, refresh_ahead=10, retry=None)
    client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(61)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert (info.value.status, info.value.retryable) == (503, True)


# --- rejections and invalidation ------------------------------------------------------------------


def test_rejection_is_remembered_until_invalidate(make: Drivers, emu: Emulator) -> None:
    """A rejected tenant gets the same error again without an exchange, until invalidate() forgets it."""
    client = make()
    emu.inject(Fault.REJECT, tenant=CTX, message="Revoked", times=1)
    before = emu.exchange_count
    with pytest.raises(AuthenticationRejectedError) as first:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    with pytest.raises(AuthenticationRejectedError, match="remembered") as second:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.exchange_count == before + 1
    assert second.value.error_message == first.value.error_message
    client.invalidate(CTX)
    assert isinstance(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN), SystemUserTicket)
    assert emu.exchange_count == before + 2


def test_invalidate_forces_an_exchange_and_spares_a_newer_ticket(make: Drivers, emu: Emulator) -> None:
    """invalidate() forgets the ticket; invalidate(ticket=old) leaves a newer one alone."""
    client = make()
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    client.invalidate(CTX, ticket=first)
    second = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert second.ticket != first.ticket
    before = emu.exchange_count
    client.invalidate(CTX, ticket=first.ticket)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is second
    assert emu.exchange_count == before


# --- retries and deadlines ------------------------------------------------------------------------


def test_transient_503s_are_retried_then_succeed(make: Drivers, emu: Emulator) -> None:
    """Two 503s then a success: the ticket after 3 exchanges and two jittered waits of the policy."""
    sleeper = Sleeper()
    client = make(retry=sleeper.policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=2)
    before = emu.exchange_count
    assert isinstance(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN), SystemUserTicket)
    assert emu.exchange_count == before + 3
    assert sleeper.waits == [0.5, 1.0]


def test_retries_wait_for_real_with_the_system_sleep(make: Drivers, emu: Emulator) -> None:
    """Without an injected sleep the waits are real (asyncio.sleep for the async client) and the retry succeeds."""
    client = make(retry=RetryPolicy(backoff_base=0.1, random=lambda: 1.0))
    emu.inject(Fault.DISCONNECT, times=1)
    started = time.monotonic()
    assert isinstance(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN), SystemUserTicket)
    assert time.monotonic() - started >= 0.1


def test_attempts_are_bounded_and_the_last_error_surfaces(make: Drivers, emu: Emulator) -> None:
    """A persisting 503 costs exactly 3 attempts, then its retryable TransportError is raised."""
    sleeper = Sleeper()
    client = make(retry=sleeper.policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    before = emu.exchange_count
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert (info.value.status, info.value.retryable) == (503, True)
    assert emu.exchange_count == before + 3


def test_final_answers_are_not_retried(make: Drivers, emu: Emulator) -> None:
    """A rejection and a JWT that fails validation each cost one exchange."""
    client = make(retry=Sleeper().policy())
    emu.inject(Fault.WRONG_TENANT_TOKEN, times=1)
    before = emu.exchange_count
    with pytest.raises(TokenValidationError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.check == "context"
    assert emu.exchange_count == before + 1


def test_a_dripping_answer_is_cut_at_the_deadline(make: Drivers) -> None:
    """get_ticket against headers dripped one byte at a time ends at the deadline with a retryable error."""
    with DrippingServer("headers") as server:
        client = make(endpoint=server.url, timeout=(1, 1), deadline=1.5, public_key=PARTNER_KEY.public_key())
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        seconds = time.monotonic() - started
    assert 1.4 <= seconds < 1.5 + MARGIN
    assert info.value.retryable


def test_retries_and_waits_fit_in_the_deadline(make: Drivers, emu: Emulator) -> None:
    """With a latency longer than the deadline left, the call ends within its deadline, retries included."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=3, times=1)
    client = make(deadline=1.0, retry=RetryPolicy(attempts=5, backoff_base=0.01))
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert time.monotonic() - started < 1.0 + MARGIN
    assert info.value.retryable


# --- hostile and broken answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "retryable"),
    [
        (FakeResponse(soap_fault("s:Server"), 500), SoapFaultError, True),
        (FakeResponse(soap_fault("s:Client"), 500), SoapFaultError, False),
        (FakeResponse(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', 200), ProtocolError, False),
        (FakeResponse(b"<html>busy</html>", 503), TransportError, True),
        (FakeResponse(b"", 200), ProtocolError, False),
        (FakeResponse(b"", 302, {"Location": "https://elsewhere.invalid/"}), TransportError, False),
    ],
    ids=["server-fault", "client-fault", "dtd", "html-503", "empty", "redirect"],
)
def test_hostile_and_broken_answers_are_typed_errors(
    make: Drivers, answer: FakeResponse, error: type[SutSoapError], retryable: bool
) -> None:
    """Faults, a DTD, an HTML error page, an empty body and a redirect each raise their typed error, with no secret."""
    transport = ScriptedTransport()
    transport.script.append(lambda: answer)
    client = make(transport=transport, public_key=PARTNER_KEY.public_key())
    with pytest.raises(error) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.retryable is retryable
    for text in error_texts(info.value):
        assert not any(secret in text for secret in SECRETS)


def test_a_callers_transport_that_raises_is_a_transport_error(make: Drivers) -> None:
    """Any exception of a caller's own transport becomes a non-retryable TransportError naming only its type."""
    transport = ScriptedTransport()

    def explode() -> None:
        raise ValueError(f"leaked {CLIENT_SECRET}")

    transport.script.append(explode)
    client = make(transport=transport, public_key=PARTNER_KEY.public_key())
    with pytest.raises(TransportError, match="ValueError") as info:
        client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert not info.value.retryable
    assert CLIENT_SECRET not in str(info.value) + repr(info.value)


def test_a_rotated_signing_key_is_fetched(make: Drivers, emu: Emulator) -> None:
    """A JWT signed with a key the cached JWKS lacks makes the client fetch the JWKS again, once."""
    clock = SteppingClock()
    client = make(clock=clock.clock)
    client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    jwks_before = emu.jwks_count
    emu.rotate_key()
    clock.advance(2)  # past the wait before a refetch
    ticket = client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert isinstance(ticket, SystemUserTicket)
    assert emu.jwks_count == jwks_before + 1


def test_a_jwks_that_cannot_be_fetched_is_a_retryable_error(make: Drivers, emu: Emulator) -> None:
    """With the JWKS down the exchange fails with a retryable TransportError; once it is back the next call works."""
    client = make(retry=None)
    emu.inject(Fault.JWKS_UNAVAILABLE, times=1)
    with pytest.raises(TransportError, match="JWKS") as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.retryable
    assert isinstance(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN), SystemUserTicket)


# --- many tenants, stores, protocols --------------------------------------------------------------


def test_get_tickets_gives_a_ticket_or_an_error_per_tenant_in_order(make: Drivers, emu: Emulator) -> None:
    """A warm-up returns each tenant's ticket, or its error for an unknown one, in the order given."""
    client = make()
    result = client.get_tickets({OTHER_CTX: OTHER_TOKEN, "Cust00000": "nobody", CTX: TOKEN}, workers=4)
    assert list(result) == [OTHER_CTX, "Cust00000", CTX]
    assert isinstance(result[CTX], SystemUserTicket) and isinstance(result[OTHER_CTX], SystemUserTicket)
    assert isinstance(result["Cust00000"], AuthenticationRejectedError)
    assert client.get_tickets({}) == {}


def test_get_tickets_checks_its_arguments(make: Drivers) -> None:
    """A worker count out of range or tenants that are not a mapping are configuration errors."""
    client = make()
    with pytest.raises(ConfigurationError, match="from 1 to 256"):
        client.get_tickets({CTX: TOKEN}, workers=0)
    with pytest.raises(ConfigurationError, match="mapping"):
        client.get_tickets([(CTX, TOKEN)])  # type: ignore[arg-type]


def test_a_shared_store_with_a_lease_serves_other_clients(make: Drivers, emu: Emulator) -> None:
    """Two clients sharing a store exchange once; the fleet lease is taken for the exchange."""
    store = Store()
    one, two = make(cache=store), make(cache=store)
    before = emu.exchange_count
    a = one.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    b = two.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert a.ticket == b.ticket
    assert emu.exchange_count == before + 1
    assert len(store.leases) == 1


def test_a_broken_store_degrades_to_exchanging(make: Drivers, emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    """A store that raises on every call is logged and skipped: each call exchanges, none fails."""
    client = make(cache=BrokenStore())
    before = emu.exchange_count
    for _ in range(2):
        assert isinstance(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN), SystemUserTicket)
    assert emu.exchange_count == before + 2
    client.invalidate(CTX)
    assert "ticket cache get failed (ConnectionError)" in caplog.text


def test_the_rest_protocol_gives_the_same_ticket(make: Drivers, emu: Emulator) -> None:
    """protocol='rest' exchanges at the REST endpoint and validates into the same kind of ticket."""
    client = make(endpoint=emu.rest_endpoint, protocol="rest")
    ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert (ticket.context_identifier, ticket.serial) == (CTX, "1234567")


# --- what a client shows --------------------------------------------------------------------------


def test_a_client_shows_no_secret_and_refuses_pickling(make: Drivers) -> None:
    """repr and errors never show the client secret; pickling is refused with a ConfigurationError."""
    client = make()
    ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    LogCanary((CLIENT_SECRET, TOKEN, ticket.ticket)).check(repr(client.client), str(client.client))
    assert "client_secret='***'" in repr(client.client)
    with pytest.raises(ConfigurationError, match="cannot be pickled"):
        pickle.dumps(client.client)


@pytest.mark.parametrize(
    "options",
    [{"deadline": 0}, {"timeout": -1}, {"ticket_lifetime": 0}, {"retry": "yes"}, {"protocol": "xml"}],
    ids=["deadline", "timeout", "lifetime", "retry", "protocol"],
)
def test_options_are_checked_alike(make: Drivers, options: dict[str, object]) -> None:
    """An option out of range is the same ConfigurationError for both clients."""
    with pytest.raises(ConfigurationError):
        make(**options)
