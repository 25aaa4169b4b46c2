"""What only AsyncSystemUserClient has to show, on a real event loop (pytest-asyncio): single flight across
tasks, cancellation, a loop that is never blocked, stores off the loop; and its transport seam:
ThreadedAsyncTransport and acall_transport. The behaviour both clients share is in test_both_clients."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from support import FakeResponse

from sut_soap import (
    AsyncSystemUserClient,
    AsyncTransport,
    AuthenticationRejectedError,
    CachedTicket,
    ConfigurationError,
    HttpTransport,
    SutSoapError,
    SystemUserTicket,
    ThreadedAsyncTransport,
    Transport,
    TransportError,
    _deadline,
)
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.transport import acall_transport

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "async-canary-secret-93ad"
CTX, TOKEN = "Cust12345", "Async Sync-canary1a"
TENANTS = {f"Cust{n:05d}": f"Async Sync-{n:05d}" for n in range(8)}
URL = "http://127.0.0.1:9/x"  # never contacted


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module: CTX and eight more tenants."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN)
        for context, token in TENANTS.items():
            emu.add_tenant(context, system_user_token=token)
        yield emu


def new_client(emu: Emulator, **options: Any) -> AsyncSystemUserClient:
    """An async client of the emulator with this module's secret and key."""
    return AsyncSystemUserClient(
        **{"client_secret": CLIENT_SECRET, "private_key": PARTNER_KEY, "endpoint": emu.endpoint, **options}
    )


class Store:
    """A store that does I/O, as far as the client knows: records the thread of each call."""

    def __init__(self) -> None:
        self.data: dict[str, CachedTicket] = {}
        self.threads: set[int] = set()

    def get(self, key: str) -> CachedTicket | None:
        self.threads.add(threading.get_ident())
        return self.data.get(key)

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        self.threads.add(threading.get_ident())
        self.data[key] = entry

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class Recorded:
    """A sync transport that answers ``FakeResponse(b"ok")`` and records the thread of each request."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.deadlines: list[float | None] = []
        self.prepared: list[tuple[object, bool]] = []
        self.pools: list[int] = []
        self.closed = 0

    def request(self, method: str, url: str, *, deadline: float | None = None, **kwargs: Any) -> Any:
        self.threads.append(threading.get_ident())
        self.deadlines.append(deadline)
        return FakeResponse(b"ok")

    def prepare(self, urls: object, *, allow_insecure_tls: bool = False) -> None:
        self.prepared.append((list(urls), allow_insecure_tls))  # type: ignore[call-overload]

    def ensure_pool(self, size: int) -> None:
        self.pools.append(size)

    def close(self) -> None:
        self.closed += 1


class Scripted:
    """An async transport whose request runs ``answer`` (a coroutine function); records aclose."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.closed = False

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return await self.answer()

    async def aclose(self) -> None:
        self.closed = True


# --- single flight and cancellation ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_thousand_tasks_on_one_cold_tenant_cause_one_exchange(emu: Emulator) -> None:
    """1,000 tasks asking for one cold tenant at once share one exchange and its ticket."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.2, times=1)
    async with new_client(emu) as client:
        before = emu.exchange_count
        got = await asyncio.gather(
            *(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) for _ in range(1000))
        )
    assert emu.exchange_count == before + 1
    assert len({id(ticket) for ticket in got}) == 1


@pytest.mark.asyncio
async def test_cancelling_the_leader_does_not_cancel_the_exchange_for_the_others(emu: Emulator) -> None:
    """The task that started the exchange is cancelled: the waiting tasks still get its ticket; one exchange."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.3, times=1)
    async with new_client(emu) as client:
        before = emu.exchange_count
        leader = asyncio.create_task(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
        await asyncio.sleep(0.05)
        followers = [
            asyncio.create_task(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)) for _ in range(10)
        ]
        await asyncio.sleep(0.05)
        leader.cancel()
        got = await asyncio.gather(*followers)
        with pytest.raises(asyncio.CancelledError):
            await leader
        again = await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert {id(ticket) for ticket in got} == {id(again)}
    assert emu.exchange_count == before + 1


