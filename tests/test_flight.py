"""Single flight and the rejection memory (sut_soap._flight), through SystemUserClient: one caller
exchanges per tenant and token while the others wait for its outcome or are served the still-valid
ticket; rejections are remembered for a cooldown, in a bounded memo. Races are forced with hooked
locks and events, never left to timing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support import (
    FORWARD,
    ClientFactory,
    FakeResponse,
    FrozenClock,
    HookedLock,
    ScriptedTransport,
    SteppingClock,
    rejection,
)

import sut_soap._flight as flight_module
from sut_soap import AuthenticationRejectedError, SystemUserClient, SystemUserTicket, TransportError
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator
from sut_soap.transport import HttpTransport

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-fl1ght"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryFl1ght1"
SECRETS = (CLIENT_SECRET, TOKEN)
NOWHERE = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"  # never contacted
WAIT = 5.0  # seconds any ordering event may take before the test fails instead of hanging


# --- helpers ----------------------------------------------------------------------------------


def flight_class(done: Callable[[], threading.Event]) -> type[Any]:
    """A Flight whose ``done`` event is made by ``done``, to observe or cut the followers' wait."""

    class Flight(flight_module.Flight):
        __slots__ = ()

        def __init__(self) -> None:
            super().__init__()
            self.done = done()

    return Flight


class SignallingEvent(threading.Event):
    """Sets ``waiting`` when a follower starts waiting on it."""

    def __init__(self, waiting: threading.Event) -> None:
        super().__init__()
        self.waiting = waiting

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


class TimedOutEvent(threading.Event):
    """Every wait on it times out at once; the timeouts asked for are kept."""

    timeouts: ClassVar[list[float | None]] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return False


def blocking(until: threading.Event, then: Callable[[], Any]) -> tuple[Callable[[], Any], threading.Event]:
    """A scripted action that signals it started, waits for ``until``, then returns ``then()``; and that signal."""
    entered = threading.Event()

    def action() -> Any:
        entered.set()
        assert until.wait(WAIT)
        return then()

    return action, entered


def interrupt() -> Any:
    """A scripted action that is interrupted (Ctrl-C)."""
    raise KeyboardInterrupt


class Outcome:
    """Runs a call on a thread and keeps what it returned or raised (BaseException included)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.value = call()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "a caller is stuck"


def assert_no_secrets(*texts: str) -> None:
    for secret in SECRETS:
        assert all(secret not in text for text in texts)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with the tenant CTX."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


@pytest.fixture
def make_client() -> Iterator[Callable[..., SystemUserClient]]:
    """Clients with this module's secret and key, towards NOWHERE unless told otherwise; closed at teardown."""
    factory = ClientFactory(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=NOWHERE)
    yield factory
    factory.close()


def get(client: SystemUserClient, ctx: str = CTX, token: str = TOKEN) -> SystemUserTicket:
    return client.get_ticket(context_identifier=ctx, system_user_token=token)


# --- single flight ----------------------------------------------------------------------------


