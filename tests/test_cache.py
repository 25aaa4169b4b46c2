"""get_ticket, invalidate and get_tickets: the per-tenant ticket cache, single flight and warm-up."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gc
import json
import logging
import math
import os
import pickle
import sys
import threading
import time
import tracemalloc
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from support import ClientFactory, SteppingClock

from sut_soap import (
    AuthenticationRejectedError,
    ConfigurationError,
    SoapFaultError,
    SutSoapError,
    SystemUserClient,
    SystemUserTicket,
    TransportError,
)
from sut_soap import ticket as ticket_module
from sut_soap.cache import DEFAULT_MAX_ENTRIES, CachedTicket, InMemoryTicketCache, LockingTicketCache, TicketCache
from sut_soap.client import default_refresh_ahead
from sut_soap.keys import load_private_key
from sut_soap.soap import Answer
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.testing.minting import superoffice_claims
from sut_soap.tokens import CLAIM_ASSOCIATE_ID, CLAIM_CTX, CLAIM_PREFIX, CLAIM_SERIAL, CLAIM_TICKET, decode_unverified

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-c4c8e"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryC4che1"
OTHER_CTX = "Cust67890"
OTHER_TOKEN = "Other Sync-canaryC4che2"
WARM = {f"Cust2{i:04d}": f"Warm Sync-canary{i:04d}" for i in range(40)}
SECRETS = (CLIENT_SECRET, TOKEN, OTHER_TOKEN)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module: two tenants, and forty for the warm-up."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_TOKEN, serial="7654321")
        for ctx, token in WARM.items():
            emu.add_tenant(ctx, system_user_token=token)
        yield emu


@pytest.fixture
def make_client(emu: Emulator) -> Iterator[Callable[..., SystemUserClient]]:
    factory = ClientFactory(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint)
    yield factory
    factory.close()


class FakeSharedStore:
    """A stand-in for Redis: JSON text per key, the TTL given, and one lock per key."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.ttls: dict[str, float] = {}
        self.lock_calls = 0
        self.lock_timeouts: list[float] = []
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def get(self, key: str) -> CachedTicket | None:
        text = self.data.get(key)
        return None if text is None else CachedTicket.from_json(text)

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        self.data[key] = entry.to_json()
        self.ttls[key] = ttl

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    @contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        with self._guard:
            lock = self._locks[key]
            self.lock_calls += 1
            self.lock_timeouts.append(timeout)
        acquired = lock.acquire(timeout=timeout)
        try:
            yield
        finally:
            if acquired:
                lock.release()


class BrokenStore:
    """A store whose every operation fails, like an unreachable Redis."""

    def get(self, key: str) -> CachedTicket | None:
        raise ConnectionError("store down: " + key)

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        raise ConnectionError("store down")

    def delete(self, key: str) -> None:
        raise ConnectionError("store down")


def run_threads(n: int, target: Callable[[int], None], timeout: float = 20.0) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"


def assert_no_secrets(*texts: str) -> None:
    for secret in SECRETS:
        assert all(secret not in text for text in texts)


# --- the cache ------------------------------------------------------------------------------