@pytest.mark.asyncio
async def test_a_cancelled_lone_leader_still_lands_its_flight(emu: Emulator) -> None:
    """Cancelled with no one waiting, the exchange still ends and is cached: the tenant is not wedged."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.2, times=1)
    async with new_client(emu) as client:
        before = emu.exchange_count
        leader = asyncio.create_task(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
        await asyncio.sleep(0.05)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        ticket = await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)  # waits for the same flight
        assert isinstance(ticket, SystemUserTicket)
        assert len(client._flights) == 0
    assert emu.exchange_count == before + 1


@pytest.mark.asyncio
async def test_the_next_call_after_a_failure_tries_again(emu: Emulator) -> None:
    """Tasks sharing a failed exchange all get its error; the next call exchanges again and succeeds."""
    emu.inject(Fault.DISCONNECT, tenant=CTX, times=1)
    async with new_client(emu, retry=None) as client:
        before = emu.exchange_count
        outcomes = await asyncio.gather(
            *(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, TransportError) for outcome in outcomes)
        assert emu.exchange_count == before + 1
        assert isinstance(await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN), SystemUserTicket)


@pytest.mark.asyncio
async def test_a_waiting_task_is_bounded_by_its_deadline(emu: Emulator) -> None:
    """With an exchange that outlives the deadline, the leader and the tasks waiting on it all end at the deadline."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=3, times=1)
    async with new_client(emu, deadline=1.0) as client:
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) for _ in range(5)),
            return_exceptions=True,
        )
        seconds = time.monotonic() - started
    assert all(isinstance(outcome, TransportError) and outcome.retryable for outcome in outcomes)
    assert seconds < 1.5


@pytest.mark.asyncio
async def test_a_call_that_outlives_its_deadline_is_cut(emu: Emulator) -> None:
    """A transport that never answers cannot hold the call: it ends shortly after the deadline, retryable."""
    async def never() -> Any:
        await asyncio.sleep(60)

    async with new_client(emu, transport=Scripted(never), deadline=0.3, public_key=PARTNER_KEY.public_key()) as client:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert time.monotonic() - started < 0.8
    assert info.value.retryable


@pytest.mark.asyncio
async def test_a_store_that_hangs_cannot_hold_the_call_past_its_deadline(emu: Emulator) -> None:
    """Every await of a call is bounded: a store call stuck in its thread is cut shortly after the deadline."""
    class Hanging(Store):
        def get(self, key: str) -> CachedTicket | None:
            time.sleep(1.0)
            return None

    async with new_client(emu, cache=Hanging(), deadline=0.3) as client:
        started = time.monotonic()
        with pytest.raises(TransportError, match="did not finish within its deadline") as info:
            await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert time.monotonic() - started < 0.8
    assert info.value.retryable


@pytest.mark.asyncio
async def test_followers_of_a_leader_task_cancelled_outright_try_again(emu: Emulator) -> None:
    """A leader task cancelled itself (a loop shutting down) lands its flight without an outcome: the waiting tasks exchange again."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.3, times=1)
    async with new_client(emu) as client:
        before = emu.exchange_count
        first = asyncio.create_task(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
        await asyncio.sleep(0.05)
        follower = asyncio.create_task(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
        await asyncio.sleep(0.05)
        [leader] = client._leaders.values()
        leader.cancel()
        ticket = await follower
        with pytest.raises(asyncio.CancelledError):
            await first
    assert isinstance(ticket, SystemUserTicket)
    assert emu.exchange_count == before + 2


@pytest.mark.asyncio
async def test_an_entry_another_process_wrote_ages_on_the_wall_clock(emu: Emulator) -> None:
    """A fresh entry from elsewhere (no monotonic mark of this process) in the in-memory store is served as it is."""
    async with new_client(emu) as client:
        ticket = await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        key = client._key_prefix + CTX
        entry = client.cache.get(key)
        assert entry is not None
        client.cache.set(key, CachedTicket.from_json(entry.to_json()), 600)
        before = emu.exchange_count
        served = await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert served.ticket == ticket.ticket and served.token == ""
    assert emu.exchange_count == before


@pytest.mark.asyncio
async def test_authenticate_is_cancelled_with_its_caller(emu: Emulator) -> None:
    """authenticate is not shielded: cancelling the caller ends the call at once."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=1, times=1)
    async with new_client(emu) as client:
        call = asyncio.create_task(client.authenticate(context_identifier=CTX, system_user_token=TOKEN))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert time.monotonic() - started < 0.5


