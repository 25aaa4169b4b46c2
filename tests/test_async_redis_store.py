"""AsyncRedisTicketCache against real redis-server processes: what both Redis stores do alike (each test runs over
both), sync and async stores sharing one fleet, the async client on it, and fleets of real async processes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import inspect
import json
import logging
import os
import pickle
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
from redis_support import RedisServer, Worker

from sut_soap import (
    AsyncRedisTicketCache,
    AsyncSystemUserClient,
    ConfigurationError,
    RedisTicketCache,
    SystemUserClient,
    TransportError,
)
from sut_soap import async_redis_store as async_module
from sut_soap.cache import CachedTicket, LockWaitTimeout
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.testing.minting import superoffice_claims
from sut_soap.ticket import SystemUserTicket
from sut_soap.tokens import CLAIM_PREFIX

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[1]
PARTNER_KEY = load_private_key((ROOT / "fixtures" / "keys" / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-4sync"
CTX, TOKEN = "Cust12345", "Acme Sync-canaryAsync1"
FLEET = {f"Fleet{i:03d}": f"Fleet Sync-{i:03d}" for i in range(20)}
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module: CTX and the 20 fleet tenants."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN)
        for ctx, token in FLEET.items():
            emu.add_tenant(ctx, system_user_token=token)
        yield emu


def entry_for(ticket: str = "7T:abc", ctx: str = CTX) -> CachedTicket:
    """A cache entry for ``ctx`` holding ``ticket``, obtained now."""
    claims = superoffice_claims(context_identifier=ctx)
    claims[CLAIM_PREFIX + "ticket"] = ticket
    value = SystemUserTicket.from_claims("", claims, obtained_at=datetime.now(timezone.utc))
    return CachedTicket(value, token_fingerprint="f" * 32)


async def settle(value: Any) -> Any:
    """``value``, awaited if the store's method returned an awaitable (the async store's do)."""
    return await value if inspect.isawaitable(value) else value


class Either:
    """One kind of Redis store behind one awaitable interface: ``await s.get(k)`` works for both kinds."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.made: list[Any] = []

    def __call__(self, url: str, kind: str | None = None, **options: Any) -> Any:
        """A store of this kind (or ``kind``) on ``url``, closed at teardown."""
        cls = AsyncRedisTicketCache if (kind or self.kind) == "async" else RedisTicketCache
        store = cls.from_url(url, **options)
        self.made.append(store)
        return store

    @staticmethod
    @contextlib.asynccontextmanager
    async def lease(store: Any, key: str, **options: float) -> AsyncIterator[Any]:
        """Enter ``store``'s lease, async or sync."""
        lease = store.lease(key, **options)
        if hasattr(lease, "__aenter__"):
            async with lease as held:
                yield held
        else:
            with lease as held:
                yield held

    async def close(self) -> None:
        for store in self.made:
            await settle(store.aclose() if hasattr(store, "aclose") else store.close())


@pytest_asyncio.fixture(params=["sync", "async"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Either]:
    """Builds Redis stores of one kind per run of the test, RedisTicketCache then AsyncRedisTicketCache."""
    either = Either(request.param)
    yield either
    await either.close()


@pytest_asyncio.fixture
async def async_stores() -> AsyncIterator[Either]:
    """Builds AsyncRedisTicketCache stores (and, asked for, sync ones), closed at teardown."""
    either = Either("async")
    yield either
    await either.close()


def new_client(emu: Emulator, **options: Any) -> AsyncSystemUserClient:
    """An async client of the emulator with this module's secret and key."""
    return AsyncSystemUserClient(
        **{"client_secret": CLIENT_SECRET, "private_key": PARTNER_KEY, "endpoint": emu.endpoint, **options}
    )


async def get(client: AsyncSystemUserClient, ctx: str = CTX, token: str = TOKEN) -> SystemUserTicket:
    return await client.get_ticket(context_identifier=ctx, system_user_token=token)


async def eventually(check: Callable[[], bool], seconds: float = 2.0) -> None:
    """Wait on the loop until ``check()`` holds; fail the test after ``seconds``."""
    ends = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < ends, "condition not met in time"
        await asyncio.sleep(0.005)


# --- what both stores do alike ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_second_store_reads_redis_and_keeps_it_locally_no_longer_than_redis(redis_url: str,
                                                                                    stores: Either) -> None:
    """A store that never saw the key reads it from Redis, then holds it locally only for what is left of its TTL."""
    writer, reader = stores(redis_url, encryption_key=KEY_A), stores(redis_url, encryption_key=KEY_A)
    await settle(writer.set("k", entry_for(), 0.3))
    assert reader.get_local("k") is None
    assert (await settle(reader.get("k"))).ticket.ticket == "7T:abc"
    assert reader.get_local("k") is not None
    await asyncio.sleep(0.35)
    assert reader.get_local("k") is None and await settle(reader.get("k")) is None