def test_warm_ticket_comes_from_cache(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """A second get_ticket for a tenant returns the cached ticket without an exchange."""
    client = make_client()
    before = emu.exchange_count
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    second = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert second is first
    assert emu.exchange_count == before + 1


def test_tenants_never_share_tickets(make_client: Callable[..., SystemUserClient]) -> None:
    """Each tenant gets its own ticket, for itself."""
    client = make_client()
    a = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    b = client.get_ticket(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN)
    assert (a.context_identifier, b.context_identifier) == (CTX, OTHER_CTX)
    assert a.ticket != b.ticket
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is a


def test_other_system_user_token_is_not_served_the_cached_ticket(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """A different system user token for a cached tenant exchanges instead of reusing the ticket."""
    client = make_client()
    client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    before = emu.exchange_count
    with pytest.raises(AuthenticationRejectedError):
        client.get_ticket(context_identifier=CTX, system_user_token=OTHER_TOKEN)
    assert emu.exchange_count == before + 1


def test_stale_ticket_never_returned(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """At ticket_lifetime the cached ticket is dead: the next call exchanges for a new one."""
    clock = SteppingClock()
    client = make_client(clock=clock.clock, ticket_lifetime=60, refresh_ahead=0)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(59.9)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    before = emu.exchange_count
    clock.advance(0.1)
    second = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert second.ticket != first.ticket
    assert emu.exchange_count == before + 1


def test_expired_ticket_and_failed_exchange_raise(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """A dead ticket is not a fallback: when its renewal fails the caller gets the typed error."""
    clock = SteppingClock()
    client = make_client(clock=clock.clock, ticket_lifetime=60, refresh_ahead=10, retry=None)
    client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(61)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.retryable


def test_ticket_due_for_renewal_is_renewed(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """Inside the refresh-ahead window the ticket is renewed before it dies."""
    clock = SteppingClock()
    client = make_client(clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(299)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    clock.advance(2)
    second = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert second.ticket != first.ticket
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is second


def test_renewal_failure_keeps_valid_ticket_with_one_warning(
    make_client: Callable[..., SystemUserClient], emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A transient failure while renewing returns the still-valid ticket, warns once, and backs off."""
    clock = SteppingClock()
    client = make_client(clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(400)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    before = emu.exchange_count
    caplog.set_level(logging.DEBUG)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    assert emu.exchange_count == before + 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert CTX in warnings[0].getMessage()
    assert_no_secrets(caplog.text, first.ticket)
    assert first.ticket not in caplog.text


def test_due_tickets_are_served_while_a_rotated_key_cannot_be_fetched(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """During a key rotation with the JWKS down, every tenant's due ticket is served: the unknown kid is retryable."""
    clock = SteppingClock()
    client = make_client(clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    other = client.get_ticket(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN)
    clock.advance(400)
    emu.rotate_key()
    emu.inject(Fault.JWKS_UNAVAILABLE)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first  # the refetch fails
    assert client.get_ticket(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN) is other  # no refetch yet


def test_renewal_rejected_raises(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """A renewal the service rejects (not retryable) raises instead of hiding the rejection."""
    clock = SteppingClock()
    client = make_client(clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
    client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(400)
    emu.inject(Fault.REJECT, tenant=CTX, message="Revoked")
    with pytest.raises(AuthenticationRejectedError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)


def test_wall_clock_set_back_does_not_extend_lifetime(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """A wall clock set back an hour cannot keep a ticket past its lifetime (monotonic age counts)."""
    offset = [timedelta(0)]
    client = make_client(clock=lambda: datetime.now(timezone.utc) + offset[0], ticket_lifetime=0.3, refresh_ahead=0)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    offset[0] = timedelta(hours=-1)
    time.sleep(0.35)
    before = emu.exchange_count
    with pytest.raises(SutSoapError):  # the re-exchange itself fails: the clock is an hour off
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.exchange_count == before + 1
    assert first.context_identifier == CTX


def test_wall_clock_jump_forward_keeps_a_ticket_this_process_obtained(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """A wall clock jumping 7 hours ahead keeps the ticket obtained a second ago: its age is monotonic."""
    clock = SteppingClock()
    client = make_client(clock=clock.clock)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(1)
    clock.jump_wall(7 * 3600)
    before = emu.exchange_count
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    assert emu.exchange_count == before


def test_ticket_from_a_shared_store_ages_on_the_wall_clock(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """A ticket another process put in a shared store is aged by the wall clock: jumping past its lifetime renews it."""
    store = FakeSharedStore()
    clock = SteppingClock()
    one = make_client(cache=store, clock=clock.clock, ticket_lifetime=120, refresh_ahead=0)
    two = make_client(cache=store, clock=clock.clock, ticket_lifetime=120, refresh_ahead=0)
    first = one.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert two.get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket == first.ticket
    clock.jump_wall(121)
    before = emu.exchange_count
    assert two.get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket != first.ticket
    assert emu.exchange_count == before + 1


class ForeignEntriesKeptByReference:
    """A two-tier store's local side: entries as another process wrote them (read back once), then the same object."""

    def __init__(self) -> None:
        self.data: dict[str, CachedTicket] = {}

    def get(self, key: str) -> CachedTicket | None:
        return self.data.get(key)

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        self.data[key] = CachedTicket.from_json(entry.to_json())

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def test_ticket_from_a_shared_store_ages_on_the_monotonic_clock_once_read(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """Once read, another process's ticket ages on the monotonic clock: a wall clock set back cannot keep it past its lifetime."""
    store = ForeignEntriesKeptByReference()
    clock = SteppingClock()
    client = make_client(cache=store, clock=clock.clock, ticket_lifetime=120, refresh_ahead=0)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket == first.ticket  # read: adopted
    clock.jump_wall(-3600)
    clock.advance(121)
    before = emu.exchange_count
    with pytest.raises(AuthenticationRejectedError):  # renewed; the exchange itself fails: the clock is an hour off
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.exchange_count == before + 1


def test_invalidate_forces_exchange(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """After invalidate the next get_ticket exchanges for a new ticket."""
    client = make_client()
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    client.invalidate(CTX)
    before = emu.exchange_count
    second = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert second.ticket != first.ticket
    assert emu.exchange_count == before + 1


def test_invalidate_with_old_ticket_keeps_newer(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """invalidate(ticket=old) leaves a newer cached ticket alone (late 401s cause no extra exchange)."""
    client = make_client()
    old = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    client.invalidate(CTX, ticket=old)
    new = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    before = emu.exchange_count
    client.invalidate(CTX, ticket=old)
    client.invalidate(CTX, ticket=old.ticket)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is new
    assert emu.exchange_count == before


# --- single flight --------------------------------------------------------------------------


def test_fifty_threads_cold_tenant_one_exchange(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """50 threads released together on a cold tenant cause exactly one exchange and share its ticket."""
    client = make_client()
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.2, times=1)
    barrier = threading.Barrier(50)
    got: list[SystemUserTicket] = []
    before = emu.exchange_count

    def work(_: int) -> None:
        barrier.wait(5)
        got.append(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))

    run_threads(50, work)
    assert emu.exchange_count == before + 1
    assert len(got) == 50
    assert len({id(t) for t in got}) == 1


def test_different_tenants_do_not_wait_for_each_other(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """While one tenant's exchange hangs on latency, another tenant's exchange completes."""
    client = make_client()
    client.get_ticket(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN)  # JWKS fetched
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=1.5, times=1)
    before = emu.exchange_count
    slow = threading.Thread(target=client.get_ticket, kwargs={"context_identifier": CTX, "system_user_token": TOKEN})
    slow.start()
    deadline = time.monotonic() + 5
    while emu.exchange_count == before and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.monotonic()
    ctx, token = next(iter(WARM.items()))
    assert client.get_ticket(context_identifier=ctx, system_user_token=token).context_identifier == ctx
    assert time.monotonic() - started < 0.7
    assert slow.is_alive()
    slow.join(5)


def test_failed_exchange_releases_waiters_with_error(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """When the one exchange fails, every waiter gets its typed error, no lock stays held, the next call retries."""
    client = make_client()
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.3, times=1)
    emu.inject(Fault.SOAP_FAULT_500, tenant=CTX, times=1)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []
    before = emu.exchange_count

    def work(_: int) -> None:
        barrier.wait(5)
        try:
            client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        except BaseException as exc:
            errors.append(exc)

    run_threads(10, work, timeout=10)
    assert len(errors) == 10
    assert all(isinstance(e, SoapFaultError) for e in errors)
    assert emu.exchange_count == before + 1
    assert not client._flights
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX
    assert emu.exchange_count == before + 2


def test_storm_consistent_and_bounded(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """20 threads hammering get_ticket with a 0.2 s lifetime: no dead ticket, exchanges <= ceil(elapsed/lifetime) + 1."""
    lifetime = 0.2
    client = make_client(ticket_lifetime=lifetime, refresh_ahead=0)
    client.get_ticket(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN)  # JWKS fetched
    barrier = threading.Barrier(20)
    bad: list[str] = []
    seen: dict[str, datetime] = {}
    calls = [0] * 20
    before = emu.exchange_count
    started = time.monotonic()

    def work(i: int) -> None:
        barrier.wait(5)
        end = time.monotonic() + 1.0
        while calls[i] < 4000 and time.monotonic() < end:
            asked_at = time.time()
            ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
            calls[i] += 1
            if ticket.context_identifier != CTX or ticket.obtained_at.timestamp() + lifetime <= asked_at:
                bad.append(repr(ticket))
            if seen.setdefault(ticket.ticket, ticket.obtained_at) != ticket.obtained_at:
                bad.append("two obtained_at for one ticket")

    run_threads(20, work)
    elapsed = time.monotonic() - started
    exchanges = emu.exchange_count - before
    assert not bad
    assert sum(calls) > 1000
    assert 1 <= exchanges <= math.ceil(elapsed / lifetime) + 1


# --- get_tickets ----------------------------------------------------------------------------


def test_get_tickets_returns_ticket_or_error_per_tenant(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """One tenant's failure is its own entry in the result; the others get tickets, in input order."""
    client = make_client()
    emu.inject(Fault.REJECT, tenant=OTHER_CTX, message="NeedsReapproval")
    tenants = {CTX: TOKEN, OTHER_CTX: OTHER_TOKEN, "Cust00001": " ", **dict(list(WARM.items())[:5])}
    result = client.get_tickets(tenants, max_workers=4)
    assert list(result) == list(tenants)
    assert isinstance(result[CTX], SystemUserTicket)
    assert isinstance(result[OTHER_CTX], AuthenticationRejectedError)
    assert isinstance(result["Cust00001"], ConfigurationError)
    assert all(isinstance(result[ctx], SystemUserTicket) for ctx in list(WARM)[:5])
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is result[CTX]


def test_get_tickets_pool_holds_every_worker_connection(
    make_client: Callable[..., SystemUserClient], emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """With more workers than requests' default pool of 10, connections are kept and reused, not discarded."""
    caplog.set_level(logging.WARNING, logger="urllib3")
    client = make_client()
    emu.inject(Fault.LATENCY, seconds=0.05)
    opened = emu.connection_count
    for _ in range(2):
        result = client.get_tickets(WARM, max_workers=24)
        assert all(isinstance(t, SystemUserTicket) for t in result.values())
        for ctx in WARM:
            client.invalidate(ctx)
    assert emu.connection_count - opened <= 24
    assert "pool is full" not in caplog.text


def test_callers_session_is_not_resized(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """A session passed in keeps its adapters and its environment handling."""
    session = requests.Session()
    adapter = session.get_adapter(emu.endpoint)
    client = make_client(session=session)
    result = client.get_tickets({CTX: TOKEN, OTHER_CTX: OTHER_TOKEN}, max_workers=32)
    assert all(isinstance(t, SystemUserTicket) for t in result.values())
    assert session.get_adapter(emu.endpoint) is adapter
    assert session.trust_env is True
    session.close()


def test_get_tickets_checks_its_arguments(make_client: Callable[..., SystemUserClient]) -> None:
    """max_workers is bounded and tenants must be a mapping; an empty mapping gives an empty result."""
    client = make_client()
    for workers in (0, 257, 1.5, True):
        with pytest.raises(ConfigurationError):
            client.get_tickets({CTX: TOKEN}, max_workers=workers)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        client.get_tickets([(CTX, TOKEN)])  # type: ignore[arg-type]
    assert client.get_tickets({}) == {}


# --- stores ---------------------------------------------------------------------------------


def test_shared_store_serves_other_clients(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """Two clients (two processes) sharing a store exchange once; the store never holds the token or secret."""
    store = FakeSharedStore()
    assert isinstance(store, LockingTicketCache)
    one, two = make_client(cache=store), make_client(cache=store)
    before = emu.exchange_count
    a = one.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    b = two.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert a.ticket == b.ticket
    assert emu.exchange_count == before + 1
    assert store.lock_calls == 1
    [(key, text)] = store.data.items()
    assert key.startswith("sut-soap:v1:") and key.endswith(":" + CTX)
    assert_no_secrets(key, text)
    assert 21000 < store.ttls[key] <= 21600


def test_fleet_lock_wait_is_bounded_by_the_call_deadline(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """The store's lock is asked for with what is left of the call's deadline=, never more."""
    store = FakeSharedStore()
    make_client(cache=store, deadline=4.0).get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    [timeout] = store.lock_timeouts
    assert 3.0 < timeout <= 4.0


def test_shared_store_lock_gives_fleet_single_flight(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """Threads of two clients sharing a locking store cause one exchange for a cold tenant."""
    store = FakeSharedStore()
    clients = [make_client(cache=store), make_client(cache=store)]
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.2, times=1)
    barrier = threading.Barrier(20)
    got: list[str] = []
    before = emu.exchange_count

    def work(i: int) -> None:
        barrier.wait(5)
        got.append(clients[i % 2].get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket)

    run_threads(20, work)
    assert emu.exchange_count == before + 1
    assert len(set(got)) == 1 and len(got) == 20


def test_other_application_never_gets_the_ticket(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """A client with another client secret sharing the store does not see this application's tickets."""
    store = FakeSharedStore()
    make_client(cache=store).get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    other = make_client(cache=store, client_secret="another-application-secret")
    with pytest.raises(AuthenticationRejectedError):
        other.get_ticket(context_identifier=CTX, system_user_token=TOKEN)


def test_broken_store_degrades_to_exchanging(
    make_client: Callable[..., SystemUserClient], emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that fails costs exchanges, never a failed call; the warning names only the error type."""
    caplog.set_level(logging.WARNING, logger="sut_soap")
    client = make_client(cache=BrokenStore())
    before = emu.exchange_count
    for _ in range(2):
        assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX
    client.invalidate(CTX)
    assert emu.exchange_count == before + 2
    assert "ConnectionError" in caplog.text
    assert "store down" not in caplog.text
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 3  # get, set, delete: once each


def test_entry_json_round_trip_and_reprs() -> None:
    """CachedTicket survives to_json/from_json; reprs of entries and the store show no ticket."""
    now = datetime.now(timezone.utc)
    claims = {
        "http://schemes.superoffice.net/identity/ticket": "7T:canaryTicketC4che",
        "http://schemes.superoffice.net/identity/ctx": CTX,
        "http://schemes.superoffice.net/identity/serial": "1234567",
        "exp": int(now.timestamp()) + 300,
    }
    ticket = SystemUserTicket.from_claims("header.payload.signature", claims, obtained_at=now)
    entry = CachedTicket(ticket, token_fingerprint="ab" * 16, obtained_monotonic=time.monotonic())
    back = CachedTicket.from_json(entry.to_json())
    assert back.ticket == ticket and back.token_fingerprint == entry.token_fingerprint
    assert back.ticket.token == "" and "header.payload" not in entry.to_json()
    assert back.obtained_at == now and back.local_age(time.monotonic()) is None
    store = InMemoryTicketCache()
    store.set("k", entry, 60)
    assert isinstance(store, TicketCache)
    for text in (repr(entry), str(back), repr(store)):
        assert "7T:" not in text and "header.payload" not in text
    for bad in ("", "[]", '{"v": 2}', '{"v": 1, "claims": {}}', '{"v": 1, "claims": [], "fingerprint": "f"}'):
        with pytest.raises(ValueError):
            CachedTicket.from_json(bad)


def test_in_memory_store_drops_entries_after_ttl() -> None:
    """The default store forgets an entry once its ttl has passed."""
    now = datetime.now(timezone.utc)
    claims = {
        "http://schemes.superoffice.net/identity/ticket": "7T:x",
        "http://schemes.superoffice.net/identity/ctx": CTX,
        "http://schemes.superoffice.net/identity/serial": "1",
        "exp": int(now.timestamp()) + 300,
    }
    entry = CachedTicket(SystemUserTicket.from_claims("a.b.c", claims, obtained_at=now), token_fingerprint="f")
    store = InMemoryTicketCache()
    store.set("k", entry, 0.05)
    assert store.get("k") is entry
    time.sleep(0.06)
    assert store.get("k") is None and len(store) == 0


def test_in_memory_store_sweeps_expired_entries_nobody_asks_for() -> None:
    """Expired entries of tenants nobody asks for again are dropped by the sweep that set() runs now and then."""
    clock = SteppingClock()
    store = InMemoryTicketCache(clock=clock.clock)
    entry = CachedTicket(ticket(), token_fingerprint="fp")
    for index in range(100):
        store.set(f"gone{index}", entry, 10)
    clock.advance(11)
    for index in range(100):
        store.set(f"asked{index}", entry, 10)
    assert len(store) == 100
    assert all(store.get(f"asked{index}") is entry for index in range(100))


def test_in_memory_store_evicts_the_least_recently_used_beyond_max_entries() -> None:
    """Beyond max_entries, set() evicts the entry least recently set or read."""
    store = InMemoryTicketCache(max_entries=2)
    entry = CachedTicket(ticket(), token_fingerprint="fp")
    store.set("a", entry, 60)
    store.set("b", entry, 60)
    assert store.get("a") is entry
    store.set("c", entry, 60)
    assert len(store) == 2
    assert store.get("b") is None
    assert store.get("a") is entry and store.get("c") is entry


def test_in_memory_store_max_entries_default_and_checks() -> None:
    """max_entries defaults to DEFAULT_MAX_ENTRIES (100,000) and must be a positive integer."""
    assert InMemoryTicketCache().max_entries == DEFAULT_MAX_ENTRIES == 100_000
    for bad in (0, -1, True, 1.5, "10"):
        with pytest.raises(ConfigurationError, match="max_entries"):
            InMemoryTicketCache(max_entries=bad)  # type: ignore[arg-type]


# --- configuration --------------------------------------------------------------------------


def test_default_refresh_ahead() -> None:
    """refresh_ahead defaults to max(300 s, 10 % of the lifetime), at most half of it."""
    assert default_refresh_ahead(6 * 3600) == 2160
    assert default_refresh_ahead(1800) == 300
    assert default_refresh_ahead(2) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ticket_lifetime": 0},
        {"ticket_lifetime": 86401},
        {"ticket_lifetime": float("nan")},
        {"ticket_lifetime": True},
        {"ticket_lifetime": 600, "refresh_ahead": 600},
        {"refresh_ahead": -1},
        {"cache": object()},
    ],
)
def test_cache_options_checked(kwargs: dict[str, Any], emu: Emulator) -> None:
    """Unusable lifetimes, refresh windows and stores are configuration errors."""
    with pytest.raises(ConfigurationError):
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, **kwargs)


def test_environment_proxy_read_at_construction(
    make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's own session applies proxy variables present when it was built, and only those."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    unaffected = make_client()
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    proxied = make_client(retry=None)
    with pytest.raises(TransportError):
        proxied.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert unaffected.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX


OBTAINED = datetime(2026, 11, 28, 13, 30, tzinfo=timezone.utc)


def ticket(**claims: Any) -> SystemUserTicket:
    base = {
        CLAIM_TICKET: "7T:CanaryTicket",
        CLAIM_CTX: "Cust12345",
        CLAIM_SERIAL: "1234567",
        "exp": OBTAINED.timestamp() + 300,
    }
    base.update(claims)
    return SystemUserTicket.from_claims("a.b.c", base, obtained_at=OBTAINED)


def test_cached_ticket_requires_a_ticket_and_a_fingerprint() -> None:
    """CachedTicket refuses anything but a SystemUserTicket, and an empty token fingerprint."""
    with pytest.raises(TypeError, match="SystemUserTicket"):
        CachedTicket("7T:CanaryTicket", token_fingerprint="fp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="token_fingerprint"):
        CachedTicket(ticket(), token_fingerprint="")


def test_cache_entry_with_a_naive_time_is_refused() -> None:
    """A JSON cache entry whose obtained_at has no time zone is refused rather than guessed."""
    entry = json.loads(CachedTicket(ticket(), token_fingerprint="fp").to_json())
    entry["obtained_at"] = "2026-11-28T13:30:00"
    with pytest.raises(ValueError, match="no time zone"):
        CachedTicket.from_json(json.dumps(entry))


def test_in_memory_cache_clear_len_and_repr() -> None:
    """clear() forgets every entry; len() and the repr count entries and never show a ticket."""
    cache = InMemoryTicketCache()
    cache.set("a", CachedTicket(ticket(), token_fingerprint="fp"), 60)
    cache.set("b", CachedTicket(ticket(), token_fingerprint="fp"), 60)
    assert len(cache) == 2
    assert repr(cache) == "InMemoryTicketCache(entries=2)"
    cache.clear()
    assert len(cache) == 0
    assert cache.get("a") is None


class _SwappingDict(OrderedDict):  # type: ignore[type-arg]
    """Returns the expired item on the first get() and a fresh one afterwards, as if another thread set it."""

    def __init__(self, expired: Any, fresh: Any) -> None:
        super().__init__({"k": expired})
        self.fresh = fresh
        self.reads = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads += 1
        if self.reads == 1:
            return super().get(key, default)
        self["k"] = self.fresh
        return self.fresh


def test_expiring_an_entry_never_removes_a_fresher_one() -> None:
    """When an expired entry was replaced between the read and the lock, the new entry stays."""
    cache = InMemoryTicketCache()
    old = CachedTicket(ticket(), token_fingerprint="old")
    new = CachedTicket(ticket(), token_fingerprint="new")
    entries = _SwappingDict((old, time.monotonic() - 1), (new, time.monotonic() + 60))
    cache._entries = entries
    assert cache.get("k") is None  # the expired read is not returned
    assert cache.get("k") is new  # and its removal did not take the fresh entry with it


class _VanishingDict(OrderedDict):  # type: ignore[type-arg]
    """Hands out a live item for "k" that another thread deletes before the hit can mark it recently used."""

    def __init__(self, item: Any) -> None:
        super().__init__()
        self.item = item

    def get(self, key: Any, default: Any = None) -> Any:
        return self.item


def test_hit_on_an_entry_deleted_meanwhile_is_still_served() -> None:
    """A hit whose entry another thread deleted just after the read returns it, without failing or re-adding it."""
    cache = InMemoryTicketCache()
    entry = CachedTicket(ticket(), token_fingerprint="fp")
    cache._entries = _VanishingDict((entry, time.monotonic() + 60))
    assert cache.get("k") is entry
    assert "k" not in cache._entries


def test_non_numeric_associate_id_is_none() -> None:
    """An associateid claim that is not an integer gives associate_id None, not an error."""
    assert ticket(**{CLAIM_ASSOCIATE_ID: "five"}).associate_id is None
    assert ticket(**{CLAIM_ASSOCIATE_ID: " 5 "}).associate_id == 5


def _decoded(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims as a fresh JSON decode gives them: new strings for every name and value."""
    decoded: dict[str, Any] = json.loads(json.dumps(claims))
    return decoded


def test_claim_names_are_shared_between_tickets() -> None:
    """Two tickets decoded separately hold the very same claim-name strings, not a copy each."""
    first = SystemUserTicket.from_claims("a.b.c", _decoded(dict(ticket().claims)), obtained_at=OBTAINED)
    second = SystemUserTicket.from_claims("a.b.c", _decoded(dict(ticket().claims)), obtained_at=OBTAINED)
    assert list(first.claims) == list(second.claims)
    assert all(a is b for a, b in zip(first.claims, second.claims, strict=True))
    assert next(iter(first.claims)) is sys.intern(CLAIM_TICKET)


def test_claims_are_a_read_only_mapping_equal_to_what_was_given() -> None:
    """ticket.claims reads like the dict it was built from, in order, and refuses changes."""
    given = _decoded(dict(ticket(email="a@b.invalid").claims))
    claims = SystemUserTicket.from_claims("a.b.c", given, obtained_at=OBTAINED).claims
    assert claims == given and dict(claims) == given and list(claims.items()) == list(given.items())
    assert len(claims) == len(given) and CLAIM_CTX in claims and "nope" not in claims
    assert claims.get("nope") is None
    with pytest.raises(KeyError):
        claims["nope"]
    with pytest.raises(TypeError):
        claims["exp"] = 0  # type: ignore[index]
    assert pickle.loads(pickle.dumps(claims)) == given


def test_claim_name_layouts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claim-name layouts are remembered up to a bound; beyond it a ticket keeps its own names."""
    monkeypatch.setattr(ticket_module, "_layouts", {})
    monkeypatch.setattr(ticket_module, "_MAX_LAYOUTS", 2)
    tickets = [ticket(**{f"extra-{i}": i}) for i in range(4)]
    assert len(ticket_module._layouts) == 2
    assert [t.claims[f"extra-{i}"] for i, t in enumerate(tickets)] == [0, 1, 2, 3]


def test_ticket_built_directly_keeps_claims_compact_and_replace_keeps_them() -> None:
    """SystemUserTicket(...) and dataclasses.replace convert the claims once and keep them read-only."""
    original = ticket()
    direct = SystemUserTicket(**{f.name: getattr(original, f.name) for f in dataclasses.fields(original)})
    assert direct.claims is original.claims
    moved = dataclasses.replace(original, obtained_at=OBTAINED + timedelta(seconds=1))
    assert moved.claims is original.claims and moved != original
    fresh = dataclasses.replace(original, claims={CLAIM_CTX: "Cust1"})
    assert dict(fresh.claims) == {CLAIM_CTX: "Cust1"}
    with pytest.raises(TypeError):
        fresh.claims[CLAIM_CTX] = "x"  # type: ignore[index]


def test_ticket_has_no_instance_dict() -> None:
    """A ticket is slotted: no per-instance __dict__ to pay for in a cache of thousands."""
    assert not hasattr(ticket(), "__dict__")


def _jwt_for(claims: dict[str, Any]) -> str:
    """A JWT-shaped string whose payload is ``claims`` (unsigned: tickets do not verify)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = b64(b'{"alg":"RS256","typ":"JWT"}')
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}.{b64(bytes(256))}"


def _validated(ctx: str = CTX) -> SystemUserTicket:
    """A ticket built the way the client builds it after validation."""
    claims = superoffice_claims(context_identifier=ctx, system_user_token=TOKEN, email="a@b.invalid", upn="u@b")
    return SystemUserTicket._from_validated_jwt(
        _jwt_for(claims), _decoded(claims), context_identifier=ctx, obtained_at=OBTAINED
    )


def test_client_ticket_decodes_its_claims_from_its_jwt_when_first_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ticket from a validated JWT keeps the JWT, not the claims, and decodes them once, when read."""
    built = _validated()
    decodes: list[object] = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda text, **kw: decodes.append(text) or real(text, **kw))
    assert built.context_identifier == CTX and built.serial == "1234567" and built.associate_id == 5
    assert decodes == []
    assert built.claims[CLAIM_CTX] == CTX
    assert dict(built.claims) == decode_unverified(built.token)[1]
    assert len(built.claims) == len(decode_unverified(built.token)[1]) and next(iter(built.claims)) == "iss"
    assert len(decodes) == 1
    assert "7T:" in repr(built.claims) and "7T:" not in repr(built)
    with pytest.raises(TypeError):
        built.claims["iss"] = "x"  # type: ignore[index]


def test_client_ticket_pickles_with_its_claims() -> None:
    """A ticket from a validated JWT pickles to an equal ticket with the same JWT and claims."""
    built = _validated()
    copy = pickle.loads(pickle.dumps(built))
    assert copy == built and copy.token == built.token and dict(copy.claims) == dict(built.claims)
    assert pickle.loads(pickle.dumps(built.claims)) == dict(built.claims)
    back = CachedTicket.from_json(CachedTicket(built, token_fingerprint="fp").to_json()).ticket
    assert back == built and CLAIM_PREFIX + "system_token" not in back.claims


def test_warm_get_ticket_decodes_nothing(make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache hit returns the ticket without decoding the JWT, its claims or anything else."""
    client = make_client()
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded on a cache hit")

    monkeypatch.setattr(json, "loads", forbidden)
    monkeypatch.setattr(base64, "urlsafe_b64decode", forbidden)
    monkeypatch.setattr(binascii, "a2b_base64", forbidden)
    monkeypatch.setattr(zlib, "decompressobj", forbidden)
    for _ in range(3):
        assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first


def test_cached_ticket_costs_at_most_2_5_kib_at_10000_tickets() -> None:
    """10,000 client-built tickets with 1.5 KB JWTs and their store entries cost at most 2.5 KiB each (tracemalloc)."""
    n = 10_000
    template = superoffice_claims(context_identifier="Cust00000", system_user_token="Sync-00000",
                                  email="system.user@cust00000.invalid", upn="SystemUser@Cust00000")
    text = json.dumps(template)
    tenants = [(f"Cust{i:05d}", f"sut-soap:v1:ns:Cust{i:05d}", f"{i:032x}") for i in range(n)]
    store = InMemoryTicketCache(max_entries=n)
    jwt_chars = len(_jwt_for(template))
    gc.collect()
    tracemalloc.start()
    try:
        for ctx, key, fingerprint in tenants:
            jwt = _jwt_for(json.loads(text.replace("Cust00000", ctx)))
            claims = json.loads(text.replace("Cust00000", ctx))  # what validation returns: a fresh decode
            built = SystemUserTicket._from_validated_jwt(
                jwt, claims, context_identifier=ctx, obtained_at=datetime.now(timezone.utc)
            )
            store.set(key, CachedTicket(built, token_fingerprint=fingerprint, obtained_monotonic=time.monotonic()), 3600)
        del ctx, key, fingerprint, jwt, claims, built
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(store) == n and jwt_chars > 1500
    assert held / n <= 2.5 * 1024, f"{held / n / 1024:.2f} KiB per cached ticket"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_HOSTILE_CLAIMS = superoffice_claims(system_user_token="Sync \u00e9\u2603\U0001f600 \"q\" \\ </x>", email="\x7f@b")
# Valid but unusual JWTs: each must come back from ticket.token exactly as it was given.
HOSTILE_JWTS = {
    "non-ascii and escapes, ensure_ascii": ".".join(
        [_b64(b'{"alg":"RS256","typ":"JWT"}'), _b64(json.dumps(_HOSTILE_CLAIMS).encode()), _b64(bytes(256))]
    ),
    "raw utf-8 payload, spaces and newlines": ".".join(
        [_b64(b'{"alg":"RS256","typ":"JWT","kid":"k"}'),
         _b64(json.dumps(_HOSTILE_CLAIMS, ensure_ascii=False, indent=2).encode("utf-8")), _b64(os.urandom(256))]
    ),
    "20 KB random payload beyond the deflate window": ".".join(
        [_b64(b'{"alg":"RS256"}'), _b64(json.dumps({**_HOSTILE_CLAIMS, "x": _b64(os.urandom(15000))}).encode()),
         _b64(os.urandom(256))]
    ),
    "3072-bit signature, header of its own": ".".join(
        [_b64(json.dumps({"alg": "RS256", "kid": os.urandom(8).hex()}).encode()),
         _b64(json.dumps(_HOSTILE_CLAIMS).encode()), _b64(os.urandom(384))]
    ),
    "payload of every length mod 3": ".".join(
        [_b64(b'{"alg":"RS256"}'), _b64(json.dumps({**_HOSTILE_CLAIMS, "p": "ab"}).encode()), _b64(os.urandom(257))]
    ),
    "non-canonical signature bits (kept as given)": ".".join(
        [_b64(b'{"alg":"RS256"}'), _b64(json.dumps(_HOSTILE_CLAIMS).encode()), _b64(bytes(256))[:-1] + "B"]
    ),
    "signature of an impossible length (kept as given)": ".".join(
        [_b64(b'{"alg":"RS256"}'), _b64(json.dumps(_HOSTILE_CLAIMS).encode()), "AAAAA"]
    ),
    "padded segment (kept as given)": ".".join(
        [_b64(b'{"alg":"RS256"}'), _b64(json.dumps(_HOSTILE_CLAIMS).encode()) + "==", _b64(bytes(256))]
    ),
}


@pytest.mark.parametrize("jwt", HOSTILE_JWTS.values(), ids=HOSTILE_JWTS.keys())
def test_client_ticket_token_is_the_jwt_byte_for_byte(jwt: str) -> None:
    """ticket.token of a client-built ticket is exactly the JWT it came from, for odd but valid JWTs."""
    given = "".join(list(jwt))  # a string of its own, not the one the ticket might have kept
    built = SystemUserTicket._from_validated_jwt(
        given, dict(_HOSTILE_CLAIMS), context_identifier=CTX, obtained_at=OBTAINED
    )
    del given
    assert built.token == jwt and type(built.token) is str
    assert pickle.loads(pickle.dumps(built)).token == jwt
    assert dataclasses.replace(built, serial="7").token == jwt
    payload = jwt.split(".")[1].rstrip("=")
    assert dict(built.claims) == json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_jwt_headers_are_shared_between_tickets_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tickets keep one shared copy of a JWT header, for as many headers as the bound allows; beyond it, their own."""
    monkeypatch.setattr(ticket_module, "_headers", {})
    monkeypatch.setattr(ticket_module, "_MAX_HEADERS", 1)
    claims = _decoded(superoffice_claims())
    jwts = [".".join([_b64(header), _b64(json.dumps(claims).encode()), _b64(bytes(256))])
            for header in (b'{"alg":"RS256","kid":"a"}', b'{"alg":"RS256","kid":"a"}', b'{"alg":"RS256","kid":"b"}')]
    built = [SystemUserTicket._from_validated_jwt("".join(list(jwt)), claims, context_identifier=CTX,
                                                  obtained_at=OBTAINED) for jwt in jwts]
    assert [t.token for t in built] == jwts and len(ticket_module._headers) == 1
    assert built[0].claims._header is built[1].claims._header  # type: ignore[attr-defined]


def test_cached_ticket_costs_at_most_2_5_kib_through_get_ticket() -> None:
    """10,000 tenants' own 1.6 KB JWTs cached by get_ticket cost at most 2.5 KiB each, all client state included."""
    n = 10_000
    client = SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY,
                              public_key=PARTNER_KEY.public_key(), endpoint="https://sod.invalid/x.svc")
    tenants = [(f"Cust{i:05d}", f"Sync-Cust{i:05d}") for i in range(n)]
    signature = _b64(os.urandom(256))
    header = _b64(b'{"alg":"RS256","typ":"JWT","kid":"k1"}')

    def jwt_of(i: int, ctx: str, token: str) -> bytes:
        claims = superoffice_claims(context_identifier=ctx, serial=str(1_000_000 + i), system_user_token=token,
                                    email=f"system.user@{ctx.lower()}.invalid", upn=f"SystemUser@{ctx}")
        return f"{header}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}.{signature}".encode()

    # Each tenant's own JWT as SuperOffice shapes it, as bytes: every exchange decodes a new string.
    answers = {ctx: jwt_of(i, ctx, token) for i, (ctx, token) in enumerate(tenants)}
    answers["warm-up"] = jwt_of(n, "warm-up", "warm-up")
    # The exchange answers from the JWTs above and validation only decodes (the signatures are not
    # real); the rest is get_ticket's own path: ticket, store entry, key and fingerprint memo.
    client._attempt = lambda context, token: (  # type: ignore[method-assign]
        Answer(True, answers[context].decode("ascii"), None), client.clock.now()
    )
    client._validator = type("Decoding", (), {  # type: ignore[assignment]
        "validate": staticmethod(lambda token, context_identifier: decode_unverified(token)[1])
    })()
    client.get_ticket(context_identifier="warm-up", system_user_token="warm-up")  # one-off allocations
    gc.collect()
    tracemalloc.start()
    try:
        for ctx, token in tenants:
            client.get_ticket(context_identifier=ctx, system_user_token=token)
        del ctx, token
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.close()
    assert len(client.cache) == n + 1 and len(answers["Cust00000"]) > 1500
    assert held / n <= 2.5 * 1024, f"{held / n / 1024:.2f} KiB per cached ticket"


@pytest.mark.parametrize("monotonic", [None, 12.5], ids=["foreign", "local"])
def test_cached_ticket_pickles_in_the_earlier_form_and_round_trips(monotonic: float | None) -> None:
    """A pickled entry keeps ticket, fingerprint and local age, in the state form earlier versions wrote and read."""
    entry = CachedTicket(_validated(), token_fingerprint="fp", obtained_monotonic=monotonic)
    state = entry.__getstate__()[1]
    assert set(state) == {"_local", "obtained_ts", "ticket", "token_fingerprint"}
    copy = pickle.loads(pickle.dumps(entry))
    assert copy.ticket == entry.ticket and copy.token_fingerprint == "fp" and copy.obtained_ts == entry.obtained_ts
    assert copy.local_age(20.0) == (None if monotonic is None else 7.5)
