"""AsyncRedisTicketCache: the fleet's Redis ticket store over ``redis.asyncio``, for the async client.

:class:`~sut_soap.RedisTicketCache` (see :mod:`sut_soap.redis_store` for what it does and why)
as an :class:`~sut_soap.AsyncTicketCache`: every command is awaited on the event loop instead of
blocking a thread. It is the same store in every other respect, and one implementation of it
(:mod:`sut_soap._redis_core`): the same keys, entry format (AES-256-GCM at rest, the same
HKDF-derived or given keys, rotation), local tier, leases, compare-and-delete, invalidation
channel and circuit breaker. Sync and async processes of one application on one Redis share
tickets, leases and invalidations.

What differs is only how it waits:

- ``get``, ``set``, ``delete`` and ``delete_if`` are coroutines; ``get_local`` and
  ``delete_local`` answer at once from the local tier, so a warm ``await client.get_ticket``
  costs what it costs with the in-memory store, and ``invalidate`` forgets the ticket in this
  process before it returns;
- ``lease`` is an async context manager; a waiter polls with ``asyncio.sleep`` (2 to 20 ms);
- the invalidation listener is a task on the loop (one Redis connection), started by the first
  ``get`` or ``set`` and ended by :meth:`AsyncRedisTicketCache.aclose`;
- after a fork, the child drops the connections it inherited (without closing them under the
  parent) and starts its own listener on first use.

One store per event loop: ``redis.asyncio`` connections belong to the loop that opened them.
Build it where the loop runs (a FastAPI lifespan) and close it there with ``await store.aclose()``.
Redis Cluster is the sync store's only (``redis.asyncio``'s cluster client lacks pub/sub before
redis-py 6).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

try:
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError:  # tests/test_async_redis_store.py loads this file with redis hidden
    raise ImportError("AsyncRedisTicketCache needs redis-py: pip install 'sut-soap[redis]'") from None

from ._clock import Clock
from ._redis_core import (
    DEFAULT_COOLOFF,
    DEFAULT_KEY_PREFIX,
    DEFAULT_TIMEOUT,
    LISTEN_RETRY,
    LISTEN_SECONDS,
    POLL_FIRST,
    LeaseCore,
    RedisStoreCore,
    checked_reply,
    ticket_digest,
    url_options,
)
from .cache import DEFAULT_MAX_ENTRIES, CachedTicket
from .errors import ConfigurationError

__all__ = ["AsyncRedisTicketCache"]

_log = logging.getLogger("sut_soap.redis_store")


class AsyncRedisTicketCache(RedisStoreCore):
    """An :class:`~sut_soap.AsyncTicketCache` shared by every process on one Redis; see the module docstring.

    Pass it as ``AsyncSystemUserClient(cache=...)``; one store may serve several clients of one
    event loop. Build it from a ``redis.asyncio.Redis`` you configured, with short socket timeouts
    and no retries (as for :class:`~sut_soap.RedisTicketCache`), or with :meth:`from_url`. The
    store never raises because of Redis: it falls back to its local tier.

    Args:
        client: the ``redis.asyncio.Redis`` to use (bytes or str replies).
        key_prefix, encryption_key, cooloff, max_entries, clock: as for
            :class:`~sut_soap.RedisTicketCache`; the same values make the two stores share entries.
        invalidations: listen for other processes' invalidations (a task on the loop with one
            Redis connection); default True.

    Raises:
        ConfigurationError: a client without the Redis commands, a bad prefix, key or number.
    """

    _redis: redis.asyncio.Redis

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        encryption_key: bytes | Sequence[bytes] | None = None,
        cooloff: float = DEFAULT_COOLOFF,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock | None = None,
        invalidations: bool = True,
    ) -> None:
        super().__init__(
            client, key_prefix=key_prefix, encryption_key=encryption_key, cooloff=cooloff, max_entries=max_entries,
            clock=clock, invalidations=invalidations, client_kind="redis.asyncio.Redis",
        )

    def _init_process_state(self) -> None:
        super()._init_process_state()
        self._listening = False  # the listener task was started (or is not wanted)
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    def _reset_after_fork(self) -> None:
        """In a forked child: new locks, breaker and origin; the inherited connections dropped, not closed."""
        super()._reset_after_fork()
        self._redis.connection_pool.reset()  # type: ignore[no-untyped-call]

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        encryption_key: bytes | Sequence[bytes] | None = None,
        cooloff: float = DEFAULT_COOLOFF,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock | None = None,
        invalidations: bool = True,
        **redis_options: Any,
    ) -> AsyncRedisTicketCache:
        """Build the store and its own ``redis.asyncio.Redis`` from a URL; :meth:`aclose` closes that client.

        The URLs and options of :meth:`RedisTicketCache.from_url <sut_soap.RedisTicketCache.from_url>`
        (but ``cluster``). Nothing is sent until the first call.

        Raises:
            ConfigurationError: not a redis://, rediss:// or unix:// URL, or options redis-py
                refuses.
        """
        options = url_options(url, timeout=timeout, cluster=False, retry=Retry(NoBackoff(), 0), more=redis_options)
        try:
            client = redis.asyncio.Redis.from_url(url, **options)
        except (TypeError, ValueError, redis.exceptions.RedisError) as exc:
            raise ConfigurationError(f"redis-py refused the URL or an option ({type(exc).__name__})") from None
        store = cls(
            client, key_prefix=key_prefix, encryption_key=encryption_key, cooloff=cooloff,
            max_entries=max_entries, clock=clock, invalidations=invalidations,
        )
        store._owns_client = True
        return store

    # -- the AsyncTicketCache protocol -------------------------------------------------------------

    async def get(self, key: str) -> CachedTicket | None:
        """The entry from the local tier, else from Redis (kept locally for the shared entry's TTL)."""
        if not self._listening:
            self._start_listener()
        entry, ask = self._local_first(key)
        if not ask:
            return entry
        shared = await self._shared_get(key)
        return shared if shared is not None else entry

    async def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        """Keep ``entry`` locally and, encrypted, in Redis, both for ``ttl`` seconds."""
        if not self._listening:
            self._start_listener()
        self._local.set(key, entry, ttl)
        aead = self._sealing_key(key)
        if aead is None or not self._available():
            return
        name = self._name(key)
        px = LeaseCore._milliseconds(ttl)
        try:
            await self._redis.set(name, self._seal(name, entry, aead, px), px=px)
        except Exception as exc:
            await self._failed("set", exc)
            return
        self._recovered()

    async def delete(self, key: str) -> None:
        """Forget the entry here, in Redis, and (by a message) in every other process's local tier."""
        self.delete_local(key)
        if not self._available():
            return
        name = self._name(key)
        try:
            await self._redis.delete(name)
            await self._redis.publish(self.channel, self._message(name))
        except Exception as exc:
            await self._failed("delete", exc)
            return
        self._recovered()

    async def delete_if(self, key: str, ticket: str) -> bool:
        """Forget the entry only where it still holds ``ticket``: locally, and in Redis in one step.

        A deletion in Redis reaches every other process's local tier by a message. Returns
        whether an entry was forgotten here or in Redis.
        """
        local = self._local.delete_if(key, ticket)
        self._bump()
        if not self._available():
            return local
        name = self._name(key)
        try:
            deleted = await self._delete_if_script(keys=[name], args=[ticket_digest(ticket)])
            if deleted:
                await self._redis.publish(self.channel, self._message(name))
        except Exception as exc:
            await self._failed("delete", exc)
            return local
        self._recovered()
        return local or bool(deleted)

    def lease(self, key: str, *, lease: float, wait: float) -> _AsyncLease:
        """The fleet-wide lease for ``key`` as an async context manager: ``lease`` seconds long, ``wait`` to get it.

        Entering raises :class:`~sut_soap.cache.LockWaitTimeout` if another process still holds
        it after ``wait`` seconds; with Redis unavailable it holds nothing and lets the caller
        in (single flight then holds per process).
        """
        return _AsyncLease(self, key, lease, wait)

    async def aclose(self) -> None:
        """End the listener task and close the Redis client if :meth:`from_url` made it."""
        self._closed = True
        listener = self._listener
        if listener is not None and not listener.done():
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if self._owns_client:
            await self._redis.aclose()

    # -- inside ----------------------------------------------------------------------------------

    async def _shared_get(self, key: str) -> CachedTicket | None:
        target = self._read_target(key)
        if target is None:
            return None
        name, aeads, generation = target
        try:
            reply = checked_reply(await self._redis.get(name))
        except Exception as exc:
            await self._failed("get", exc)
            return None
        self._recovered()
        return self._adopt(key, name, reply, aeads, generation)

    async def _failed(self, operation: str, exc: Exception) -> None:
        self._open_breaker(operation, exc)
        # Idle pooled connections to a Redis that went away are dead too (see RedisTicketCache).
        try:
            await self._redis.connection_pool.disconnect(inuse_connections=False)
        except Exception as error:
            _log.debug("Redis ticket store: dropping idle connections failed (%s)", type(error).__name__)

    # -- invalidations from other processes ------------------------------------------------------

    def _start_listener(self) -> None:
        self._listening = True
        if self._invalidations and not self._closed:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="sut-soap-redis-invalidations")

    async def _listen(self) -> None:
        pubsub: Any = None
        try:
            # redis-py's get_message can swallow a cancellation that races its own timeout
            # (asyncio.timeout in Python 3.11), so aclose() also ends the loop by this flag.
            while not self._closed:
                try:
                    if pubsub is None:
                        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                        await pubsub.subscribe(self.channel)
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_SECONDS)
                except Exception as exc:
                    _log.debug("Redis ticket store: invalidation listener lost Redis (%s)", type(exc).__name__)
                    await _closed(pubsub)
                    pubsub = None
                    await asyncio.sleep(LISTEN_RETRY)
                    continue
                if message is not None and message.get("type") == "message":
                    self._invalidated(message.get("data"))
        finally:
            await _closed(pubsub)