@pytest.mark.asyncio
async def test_warm_reads_send_no_command_to_redis(redis_url: str, stores: Either) -> None:
    """Once a store holds a key locally, get answers from memory: Redis counts no GET."""
    store = stores(redis_url, encryption_key=KEY_A)
    await settle(store.set("k", entry_for(), 60))
    admin = redis.Redis.from_url(redis_url)
    admin.config_resetstat()
    for _ in range(50):
        assert await settle(store.get("k")) is not None
    assert "cmdstat_get" not in admin.info("commandstats")
    assert await settle(stores(redis_url, encryption_key=KEY_A).get("k")) is not None
    assert admin.info("commandstats")["cmdstat_get"]["calls"] == 1


@pytest.mark.asyncio
async def test_entries_at_rest_are_sealed_and_a_tampered_one_is_a_miss(redis_url: str, stores: Either,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Redis holds no ticket or tenant; a tampered entry or one sealed with another key is a miss with a WARNING."""
    store = stores(redis_url, encryption_key=KEY_A)
    await settle(store.set("k", entry_for(ticket="7T:secret-k"), 60))
    admin = redis.Redis.from_url(redis_url)
    value = admin.get(store._name("k"))
    assert b"7T:secret-k" not in value and CTX.encode() not in value and b"k" not in admin.keys("*")[0][-3:]
    caplog.set_level(logging.WARNING, logger="sut_soap")
    assert await settle(stores(redis_url, encryption_key=KEY_B).get("k")) is None
    prefix, digest, expires, blob = value.decode().split(".")
    raw = bytearray(base64.urlsafe_b64decode(blob))
    raw[-1] ^= 1
    admin.set(store._name("k"), f"{prefix}.{digest}.{expires}.{base64.urlsafe_b64encode(bytes(raw)).decode()}")
    assert await settle(stores(redis_url, encryption_key=KEY_A).get("k")) is None
    assert "treated as a miss" in caplog.text and "secret-k" not in caplog.text


@pytest.mark.asyncio
async def test_lease_is_exclusive_a_waiter_enters_after_release_and_times_out_otherwise(redis_url: str,
                                                                                       stores: Either) -> None:
    """A held lease makes another store wait and raise LockWaitTimeout; released, a waiter enters within 50 ms."""
    one, other = stores(redis_url), stores(redis_url)
    async with Either.lease(one, "k", lease=5, wait=0) as held:
        assert held.token is not None
        started = time.monotonic()
        with pytest.raises(LockWaitTimeout):
            async with Either.lease(other, "k", lease=5, wait=0.05):
                pass
        assert 0.04 < time.monotonic() - started < 0.5
    async with Either.lease(other, "k", lease=5, wait=0) as taken:
        assert taken.token is not None and await settle(taken.extend(10)) is True
        assert 9000 < redis.Redis.from_url(redis_url).pttl(taken.name) <= 10000
    assert await settle(taken.release()) is False and await settle(taken.extend(1)) is False
    assert redis.Redis.from_url(redis_url).dbsize() == 0


@pytest.mark.asyncio
async def test_compare_and_delete_leaves_a_newer_ticket_and_reaches_other_stores(redis_url: str,
                                                                                stores: Either) -> None:
    """delete_if(old) leaves the newer ticket in Redis; delete_if(current) deletes it and drops other stores' copies."""
    one, other = stores(redis_url, encryption_key=KEY_A), stores(redis_url, encryption_key=KEY_A)
    await settle(one.set("k", entry_for(ticket="7T:new"), 60))
    assert (await settle(other.get("k"))).ticket.ticket == "7T:new"
    await asyncio.sleep(0.1)  # both listeners subscribed
    assert await settle(one.delete_if("k", "7T:old")) is False
    assert redis.Redis.from_url(redis_url).dbsize() == 1
    assert await settle(one.delete_if("k", "7T:new")) is True
    await eventually(lambda: other.get_local("k") is None, 1.0)
    await settle(one.set("k", entry_for(), 60))
    await settle(other.get("k"))
    await settle(one.delete("k"))
    await eventually(lambda: other.get_local("k") is None, 1.0)
    assert redis.Redis.from_url(redis_url).dbsize() == 0


@pytest.mark.asyncio
async def test_a_dead_redis_opens_the_breaker_and_costs_no_latency(tmp_path: Path, stores: Either) -> None:
    """With Redis killed, one failure opens the breaker: get, set, delete, delete_if and lease return at once, never raise."""
    server = RedisServer(tmp_path / "redis").start()
    store = stores(server.url, encryption_key=KEY_A, cooloff=30)
    await settle(store.set("k", entry_for(), 60))
    server.kill()
    store.clear_local()
    assert await settle(store.get("k")) is None and not store.available
    started = time.monotonic()
    for _ in range(50):
        await settle(store.set("k", entry_for(), 60))
        assert await settle(store.delete_if("k", "7T:abc")) is True  # the local copy it just set
        await settle(store.delete("k"))
        async with Either.lease(store, "k", lease=5, wait=5) as lease:
            assert lease.token is None
    assert time.monotonic() - started < 0.5
    assert "unavailable" in repr(store)


@pytest.mark.asyncio
async def test_failures_of_each_command_open_the_breaker_and_never_raise(tmp_path: Path, stores: Either) -> None:
    """set, delete, delete_if, a lease's SET, extend and release against a Redis that just died: logged, not raised."""
    server = RedisServer(tmp_path / "redis").start()
    store = stores(server.url, encryption_key=KEY_A, cooloff=0.01)
    lease = store.lease("k", lease=5, wait=0)
    await settle(lease.__aenter__() if hasattr(lease, "__aenter__") else lease.__enter__())
    server.kill()
    outcomes = []
    for call in (lambda: store.set("k", entry_for(), 60), lambda: store.delete("k"),
                 lambda: store.delete_if("k", "7T:none"), lambda: lease.extend(1), lease.release):
        await asyncio.sleep(0.02)  # past the cool-off: the next command is tried
        outcomes.append(await settle(call()))
        assert not store.available
    assert outcomes == [None, None, False, False, False]
    await asyncio.sleep(0.02)
    async with Either.lease(store, "k", lease=5, wait=1) as other:
        assert other.token is None and not store.available


# --- sync and async stores in one fleet ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_sync_and_async_stores_read_each_others_entries_and_keys_rotate(redis_url: str,
                                                                             async_stores: Either) -> None:
    """Same keys, format and encryption: each kind reads what the other wrote; [new, old] keys read old entries."""
    sync_store, async_store = async_stores(redis_url, "sync", encryption_key=KEY_A), async_stores(
        redis_url, encryption_key=KEY_A)
    sync_store.set("from-sync", entry_for(ticket="7T:s"), 60)
    await async_store.set("from-async", entry_for(ticket="7T:a"), 60)
    assert (await async_store.get("from-sync")).ticket.ticket == "7T:s"
    assert sync_store.get("from-async").ticket.ticket == "7T:a"
    rotated = async_stores(redis_url, encryption_key=[KEY_B, KEY_A])
    assert (await rotated.get("from-sync")) is not None
    await rotated.set("new", entry_for(), 60)
    assert async_stores(redis_url, "sync", encryption_key=KEY_B).get("new") is not None
    assert async_stores(redis_url, "sync", encryption_key=KEY_A).get("new") is None