def test_callers_get_the_valid_ticket_while_one_renews_it(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """While one caller renews a still-valid ticket, others get that ticket at once instead of waiting."""
    clock = SteppingClock()
    transport = ScriptedTransport(HttpTransport())
    client = make_client(emu.endpoint, transport=transport, clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
    first = get(client)
    clock.advance(400)
    release = threading.Event()
    hold, entered = blocking(release, lambda: FORWARD)
    transport.script.append(hold)
    renewer = Outcome(lambda: get(client))
    assert entered.wait(WAIT)
    others = [Outcome(lambda: get(client)) for _ in range(3)]
    for other in others:
        other.join()  # they return while the renewal is still held
        assert other.error is None and other.value is first
    assert not release.is_set() and renewer.thread.is_alive()
    release.set()
    renewer.join()
    assert renewer.error is None
    assert isinstance(renewer.value, SystemUserTicket) and renewer.value.ticket != first.ticket
    assert get(client) is renewer.value
    assert len(transport.posts) == 2


def test_followers_receive_the_leaders_error(make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller waiting on another's exchange for the same tenant gets that exchange's error, with no exchange of its own."""
    waiting = threading.Event()
    monkeypatch.setattr(flight_module, "Flight", flight_class(lambda: SignallingEvent(waiting)))
    transport = ScriptedTransport()
    client = make_client(transport=transport)
    reject_once_followed, entered = blocking(waiting, lambda: FakeResponse(rejection("InvalidSystemToken")))
    transport.script.append(reject_once_followed)
    leader = Outcome(lambda: get(client))
    assert entered.wait(WAIT)
    follower = Outcome(lambda: get(client))
    leader.join()
    follower.join()
    assert isinstance(leader.error, AuthenticationRejectedError)
    assert follower.error is leader.error
    assert len(transport.posts) == 1
    assert not client._flights


def test_followers_of_an_interrupted_leader_exchange_themselves(
    make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader interrupted without an outcome (KeyboardInterrupt) wakes its followers, who exchange themselves."""
    waiting = threading.Event()
    monkeypatch.setattr(flight_module, "Flight", flight_class(lambda: SignallingEvent(waiting)))
    transport = ScriptedTransport()
    client = make_client(transport=transport)
    interrupted, entered = blocking(waiting, interrupt)
    transport.script += [interrupted, lambda: FakeResponse(rejection("InvalidSystemToken"))]
    leader = Outcome(lambda: get(client))
    assert entered.wait(WAIT)
    follower = Outcome(lambda: get(client))
    leader.join()
    follower.join()
    assert isinstance(leader.error, KeyboardInterrupt)
    assert isinstance(follower.error, AuthenticationRejectedError)
    assert "remembered" not in str(follower.error)
    assert [name for _, name in transport.posts] == [leader.thread.name, follower.thread.name]
    assert not client._flights


def test_follower_gives_up_at_its_own_deadline(
    make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller waiting on a stuck exchange waits what is left of its own deadline=, then gets a retryable TransportError."""
    TimedOutEvent.timeouts = []
    monkeypatch.setattr(flight_module, "Flight", flight_class(TimedOutEvent))
    transport = ScriptedTransport()  # no server: the held exchange then fails to connect
    client = make_client(transport=transport, timeout=(2.0, 3.0), deadline=12.0)
    release = threading.Event()
    stuck, entered = blocking(release, lambda: FORWARD)
    transport.script.append(stuck)
    leader = Outcome(lambda: get(client))
    assert entered.wait(WAIT)
    with pytest.raises(TransportError, match=f"exchange for tenant {CTX} in another thread did not finish") as info:
        get(client)
    assert info.value.retryable is True
    assert len(TimedOutEvent.timeouts) == 1 and 11.0 < TimedOutEvent.timeouts[0] <= 12.0
    release.set()
    leader.join()
    assert isinstance(leader.error, TransportError)
    assert len(transport.posts) == 1
    assert_no_secrets(str(info.value), repr(info.value))


# --- the rejection memory ---------------------------------------------------------------------


def test_rejection_remembered_while_queueing_is_raised_without_an_exchange(
    make_client: Callable[..., SystemUserClient],
) -> None:
    """A rejection remembered after this caller's first check but before it leads is raised, not exchanged again."""
    transport = ScriptedTransport()
    transport.by_tenant[CTX] = lambda: FakeResponse(rejection("InvalidSystemToken"))
    client = make_client(transport=transport)
    racing: list[BaseException] = []

    def other_caller_is_rejected_first() -> None:
        try:
            get(client)
        except AuthenticationRejectedError as exc:
            racing.append(exc)

    client._flights._lock = HookedLock(other_caller_is_rejected_first)  # type: ignore[assignment]
    with pytest.raises(AuthenticationRejectedError, match="remembered") as info:
        get(client)
    [first] = racing
    assert "remembered" not in str(first)
    assert info.value is not first and info.value.error_message == first.error_message == "InvalidSystemToken"
    assert len(transport.posts) == 1
    assert not client._flights


def test_full_rejection_memo_drops_stale_entries_first(
    make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full rejection memo makes room by dropping cooled-down entries, and keeps the live ones."""
    monkeypatch.setattr(flight_module, "REJECTION_MEMORY_SIZE", 2)
    clock = FrozenClock()
    transport = ScriptedTransport()
    transport.by_tenant[CTX] = lambda: FakeResponse(rejection("InvalidSystemToken"))
    client = make_client(transport=transport, clock=clock, rejection_cooldown=60)

    def reject(token: str) -> AuthenticationRejectedError:
        with pytest.raises(AuthenticationRejectedError) as info:
            get(client, CTX, token)
        return info.value

    reject("token-a")  # will have cooled down
    clock.advance(61)
    reject("token-b")
    reject("token-c")  # memo full: token-a (cooled down) goes, token-b (live) stays
    assert len(transport.posts) == 3
    assert "remembered" in str(reject("token-b"))
    assert "remembered" in str(reject("token-c"))
    assert len(transport.posts) == 3
    assert len(client._rejections) == 2


def test_a_thousand_and_one_rejected_tenants_are_all_remembered(make_client: Callable[..., SystemUserClient]) -> None:
    """1,001 rejected tenants (a wrong client secret across a fleet) are all answered from memory the second time."""
    tenants = [f"Cust{index:05d}" for index in range(1001)]
    transport = ScriptedTransport()
    for tenant in tenants:
        transport.by_tenant[tenant] = lambda: FakeResponse(rejection("InvalidApplicationToken"))
    client = make_client(transport=transport)
    for _ in range(2):
        for tenant in tenants:
            with pytest.raises(AuthenticationRejectedError):
                get(client, tenant)
    assert len(transport.posts) == 1001


def test_rejection_memo_past_its_size_has_no_cliff(
    make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its size the memo keeps the live rejections it holds: only the excess tenants are exchanged again."""
    monkeypatch.setattr(flight_module, "REJECTION_MEMORY_SIZE", 3)
    tenants = [f"Cust{index:05d}" for index in range(4)]
    transport = ScriptedTransport()
    for tenant in tenants:
        transport.by_tenant[tenant] = lambda: FakeResponse(rejection("InvalidApplicationToken"))
    client = make_client(transport=transport)
    for _ in range(3):
        for tenant in tenants:
            with pytest.raises(AuthenticationRejectedError):
                get(client, tenant)
    assert len(transport.posts) == 4 + 1 + 1  # the fourth tenant each round, the other three once
    assert len(client._rejections) == 3
