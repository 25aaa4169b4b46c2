"""A client built in a parent and used after os.fork(): real children, concurrent with the parent's
exchanges against the emulator; fresh pools and locks in the child, inherited tickets kept; pickling."""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
from support import collect, fork_child

from sut_soap import ConfigurationError, SutSoapError, SystemUserClient, SystemUserTicket
from sut_soap import _fork as fork_module
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.transport import HttpTransport

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "fork-client-secret-81c2"
TENANTS = {f"Cust{40000 + n}": f"Fork Sync-token{n}" for n in range(6)}
CTX, TOKEN = next(iter(TENANTS.items()))
OTHER_CTX, OTHER_TOKEN = list(TENANTS.items())[1]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with six tenants."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        for context, token in TENANTS.items():
            emu.add_tenant(context, system_user_token=token)
        yield emu


def make_client(emu: Emulator, **options: Any) -> SystemUserClient:
    """A client of the emulator with short timeouts, so that a stall shows within a child's timeout."""
    return SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, timeout=(2, 2), **options
    )


@pytest.fixture
def client(emu: Emulator) -> Iterator[SystemUserClient]:
    """A client of the emulator, closed at teardown."""
    with make_client(emu) as c:
        yield c




@contextmanager
def held_by_another_thread(*locks: Any) -> Iterator[None]:
    """Another thread holds ``locks`` for the duration of the block (a fork inside it copies them held)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        taken.set()
        release.wait()
        for lock in locks:
            lock.release()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(5)
    try:
        yield
    finally:
        release.set()
        thread.join(5)


def exchange_round(client: SystemUserClient, calls: int, offset: int) -> list[str]:
    """``calls`` exchanges over the tenants; what went wrong (a crossed answer, an error), per call."""
    names = list(TENANTS)
    problems = []
    for n in range(calls):
        context = names[(n + offset) % len(names)]
        try:
            ticket = client.authenticate(context_identifier=context, system_user_token=TENANTS[context])
        except SutSoapError as error:
            problems.append(f"{type(error).__name__}: {error.message}")
        else:
            if ticket.context_identifier != context:
                problems.append(f"asked {context}, got {ticket.context_identifier}")
    return problems


def in_threads(work: Callable[[int], list[str]], threads: int) -> list[str]:
    """Run ``work(index)`` on ``threads`` threads; every problem they report."""
    results: list[list[str]] = [[] for _ in range(threads)]

    def run(index: int) -> None:
        results[index] = work(index)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [problem for result in results for problem in result]


def test_children_forked_during_traffic_get_only_their_own_answers(emu: Emulator, client: SystemUserClient) -> None:
    """Children forked while the parent exchanges on two threads: hundreds of calls, no crossed answer, no error."""
    client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    stop = threading.Event()
    parent_problems: list[str] = []
    parent_calls = [0]

    def traffic(offset: int) -> None:
        while not stop.is_set():
            parent_problems.extend(exchange_round(client, 1, offset + parent_calls[0]))
            parent_calls[0] += 1

    threads = [threading.Thread(target=traffic, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        children = []
        for n in range(3):
            while parent_calls[0] < 10 * (n + 1):
                time.sleep(0.005)
            children.append(fork_child(lambda n=n: in_threads(lambda i: exchange_round(client, 30, n + i), 2)))
        child_problems = collect(*children, timeout=15)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert parent_calls[0] >= 30
    assert parent_problems == []
    assert child_problems == [[], [], []]


def test_child_opens_its_own_connection(emu: Emulator, client: SystemUserClient) -> None:
    """The child never writes on the parent's pooled socket; the parent's connection still works afterwards."""
    client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    before = emu.connection_count
    child = fork_child(lambda: client.authenticate(context_identifier=CTX, system_user_token=TOKEN).context_identifier)
    assert collect(child) == [CTX]
    assert emu.connection_count == before + 1
    client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.connection_count == before + 1


def test_caller_session_gets_fresh_pools_in_child_and_stays_open(emu: Emulator) -> None:
    """A caller's session is kept (same object and adapters, not closed) but the child connects anew."""
    session = requests.Session()
    adapter = session.get_adapter("http://")
    with make_client(emu, session=session) as client:
        client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
        before = emu.connection_count

        def child() -> list[bool]:
            client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
            transport = client.transport
            assert isinstance(transport, HttpTransport)
            return [transport.session is session, session.get_adapter("http://") is adapter]

        assert collect(fork_child(child)) == [[True, True]]
        assert emu.connection_count == before + 1
        client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
        assert emu.connection_count == before + 1
    session.close()


def test_child_keeps_cached_tickets_and_stores_new_ones(emu: Emulator, client: SystemUserClient) -> None:
    """Forked while another thread held the cache lock: the warm tenant costs no exchange, a cold one is stored."""
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    before = emu.exchange_count

    def child() -> list[Any]:
        warm = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        cold = client.get_ticket(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN)
        again = client.get_ticket(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN)
        return [warm.ticket == first.ticket, cold.context_identifier, again.ticket == cold.ticket]

    with held_by_another_thread(client.cache._lock):  # type: ignore[attr-defined]
        forked = fork_child(child)
    assert collect(forked) == [[True, OTHER_CTX, True]]
    assert emu.exchange_count == before + 1