@pytest.mark.asyncio
async def test_a_sync_stores_lease_holds_off_an_async_one_and_invalidations_cross(redis_url: str,
                                                                                 async_stores: Either) -> None:
    """One lease name and one channel: a sync store's lease blocks an async one, and each hears the other's deletions."""
    sync_store, async_store = async_stores(redis_url, "sync", encryption_key=KEY_A), async_stores(
        redis_url, encryption_key=KEY_A)
    with sync_store.lease("k", lease=5, wait=0), pytest.raises(LockWaitTimeout):
        async with async_store.lease("k", lease=5, wait=0.02):
            pass
    sync_store.set("k", entry_for(), 60)
    await async_store.get("k")
    sync_store.get("k")
    await asyncio.sleep(0.1)
    sync_store.delete_if("k", "7T:abc")
    await eventually(lambda: async_store.get_local("k") is None, 1.0)
    await async_store.set("k", entry_for(), 60)
    sync_store.clear_local()
    sync_store.get("k")
    await async_store.delete("k")
    await eventually(lambda: sync_store.get_local("k") is None, 1.0)


# --- the async client on the async store ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_async_clients_share_one_exchange_and_warm_calls_stay_local(redis_url: str, emu: Emulator,
                                                                             async_stores: Either) -> None:
    """Two async clients on two stores exchange once; the second reads Redis once, then serves from its local tier."""
    one, two = new_client(emu, cache=async_stores(redis_url)), new_client(emu, cache=async_stores(redis_url))
    async with one, two:
        before = emu.exchange_count
        first = await get(one)
        second = await get(two)
        admin = redis.Redis.from_url(redis_url)
        admin.config_resetstat()
        assert await get(two) is second and await get(one) is first
        assert second.ticket == first.ticket and second.token == "" and emu.exchange_count == before + 1
        assert "cmdstat_get" not in admin.info("commandstats")
        assert one.cache is async_stores.made[0]


