"""What the two Redis ticket stores share: everything but the I/O.

:class:`~sut_soap.RedisTicketCache` (redis-py, blocking) and
:class:`~sut_soap.AsyncRedisTicketCache` (``redis.asyncio``) keep the same entries under the same
keys, take the same leases and publish on the same channel, so sync and async processes of one
application share one fleet. What they share lives here, written once and free of redis-py:

- the checks of their options, and the options ``from_url`` gives redis-py;
- the entry format: naming (a keyed BLAKE2b of the client's key, in a Cluster hash tag), sealing
  and opening (AES-256-GCM, the Redis key, ticket digest and expiry as associated data), the
  keys (``encryption_key=`` with rotation, or each client's derived key);
- the local tier and what may enter it (never past the shared entry, never after an
  invalidation that arrived meanwhile);
- the circuit breaker's decisions and its log lines;
- the handling of invalidation messages, and a lease's bookkeeping;
- the Lua scripts (compare-and-delete, compare-and-extend).

Each store adds only its I/O: the commands, the waits, the listener (a thread, or a task).
See :mod:`sut_soap.redis_store` for what the stores do and why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import os
import threading
from collections.abc import Sequence
from typing import Any, NoReturn, SupportsIndex
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import _fork
from ._clock import SYSTEM_CLOCK, Clock
from .cache import CachedTicket, InMemoryTicketCache, LockWaitTimeout
from .errors import ConfigurationError

__all__ = ["DEFAULT_COOLOFF", "DEFAULT_KEY_PREFIX", "DEFAULT_TIMEOUT", "RedisStoreCore"]

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
POLL_FIRST = 0.002
POLL_MAX = 0.02
LISTEN_SECONDS = 0.5  # how long one read of the listener blocks; also how fast closing ends it
LISTEN_RETRY = 0.5  # after the listener lost Redis
_WARNING_INTERVAL = 60.0
_MAX_TIMEOUT = 60.0

# KEYS[1] the lease, ARGV[1] the owner token: delete it only if this owner still holds it.
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
# ARGV[2] milliseconds: give the lease a new lifetime only if this owner still holds it.
EXTEND = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
# ARGV[1] the ticket digest: delete the entry only if it still holds that ticket (chars 4-35).
DELETE_IF = (
    "local v = redis.call('GET', KEYS[1]) "
    "if v and string.sub(v, 4, 35) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


def ticket_digest(ticket: str) -> str:
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


def checked_reply(reply: object) -> bytes | str | None:
    """A GET's reply, once it has the shape of one (else TypeError: the store counts it as a failure)."""
    if reply is not None and not isinstance(reply, (bytes, str)):
        raise TypeError("unexpected reply")
    return reply


def url_options(url: object, *, timeout: object, cluster: bool, retry: object, more: dict[str, Any]) -> dict[str, Any]:
    """Check ``from_url``'s URL and timeout; return the options for redis-py's ``from_url``.

    Raises:
        ConfigurationError: not a redis://, rediss:// or unix:// URL (unix:// not with a
            cluster), or a timeout out of range. The message never quotes the URL.
    """
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme not in ("redis", "rediss", "unix") or (cluster and scheme == "unix"):
        raise ConfigurationError(
            "url must be a redis://, rediss:// or unix:// URL (unix:// not with cluster=True)",
            hint="for example rediss://user:password@redis.internal:6380/0",
        )
    seconds = _positive(timeout, "timeout", _MAX_TIMEOUT)
    return {"socket_timeout": seconds, "socket_connect_timeout": seconds, "retry": retry, **more}


