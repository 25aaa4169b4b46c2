"""The one clock: every time-dependent decision reads the injected Clock."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from sut_soap._clock import SYSTEM_CLOCK, Clock, as_clock
from sut_soap.cache import CachedTicket, InMemoryTicketCache
from sut_soap.errors import AuthenticationRejectedError, ConfigurationError, TransportError
from sut_soap.retry import RetryPolicy
from sut_soap.signing import timestamp
from sut_soap.ticket import SystemUserTicket
from sut_soap.tokens import JwksKeySource, StaticKeySource, TokenValidator

T0 = datetime(2026, 11, 28, 14, 0, tzinfo=timezone.utc)


class Ticking:
    """A monotonic clock and a sleep that only move when told, recording every wait."""

    def __init__(self) -> None:
        self.now = 500.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_system_clock_reads_the_system_time() -> None:
    """The system clock's wall time, monotonic time and now() are the time module's."""
    assert abs(SYSTEM_CLOCK.wall() - time.time()) < 5
    assert abs(SYSTEM_CLOCK.monotonic() - time.monotonic()) < 5
    assert SYSTEM_CLOCK.now().tzinfo is not None
    assert repr(SYSTEM_CLOCK) == "Clock(system)"


def test_injected_now_drives_wall_time() -> None:
    """A Clock built from now() gives that moment, and its Unix seconds as wall()."""
    clock = Clock(now=lambda: T0)
    assert clock.now() == T0
    assert clock.wall() == T0.timestamp()
    assert repr(clock) == "Clock(injected)"


def test_as_clock_accepts_a_clock_a_now_callable_or_none() -> None:
    """clock= takes a Clock as it is, wraps a bare now() callable, and defaults to the system clock."""
    clock = Clock(now=lambda: T0)
    assert as_clock(clock) is clock
    assert as_clock(None) is SYSTEM_CLOCK
    assert as_clock(lambda: T0).wall() == T0.timestamp()


@pytest.mark.parametrize("bad", [42, "now"])
def test_as_clock_refuses_what_is_not_a_clock(bad: object) -> None:
    """Something that is neither a Clock nor callable is a ConfigurationError at once."""
    with pytest.raises(ConfigurationError):
        as_clock(bad)  # type: ignore[arg-type]


def test_clock_refuses_parts_that_are_not_callable() -> None:
    """A Clock whose monotonic or sleep is not callable is refused when it is built."""
    with pytest.raises(ConfigurationError):
        Clock(monotonic=1.0)  # type: ignore[arg-type]


def test_signing_timestamp_defaults_to_the_system_clock() -> None:
    """timestamp() with no moment stamps the system clock's current UTC minute."""
    before = SYSTEM_CLOCK.now().strftime("%Y%m%d%H%M")
    stamp = timestamp()
    after = SYSTEM_CLOCK.now().strftime("%Y%m%d%H%M")
    assert stamp in (before, after)


def test_in_memory_cache_ttl_runs_on_its_clock() -> None:
    """An InMemoryTicketCache entry expires when the injected monotonic clock passes its ttl."""
    ticking = Ticking()
    cache = InMemoryTicketCache(clock=Clock(monotonic=ticking.monotonic))
    ticket = SystemUserTicket(
        ticket="7T:stand-in", context_identifier="Cust1", serial="1", webapi_url=None, netserver_url=None,
        associate_id=None, expires_at=T0, obtained_at=T0, token="x.y.z", claims={},
    )
    cache.set("k", CachedTicket(ticket, token_fingerprint="f"), 10.0)
    ticking.now += 9.9
    assert cache.get("k") is not None
    ticking.now += 0.2
    assert cache.get("k") is None