def test_the_sync_client_refuses_an_async_store(redis_url: str, emu: Emulator) -> None:
    """SystemUserClient(cache=AsyncRedisTicketCache) is a ConfigurationError that names the sync store to use."""
    store = AsyncRedisTicketCache.from_url(redis_url)
    with pytest.raises(ConfigurationError) as caught:
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, cache=store)
    assert "RedisTicketCache" in caught.value.hint and "async" in caught.value.message


@pytest.mark.asyncio
async def test_awaited_invalidate_has_forgotten_the_ticket_in_redis(redis_url: str, emu: Emulator,
                                                                   async_stores: Either) -> None:
    """await invalidate(ticket=T) returns once Redis forgot T; a bare call forgets it locally at once and in Redis later."""
    store = async_stores(redis_url)
    async with new_client(emu, cache=store) as client:
        key = client._key_prefix + CTX
        first = await get(client)
        await client.invalidate(CTX, ticket=first)
        assert redis.Redis.from_url(redis_url).dbsize() == 0 and store.get_local(key) is None
        second = await get(client)
        pending = client.invalidate(CTX, ticket=second)
        assert store.get_local(key) is None and not pending.done  # here at once; Redis in its task
        assert "done=False" in repr(pending)
        await pending
        assert pending.done and redis.Redis.from_url(redis_url).dbsize() == 0
        third = await get(client)
        client.invalidate(CTX)  # a bare call: aclose waits for it
    assert third.ticket != second.ticket != first.ticket
    assert redis.Redis.from_url(redis_url).dbsize() == 0