# --- the loop is never blocked --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_loop_is_not_blocked_during_a_warm_up(emu: Emulator) -> None:
    """While 8 tenants are exchanged at 300 ms each, a probe task on the loop never waits anywhere near that long."""
    for context in TENANTS:
        emu.inject(Fault.LATENCY, tenant=context, seconds=0.3, times=1)
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - started - 0.005)

    async with new_client(emu) as client:
        await client.authenticate(context_identifier=CTX, system_user_token=TOKEN)  # the JWKS is cached
        watching = asyncio.create_task(probe())
        result = await client.get_tickets(TENANTS, concurrency=8)
        done.set()
        await watching
    assert all(isinstance(ticket, SystemUserTicket) for ticket in result.values())
    assert len(lags) > 10 and max(lags) < 0.15


@pytest.mark.asyncio
async def test_a_store_that_does_io_is_called_off_the_loop(emu: Emulator) -> None:
    """A store other than the in-memory one is called in worker threads, never on the loop's thread."""
    store = Store()
    async with new_client(emu, cache=store) as client:
        first = await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        assert await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    assert store.threads and threading.get_ident() not in store.threads


@pytest.mark.asyncio
async def test_signing_in_a_thread_gives_the_same_ticket(emu: Emulator) -> None:
    """The signing the bench compares with signing on the loop (in a worker thread) exchanges alike."""
    async with new_client(emu) as client:
        client._sign_in_thread = True
        ticket = await client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert ticket.context_identifier == CTX


def test_a_redis_store_serves_two_async_clients(emu: Emulator, redis_url: str) -> None:
    """Two async clients on one real redis-server exchange once; the store is used from worker threads."""
    from sut_soap import RedisTicketCache

    async def run() -> tuple[str, str]:
        stores = [RedisTicketCache.from_url(redis_url, invalidations=False) for _ in range(2)]
        async with new_client(emu, cache=stores[0]) as one, new_client(emu, cache=stores[1]) as two:
            a = await one.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
            b = await two.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        for store in stores:
            store.close()
        return a.ticket, b.ticket

    before = emu.exchange_count
    first, second = asyncio.run(run())
    assert first == second
    assert emu.exchange_count == before + 1


