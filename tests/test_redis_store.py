"""RedisTicketCache against real redis-server processes: tiers, leases, invalidation, encryption, outages, fleets."""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_support import RedisServer, Worker, free_port
from support import ClientFactory, make_cert

import sut_soap
from sut_soap import ConfigurationError, RedisTicketCache, SystemUserClient, TransportError
from sut_soap import redis_store as store_module
from sut_soap.cache import CachedTicket, InMemoryTicketCache, LockWaitTimeout
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.testing.minting import superoffice_claims
from sut_soap.ticket import SystemUserTicket
from sut_soap.tokens import CLAIM_PREFIX

ROOT = Path(__file__).resolve().parents[1]
PARTNER_KEY = load_private_key((ROOT / "fixtures" / "keys" / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-r3d1s"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryR3dis1"
FLEET = {f"Fleet{i:03d}": f"Fleet Sync-{i:03d}" for i in range(20)}
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN)
        for ctx, token in FLEET.items():
            emu.add_tenant(ctx, system_user_token=token)
        yield emu


@pytest.fixture
def stores() -> Iterator[Callable[..., RedisTicketCache]]:
    """Builds stores (from_url by default) and closes every one at teardown."""
    made: list[RedisTicketCache] = []

    def build(url: str, **options: Any) -> RedisTicketCache:
        store = RedisTicketCache.from_url(url, **options)
        made.append(store)
        return store

    yield build
    for store in made:
        store.close()


@pytest.fixture
def clients(emu: Emulator) -> Iterator[ClientFactory]:
    factory = ClientFactory(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint)
    yield factory
    factory.close()


def get(client: SystemUserClient, ctx: str = CTX, token: str = TOKEN) -> sut_soap.SystemUserTicket:
    return client.get_ticket(context_identifier=ctx, system_user_token=token)


def eventually(check: Callable[[], bool], seconds: float = 2.0) -> float:
    """Seconds until ``check()`` held (fails the test after ``seconds``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "condition not met in time"
        time.sleep(0.005)
    return time.monotonic() - started


def entry_for(ticket: str = "7T:abc", ctx: str = CTX) -> CachedTicket:
    """A cache entry for ``ctx`` holding ``ticket``, obtained now."""
    claims = superoffice_claims(context_identifier=ctx)
    claims[CLAIM_PREFIX + "ticket"] = ticket
    ticket_value = SystemUserTicket.from_claims("", claims, obtained_at=datetime.now(timezone.utc))
    return CachedTicket(ticket_value, token_fingerprint="f" * 32)


# --- two tiers ------------------------------------------------------------------------------


def test_a_process_that_never_saw_the_tenant_reads_it_from_redis(redis_url: str, stores: Any, clients: ClientFactory,
                                                                 emu: Emulator) -> None:
    """A second store on the same Redis gets the first one's ticket without an exchange; its token is empty."""
    first = get(clients(cache=stores(redis_url)))
    before = emu.exchange_count
    second = get(clients(cache=stores(redis_url)))
    assert second.ticket == first.ticket and emu.exchange_count == before
    assert second.token == "" and first.token != ""


def test_local_tier_keeps_an_entry_no_longer_than_redis(redis_url: str, stores: Any) -> None:
    """A ticket read from Redis stays in the local tier only for what is left of the shared entry's TTL."""
    writer, reader = stores(redis_url, encryption_key=KEY_A), stores(redis_url, encryption_key=KEY_A)
    entry = entry_for()
    writer.set("k", entry, 0.3)
    assert reader.get("k") is not None and len(reader._local) == 1
    time.sleep(0.35)
    assert reader._local.get("k") is None and reader.get("k") is None


def test_entry_past_its_expiry_on_this_clock_is_returned_but_not_kept_locally(redis_url: str, stores: Any) -> None:
    """An entry Redis still holds whose expiry this process's wall clock has passed is returned (the client judges it), not kept locally."""
    stores(redis_url, encryption_key=KEY_A).set("k", entry_for(), 60)
    ahead = sut_soap.Clock(now=lambda: datetime.now(timezone.utc) + timedelta(minutes=5))
    reader = stores(redis_url, encryption_key=KEY_A, clock=ahead)
    assert reader.get("k") is not None
    assert len(reader._local) == 0


def test_warm_reads_do_not_touch_redis(redis_url: str, stores: Any) -> None:
    """Once a process holds a ticket, get() answers from memory: no Redis command is sent."""
    store = stores(redis_url, encryption_key=KEY_A)
    store.set("k", entry_for(), 60)
    admin = redis.Redis.from_url(redis_url)
    admin.config_resetstat()
    for _ in range(100):
        assert store.get("k") is not None
    assert "cmdstat_get" not in admin.info("commandstats")
    assert stores(redis_url, encryption_key=KEY_A).get("k") is not None  # the counter does count a read
    assert admin.info("commandstats")["cmdstat_get"]["calls"] == 1


# --- encryption at rest -----------------------------------------------------------------------


def test_dump_and_rdb_show_no_ticket_tenant_claim_or_jwt(redis_server: RedisServer, redis_url: str, stores: Any,
                                                         clients: ClientFactory, emu: Emulator) -> None:
    """After a real exchange, no Redis key, value or RDB byte holds the ticket, tenant, tenant URLs, claim values or JWT."""
    client = clients(cache=stores(redis_url))
    ticket = get(client)
    admin = redis_server.client()
    dumped = b"".join(k + b"=" + (admin.dump(k) or b"") for k in admin.scan_iter("*"))
    admin.save()
    rdb = (redis_server.directory / "dump.rdb").read_bytes()
    values = {ticket.ticket, ticket.token, CTX, ticket.webapi_url, ticket.netserver_url, ticket.serial, "7T:",
              CLIENT_SECRET, TOKEN}
    values |= {str(v) for v in ticket.claims.values() if len(str(v)) > 3}
    for value in values:
        for blob in (dumped, rdb):
            assert value.encode() not in blob
    assert admin.dbsize() == 1


def test_entries_copied_to_another_key_tampered_or_from_another_key_are_misses(redis_url: str, stores: Any,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A copied, tampered, truncated or foreign-key entry is never served: a miss with one WARNING naming no secret."""
    store = stores(redis_url, encryption_key=KEY_A)
    store.set("a", entry_for(ticket="7T:secret-a"), 60)
    admin = redis.Redis.from_url(redis_url)
    value = admin.get(store._name("a"))
    caplog.set_level(logging.DEBUG, logger="sut_soap")
    admin.set(store._name("b"), value)  # copied to another key
    reader = stores(redis_url, encryption_key=KEY_A)
    assert reader.get("b") is None
    prefix, digest, expires, blob = value.decode().split(".")
    raw = bytearray(base64.urlsafe_b64decode(blob))
    raw[-1] ^= 1
    for bad in (f"{prefix}.{digest}.{expires}.{base64.urlsafe_b64encode(bytes(raw)).decode()}",
                f"{prefix}.{digest}.{int(expires) + 60_000}.{blob}",  # a longer life is not accepted either
                f"s1.{digest}.{expires}.{blob}", f"{prefix}.{digest}.-1.{blob}", "s2.x.y", "s2.a.1.%%%", b"\xff\xfe"):
        admin.set(store._name("a"), bad)
        reader.clear_local()
        assert reader.get("a") is None
    assert stores(redis_url, encryption_key=KEY_B).get("b") is None  # another application's key
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "treated as a miss" in warnings[0].getMessage()
    assert "secret-a" not in caplog.text and KEY_A.hex() not in caplog.text


def test_key_rotation_reads_old_entries_and_writes_with_the_newest(redis_url: str, stores: Any) -> None:
    """encryption_key=[new, old] decrypts entries sealed with old; what it writes only new decrypts."""
    stores(redis_url, encryption_key=KEY_A).set("old", entry_for(), 60)
    rotated = stores(redis_url, encryption_key=[KEY_B, KEY_A])
    assert rotated.get("old") is not None
    rotated.set("new", entry_for(), 60)
    assert stores(redis_url, encryption_key=KEY_B).get("new") is not None
    assert stores(redis_url, encryption_key=KEY_A).get("new") is None


def test_client_hands_the_store_a_derived_key_never_the_secret(redis_url: str, stores: Any, clients: ClientFactory) -> None:
    """use_derived_key gets 32 bytes that are not the secret; same secret same key, another secret another key."""
    seen: list[tuple[str, bytes]] = []

    class Recording(InMemoryTicketCache):
        def use_derived_key(self, prefix: str, key: bytes) -> None:
            seen.append((prefix, key))

    for secret in (CLIENT_SECRET, CLIENT_SECRET, "another-secret"):
        clients(cache=Recording(), client_secret=secret)
    (p1, k1), (p2, k2), (p3, k3) = seen
    assert len(k1) == 32 and k1 == k2 != k3 and p1 == p2 != p3
    assert CLIENT_SECRET.encode() not in k1


def test_entries_of_a_client_without_a_key_stay_local(redis_url: str, stores: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A store with neither encryption_key= nor a derived key for the prefix keeps tickets local, with one WARNING."""
    store = stores(redis_url)
    caplog.set_level(logging.WARNING, logger="sut_soap")
    store.set("k", entry_for(), 60)
    store.set("k", entry_for(), 60)
    assert store.get("k") is not None
    assert redis.Redis.from_url(redis_url).dbsize() == 0
    assert len(caplog.records) == 1 and "stay in this process" in caplog.records[0].getMessage()
    store.clear_local()
    assert store.get("k") is None


# --- invalidation across the fleet ------------------------------------------------------------


def test_invalidate_never_deletes_the_newer_ticket(redis_url: str, stores: Any, clients: ClientFactory, emu: Emulator) -> None:
    """A slow process invalidating the old ticket leaves the newer one another process stored."""
    slow, fast = clients(cache=stores(redis_url)), clients(cache=stores(redis_url))
    old = get(slow)
    assert get(fast).ticket == old.ticket
    fast.invalidate(CTX, ticket=old)
    new = get(fast)
    assert new.ticket != old.ticket
    slow.invalidate(CTX, ticket=old)  # too late: must not touch the new one
    before = emu.exchange_count
    assert get(clients(cache=stores(redis_url))).ticket == new.ticket
    assert emu.exchange_count == before


def test_invalidate_reaches_other_processes_local_tier(redis_url: str, stores: Any, clients: ClientFactory) -> None:
    """invalidate(ticket=) in one process drops the ticket from another's local tier within a second (pub/sub)."""
    one_store, other_store = stores(redis_url), stores(redis_url)
    one, other = clients(cache=one_store), clients(cache=other_store)
    ticket = get(one)
    assert get(other).ticket == ticket.ticket
    time.sleep(0.1)  # the listener subscribed
    one.invalidate(CTX, ticket=ticket)
    assert eventually(lambda: len(other_store._local) == 0, 1.0) < 1.0
    assert get(other).ticket != ticket.ticket


def test_delete_reaches_redis_and_other_processes(redis_url: str, stores: Any, clients: ClientFactory) -> None:
    """invalidate() without a ticket deletes the shared entry and the other local tiers' copies."""
    one_store, other_store = stores(redis_url), stores(redis_url)
    one, other = clients(cache=one_store), clients(cache=other_store)
    get(one), get(other)
    time.sleep(0.1)
    one.invalidate(CTX)
    eventually(lambda: len(other_store._local) == 0, 1.0)
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_in_memory_store_deletes_only_the_given_ticket() -> None:
    """InMemoryTicketCache.delete_if forgets the entry only while it holds that ticket."""
    store = InMemoryTicketCache()
    store.set("k", entry_for(ticket="7T:one"), 60)
    assert store.delete_if("k", "7T:two") is False and store.get("k") is not None
    assert store.delete_if("k", "7T:one") is True and store.get("k") is None
    assert store.delete_if("k", "7T:one") is False


def test_a_failing_delete_if_falls_back_to_delete(clients: ClientFactory, emu: Emulator) -> None:
    """A store whose delete_if raises has the entry deleted instead (at worst one extra exchange)."""

    class Failing(InMemoryTicketCache):
        def delete_if(self, key: str, ticket: str) -> bool:
            raise ConnectionError("down")

    store = Failing()
    client = clients(cache=store)
    ticket = get(client)
    client.invalidate(CTX, ticket=ticket)
    assert len(store) == 0


# --- fleet-wide leases --------------------------------------------------------------------------


def test_lease_is_exclusive_and_released_only_by_its_owner(redis_url: str, stores: Any) -> None:
    """A held lease makes another wait and then raise LockWaitTimeout; an expired owner cannot free the next one's."""
    one, other = stores(redis_url), stores(redis_url)
    held = one.lease("k", lease=0.2, wait=0)
    with held:
        started = time.monotonic()
        with pytest.raises(LockWaitTimeout), other.lease("k", lease=5, wait=0.05):
            pass
        assert 0.04 < time.monotonic() - started < 0.5
        time.sleep(0.25)  # the lease ran out under its holder
        with other.lease("k", lease=5, wait=0) as taken:
            assert held.release() is False and held.extend(1) is False  # not its owner any more
            assert taken.extend(10) is True
            assert 9000 < redis.Redis.from_url(redis_url).pttl(taken.name) <= 10000
        assert taken.release() is False
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_a_waiter_gets_the_lease_soon_after_its_release(redis_url: str, stores: Any) -> None:
    """A waiter enters within about 50 ms of the holder releasing (short polling, not 100 ms sleeps)."""
    one, other = stores(redis_url), stores(redis_url)
    holder = one.lease("k", lease=5, wait=0)
    holder.__enter__()
    released_at: list[float] = []

    def release() -> None:
        time.sleep(0.2)
        released_at.append(time.monotonic())
        holder.__exit__(None, None, None)

    threading.Thread(target=release).start()
    with other.lease("k", lease=5, wait=2):
        entered = time.monotonic()
    assert entered - released_at[0] < 0.05


def test_waiter_whose_deadline_runs_out_raises_retryable_without_exchanging(
    redis_url: str, stores: Any, clients: ClientFactory, emu: Emulator
) -> None:
    """With the tenant's lease held by another process, get_ticket ends at its deadline with a retryable TransportError."""
    store = stores(redis_url)
    client = clients(cache=store, deadline=0.3)
    other = stores(redis_url)
    before = emu.exchange_count
    with other.lease(client._key_prefix + CTX, lease=5, wait=0):
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            get(client)
    assert caught.value.retryable and "another process" in caught.value.message
    assert time.monotonic() - started < 0.6 and emu.exchange_count == before


def test_due_ticket_is_served_while_another_process_renews(redis_url: str, stores: Any, clients: ClientFactory,
                                                           emu: Emulator) -> None:
    """With a due ticket and the lease held elsewhere, get_ticket serves the due ticket at once, no exchange."""
    from support import SteppingClock

    clock = SteppingClock()
    store = stores(redis_url, clock=clock.clock)
    client = clients(cache=store, clock=clock.clock, ticket_lifetime=100, refresh_ahead=50)
    first = get(client)
    clock.advance(60)
    before = emu.exchange_count
    with stores(redis_url).lease(client._key_prefix + CTX, lease=5, wait=0):
        started = time.monotonic()
        assert get(client).ticket == first.ticket
    assert time.monotonic() - started < 0.1 and emu.exchange_count == before


def test_old_lock_protocol_raising_lock_wait_timeout_does_not_exchange(clients: ClientFactory, emu: Emulator) -> None:
    """A store with the old lock(key, timeout) that raises LockWaitTimeout gets no exchange: a retryable error."""

    class Held(InMemoryTicketCache):
        def lock(self, key: str, timeout: float) -> Any:
            raise LockWaitTimeout("held elsewhere")

    before = emu.exchange_count
    with pytest.raises(TransportError) as caught:
        get(clients(cache=Held()))
    assert caught.value.retryable and emu.exchange_count == before


def test_lease_drops_nothing_but_reads_redis_first(redis_url: str, stores: Any) -> None:
    """While holding the lease, the next get reads Redis first and falls back to the local copy if Redis has none."""
    store = stores(redis_url, encryption_key=KEY_A)
    local = entry_for(ticket="7T:local")
    store._local.set("k", local, 60)
    with store.lease("k", lease=5, wait=0):
        assert store.get("k") is local
    stores(redis_url, encryption_key=KEY_A).set("k", entry_for(ticket="7T:shared"), 60)
    with store.lease("k", lease=5, wait=0):
        assert store.get("k").ticket.ticket == "7T:shared"


# --- Redis trouble ------------------------------------------------------------------------------


def test_redis_killed_mid_run_fails_no_call_and_is_used_again_once_back(
    tmp_path: Path, stores: Any, clients: ClientFactory, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Killing redis-server under load fails no get_ticket (one WARNING); restarted, the store writes to it again."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        store = stores(server.url, cooloff=0.2)
        client = clients(cache=store)
        caplog.set_level(logging.INFO, logger="sut_soap")
        failures: list[BaseException] = []
        stop = threading.Event()

        def hammer(i: int) -> None:
            tenants = list(FLEET.items())[i * 5:(i + 1) * 5]
            while not stop.is_set():
                for ctx, token in tenants:
                    try:
                        get(client, ctx, token)
                    except BaseException as error:
                        failures.append(error)
                    store.clear_local()  # so every call needs Redis

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        server.kill()
        time.sleep(0.5)
        assert not store.available
        server.start()
        eventually(lambda: store.available and server.client().dbsize() > 0, 3.0)
        stop.set()
        for thread in threads:
            thread.join()
        assert failures == []
        messages = [r.getMessage() for r in caplog.records if r.name == "sut_soap.redis_store"]
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "get failed (ConnectionError)" in warnings[0].getMessage()
        assert "reachable again" in messages[-1]
    finally:
        server.stop()


def test_a_dead_redis_costs_no_latency_while_the_breaker_is_open(tmp_path: Path, stores: Any) -> None:
    """After one failure no command is sent for the cool-off: get, set, delete and lease return at once."""
    server = RedisServer(tmp_path / "redis").start()
    store = stores(server.url, encryption_key=KEY_A, cooloff=30)
    server.kill()
    assert store.get("k") is None and not store.available
    started = time.monotonic()
    for _ in range(100):
        assert store.get("k") is None
        store.set("k", entry_for(), 60)
        store._local.clear()
        store.delete("k")
        assert store.delete_if("k", "7T:abc") is False
        with store.lease("k", lease=5, wait=5) as lease:
            assert lease.token is None
    assert time.monotonic() - started < 0.5
    assert "unavailable" in repr(store)


@pytest.mark.parametrize("trouble", ["readonly", "oom", "garbage"])
def test_read_only_out_of_memory_or_garbage_opens_the_breaker(tmp_path: Path, stores: Any, trouble: str) -> None:
    """A read-only replica, an out-of-memory Redis or a reply of the wrong shape counts as unavailable, never raises."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        store = stores(server.url, encryption_key=KEY_A, cooloff=30)
        admin = server.client()
        if trouble == "readonly":
            admin.replicaof("127.0.0.1", free_port())
        elif trouble == "oom":
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", "1")
        else:
            store._redis.get = lambda *args, **kwargs: [b"x"]
        if trouble == "garbage":
            assert store.get("k") is None
        else:
            store.set("k", entry_for(), 60)
        assert not store.available
    finally:
        server.stop()


def test_writes_that_fail_open_the_breaker_and_never_raise(tmp_path: Path, stores: Any) -> None:
    """delete and delete_if against a Redis that just died log, open the breaker and return what the local tier did."""
    server = RedisServer(tmp_path / "redis").start()
    store = stores(server.url, encryption_key=KEY_A, cooloff=0.01)
    store.set("k", entry_for(ticket="7T:one"), 60)
    server.kill()
    store.delete("k")
    assert not store.available
    time.sleep(0.02)
    store.set("k", entry_for(ticket="7T:one"), 60)
    time.sleep(0.02)
    assert store.delete_if("k", "7T:one") is True and not store.available


def test_dropping_idle_connections_that_fails_is_quiet(redis_url: str, stores: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure whose clean-up of the pool fails too is still just a failure: logged, not raised."""
    store = stores(redis_url)

    def broken(**kwargs: Any) -> None:
        raise OSError("gone")

    monkeypatch.setattr(store._redis.connection_pool, "disconnect", broken)
    store._failed("get", ConnectionError())
    monkeypatch.undo()
    assert not store.available


def test_a_store_on_your_client_leaves_it_open(redis_server: RedisServer, redis_url: str) -> None:
    """close() on a store built from your redis.Redis stops its listener but does not close your client."""
    client = redis.Redis.from_url(redis_url)
    store = RedisTicketCache(client, encryption_key=KEY_A)
    store.get("k")
    store._start_listener()  # already running: nothing more
    store.close()
    assert client.ping()
    client.close()


def test_each_client_prefix_uses_its_own_derived_key(redis_url: str, stores: Any) -> None:
    """With two clients' derived keys, each key prefix's entries are sealed with its own key."""
    store = stores(redis_url)
    store.use_derived_key("one:", KEY_A)
    store.use_derived_key("two:", KEY_B)
    store.set("two:k", entry_for(), 60)
    reader = stores(redis_url, encryption_key=KEY_B)
    assert reader.get("two:k") is not None
    store._reset_after_fork()  # what a forked child runs: a new origin and breaker, entries kept
    assert store.get("two:k") is not None


def test_probe_after_the_cooloff_lets_one_caller_through(redis_url: str, stores: Any) -> None:
    """Once the cool-off is over, one caller probes; the others keep away until it answered."""
    store = stores(redis_url, encryption_key=KEY_A, cooloff=0.05)
    store._failed("get", ConnectionError())
    time.sleep(0.06)
    assert store._available() is True  # the probe
    assert store._available() is False  # everyone else meanwhile
    store._recovered()
    assert store._available() is True and store.available


def test_lock_and_unlock_failures_let_the_caller_in(tmp_path: Path, stores: Any) -> None:
    """A lease whose SET or release fails holds nothing and raises nothing; extend says False."""
    server = RedisServer(tmp_path / "redis").start()
    store = stores(server.url, cooloff=0.01)
    lease = store.lease("k", lease=5, wait=0)
    lease.__enter__()
    server.kill()
    assert lease.extend(1) is False
    time.sleep(0.02)
    assert lease.release() is False
    time.sleep(0.02)
    with store.lease("k", lease=5, wait=1) as other:
        assert other.token is None


def test_listener_survives_an_outage_and_hears_again(tmp_path: Path, stores: Any) -> None:
    """The invalidation listener reconnects after Redis came back and again drops invalidated local copies."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        listening = stores(server.url, encryption_key=KEY_A, cooloff=0.01)
        writer = stores(server.url, encryption_key=KEY_A, cooloff=0.01)
        writer.set("k", entry_for(), 60)
        assert listening.get("k") is not None
        port = server.port
        server.kill()
        time.sleep(0.3)
        server = RedisServer(tmp_path / "redis", port=port).start()
        time.sleep(0.8)  # the listener's retry
        writer._recovered()
        writer.set("k", entry_for(), 60)
        writer.delete("k")
        eventually(lambda: len(listening._local) == 0, 2.0)
    finally:
        server.stop()


# --- cluster, TLS, ACL, scripts ------------------------------------------------------------------


def test_cluster_entry_and_lease_share_a_slot_and_work(redis_cluster: Any, clients: ClientFactory, emu: Emulator) -> None:
    """On a three-master Redis Cluster: one exchange for two stores, entry and lease in one hash slot, invalidation works."""
    one = RedisTicketCache.from_url(redis_cluster.url, cluster=True)
    other = RedisTicketCache.from_url(redis_cluster.url, cluster=True)
    try:
        first_client, second_client = clients(cache=one), clients(cache=other)
        before = emu.exchange_count
        first = get(first_client, "Fleet001", FLEET["Fleet001"])
        assert get(second_client, "Fleet001", FLEET["Fleet001"]).ticket == first.ticket
        assert emu.exchange_count == before + 1
        name = one._name(first_client._key_prefix + "Fleet001")
        node = redis_cluster.nodes[0].client()
        assert node.cluster("keyslot", name) == node.cluster("keyslot", name + ":lock")
        with one.lease(first_client._key_prefix + "Fleet001", lease=5, wait=0), pytest.raises(LockWaitTimeout), \
                other.lease(first_client._key_prefix + "Fleet001", lease=5, wait=0):
            pass
        time.sleep(0.1)
        first_client.invalidate("Fleet001", ticket=first)
        eventually(lambda: len(other._local) == 0, 1.0)
        assert get(second_client, "Fleet001", FLEET["Fleet001"]).ticket != first.ticket
        one._failed("get", ConnectionError())  # a cluster's pools are dropped node by node
        one._recovered()
        assert get(first_client, "Fleet001", FLEET["Fleet001"]).ticket != first.ticket
    finally:
        one.close(), other.close()


def test_tls_with_a_private_ca(tmp_path: Path, stores: Any) -> None:
    """rediss:// to a TLS-only redis-server, its certificate checked against the CA given as ssl_ca_certs."""
    import ipaddress

    from cryptography import x509

    cert, key = make_cert(tmp_path, "redis", san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server = RedisServer(tmp_path / "redis", "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                         "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", tls=True)
    try:
        server.start()
    except RuntimeError:
        pytest.skip("this redis-server was built without TLS (needs BUILD_TLS=yes)")
    try:
        store = stores(server.url, encryption_key=KEY_A, ssl_ca_certs=str(cert))
        store.set("k", entry_for(), 60)
        assert stores(server.url, encryption_key=KEY_A, ssl_ca_certs=str(cert)).get("k") is not None
        assert store.available
        untrusting = stores(server.url, encryption_key=KEY_A)
        assert untrusting.get("k") is None and not untrusting.available
    finally:
        server.stop()


def test_acl_user_limited_to_the_prefix_and_noscript(redis_server: RedisServer, redis_url: str, stores: Any,
                                                     clients: ClientFactory, emu: Emulator) -> None:
    """An ACL user with a password, limited to the prefix's keys and channel and a few commands, runs everything; NOSCRIPT is recovered."""
    admin = redis_server.client()
    admin.acl_setuser(
        "sutsoap", enabled=True, passwords=["+canary-acl-pw"], keys=["tenant-a:*"], channels=["tenant-a:*"],
        commands=["-@all", "+get", "+set", "+del", "+publish", "+subscribe", "+evalsha", "+eval",
                  "+script|load", "+ping", "+hello", "+client", "+auth"],
    )
    url = f"redis://sutsoap:canary-acl-pw@127.0.0.1:{redis_server.port}/0"
    store, other = stores(url, key_prefix="tenant-a:"), stores(url, key_prefix="tenant-a:")
    one, two = clients(cache=store), clients(cache=other)
    ticket = get(one)
    admin.script_flush()
    assert get(two).ticket == ticket.ticket
    time.sleep(0.1)
    admin.script_flush()
    one.invalidate(CTX, ticket=ticket)
    eventually(lambda: len(other._local) == 0, 1.0)
    assert store.available and other.available
    assert all(k.startswith(b"tenant-a:{") for k in admin.keys("*"))


# --- construction, fork, pickling ------------------------------------------------------------------


def test_bad_options_are_configuration_errors_that_name_no_secret() -> None:
    """Bad URLs, prefixes, keys and numbers raise ConfigurationError without the URL's password or the key."""
    cases: list[Callable[[], object]] = [
        lambda: RedisTicketCache.from_url("http://user:hunter2@host/"),
        lambda: RedisTicketCache.from_url("unix:///tmp/x.sock", cluster=True),
        lambda: RedisTicketCache.from_url(42),
        lambda: RedisTicketCache.from_url("redis://:hunter2@127.0.0.1/0", timeout=0),
        lambda: RedisTicketCache.from_url("redis://:hunter2@127.0.0.1:notaport/0"),
        lambda: RedisTicketCache(object()),
        lambda: RedisTicketCache(redis.Redis(), key_prefix="a{b}"),
        lambda: RedisTicketCache(redis.Redis(), key_prefix=""),
        lambda: RedisTicketCache(redis.Redis(), invalidations="yes"),
        lambda: RedisTicketCache(redis.Redis(), encryption_key=b"hunter2-short"),
        lambda: RedisTicketCache(redis.Redis(), encryption_key=[]),
        lambda: RedisTicketCache(redis.Redis(), encryption_key="x" * 32),
        lambda: RedisTicketCache(redis.Redis(), cooloff=True),
        lambda: RedisTicketCache(redis.Redis()).use_derived_key("p", b"short"),
    ]
    for case in cases:
        with pytest.raises(ConfigurationError) as caught:
            case()
        assert "hunter2" not in str(caught.value)


def test_an_unreachable_cluster_is_a_retryable_transport_error() -> None:
    """from_url(cluster=True) with no node answering raises a retryable TransportError, no password in it."""
    with pytest.raises(TransportError) as caught:
        RedisTicketCache.from_url(f"redis://:hunter2@127.0.0.1:{free_port()}/0", cluster=True, timeout=0.1)
    assert caught.value.retryable and "hunter2" not in str(caught.value)


def test_store_is_not_picklable_and_its_repr_shows_no_url(redis_url: str) -> None:
    """pickle refuses the store; its repr names the prefix and state, never the URL."""
    store = RedisTicketCache.from_url(redis_url.replace("redis://", "redis://:pw-canary@"))
    with pytest.raises(ConfigurationError, match="cannot be pickled"):
        pickle.dumps(store)
    assert "pw-canary" not in repr(store) and "sut-soap:" in repr(store)
    store.close()


def test_without_invalidations_no_listener_runs(redis_url: str, stores: Any) -> None:
    """invalidations=False starts no listener thread; its own deletions still publish."""
    store = stores(redis_url, encryption_key=KEY_A, invalidations=False)
    store.get("k")
    assert store._listener is not None and not store._listener.is_alive()


def test_own_and_unknown_messages_are_ignored(redis_url: str, stores: Any) -> None:
    """The listener skips its own messages and names it never saw, and reads str as well as bytes."""
    store = stores(redis_url, encryption_key=KEY_A)
    store.set("k", entry_for(), 60)
    name = store._name("k")
    store._invalidated(f"{store._origin} {name}".encode())
    store._invalidated("other sut-soap:{unknown}")
    assert len(store._local) == 1
    store._invalidated(f"other {name}")
    assert len(store._local) == 0


def test_names_memo_is_bounded(redis_url: str, stores: Any) -> None:
    """The key-to-name memo is cleared once it holds twice the local tier's size."""
    store = stores(redis_url, max_entries=2)
    for i in range(5):
        store._name(f"k{i}")
    assert len(store._names) <= 4


def test_closing_a_pubsub_that_fails_is_quiet() -> None:
    """A listener connection that fails to close is logged at DEBUG, never raised."""

    class Broken:
        def close(self) -> None:
            raise OSError("gone")

    store_module._closed(Broken())
    store_module._closed(None)


def test_works_in_a_forked_child(redis_url: str, stores: Any) -> None:
    """After os.fork the child has its own breaker, origin and listener, and reads and invalidates through Redis."""
    store = stores(redis_url, encryption_key=KEY_A)
    store.set("k", entry_for(), 60)
    store.get("k")
    parent_origin = store._origin
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = False
        try:
            store.clear_local()
            ok = store._origin != parent_origin and store.get("k") is not None and store._listener.is_alive()
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)


def test_module_says_how_to_install_redis_py(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, importing the store says to install sut-soap[redis]."""
    monkeypatch.setitem(sys.modules, "redis", None)
    spec = importlib.util.spec_from_file_location("sut_soap._redis_probe", store_module.__file__)
    assert spec is not None and spec.loader is not None
    with pytest.raises(ImportError, match=r"sut-soap\[redis\]"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


# --- a fleet of real processes -----------------------------------------------------------------


@pytest.fixture
def workers(redis_workers: Callable[..., Worker]) -> Callable[..., Worker]:
    """Starts tests/redis_worker.py processes of this module's application: ``workers(url, emu, *options)``."""
    return lambda url, emu, *options: redis_workers(url, emu.endpoint, CLIENT_SECRET, *options)


def test_four_processes_twenty_cold_tenants_exchange_twenty_times(redis_url: str, emu: Emulator, workers: Any) -> None:
    """Four processes warming the same 20 cold tenants at once cause exactly 20 exchanges and share every ticket."""
    for ctx in FLEET:
        emu.inject(Fault.LATENCY, tenant=ctx, seconds=0.2)
    fleet = [workers(redis_url, emu) for _ in range(4)]
    for worker in fleet:
        worker.ready()
    before = emu.exchange_count
    for worker in fleet:
        worker.send(f"warm {json.dumps(FLEET)}")
    answers = [worker.answer() for worker in fleet]
    assert emu.exchange_count - before == 20
    assert all(a["errors"] == 0 for a in answers)
    assert all(a["tickets"] == answers[0]["tickets"] for a in answers)


def test_holder_killed_mid_exchange_delays_the_others_by_at_most_the_lease(redis_url: str, emu: Emulator,
                                                                          workers: Any) -> None:
    """SIGKILL of the process exchanging for a tenant: another gets a ticket within the lease, with exactly one more exchange."""
    ctx, token = "Fleet019", FLEET["Fleet019"]
    emu.inject(Fault.LATENCY, tenant=ctx, seconds=5, times=1)
    holder = workers(redis_url, emu, "deadline=1", "margin=1").ready()  # lease: 2 s
    others = [workers(redis_url, emu, "deadline=10").ready() for _ in range(2)]
    before = emu.exchange_count
    holder.send(f"get {ctx} {token}")
    eventually(lambda: emu.exchange_count == before + 1, 5.0)  # the holder's exchange is in flight
    for worker in others:
        worker.send(f"get {ctx} {token}")
    time.sleep(0.1)
    holder.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    answers = [worker.answer() for worker in others]
    waited = time.monotonic() - killed
    assert all("ticket" in a for a in answers) and answers[0]["ticket"] == answers[1]["ticket"]
    assert waited < 2.5
    assert emu.exchange_count == before + 2


def test_invalidation_reaches_every_process_within_a_second(redis_url: str, emu: Emulator, workers: Any) -> None:
    """invalidate(ticket=) in one process empties the local tier of three others within a second."""
    fleet = [workers(redis_url, emu).ready() for _ in range(4)]
    tickets = {worker.ask(f"get {CTX} {TOKEN}")["ticket"] for worker in fleet}
    assert len(tickets) == 1
    (ticket,) = tickets
    time.sleep(0.2)
    started = time.monotonic()
    fleet[0].ask(f"invalidate {CTX} {ticket}")
    for worker in fleet[1:]:
        eventually(lambda w=worker: w.ask(f"local {CTX}")["ticket"] is None, 1.0)
    assert time.monotonic() - started < 1.0