@pytest.mark.asyncio
async def test_the_store_part_of_invalidate_is_bounded_and_its_failures_are_logged(
    redis_url: str, emu: Emulator, async_stores: Either, caplog: pytest.LogCaptureFixture
) -> None:
    """A store whose delete_if hangs is cut at the deadline, one whose delete_if raises falls back to delete: logged, never raised."""
    store = async_stores(redis_url)
    calls: list[str] = []

    async def hanging(key: str, ticket: str) -> bool:
        calls.append("delete_if")
        await asyncio.sleep(10)
        return True  # pragma: no cover - cut before

    async def failing(key: str, ticket: str) -> bool:
        calls.append("delete_if")
        raise redis.ConnectionError("down")

    def broken_local(key: str, ticket: str | None = None) -> None:
        raise OSError("local tier gone")

    caplog.set_level(logging.DEBUG, logger="sut_soap.client")
    async with new_client(emu, cache=store, deadline=0.2) as client:
        ticket = await get(client)
        store.delete_if = hanging
        started = time.monotonic()
        await client.invalidate(CTX, ticket=ticket)
        assert 0.15 < time.monotonic() - started < 1.0
        store.delete_if = failing
        client._cache._delete_local = broken_local  # the client's call of the store's delete_local
        await client.invalidate(CTX, ticket=ticket)
    assert calls == ["delete_if", "delete_if"]
    assert "cache delete failed (TimeoutError)" in caplog.text
    assert "cache delete failed (ConnectionError)" in caplog.text and "cache delete failed (OSError)" in caplog.text
    assert redis.Redis.from_url(redis_url).dbsize() == 0  # the fallback delete reached Redis


@pytest.mark.asyncio
async def test_an_async_store_without_optional_methods_still_serves(emu: Emulator) -> None:
    """A bare async store (get, set, delete only) is awaited for every read, invalidated by delete, and never leased."""

    class Bare:
        def __init__(self) -> None:
            self.data: dict[str, CachedTicket] = {}

        async def get(self, key: str) -> CachedTicket | None:
            return self.data.get(key)

        async def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
            self.data[key] = entry

        async def delete(self, key: str) -> None:
            self.data.pop(key, None)

    store = Bare()
    async with new_client(emu, cache=store) as client:
        first = await get(client)
        assert await get(client) is first
        await client.invalidate(CTX, ticket="7T:not-this-one")  # read, compared, left alone
        assert store.data
        await client.invalidate(CTX, ticket=first)
        assert not store.data


@pytest.mark.asyncio
async def test_a_failing_get_local_is_a_miss_and_the_call_still_serves(redis_url: str, emu: Emulator,
                                                                      async_stores: Either) -> None:
    """A get_local that raises is logged and skipped: the call awaits get and returns the ticket."""
    store = async_stores(redis_url)

    def broken(key: str) -> None:
        raise OSError("gone")

    async with new_client(emu, cache=store) as client:
        first = await get(client)
        client._get_local = broken
        assert await get(client) is first


def test_an_async_stores_invalidation_off_the_loop_is_a_configuration_error(redis_url: str, emu: Emulator) -> None:
    """invalidate() with an async store outside a running loop raises ConfigurationError, and leaves no coroutine behind."""
    store = AsyncRedisTicketCache.from_url(redis_url, invalidations=False)
    client = new_client(emu, cache=store)
    with pytest.raises(ConfigurationError, match="event loop"):
        client.invalidate(CTX)


@pytest.mark.asyncio
async def test_a_waiter_whose_deadline_runs_out_raises_retryable_and_does_not_exchange(
    redis_url: str, emu: Emulator, async_stores: Either
) -> None:
    """With the tenant's lease held by another process, await get_ticket ends at its deadline: a retryable error, no exchange."""
    client = new_client(emu, cache=async_stores(redis_url), deadline=0.3)
    other = async_stores(redis_url)
    before = emu.exchange_count
    async with client, other.lease(client._key_prefix + CTX, lease=5, wait=0):
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await get(client)
    assert caught.value.retryable and "another process" in caught.value.message
    assert time.monotonic() - started < 0.6 and emu.exchange_count == before