class RedisStoreCore:
    """The part of a Redis ticket store that does no I/O: options, entry format, local tier, breaker, messages.

    A base class: a store subclasses it and adds its commands (blocking or awaited), its
    listener and its leases. Its ``__init__`` checks the options shared by both stores; see
    :class:`~sut_soap.RedisTicketCache` for their meaning.
    """

    _kind = "a Redis ticket store"

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str,
        encryption_key: bytes | Sequence[bytes] | None,
        cooloff: float,
        max_entries: int,
        clock: Clock | None,
        invalidations: bool,
        client_kind: str,
    ) -> None:
        if not all(callable(getattr(client, name, None)) for name in ("set", "register_script", "publish", "pubsub")):
            raise ConfigurationError(f"client must be a {client_kind}")
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
        self._release_script = client.register_script(RELEASE)
        self._extend_script = client.register_script(EXTEND)
        self._delete_if_script = client.register_script(DELETE_IF)
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
        self._origin = os.urandom(8).hex()

    def _reset_after_fork(self) -> None:
        """In a forked child: new locks, breaker and origin; a listener of its own on first use."""
        self._init_process_state()

    # -- what needs no I/O, public ----------------------------------------------------------------

    def get_local(self, key: str) -> CachedTicket | None:
        """The entry this process holds for ``key`` (its local tier), at once and without I/O; else None."""
        return self._local_get(key)

    def delete_local(self, key: str, ticket: str | None = None) -> None:
        """Forget this process's copy of ``key`` at once (only if it holds ``ticket``, when given), not Redis's."""
        if ticket is None:
            self._local.delete(key)
        else:
            self._local.delete_if(key, ticket)
        self._bump()

    def use_derived_key(self, prefix: str, key: bytes) -> None:
        """The client's hook: encrypt the entries under ``prefix`` with ``key`` (unless ``encryption_key=`` was given).

        The client calls it when it is built, with 32 bytes derived from its client secret.
        """
        if not isinstance(prefix, str) or not prefix or not isinstance(key, bytes) or len(key) != 32:
            raise ConfigurationError("use_derived_key needs a key prefix and 32 bytes")
        self._derived[prefix] = [AESGCM(key)]

    @property
    def available(self) -> bool:
        """False while the circuit breaker keeps Redis out (after a failure, for ``cooloff`` seconds)."""
        down = self._down_until
        return down is None or self._monotonic() >= down

    def clear_local(self) -> None:
        """Forget this process's local tier (Redis keeps its entries)."""
        self._local.clear()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        """Refuse pickling: a store holds its process's connections, listener and keys."""
        raise _fork.not_picklable(f"a {type(self).__name__}")

    def __repr__(self) -> str:
        """The prefix, the local tier's size and whether Redis is in use; no URL, key or ticket."""
        return (
            f"{type(self).__name__}(key_prefix={self.key_prefix!r}, local_entries={len(self._local)}, "
            f"redis={'in use' if self.available else 'unavailable'})"
        )

    # -- names, keys and the entry format ---------------------------------------------------------

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

    def _sealing_key(self, key: str) -> AESGCM | None:
        """The key to seal ``key``'s entry with; None (with one WARNING a minute) when the store has none for it."""
        aeads = self._aeads_for(key)
        if aeads is None:
            self._warn("key", "no encryption key for a client of this Redis ticket store (no encryption_key= and "
                              "no use_derived_key); its tickets stay in this process")
            return None
        return aeads[0]

    def _seal(self, name: str, entry: CachedTicket, aead: AESGCM, px: int) -> str:
        digest = ticket_digest(entry.ticket.ticket)
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

    # -- the two tiers ------------------------------------------------------------------------------

    def _local_first(self, key: str) -> tuple[CachedTicket | None, bool]:
        """The local tier's part of ``get``: ``(entry, whether Redis must be asked, before or after it)``.

        While this process holds the key's lease, Redis is asked first (returns ``(local, True)``:
        Redis's entry wins, the local one is the fallback); otherwise Redis is asked on a miss only.
        """
        if self._refresh and key in self._refresh:
            self._refresh.discard(key)
            return self._local.get(key), True
        entry = self._local_get(key)
        return entry, entry is None

    def _read_target(self, key: str) -> tuple[str, list[AESGCM], int] | None:
        """Before a read from Redis: ``(name, keys, generation)``, or None when Redis is not to be asked."""
        aeads = self._aeads_for(key)
        if aeads is None or not self._available():
            return None
        return self._name(key), aeads, self._generation

    def _adopt(
        self, key: str, name: str, reply: bytes | str | None, aeads: list[AESGCM], generation: int
    ) -> CachedTicket | None:
        """After a read from Redis: the entry, kept locally if no invalidation arrived meanwhile, never past Redis's."""
        if reply is None:
            return None
        opened = self._open(name, reply, aeads)
        if opened is None:
            return None
        entry, expires = opened
        left = expires / 1000 - self._wall()
        if left > 0 and generation == self._generation:
            self._local.set(key, entry, left)
        return entry

    def _message(self, name: str) -> str:
        return f"{self._origin} {name}"

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

    def _open_breaker(self, operation: str, exc: Exception) -> None:
        """The breaker's part of a failure: Redis is left alone for the cool-off; one WARNING per outage."""
        with self._state_lock:
            first = self._down_until is None
            self._down_until = self._monotonic() + self.cooloff
            self._probing = False
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

    def _invalidated(self, data: object) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        origin, _, name = text.partition(" ")
        if origin == self._origin:
            return
        self._bump()
        key = self._by_name.get(name)
        if key is not None:
            self._local.delete(key)


class LeaseCore:
    """One fleet-wide lease's bookkeeping, shared by the sync and the async lease: name, token, deadline, polling."""

    __slots__ = ("_key", "_lease_ms", "_store", "_wait", "name", "token")

    def __init__(self, store: RedisStoreCore, key: str, lease: float, wait: float) -> None:
        self._store = store
        self._key = key
        self._lease_ms = max(1, math.ceil(lease * 1000))
        self._wait = max(0.0, wait)
        self.name = store._name(key) + ":lock"
        self.token: str | None = None

    def _taken(self, token: str) -> None:
        self.token = token
        self._store._refresh.add(self._key)  # holding it, read what the fleet has, not the local copy

    def _given_up(self) -> str | None:
        """Forget the token (the lease is being released); return it, or None if none was held."""
        token, self.token = self.token, None
        self._store._refresh.discard(self._key)
        return token

    @staticmethod
    def _next_pause(left: float, pause: float) -> tuple[float, float]:
        """``(how long to sleep now, the pause after that)``; raises LockWaitTimeout once the wait is over."""
        if left <= 0:
            raise LockWaitTimeout("the fleet-wide lease for this tenant is still held by another process")
        return min(pause, left), min(2 * pause, POLL_MAX)

    @staticmethod
    def _milliseconds(seconds: float) -> int:
        return max(1, math.ceil(seconds * 1000))
