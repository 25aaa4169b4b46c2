"""The ticket store, the ticket value, environments and the package namespace: edges not covered elsewhere (issue 7)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import pytest

import sut_soap
from sut_soap.cache import CachedTicket, InMemoryTicketCache
from sut_soap.environments import normalise_environment
from sut_soap.errors import ConfigurationError
from sut_soap.ticket import SystemUserTicket
from sut_soap.tokens import CLAIM_ASSOCIATE_ID, CLAIM_CTX, CLAIM_SERIAL, CLAIM_TICKET

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


class _SwappingDict(dict):  # type: ignore[type-arg]
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


def test_non_numeric_associate_id_is_none() -> None:
    """An associateid claim that is not an integer gives associate_id None, not an error."""
    assert ticket(**{CLAIM_ASSOCIATE_ID: "five"}).associate_id is None
    assert ticket(**{CLAIM_ASSOCIATE_ID: " 5 "}).associate_id == 5


def test_environment_must_be_a_string() -> None:
    """A non-string environment is refused, listing the valid names."""
    with pytest.raises(ConfigurationError, match="sod, qaonline, online"):
        normalise_environment(None)  # type: ignore[arg-type]


def test_package_dir_lists_the_public_api() -> None:
    """dir(sut_soap) is the sorted public API, lazy names included."""
    assert dir(sut_soap) == sorted(sut_soap.__all__)