@pytest.mark.asyncio
async def test_a_waiter_gets_the_holders_ticket_without_exchanging(redis_url: str, emu: Emulator,
                                                                  async_stores: Either) -> None:
    """A second process's call waiting on the lease gets the holder's ticket from Redis once the holder stores it."""
    emu.inject(Fault.LATENCY, tenant=CTX, seconds=0.3, times=1)
    one, two = new_client(emu, cache=async_stores(redis_url)), new_client(emu, cache=async_stores(redis_url))
    async with one, two:
        before = emu.exchange_count
        holder = asyncio.create_task(get(one))
        await eventually(lambda: emu.exchange_count == before + 1, 2.0)
        waited = await get(two)
        assert waited.ticket == (await holder).ticket and emu.exchange_count == before + 1


@pytest.mark.asyncio
async def test_redis_killed_mid_run_fails_no_call_and_is_used_again_once_back(
    tmp_path: Path, emu: Emulator, async_stores: Either, caplog: pytest.LogCaptureFixture
) -> None:
    """Killing redis-server under 4 tasks of calls fails none (one WARNING); restarted, the store writes to it again."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        store = async_stores(server.url, cooloff=0.2)
        caplog.set_level(logging.INFO, logger="sut_soap")
        failures: list[BaseException] = []
        stop = asyncio.Event()
        calls = 0
        async with new_client(emu, cache=store) as client:

            async def hammer(i: int) -> None:
                nonlocal calls
                tenants = list(FLEET.items())[i * 5:(i + 1) * 5]
                while not stop.is_set():
                    for ctx, token in tenants:
                        try:
                            await get(client, ctx, token)
                            calls += 1
                        except BaseException as error:
                            failures.append(error)
                        store.clear_local()  # so every call needs Redis
                        await asyncio.sleep(0)

            tasks = [asyncio.create_task(hammer(i)) for i in range(4)]
            await asyncio.sleep(0.3)
            server.kill()
            await asyncio.sleep(0.5)
            assert not store.available
            server.start()
            await eventually(lambda: store.available and server.client().dbsize() > 0, 3.0)
            stop.set()
            await asyncio.gather(*tasks)
        assert failures == [] and calls > 100
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "failed (ConnectionError)" in warnings[0].getMessage()
        assert "reachable again" in [r.getMessage() for r in caplog.records if r.name == "sut_soap.redis_store"][-1]
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_listener_survives_an_outage_and_hears_again(tmp_path: Path, async_stores: Either) -> None:
    """The async listener task reconnects once Redis is back and again drops invalidated local copies."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        listening = async_stores(server.url, encryption_key=KEY_A, cooloff=0.01)
        writer = async_stores(server.url, encryption_key=KEY_A, cooloff=0.01)
        await writer.set("k", entry_for(), 60)
        assert await listening.get("k") is not None
        port = server.port
        server.kill()
        await asyncio.sleep(0.3)
        server = RedisServer(tmp_path / "redis", port=port).start()
        await asyncio.sleep(0.8)  # the listener's retry
        await writer.set("k", entry_for(), 60)  # its pooled connection died with the server: this may fail once
        await asyncio.sleep(0.02)
        await writer.set("k", entry_for(), 60)
        await writer.delete("k")
        await eventually(lambda: listening.get_local("k") is None, 2.0)
    finally:
        server.stop()


# --- construction, fork, closing ------------------------------------------------------------------------


def test_bad_options_are_configuration_errors_that_name_no_secret() -> None:
    """Bad URLs, clients, prefixes and keys raise ConfigurationError without the URL's password."""
    cases: list[Callable[[], object]] = [
        lambda: AsyncRedisTicketCache.from_url("http://user:hunter2@host/"),
        lambda: AsyncRedisTicketCache.from_url("redis://:hunter2@127.0.0.1/0", timeout=0),
        lambda: AsyncRedisTicketCache.from_url("redis://:hunter2@127.0.0.1:notaport/0"),
        lambda: AsyncRedisTicketCache(object()),  # type: ignore[arg-type]
        lambda: AsyncRedisTicketCache(redis.asyncio.Redis(), key_prefix="a{b}"),
        lambda: AsyncRedisTicketCache(redis.asyncio.Redis(), encryption_key=b"hunter2-short"),
    ]
    for case in cases:
        with pytest.raises(ConfigurationError) as caught:
            case()
        assert "hunter2" not in str(caught.value)