async def _closed(pubsub: Any) -> None:
    if pubsub is not None:
        try:
            await pubsub.aclose()
        except Exception as exc:
            _log.debug("Redis ticket store: closing the listener's connection failed (%s)", type(exc).__name__)


class _AsyncLease(LeaseCore):
    """One fleet-wide lease, awaited: taken on entering (or not, with Redis unavailable), released on leaving."""

    __slots__ = ()

    _store: AsyncRedisTicketCache

    async def __aenter__(self) -> _AsyncLease:
        store = self._store
        if not store._available():
            return self
        token = os.urandom(16).hex()
        ends = time.monotonic() + self._wait
        pause = POLL_FIRST
        while True:
            try:
                acquired = await store._redis.set(self.name, token, nx=True, px=self._lease_ms)
            except Exception as exc:
                await store._failed("lock", exc)
                return self
            store._recovered()
            if acquired:
                self._taken(token)
                return self
            sleep, pause = self._next_pause(ends - time.monotonic(), pause)
            await asyncio.sleep(sleep)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    async def release(self) -> bool:
        """Give the lease up if this owner still holds it (compare-and-delete); say whether it did."""
        token = self._given_up()
        if token is None:
            return False
        try:
            released = await self._store._release_script(keys=[self.name], args=[token])
        except Exception as exc:
            await self._store._failed("unlock", exc)
            return False
        return bool(released)

    async def extend(self, seconds: float) -> bool:
        """Give the lease ``seconds`` more from now if this owner still holds it (compare-and-set)."""
        if self.token is None:
            return False
        try:
            milliseconds = self._milliseconds(seconds)
            extended = await self._store._extend_script(keys=[self.name], args=[self.token, milliseconds])
        except Exception as exc:
            await self._store._failed("extend", exc)
            return False
        return bool(extended)