def test_retry_waits_and_deadline_use_the_callers_clock() -> None:
    """RetryPolicy.call with a clock sleeps on that clock and measures the deadline on it: no real wait."""
    ticking = Ticking()
    calls: list[float] = []

    def attempt(left: float) -> str:
        calls.append(left)
        if len(calls) < 3:
            raise TransportError("down", retryable=True)
        return "ok"

    policy = RetryPolicy(attempts=3, random=lambda: 1.0, deadline=30.0)
    started = time.monotonic()
    assert policy.call(attempt, what="x", clock=Clock(monotonic=ticking.monotonic, sleep=ticking.sleep)) == "ok"
    assert time.monotonic() - started < 0.4
    assert ticking.waits == [0.5, 1.0]
    assert calls == [30.0, 29.5, 28.5]


def test_retry_own_injected_sleep_wins_over_the_callers_clock() -> None:
    """A RetryPolicy given its own sleep= and monotonic= keeps them even when a clock is passed."""
    own = Ticking()
    other = Ticking()
    policy = RetryPolicy(attempts=2, random=lambda: 1.0, sleep=own.sleep, monotonic=own.monotonic)
    outcomes = iter([TransportError("down", retryable=True), None])

    def attempt(left: float) -> str:
        error = next(outcomes)
        if error is not None:
            raise error
        return "ok"

    assert policy.call(attempt, what="x", clock=Clock(monotonic=other.monotonic, sleep=other.sleep)) == "ok"
    assert own.waits == [0.5] and other.waits == []


def test_validator_reads_wall_time_from_a_clock() -> None:
    """A TokenValidator given a Clock checks exp against that clock's wall time."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    validator = TokenValidator(StaticKeySource([(None, key)]), clock=Clock(now=lambda: T0))
    assert validator._clock() == T0.timestamp()


def test_jwks_refetch_cooldown_reads_monotonic_time_from_a_clock() -> None:
    """A JwksKeySource given a Clock measures its refetch cooldown on that clock's monotonic time."""
    ticking = Ticking()
    source = JwksKeySource("https://online.superoffice.com/login/.well-known/jwks",
                           clock=Clock(monotonic=ticking.monotonic), refetch_cooldown=30)
    try:
        assert source._clock() == 500.0
        ticking.now += 1
        assert source._clock() == 501.0
    finally:
        source.close()


def test_jwks_source_refuses_a_clock_that_is_not_callable() -> None:
    """A JwksKeySource clock that is neither a Clock nor a callable is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="clock must be a Clock or a callable returning monotonic seconds"):
        JwksKeySource("https://online.superoffice.com/login/.well-known/jwks", clock=30)  # type: ignore[arg-type]


def test_client_exchanges_and_validates_on_the_injected_clock() -> None:
    """A client and an emulator both four days in the past agree: the signed minute and the JWT times are the clock's."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sut_soap.client import SystemUserClient
    from sut_soap.testing.emulator import Emulator

    partner = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with Emulator(client_secret="clock-test-secret", partner_public_key=partner.public_key(), clock=lambda: T0) as emu:
        emu.add_tenant("Cust1", system_user_token="tok")
        with SystemUserClient(client_secret="clock-test-secret", private_key=partner, endpoint=emu.endpoint,
                              public_key=emu.public_key, clock=Clock(now=lambda: T0)) as client:
            assert client.clock.now() == T0
            ticket = client.authenticate(context_identifier="Cust1", system_user_token="tok")
            assert ticket.obtained_at == T0
            assert client.get_ticket(context_identifier="Cust1", system_user_token="tok").obtained_at == T0
        with (
            SystemUserClient(client_secret="clock-test-secret", private_key=partner, endpoint=emu.endpoint,
                             public_key=emu.public_key) as system,
            pytest.raises(AuthenticationRejectedError, match="InvalidTimestamp"),
        ):
            system.authenticate(context_identifier="Cust1", system_user_token="tok")


def test_clock_is_public_and_light() -> None:
    """sut_soap.Clock is the _clock module's class, reachable from the package."""
    import sut_soap

    assert sut_soap.Clock is Clock
    assert "Clock" in sut_soap.__all__