@pytest.mark.asyncio
async def test_a_store_on_your_client_leaves_it_open_and_is_not_picklable(redis_url: str) -> None:
    """aclose() on a store built from your redis.asyncio.Redis ends its listener, not your client; pickling is refused."""
    client = redis.asyncio.Redis.from_url(redis_url)
    store = AsyncRedisTicketCache(client, encryption_key=KEY_A)
    await store.get("k")
    listener = store._listener
    await store.aclose()
    assert listener is not None and listener.done() and await client.ping()
    await store.get("k")  # closed: no new listener
    assert store._listener is listener
    with pytest.raises(ConfigurationError, match="cannot be pickled"):
        pickle.dumps(store)
    assert "AsyncRedisTicketCache(key_prefix='sut-soap:'" in repr(store)
    await client.aclose()


@pytest.mark.asyncio
async def test_the_listener_ends_by_itself_once_closed_even_if_a_cancellation_is_lost(redis_url: str,
                                                                                     async_stores: Either) -> None:
    """A closed store's listener leaves its loop within one read, without being cancelled (redis-py may swallow that)."""
    store = async_stores(redis_url)
    await store.get("k")
    await asyncio.sleep(0.05)  # subscribed, reading
    store._closed = True
    await eventually(lambda: store._listener is not None and store._listener.done(), 2.0)
    assert not store._listener.cancelled() and store._listener.exception() is None


@pytest.mark.asyncio
async def test_a_listener_whose_store_closed_before_its_first_read_never_subscribes(redis_url: str,
                                                                                   async_stores: Either) -> None:
    """The closed flag is checked before each read: a listener that first runs after its store closed just ends."""
    store = async_stores(redis_url)
    store._start_listener()
    store._closed = True
    await asyncio.wait_for(store._listener, 2.0)
    numsub = await store._redis.pubsub_numsub(store.channel)
    assert numsub[0][1] == 0


@pytest.mark.asyncio
async def test_without_invalidations_no_listener_runs(redis_url: str, async_stores: Either) -> None:
    """invalidations=False starts no listener task; its own deletions still publish."""
    store = async_stores(redis_url, encryption_key=KEY_A, invalidations=False)
    await store.get("k")
    assert store._listener is None


@pytest.mark.asyncio
async def test_dropping_idle_connections_and_closing_the_listener_may_fail_quietly(redis_url: str,
                                                                                  async_stores: Either) -> None:
    """A failure whose pool clean-up fails, and a listener connection that fails to close: logged, not raised."""
    store = async_stores(redis_url)

    async def broken(**kwargs: Any) -> None:
        raise OSError("gone")

    pool = store._redis.connection_pool
    pool.disconnect, working = broken, pool.disconnect
    await store._failed("get", ConnectionError())
    pool.disconnect = working
    assert not store.available

    class Broken:
        async def aclose(self) -> None:
            raise OSError("gone")

    await async_module._closed(Broken())


@pytest.mark.asyncio
async def test_works_in_a_forked_child(redis_url: str, async_stores: Either) -> None:
    """After os.fork the child drops inherited connections, has its own origin, and reads through Redis on its own loop."""
    store = async_stores(redis_url, encryption_key=KEY_A)
    await store.set("k", entry_for(), 60)
    parent_origin = store._origin
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = False
        try:
            store.clear_local()

            async def child() -> bool:
                entry = await store.get("k")
                return store._origin != parent_origin and entry is not None

            ok = asyncio.new_event_loop().run_until_complete(child())
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)
    assert await store.get("k") is not None  # the parent's connections still work
    origin = store._origin
    store._reset_after_fork()  # what the child ran: new origin, connections dropped, entries kept
    store.clear_local()
    assert store._origin != origin and await store.get("k") is not None


