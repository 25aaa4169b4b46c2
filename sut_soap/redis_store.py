"""RedisTicketCache: one ticket per tenant for a whole fleet of processes, kept in Redis.

A service that runs as N processes (gunicorn or Celery workers, pods) for M tenants costs
N x M exchanges when each process keeps its own tickets. With this store every process that
shares a Redis (and a key prefix) shares the tickets, and one exchange per tenant serves the
fleet. It is a :class:`~sut_soap.TicketCache` with every optional method of
:mod:`sut_soap.cache`:

- **Two tiers.** A local :class:`~sut_soap.InMemoryTicketCache` in front of Redis answers a
  warm ``get`` in about a microsecond; a process that has not seen a tenant reads it from Redis
  (one ``GET``; the entry carries the wall-clock time it expires), and keeps it locally no
  longer than the shared entry lives.
- **Fleet-wide single flight** (``lease``). ``SET key token NX PX lease`` with a random owner
  token; released (and extended) only by compare-and-delete (compare-and-set) in a Lua script,
  so a holder never frees a lease that has passed to another process. The client asks for a
  lease of its exchange bound (its deadline plus a margin): the lease cannot run out while its
  holder is still exchanging, and a holder killed mid-exchange holds the fleet up for at most
  that long. A waiter polls every 2 to 20 ms (it learns of the new ticket within about 20 ms of
  the holder storing it); when its own wait runs out it gets
  :class:`~sut_soap.cache.LockWaitTimeout` (the client turns it into a retryable
  ``TransportError``), never a licence to exchange. While holding the lease, the client's next
  read goes to Redis first, past the local tier.
- **Invalidation across the fleet** (``delete_if``). ``invalidate(tenant, ticket=T)`` deletes
  the shared entry only if it still holds T (compare-and-delete in a Lua script, on a digest of
  the ticket kept beside the ciphertext), then publishes the entry's name on the channel
  ``<key_prefix>invalidations``; every process's listener thread drops its local copy within
  milliseconds. A process cut off from Redis misses those messages; its own 401 still reaches it.
- **Encrypted at rest.** Each entry is AES-256-GCM with a fresh 96-bit nonce; the associated
  data is the Redis key (and the ticket digest), so an entry copied to another key, tampered
  with, written by another application or under a key no longer configured fails
  authentication: a miss with one WARNING (at most one a minute) that names no secret. The key
  is ``encryption_key=`` (32 bytes, or a list of them, newest first: encrypt with the first,
  decrypt with any) or, without it, what the client hands over through ``use_derived_key``
  (HKDF-SHA256 of its client secret; the secret never reaches the store). Redis keys are
  ``<key_prefix>{<hash>}`` where the hash (BLAKE2b) covers the client's key, which carries a
  secret-keyed namespace: a dump of Redis shows no ContextIdentifier, ticket, URL or claim. The
  ``{...}`` hash tag puts an entry and its lease (``...}:lock``) in one Redis Cluster slot.
- **No JWT in Redis.** The entry is :meth:`CachedTicket.to_json`: a ticket read back from Redis
  has ``token == ""`` and no ``system_token`` claim. The JWT expires within minutes, and its
  ``system_token`` claim is the tenant's system user token, which has no business in a shared
  store even encrypted. A ticket this process obtained keeps its JWT in the local tier.
- **Redis trouble never fails a call.** Any error from Redis (down, slow past the socket
  timeout, read-only, out of memory, a reply of the wrong shape) opens a circuit breaker: one
  WARNING per outage, then for ``cooloff`` seconds no command is sent (a dead Redis costs a
  call one clock read), then one probe; it closes by itself when Redis answers. Meanwhile
  calls use the local tier and single flight within the process.
- **Fork safety.** redis-py's pools renew themselves in a forked child; the store renews its
  locks and starts its own listener thread there on first use.

Timeouts: :meth:`RedisTicketCache.from_url` builds a client with ``socket_timeout`` and
``socket_connect_timeout`` of :data:`DEFAULT_TIMEOUT` (0.25 s) and no retries, so one Redis
command can add at most that to a call. A ``redis.Redis`` of your own should have the same
(``socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0)``): redis-py's
own defaults are 5 s and three retries.

:class:`~sut_soap.AsyncRedisTicketCache` is the same store over ``redis.asyncio``, for
:class:`~sut_soap.AsyncSystemUserClient`: the same keys, entry format, leases and channel, so sync
and async processes of one application share tickets, leases and invalidations. Everything but
the I/O is one implementation (:mod:`sut_soap._redis_core`).

On the Redis side the ACL user needs, on keys ``<key_prefix>*`` and channel
``<key_prefix>invalidations``: ``GET SET DEL PUBLISH SUBSCRIBE EVALSHA EVAL SCRIPT|LOAD PING``
(redis-py's scripts send EVALSHA and load the script on NOSCRIPT).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

try:
    import redis
    import redis.cluster
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # tests/test_redis_store.py loads this file with redis hidden
    raise ImportError("RedisTicketCache needs redis-py: pip install 'sut-soap[redis]'") from None

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
from .errors import ConfigurationError, TransportError

__all__ = ["DEFAULT_COOLOFF", "DEFAULT_KEY_PREFIX", "DEFAULT_TIMEOUT", "RedisTicketCache"]

_log = logging.getLogger("sut_soap.redis_store")


class RedisTicketCache(RedisStoreCore):
    """A :class:`~sut_soap.TicketCache` shared by every process on one Redis; see the module docstring.

    Pass it as ``SystemUserClient(cache=...)``; one store may serve several clients. Build it
    from a ``redis.Redis`` (or ``redis.cluster.RedisCluster``) you configured, with short socket
    timeouts and no retries (module docstring), or with :meth:`from_url`. The store never raises
    because of Redis: it falls back to its local tier.

    Args:
        client: the ``redis.Redis`` or ``redis.cluster.RedisCluster`` to use. It must return
            bytes or str (``decode_responses`` either way).
        key_prefix: the start of every key and of the channel name; default ``"sut-soap:"``.
            Grant the ACL user this prefix only. No ``{`` or ``}`` (the store adds the hash tag).
        encryption_key: 32 bytes, or a list of 32-byte keys, newest first (entries are written
            with the first and read with any, for rotation). Default None: each client's own
            key from ``use_derived_key``; without either, that client's entries stay local.
        cooloff: seconds Redis is left alone after a failure before one probe; default 2.
        max_entries: the local tier's size (see :class:`~sut_soap.InMemoryTicketCache`).
        clock: the :class:`~sut_soap.Clock` whose monotonic time runs the local TTLs and the
            breaker; default the system clock.
        invalidations: listen for other processes' invalidations (a daemon thread with one
            Redis connection); default True. Off, a process learns of another's invalidation
            only when its own local copy expires or fails.

    Raises:
        ConfigurationError: a client without the Redis commands, a bad prefix, key or number.
    """

    _redis: redis.Redis | redis.cluster.RedisCluster

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
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
            clock=clock, invalidations=invalidations, client_kind="redis.Redis or redis.cluster.RedisCluster",
        )

    def _init_process_state(self) -> None:
        super()._init_process_state()
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cluster: bool = False,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        encryption_key: bytes | Sequence[bytes] | None = None,
        cooloff: float = DEFAULT_COOLOFF,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock | None = None,
        invalidations: bool = True,
        **redis_options: Any,
    ) -> RedisTicketCache:
        """Build the store and its own Redis client from a URL; :meth:`close` closes that client.

        ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS (certificates are
        verified; pass ``ssl_ca_certs=`` for a private CA) or ``unix:///path``. The client gets
        ``socket_timeout`` and ``socket_connect_timeout`` of ``timeout`` and no retries; more
        ``redis_options`` go to redis-py as they are.

        Args:
            url: the Redis URL. It may carry a password: it never appears in errors or logs.
            timeout: seconds per socket operation, above 0 and at most 60; default 0.25.
            cluster: build a ``redis.cluster.RedisCluster`` (it asks the node in the URL for
                the cluster's layout at once).
            key_prefix, encryption_key, cooloff, max_entries, clock, invalidations: as for the
                class.
            redis_options: more keyword arguments for redis-py's ``from_url``.

        Raises:
            ConfigurationError: not a redis://, rediss:// or unix:// URL, or options redis-py
                refuses.
            TransportError: ``cluster=True`` and the cluster could not be reached to learn its
                layout (retryable).
        """
        options = url_options(url, timeout=timeout, cluster=cluster, retry=Retry(NoBackoff(), 0), more=redis_options)
        try:
            client: redis.Redis | redis.cluster.RedisCluster = (
                redis.cluster.RedisCluster.from_url(url, **options) if cluster else redis.Redis.from_url(url, **options)
            )
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.RedisClusterException,
                OSError) as exc:
            raise TransportError(
                f"the Redis cluster could not be reached to learn its nodes ({type(exc).__name__})", retryable=True
            ) from None
        except (TypeError, ValueError, redis.exceptions.RedisError) as exc:
            raise ConfigurationError(f"redis-py refused the URL or an option ({type(exc).__name__})") from None
        store = cls(
            client, key_prefix=key_prefix, encryption_key=encryption_key, cooloff=cooloff,
            max_entries=max_entries, clock=clock, invalidations=invalidations,
        )
        store._owns_client = True
        return store

    # -- the TicketCache protocol ----------------------------------------------------------------

    def get(self, key: str) -> CachedTicket | None:
        """The entry from the local tier, else from Redis (kept locally for the shared entry's TTL)."""
        if self._listener is None:
            self._start_listener()
        entry, ask = self._local_first(key)
        if not ask:
            return entry
        shared = self._shared_get(key)
        return shared if shared is not None else entry

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        """Keep ``entry`` locally and, encrypted, in Redis, both for ``ttl`` seconds."""
        self._local.set(key, entry, ttl)
        aead = self._sealing_key(key)
        if aead is None or not self._available():
            return
        name = self._name(key)
        px = LeaseCore._milliseconds(ttl)
        try:
            self._redis.set(name, self._seal(name, entry, aead, px), px=px)
        except Exception as exc:
            self._failed("set", exc)
            return
        self._recovered()

    def delete(self, key: str) -> None:
        """Forget the entry here, in Redis, and (by a message) in every other process's local tier."""
        self.delete_local(key)
        if not self._available():
            return
        name = self._name(key)
        try:
            self._redis.delete(name)
            self._redis.publish(self.channel, self._message(name))
        except Exception as exc:
            self._failed("delete", exc)
            return
        self._recovered()

    def delete_if(self, key: str, ticket: str) -> bool:
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
            deleted = self._delete_if_script(keys=[name], args=[ticket_digest(ticket)])
            if deleted:
                self._redis.publish(self.channel, self._message(name))
        except Exception as exc:
            self._failed("delete", exc)
            return local
        self._recovered()
        return local or bool(deleted)

    def lease(self, key: str, *, lease: float, wait: float) -> _Lease:
        """The fleet-wide lease for ``key`` as a context manager: ``lease`` seconds long, ``wait`` to get it.

        Entering raises :class:`~sut_soap.cache.LockWaitTimeout` if another process still holds
        it after ``wait`` seconds; with Redis unavailable it holds nothing and lets the caller
        in (single flight then holds per process).
        """
        return _Lease(self, key, lease, wait)

    def close(self) -> None:
        """Stop the listener thread and close the Redis client if :meth:`from_url` made it."""
        self._stop.set()
        listener = self._listener
        if listener is not None and listener.is_alive():
            listener.join(timeout=2 * LISTEN_SECONDS)
        if self._owns_client:
            self._redis.close()

    # -- inside ----------------------------------------------------------------------------------

    def _shared_get(self, key: str) -> CachedTicket | None:
        target = self._read_target(key)
        if target is None:
            return None
        name, aeads, generation = target
        try:
            reply = checked_reply(self._redis.get(name))
        except Exception as exc:
            self._failed("get", exc)
            return None
        self._recovered()
        return self._adopt(key, name, reply, aeads, generation)

    def _failed(self, operation: str, exc: Exception) -> None:
        self._open_breaker(operation, exc)
        # Idle pooled connections to a Redis that went away are dead too: without this, each
        # would fail once after Redis is back, and reopen the breaker each time.
        try:
            pool = getattr(self._redis, "connection_pool", None)
            if pool is not None:
                pool.disconnect(inuse_connections=False)
            else:
                self._redis.disconnect_connection_pools()  # type: ignore[union-attr]
        except Exception as error:
            _log.debug("Redis ticket store: dropping idle connections failed (%s)", type(error).__name__)

    # -- invalidations from other processes ------------------------------------------------------

    def _start_listener(self) -> None:
        with self._state_lock:
            if self._listener is not None:
                return
            thread = threading.Thread(
                target=self._listen, args=(self._stop,), name="sut-soap-redis-invalidations", daemon=True
            )
            self._listener = thread
        if self._invalidations:
            thread.start()

    def _listen(self, stop: threading.Event) -> None:
        pubsub: Any = None
        while not stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                    pubsub.subscribe(self.channel)
                message = pubsub.get_message(timeout=LISTEN_SECONDS)
            except Exception as exc:
                _log.debug("Redis ticket store: invalidation listener lost Redis (%s)", type(exc).__name__)
                _closed(pubsub)
                pubsub = None
                stop.wait(LISTEN_RETRY)
                continue
            if message is not None and message.get("type") == "message":
                self._invalidated(message.get("data"))
        _closed(pubsub)


def _closed(pubsub: Any) -> None:
    if pubsub is not None:
        try:
            pubsub.close()
        except Exception as exc:
            _log.debug("Redis ticket store: closing the listener's connection failed (%s)", type(exc).__name__)


class _Lease(LeaseCore):
    """One fleet-wide lease: taken on entering (or not, with Redis unavailable), released on leaving."""

    __slots__ = ()

    _store: RedisTicketCache

    def __enter__(self) -> _Lease:
        store = self._store
        if not store._available():
            return self
        token = os.urandom(16).hex()
        ends = time.monotonic() + self._wait
        pause = POLL_FIRST
        while True:
            try:
                acquired = store._redis.set(self.name, token, nx=True, px=self._lease_ms)
            except Exception as exc:
                store._failed("lock", exc)
                return self
            store._recovered()
            if acquired:
                self._taken(token)
                return self
            sleep, pause = self._next_pause(ends - time.monotonic(), pause)
            time.sleep(sleep)

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> bool:
        """Give the lease up if this owner still holds it (compare-and-delete); say whether it did."""
        token = self._given_up()
        if token is None:
            return False
        try:
            released = self._store._release_script(keys=[self.name], args=[token])
        except Exception as exc:
            self._store._failed("unlock", exc)
            return False
        return bool(released)

    def extend(self, seconds: float) -> bool:
        """Give the lease ``seconds`` more from now if this owner still holds it (compare-and-set)."""
        if self.token is None:
            return False
        try:
            extended = self._store._extend_script(keys=[self.name], args=[self.token, self._milliseconds(seconds)])
        except Exception as exc:
            self._store._failed("extend", exc)
            return False
        return bool(extended)
