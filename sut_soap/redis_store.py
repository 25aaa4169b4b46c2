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

On the Redis side the ACL user needs, on keys ``<key_prefix>*`` and channel
``<key_prefix>invalidations``: ``GET SET DEL PUBLISH SUBSCRIBE EVALSHA EVAL SCRIPT|LOAD PING``
(redis-py's scripts send EVALSHA and load the script on NOSCRIPT).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn, SupportsIndex
from urllib.parse import urlsplit

try:
    import redis
    import redis.cluster
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # tests/test_redis_store.py loads this file with redis hidden
    raise ImportError("RedisTicketCache needs redis-py: pip install 'sut-soap[redis]'") from None

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import _fork
from ._clock import SYSTEM_CLOCK, Clock
from .cache import DEFAULT_MAX_ENTRIES, CachedTicket, InMemoryTicketCache, LockWaitTimeout
from .errors import ConfigurationError, TransportError

__all__ = ["DEFAULT_COOLOFF", "DEFAULT_KEY_PREFIX", "DEFAULT_TIMEOUT", "RedisTicketCache"]

_log = logging.getLogger("sut_soap.redis_store")

#: The key prefix unless told otherwise (entries, leases and the invalidation channel).
DEFAULT_KEY_PREFIX = "sut-soap:"
#: Seconds each socket operation (connect, send, read) of a client built by ``from_url`` may take.
DEFAULT_TIMEOUT = 0.25
#: Seconds Redis is left alone after a failure before one probe.
DEFAULT_COOLOFF = 2.0

# Entry layout: "s2.<32 hex ticket digest>.<expiry, Unix ms>.<base64url(nonce + AES-GCM ciphertext)>".
# The expiry lets a reader keep its local copy no longer than the entry lives with a plain GET,
# which costs a quarter less than a script returning the entry and its PTTL.
_FORMAT = "s2"
_NONCE = 12
_POLL_FIRST = 0.002
_POLL_MAX = 0.02
_LISTEN_SECONDS = 0.5  # how long one read of the listener blocks; also how fast close() ends it
_LISTEN_RETRY = 0.5  # after the listener lost Redis
_WARNING_INTERVAL = 60.0
_MAX_TIMEOUT = 60.0

# KEYS[1] the lease, ARGV[1] the owner token: delete it only if this owner still holds it.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
# ARGV[2] milliseconds: give the lease a new lifetime only if this owner still holds it.
_EXTEND = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
# ARGV[1] the ticket digest: delete the entry only if it still holds that ticket (chars 4-35).
_DELETE_IF = (
    "local v = redis.call('GET', KEYS[1]) "
    "if v and string.sub(v, 4, 35) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


def _ticket_digest(ticket: str) -> str:
    """What the compare-and-delete compares: a digest of the ticket, never the ticket."""
    data = ticket.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16, person=b"sut-soap-ticket").hexdigest()


def _aeads(encryption_key: object) -> list[AESGCM] | None:
    if encryption_key is None:
        return None
    keys = [encryption_key] if isinstance(encryption_key, (bytes, bytearray)) else encryption_key
    if (
        not isinstance(keys, (list, tuple))
        or not keys
        or not all(isinstance(k, (bytes, bytearray)) and len(k) == 32 for k in keys)
    ):
        raise ConfigurationError(
            "encryption_key must be 32 bytes (AES-256) or a list of such keys, newest first",
            hint="make one with os.urandom(32) and keep it where you keep secrets",
        )
    return [AESGCM(bytes(k)) for k in keys]


def _positive(value: object, name: str, upper: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= upper:
        raise ConfigurationError(f"{name} must be a positive number of seconds, at most {upper:g}")
    return float(value)


class RedisTicketCache:
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
        if not all(callable(getattr(client, name, None)) for name in ("set", "register_script", "publish", "pubsub")):
            raise ConfigurationError("client must be a redis.Redis or redis.cluster.RedisCluster")
        if not isinstance(key_prefix, str) or not key_prefix or any(c in key_prefix for c in "{}") or not (
            key_prefix.isprintable()
        ):
            raise ConfigurationError("key_prefix must be a non-empty printable string without { or }")
        if not isinstance(invalidations, bool):
            raise ConfigurationError("invalidations must be True or False")
        self.key_prefix = key_prefix
        self.cooloff = _positive(cooloff, "cooloff", 3600.0)
        self._keys = _aeads(encryption_key)
        self._derived: dict[str, list[AESGCM]] = {}
        self._redis = client
        self._owns_client = False
        self._local = InMemoryTicketCache(clock=clock, max_entries=max_entries)
        self._local_get = self._local.get
        self._max_names = 2 * max_entries
        self._monotonic = (clock or SYSTEM_CLOCK).monotonic
        self._wall = (clock or SYSTEM_CLOCK).wall
        self._release_script = client.register_script(_RELEASE)
        self._extend_script = client.register_script(_EXTEND)
        self._delete_if_script = client.register_script(_DELETE_IF)
        self.channel = key_prefix + "invalidations"
        self._invalidations = invalidations
        self._names: dict[str, str] = {}  # the client's key -> the Redis key
        self._by_name: dict[str, str] = {}  # and back, for the invalidation messages
        self._refresh: set[str] = set()  # keys whose next read goes to Redis first (a lease is held)
        self._warned: dict[str, float] = {}
        self._init_process_state()
        _fork.register(self)

    def _init_process_state(self) -> None:
        self._state_lock = threading.Lock()
        self._down_until: float | None = None
        self._probing = False
        self._generation = 0
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._origin = os.urandom(8).hex()

    def _reset_after_fork(self) -> None:
        """In a forked child: new locks, breaker and origin; a listener of its own on first use."""
        self._init_process_state()

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
        scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
        if scheme not in ("redis", "rediss", "unix") or (cluster and scheme == "unix"):
            raise ConfigurationError(
                "url must be a redis://, rediss:// or unix:// URL (unix:// not with cluster=True)",
                hint="for example rediss://user:password@redis.internal:6380/0",
            )
        seconds = _positive(timeout, "timeout", _MAX_TIMEOUT)
        options: dict[str, Any] = {
            "socket_timeout": seconds,
            "socket_connect_timeout": seconds,
            "retry": Retry(NoBackoff(), 0),
            **redis_options,
        }
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
        if self._refresh and key in self._refresh:
            self._refresh.discard(key)
            shared = self._shared_get(key)
            return shared if shared is not None else self._local.get(key)
        entry = self._local_get(key)
        return entry if entry is not None else self._shared_get(key)

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        """Keep ``entry`` locally and, encrypted, in Redis, both for ``ttl`` seconds."""
        self._local.set(key, entry, ttl)
        aeads = self._aeads_for(key)
        if aeads is None:
            self._warn("key", "no encryption key for a client of this Redis ticket store (no encryption_key= and "
                              "no use_derived_key); its tickets stay in this process")
            return
        if not self._available():
            return
        name = self._name(key)
        px = max(1, math.ceil(ttl * 1000))
        value = self._seal(name, entry, aeads[0], px)
        try:
            self._redis.set(name, value, px=px)
        except Exception as exc:
            self._failed("set", exc)
            return
        self._recovered()

    def delete(self, key: str) -> None:
        """Forget the entry here, in Redis, and (by a message) in every other process's local tier."""
        self._local.delete(key)
        self._bump()
        if not self._available():
            return
        name = self._name(key)
        try:
            self._redis.delete(name)
            self._publish(name)
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
            deleted = self._delete_if_script(keys=[name], args=[_ticket_digest(ticket)])
            if deleted:
                self._publish(name)
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

    def use_derived_key(self, prefix: str, key: bytes) -> None:
        """The client's hook: encrypt the entries under ``prefix`` with ``key`` (unless ``encryption_key=`` was given).

        The client calls it when it is built, with 32 bytes derived from its client secret.
        """
        if not isinstance(prefix, str) or not prefix or not isinstance(key, bytes) or len(key) != 32:
            raise ConfigurationError("use_derived_key needs a key prefix and 32 bytes")
        self._derived[prefix] = [AESGCM(key)]

    # -- the rest of the public API --------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while the circuit breaker keeps Redis out (after a failure, for ``cooloff`` seconds)."""
        down = self._down_until
        return down is None or self._monotonic() >= down

    def clear_local(self) -> None:
        """Forget this process's local tier (Redis keeps its entries)."""
        self._local.clear()

    def close(self) -> None:
        """Stop the listener thread and close the Redis client if :meth:`from_url` made it."""
        self._stop.set()
        listener = self._listener
        if listener is not None and listener.is_alive():
            listener.join(timeout=2 * _LISTEN_SECONDS)
        if self._owns_client:
            self._redis.close()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        """Refuse pickling: a store holds its process's connections, threads and keys."""
        raise _fork.not_picklable("a RedisTicketCache")

    def __repr__(self) -> str:
        """The prefix, the local tier's size and whether Redis is in use; no URL, key or ticket."""
        return (
            f"RedisTicketCache(key_prefix={self.key_prefix!r}, local_entries={len(self._local)}, "
            f"redis={'in use' if self.available else 'unavailable'})"
        )

    # -- inside ----------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        name = self._names.get(key)
        if name is None:
            digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16, person=b"sut-soap-redis")
            name = f"{self.key_prefix}{{{digest.hexdigest()}}}"
            if len(self._names) >= self._max_names:
                self._names.clear()
                self._by_name.clear()
            self._names[key] = name
            self._by_name[name] = key
        return name

    def _aeads_for(self, key: str) -> list[AESGCM] | None:
        if self._keys is not None:
            return self._keys
        for prefix, aeads in self._derived.items():
            if key.startswith(prefix):
                return aeads
        return None

    def _seal(self, name: str, entry: CachedTicket, aead: AESGCM, px: int) -> str:
        digest = _ticket_digest(entry.ticket.ticket)
        expires = int(self._wall() * 1000) + px
        nonce = os.urandom(_NONCE)
        sealed = aead.encrypt(nonce, entry.to_json().encode("utf-8"), f"{name}\x00{digest}\x00{expires}".encode())
        return f"{_FORMAT}.{digest}.{expires}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def _open(self, name: str, value: bytes | str, aeads: list[AESGCM]) -> tuple[CachedTicket, int] | None:
        try:
            text = value.decode("ascii") if isinstance(value, bytes) else value
            version, digest, expires, blob = text.split(".")
            if version != _FORMAT or not expires.isdigit():
                raise ValueError("unknown format")
            raw = base64.urlsafe_b64decode(blob)
            data = f"{name}\x00{digest}\x00{expires}".encode()
            for aead in aeads:
                try:
                    plain = aead.decrypt(raw[:_NONCE], raw[_NONCE:], data)
                    break
                except InvalidTag:
                    continue
            else:
                raise ValueError("authentication failed")
            return CachedTicket.from_json(plain), int(expires)
        except (ValueError, binascii.Error):
            self._warn(
                "entry", "a Redis ticket entry failed authentication or could not be read (tampered, another "
                         "application's, or sealed with a key no longer configured); treated as a miss",
            )
            return None

    def _shared_get(self, key: str) -> CachedTicket | None:
        aeads = self._aeads_for(key)
        if aeads is None or not self._available():
            return None
        name = self._name(key)
        generation = self._generation
        try:
            reply = self._redis.get(name)
            if reply is not None and not isinstance(reply, (bytes, str)):
                raise TypeError("unexpected reply")
        except Exception as exc:
            self._failed("get", exc)
            return None
        self._recovered()
        if reply is None:
            return None
        opened = self._open(name, reply, aeads)
        if opened is None:
            return None
        entry, expires = opened
        # Kept locally only if no invalidation arrived meanwhile, and never past the shared entry.
        left = expires / 1000 - self._wall()
        if left > 0 and generation == self._generation:
            self._local.set(key, entry, left)
        return entry

    def _publish(self, name: str) -> None:
        self._redis.publish(self.channel, f"{self._origin} {name}")

    def _bump(self) -> None:
        with self._state_lock:
            self._generation += 1

    # -- the circuit breaker ---------------------------------------------------------------------

    def _available(self) -> bool:
        down = self._down_until
        if down is None:
            return True
        if self._monotonic() < down:
            return False
        with self._state_lock:  # cool-off over: one caller probes, the others keep out meanwhile
            if self._probing:
                return False
            self._probing = True
            return True

    def _recovered(self) -> None:
        if self._down_until is None:
            return
        with self._state_lock:
            self._down_until = None
            self._probing = False
        _log.info("Redis ticket store reachable again; sharing tickets with the fleet again")

    def _failed(self, operation: str, exc: Exception) -> None:
        with self._state_lock:
            first = self._down_until is None
            self._down_until = self._monotonic() + self.cooloff
            self._probing = False
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
        # One WARNING per outage; a Redis that flaps (or a pooled connection that dies just after
        # it came back) gets at most one a minute.
        last = self._warned.get("outage")
        warn = first and (last is None or self._monotonic() - last >= _WARNING_INTERVAL)
        if warn:
            self._warned["outage"] = self._monotonic()
        _log.log(
            logging.WARNING if warn else logging.DEBUG,
            "Redis ticket store: %s failed (%s); using this process's tickets and single flight, "
            "trying Redis again in %g s", operation, type(exc).__name__, self.cooloff,
        )

    def _warn(self, kind: str, message: str) -> None:
        now = self._monotonic()
        last = self._warned.get(kind)
        level = logging.DEBUG if last is not None and now - last < _WARNING_INTERVAL else logging.WARNING
        if level == logging.WARNING:
            self._warned[kind] = now
        _log.log(level, message)

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
                message = pubsub.get_message(timeout=_LISTEN_SECONDS)
            except Exception as exc:
                _log.debug("Redis ticket store: invalidation listener lost Redis (%s)", type(exc).__name__)
                _closed(pubsub)
                pubsub = None
                stop.wait(_LISTEN_RETRY)
                continue
            if message is not None and message.get("type") == "message":
                self._invalidated(message.get("data"))
        _closed(pubsub)

    def _invalidated(self, data: object) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        origin, _, name = text.partition(" ")
        if origin == self._origin:
            return
        self._bump()
        key = self._by_name.get(name)
        if key is not None:
            self._local.delete(key)


def _closed(pubsub: Any) -> None:
    if pubsub is not None:
        try:
            pubsub.close()
        except Exception as exc:
            _log.debug("Redis ticket store: closing the listener's connection failed (%s)", type(exc).__name__)


class _Lease:
    """One fleet-wide lease: taken on entering (or not, with Redis unavailable), released on leaving."""

    __slots__ = ("_key", "_lease_ms", "_store", "_wait", "name", "token")

    def __init__(self, store: RedisTicketCache, key: str, lease: float, wait: float) -> None:
        self._store = store
        self._key = key
        self._lease_ms = max(1, math.ceil(lease * 1000))
        self._wait = max(0.0, wait)
        self.name = store._name(key) + ":lock"
        self.token: str | None = None

    def __enter__(self) -> _Lease:
        store = self._store
        if not store._available():
            return self
        token = os.urandom(16).hex()
        ends = time.monotonic() + self._wait
        pause = _POLL_FIRST
        while True:
            try:
                acquired = store._redis.set(self.name, token, nx=True, px=self._lease_ms)
            except Exception as exc:
                store._failed("lock", exc)
                return self
            store._recovered()
            if acquired:
                self.token = token
                store._refresh.add(self._key)  # holding it, read what the fleet has, not the local copy
                return self
            left = ends - time.monotonic()
            if left <= 0:
                raise LockWaitTimeout("the fleet-wide lease for this tenant is still held by another process")
            time.sleep(min(pause, left))
            pause = min(2 * pause, _POLL_MAX)

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> bool:
        """Give the lease up if this owner still holds it (compare-and-delete); say whether it did."""
        token, self.token = self.token, None
        self._store._refresh.discard(self._key)
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
            milliseconds = max(1, math.ceil(seconds * 1000))
            extended = self._store._extend_script(keys=[self.name], args=[self.token, milliseconds])
        except Exception as exc:
            self._store._failed("extend", exc)
            return False
        return bool(extended)