def test_fork_while_jwks_lock_held_does_not_hang_child(emu: Emulator, client: SystemUserClient) -> None:
    """Forked while another thread held the JWKS lock: the child fetches the JWKS and gets its ticket."""
    with held_by_another_thread(client._key_source._lock):  # type: ignore[attr-defined]
        forked = fork_child(lambda: client.authenticate(context_identifier=CTX, system_user_token=TOKEN).serial)
    assert collect(forked) == [emu.tenants[CTX].serial]


def test_fork_mid_exchange_does_not_wedge_tenant_in_child(emu: Emulator, client: SystemUserClient) -> None:
    """Forked while a leader's exchange is in flight: the child's get_ticket for that tenant returns promptly."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=1.0, times=1)
    leader = threading.Thread(target=client.get_ticket, kwargs={"context_identifier": CTX, "system_user_token": TOKEN})
    leader.start()
    deadline = time.monotonic() + 5
    while len(client._flights) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(client._flights) == 1

    def child() -> list[Any]:
        started = time.monotonic()
        ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        return [ticket.context_identifier, time.monotonic() - started]

    forked = fork_child(child)
    leader.join(10)
    [(context, seconds)] = collect(forked, timeout=6)
    assert context == CTX
    assert seconds < 3


def test_child_gets_fresh_locks(emu: Emulator, client: SystemUserClient) -> None:
    """Every lock another thread held at the fork is free in the child."""
    transport = client.transport
    locks = [
        transport._pool_lock,  # type: ignore[attr-defined]
        client._key_source._lock,  # type: ignore[attr-defined]
        client._flights._lock,
        client._rejections._lock,
        client.cache._lock,  # type: ignore[attr-defined]
    ]

    def child() -> list[bool]:
        return [
            lock.locked()
            for lock in (
                transport._pool_lock,  # type: ignore[attr-defined]
                client._key_source._lock,  # type: ignore[attr-defined]
                client._flights._lock,
                client._rejections._lock,
                client.cache._lock,  # type: ignore[attr-defined]
            )
        ]

    with held_by_another_thread(*locks):
        forked = fork_child(child)
    assert collect(forked) == [[False] * 5]


class ForeignAdapter(requests.adapters.BaseAdapter):
    """A caller's adapter that is not requests' HTTPAdapter: the reset leaves it alone."""

    def close(self) -> None:
        """Nothing to release."""


def test_reset_hook_keeps_state_and_renews_locks_and_pools(emu: Emulator) -> None:
    """The at-fork hook, run here directly: new locks and pools, tickets and rejections kept, flights dropped."""
    session = requests.Session()
    foreign = ForeignAdapter()
    session.mount("custom://", foreign)
    mounted = session.get_adapter("http://")
    pool_manager = mounted.poolmanager  # type: ignore[attr-defined]
    with make_client(emu) as own, make_client(emu, session=session) as theirs:
        ticket = own.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        theirs.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        own._flights.join("stuck")
        own_transport = own.transport
        assert isinstance(own_transport, HttpTransport)
        own_transport.ensure_pool(32)
        own_pools = own_transport._pools
        locks = [own.cache._lock, own._flights._lock, own._rejections._lock, own._key_source._lock]  # type: ignore[attr-defined]
        fork_module.reset_after_fork()
        assert own.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is ticket
        assert len(own._flights) == 0
        assert own_transport._pools is not own_pools
        assert own_transport._retired == []
        assert own_transport._pools.size == 32
        assert own.authenticate(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX
        renewed = [own.cache._lock, own._flights._lock, own._rejections._lock, own._key_source._lock]  # type: ignore[attr-defined]
        assert all(new is not old for new, old in zip(renewed, locks, strict=True))
        assert session.get_adapter("http://") is mounted
        assert mounted.poolmanager is not pool_manager  # type: ignore[attr-defined]
        assert session.get_adapter("custom://") is foreign
        theirs.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    session.close()


def test_pickling_a_client_says_one_client_per_process(client: SystemUserClient) -> None:
    """pickle.dumps(client) raises a ConfigurationError naming one client per process, not a TypeError."""
    with pytest.raises(ConfigurationError, match="one client per process") as raised:
        pickle.dumps(client)
    assert "spawn" in str(raised.value)
    assert CLIENT_SECRET not in str(raised.value)


def test_ticket_pickles_and_round_trips(client: SystemUserClient) -> None:
    """A SystemUserTicket survives pickle with equal fields, claims and JWT; its repr still hides the ticket."""
    ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    copy = pickle.loads(pickle.dumps(ticket))
    assert isinstance(copy, SystemUserTicket)
    assert copy == ticket
    assert copy.token == ticket.token
    assert dict(copy.claims) == dict(ticket.claims)
    with pytest.raises(TypeError):
        copy.claims["ctx"] = "Cust1"  # type: ignore[index]
    assert ticket.ticket not in repr(copy)


def test_fork_while_another_thread_parses_the_wsdl_does_not_hang_a_new_client(emu: Emulator) -> None:
    """Forked while another thread held the WSDL cache's lock: building a client in the child does not hang."""
    from sut_soap import soap

    with held_by_another_thread(soap._documents_lock):
        forked = fork_child(
            lambda: SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint).endpoint
        )
    assert collect(forked) == [emu.endpoint]


def test_wsdl_cache_lock_is_renewed_by_the_at_fork_hook() -> None:
    """The hook the child runs replaces the WSDL cache's lock with a free one."""
    from sut_soap import soap

    before = soap._documents_lock
    with before:
        soap._renew_documents_lock()
        assert soap._documents_lock is not before
        assert not soap._documents_lock.locked()