@pytest.mark.asyncio
async def test_an_unexpected_exception_for_one_tenant_keeps_the_batch_going(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_tickets turns a non-sut-soap exception for one tenant into a SutSoapError naming only its type."""
    async with new_client(emu, transport=ThreadedAsyncTransport(HttpTransport())) as client:
        real = client.get_ticket

        async def flaky(*, context_identifier: str, system_user_token: str) -> SystemUserTicket:
            if context_identifier == "Cust00001":
                raise RuntimeError("a bug")
            return await real(context_identifier=context_identifier, system_user_token=system_user_token)

        monkeypatch.setattr(client, "get_ticket", flaky)
        monkeypatch.delattr(ThreadedAsyncTransport, "ensure_pool")  # a transport without it is not asked
        result = await client.get_tickets(TENANTS, concurrency=3)
    assert type(result["Cust00001"]) is SutSoapError and "RuntimeError" in str(result["Cust00001"])
    assert not result["Cust00001"].retryable
    assert sum(isinstance(ticket, SystemUserTicket) for ticket in result.values()) == len(TENANTS) - 1


@pytest.mark.asyncio
async def test_rejections_are_shared_by_the_waiting_tasks(emu: Emulator) -> None:
    """Tasks waiting on a rejected exchange all get the rejection, from one exchange."""
    emu.inject(Fault.REJECT, tenant=CTX, message="Revoked", times=1)
    async with new_client(emu) as client:
        before = emu.exchange_count
        outcomes = await asyncio.gather(
            *(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) for _ in range(5)),
            return_exceptions=True,
        )
    assert all(isinstance(outcome, AuthenticationRejectedError) for outcome in outcomes)
    assert emu.exchange_count == before + 1


# --- construction and closing ---------------------------------------------------------------------


def test_a_sync_transport_is_refused_with_a_hint(emu: Emulator) -> None:
    """transport= must be an AsyncTransport; a sync one is refused, naming ThreadedAsyncTransport."""
    with pytest.raises(ConfigurationError, match="AsyncTransport") as info:
        new_client(emu, transport=HttpTransport())  # type: ignore[arg-type]
    assert "ThreadedAsyncTransport" in (info.value.hint or "")


def test_the_default_transport_is_aiohttp(emu: Emulator) -> None:
    """Without transport=, requests go through an AiohttpTransport, an AsyncTransport; retrying stays on."""
    from sut_soap.transport import AiohttpTransport

    client = new_client(emu)
    assert isinstance(client.transport, AiohttpTransport) and isinstance(client.transport, AsyncTransport)
    assert client.retry is not None


def test_without_aiohttp_the_default_transport_is_refused_with_a_hint(emu: Emulator,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aiohttp and without transport=, the client refuses to start, naming the extra and ThreadedAsyncTransport."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    monkeypatch.delitem(sys.modules, "sut_soap.transport._aio", raising=False)
    with pytest.raises(ConfigurationError, match="aiohttp") as info:
        new_client(emu)
    assert "sut-soap[async]" in (info.value.hint or "") and "ThreadedAsyncTransport" in (info.value.hint or "")


def test_a_sync_transport_runs_in_threads_through_the_adapter(emu: Emulator) -> None:
    """transport=ThreadedAsyncTransport(HttpTransport()) is an AsyncTransport over a sync Transport; both are seams."""
    client = new_client(emu, transport=ThreadedAsyncTransport(HttpTransport()))
    assert isinstance(client.transport, ThreadedAsyncTransport) and isinstance(client.transport, AsyncTransport)
    assert isinstance(client.transport.transport, HttpTransport) and isinstance(client.transport.transport, Transport)


@pytest.mark.asyncio
async def test_async_with_closes_the_transport(emu: Emulator) -> None:
    """Leaving ``async with`` closes the client's transport, a transport= given included; retrying is then off."""
    async def unused() -> Any:
        raise AssertionError

    transport = Scripted(unused)
    async with new_client(emu, transport=transport) as client:
        assert client.transport is transport and client.retry is None
    assert transport.closed


# --- ThreadedAsyncTransport -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_threaded_transport_runs_each_request_in_a_worker_thread() -> None:
    """A request runs the sync transport in a worker thread with the caller's deadline, and returns its answer."""
    inner = Recorded()
    transport = ThreadedAsyncTransport(inner, max_workers=2)
    response = await transport.request("GET", URL, deadline=3.0)
    assert response.content == b"ok"
    assert inner.threads and threading.get_ident() not in inner.threads
    assert inner.deadlines == [3.0]
    await transport.aclose()
    assert inner.closed == 1


@pytest.mark.asyncio
async def test_threaded_transport_grows_and_passes_on_prepare_and_pools() -> None:
    """ensure_pool raises the thread count (at most 256) and asks the sync transport; prepare is passed on."""
    inner = Recorded()
    transport = ThreadedAsyncTransport(inner)
    assert transport.max_workers == 16
    transport.ensure_pool(8)
    assert transport.max_workers == 16
    transport.ensure_pool(64)
    transport.ensure_pool(1000)
    assert transport.max_workers == 256
    assert inner.pools == [8, 64, 1000]
    transport.prepare(["https://a.invalid/"], allow_insecure_tls=True)
    assert inner.prepared == [(["https://a.invalid/"], True)]
    assert (await transport.request("POST", URL, body=b"x")).status_code == 200
    await transport.aclose()
    assert "max_workers=256" in repr(transport) and "Recorded" in repr(transport)


@pytest.mark.asyncio
async def test_threaded_transport_needs_nothing_optional() -> None:
    """A sync transport with only request and close works: prepare and ensure_pool are skipped."""

    class Bare:
        def request(self, method: str, url: str, **kwargs: Any) -> Any:
            return FakeResponse(b"bare")

        def close(self) -> None:
            pass

    transport = ThreadedAsyncTransport(Bare())  # type: ignore[arg-type]
    transport.prepare([URL])
    transport.ensure_pool(32)
    assert (await transport.request("GET", URL)).content == b"bare"
    transport._reset_after_fork()  # a forked child gets worker threads of its own
    assert (await transport.request("GET", URL)).content == b"bare"
    await transport.aclose()


@pytest.mark.parametrize(
    ("transport", "options"),
    [(object(), {}), (Recorded(), {"max_workers": 0}), (Recorded(), {"max_workers": 257}),
     (Recorded(), {"max_workers": True})],
    ids=["no-request", "zero", "too-many", "bool"],
)
def test_threaded_transport_checks_its_arguments(transport: object, options: dict[str, Any]) -> None:
    """A transport without request, or max_workers outside 1 to 256, is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        ThreadedAsyncTransport(transport, **options)  # type: ignore[arg-type]


# --- acall_transport --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_acall_transport_sends_nothing_once_the_budget_is_spent() -> None:
    """Inside a spent budget nothing is sent and the error is retryable; a live budget cuts the request's deadline."""
    inner = Recorded()
    transport = ThreadedAsyncTransport(inner)
    spent = _deadline.open_budget(0.0, time.monotonic)
    try:
        with pytest.raises(TransportError, match="deadline passed before") as info:
            await acall_transport(transport, "GET", URL, deadline=5.0)
    finally:
        _deadline.leave(spent)
    assert info.value.retryable and inner.threads == []
    live = _deadline.open_budget(2.0, time.monotonic)
    try:
        await acall_transport(transport, "GET", URL)
        await acall_transport(transport, "GET", URL, deadline=9.0)
    finally:
        _deadline.leave(live)
    assert all(deadline is not None and 1.0 < deadline <= 2.0 for deadline in inner.deadlines)
    assert (await acall_transport(transport, "GET", URL)).content == b"ok"  # outside any budget: no deadline
    assert inner.deadlines[-1] is None
    await transport.aclose()


@pytest.mark.asyncio
async def test_acall_transport_cuts_an_await_that_outlives_the_deadline() -> None:
    """A transport that does not end its request at the deadline is cut shortly after it, with a retryable error."""
    async def never() -> Any:
        await asyncio.sleep(60)

    started = time.monotonic()
    with pytest.raises(TransportError, match="within the deadline") as info:
        await acall_transport(Scripted(never), "GET", URL, deadline=0.2)
    assert time.monotonic() - started < 0.6
    assert info.value.retryable and info.value.host == "127.0.0.1"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raised", "expected"),
    [(TransportError("down", retryable=True), TransportError), (KeyError(CLIENT_SECRET), TransportError)],
    ids=["sut-soap-error", "foreign"],
)
async def test_acall_transport_maps_foreign_exceptions_only(raised: Exception, expected: type[Exception]) -> None:
    """sut-soap's own errors pass unchanged; any other exception becomes a non-retryable error naming only its type."""
    async def fail() -> Any:
        raise raised

    with pytest.raises(expected) as info:
        await acall_transport(Scripted(fail), "GET", URL, deadline=5.0)
    if isinstance(raised, SutSoapError):
        assert info.value is raised
    else:
        assert "KeyError" in str(info.value) and CLIENT_SECRET not in str(info.value)
        assert not getattr(info.value, "retryable", True)