def test_module_says_how_to_install_redis_py(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, importing the async store says to install sut-soap[redis]."""
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    spec = importlib.util.spec_from_file_location("sut_soap._async_redis_probe", async_module.__file__)
    assert spec is not None and spec.loader is not None
    with pytest.raises(ImportError, match=r"sut-soap\[redis\]"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


# --- fleets of real processes ------------------------------------------------------------------------------


@pytest.fixture
def workers(redis_workers: Callable[..., Worker]) -> Callable[..., Worker]:
    """Starts tests/redis_worker.py processes of this module's application: ``workers(url, emu, *options)``."""
    return lambda url, emu, *options: redis_workers(url, emu.endpoint, CLIENT_SECRET, *options)


def test_four_async_processes_twenty_cold_tenants_exchange_twenty_times(redis_url: str, emu: Emulator,
                                                                       workers: Any) -> None:
    """Four async processes warming the same 20 cold tenants at once cause exactly 20 exchanges and share every ticket."""
    for ctx in FLEET:
        emu.inject(Fault.LATENCY, tenant=ctx, seconds=0.2)
    fleet = [workers(redis_url, emu, "async=1") for _ in range(4)]
    for worker in fleet:
        worker.ready()
    before = emu.exchange_count
    for worker in fleet:
        worker.send(f"warm {json.dumps(FLEET)}")
    answers = [worker.answer() for worker in fleet]
    assert emu.exchange_count - before == 20
    assert all(a["errors"] == 0 for a in answers)
    assert all(a["tickets"] == answers[0]["tickets"] for a in answers)


def test_async_holder_killed_mid_exchange_delays_the_others_by_at_most_the_lease(redis_url: str, emu: Emulator,
                                                                                workers: Any) -> None:
    """SIGKILL of the async process exchanging for a tenant: the others get a ticket within the lease, one more exchange."""
    ctx, token = "Fleet019", FLEET["Fleet019"]
    emu.inject(Fault.LATENCY, tenant=ctx, seconds=5, times=1)
    holder = workers(redis_url, emu, "async=1", "deadline=1", "margin=1").ready()  # lease: 2 s
    others = [workers(redis_url, emu, "async=1", "deadline=10").ready(), workers(redis_url, emu, "deadline=10").ready()]
    before = emu.exchange_count
    holder.send(f"get {ctx} {token}")
    deadline = time.monotonic() + 5
    while emu.exchange_count != before + 1:  # the holder's exchange is in flight
        assert time.monotonic() < deadline
        time.sleep(0.005)
    for worker in others:
        worker.send(f"get {ctx} {token}")
    time.sleep(0.1)
    holder.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    answers = [worker.answer() for worker in others]
    assert all("ticket" in a for a in answers) and answers[0]["ticket"] == answers[1]["ticket"]
    assert time.monotonic() - killed < 2.5
    assert emu.exchange_count == before + 2


def test_invalidation_crosses_between_sync_and_async_processes(redis_url: str, emu: Emulator, workers: Any) -> None:
    """invalidate(ticket=) in a sync process empties an async process's local tier, and the other way round."""
    sync_worker, async_worker = workers(redis_url, emu).ready(), workers(redis_url, emu, "async=1").ready()
    for source, target in ((sync_worker, async_worker), (async_worker, sync_worker)):
        tickets = {worker.ask(f"get {CTX} {TOKEN}")["ticket"] for worker in (source, target)}
        assert len(tickets) == 1
        (ticket,) = tickets
        time.sleep(0.2)
        started = time.monotonic()
        source.ask(f"invalidate {CTX} {ticket}")
        while target.ask(f"local {CTX}")["ticket"] is not None:
            assert time.monotonic() - started < 1.0
            time.sleep(0.01)