def test_the_jwks_bridge_refuses_the_loop_thread(emu: Emulator) -> None:
    """The JWKS source's sync view of the async transport works from worker threads of a running loop only."""
    client = new_client(emu)
    with pytest.raises(RuntimeError, match="worker thread"):
        client._bridge.request("GET", emu.jwks_url)

    async def from_the_loop() -> None:
        client._bridge.loop = asyncio.get_running_loop()
        client._bridge.request("GET", emu.jwks_url)

    with pytest.raises(RuntimeError, match="worker thread"):
        asyncio.run(from_the_loop())
    client._bridge.close()


def test_get_tickets_names_concurrency_when_out_of_range() -> None:
    """get_tickets names concurrency=, not max_workers=, when it is out of range."""
    async def run() -> None:
        client = AsyncSystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=URL)
        with pytest.raises(ConfigurationError, match="concurrency must be"):
            await client.get_tickets({CTX: TOKEN}, concurrency=300)
        tenants: Mapping[str, str] = {}
        assert await client.get_tickets(tenants) == {}
        await client.aclose()

    asyncio.run(run())


@pytest.mark.asyncio
async def test_an_awaited_invalidate_makes_the_next_call_exchange(emu: Emulator) -> None:
    """await client.invalidate(ctx, ticket=T) has forgotten T when it returns: the next get_ticket exchanges."""
    before = emu.exchange_count
    async with new_client(emu) as client:
        first = await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        await client.invalidate(CTX, ticket=first)
        second = await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        client.invalidate(CTX, ticket=first)  # not the cached one any more: left alone, nothing to await
        assert await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is second
    assert second.ticket != first.ticket
    assert emu.exchange_count == before + 2


# --- the client's share of each loop iteration --------------------------------------------------


class _HeldAnswers:
    """An AsyncTransport that sends each request through ``inner`` and holds every answer until ``release``."""

    def __init__(self, inner: Transport, expected: int) -> None:
        self.inner, self.expected = inner, expected
        self.release = asyncio.Event()
        self.waiting = 0
        self.holding = False

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await asyncio.to_thread(self.inner.request, method, url, **kwargs)
        if self.holding and kwargs.get("body"):
            self.waiting += 1
            if self.waiting == self.expected:
                self.release.set()
            await self.release.wait()
        return response

    async def aclose(self) -> None:
        self.inner.close()


@pytest.mark.asyncio
async def test_answers_arriving_together_are_read_a_few_per_loop_iteration(emu: Emulator) -> None:
    """Eight answers released at once are read and validated in slices: other tasks get the loop in between."""
    from sut_soap.async_client import _Turns

    transport = _HeldAnswers(HttpTransport(), expected=len(TENANTS))
    iterations = 0
    done = asyncio.Event()

    async def probe() -> None:
        nonlocal iterations
        await transport.release.wait()
        while not done.is_set():
            await asyncio.sleep(0)
            iterations += 1

    async with new_client(emu, transport=transport) as client:
        await client.authenticate(context_identifier=CTX, system_user_token=TOKEN)  # the JWKS is cached
        client._turns = _Turns(0.0)  # no share at all: one piece of work per iteration
        transport.holding = True
        watching = asyncio.create_task(probe())
        result = await client.get_tickets(TENANTS, concurrency=len(TENANTS))
        done.set()
        await watching
    assert all(isinstance(ticket, SystemUserTicket) for ticket in result.values())
    # Each tenant's answer is read in one iteration and its JWT validated in another.
    assert iterations >= 2 * len(TENANTS) - 2


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _run_pieces(turns: Any, count: int, seconds: float) -> list[int]:
    """Run ``count`` pieces of ``seconds`` of work through ``turns``; return the loop iteration each ran in."""
    iteration = 0
    ran: list[int] = []
    finished = asyncio.Event()

    async def count_iterations() -> None:
        nonlocal iteration
        while not finished.is_set():
            await asyncio.sleep(0)
            iteration += 1

    async def piece() -> None:
        await turns.take()
        ran.append(iteration)
        _busy(seconds)

    counter = asyncio.create_task(count_iterations())
    await asyncio.gather(*(piece() for _ in range(count)))
    finished.set()
    await counter
    return ran


@pytest.mark.asyncio
async def test_pieces_of_work_beyond_the_share_wait_for_later_iterations() -> None:
    """With a 2 ms share, 1 ms pieces go at most three to an iteration, in the order they asked."""
    from sut_soap.async_client import _Turns

    ran = await _run_pieces(_Turns(0.002), 12, 0.001)
    assert ran == sorted(ran)
    assert max(ran.count(n) for n in set(ran)) <= 3
    assert len(set(ran)) >= 4


@pytest.mark.asyncio
async def test_cheap_pieces_all_go_in_one_iteration() -> None:
    """Pieces that together stay within the share run at once, in the iteration they asked in."""
    from sut_soap.async_client import _Turns

    ran = await _run_pieces(_Turns(1.0), 20, 0.0)
    assert set(ran) == {0}


@pytest.mark.asyncio
async def test_a_cancelled_waiter_gives_its_turn_up() -> None:
    """A piece cancelled while it waits for a turn is skipped; the ones behind it still get theirs."""
    from sut_soap.async_client import _Turns

    turns = _Turns(0.0)
    first, *waiting = [asyncio.ensure_future(turns.take()) for _ in range(4)]
    await asyncio.sleep(0)  # the first opened the iteration's share, which is spent at once: three queued
    assert first.done() and not any(task.done() for task in waiting)
    waiting[0].cancel()
    await asyncio.gather(*waiting[1:])
    assert waiting[0].cancelled()


@pytest.mark.asyncio
async def test_woken_pieces_still_keep_to_the_share() -> None:
    """After a window of cheap pieces, the costly ones woken in its place still go at most three to an iteration."""
    from sut_soap.async_client import _Turns

    turns = _Turns(0.002)
    iteration = 0
    ran: list[int] = []
    finished = asyncio.Event()

    async def count_iterations() -> None:
        nonlocal iteration
        while not finished.is_set():
            await asyncio.sleep(0)
            iteration += 1

    async def piece(seconds: float, costly: bool) -> None:
        await turns.take()
        if costly:
            ran.append(iteration)
        _busy(seconds)

    counter = asyncio.create_task(count_iterations())
    await asyncio.gather(*(piece(0.0001, False) for _ in range(15)), *(piece(0.001, True) for _ in range(12)))
    finished.set()
    await counter
    assert max(ran.count(n) for n in set(ran)) <= 3
