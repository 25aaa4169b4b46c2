"""await AsyncSystemUserClient.tenant_state(): the sync reader's parsing and memory, the GET awaited through the
async client's transport, one GET per tenant across tasks; against the emulator's state API and scripted answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from support import SteppingClock

from sut_soap import (
    AsyncSystemUserClient,
    AuthenticationRejectedError,
    ConfigurationError,
    ProtocolError,
    TenantNotRunningError,
    TenantState,
    TransportError,
    _deadline,
)
from sut_soap.contract import NOT_RUNNING_STATES
from sut_soap.keys import load_private_key
from sut_soap.tenantstate import AsyncTenantStates
from sut_soap.testing.emulator import Emulator
from sut_soap.transport import HeaderMap, HttpResponse

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-async-state-secret-81f"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryAsyncState3"
TRANSIENT = {"OfflineMaintenance", "Provisioning", "MigrationPending"}
VALID = {
    "ContextIdentifier": CTX, "Endpoint": "https://online2.superoffice.com/Cust12345", "State": "Running",
    "IsRunning": True, "ValidUntil": "2999-01-01T00:00:00Z", "Api": "https://online2.superoffice.com/Cust12345/api",
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with one tenant registered before it starts."""
    emu = Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY)
    emu.add_tenant(CTX, system_user_token=TOKEN)
    with emu:
        yield emu


@pytest.fixture
def stepping() -> SteppingClock:
    """A clock that moves only when told."""
    return SteppingClock()


@pytest_asyncio.fixture
async def client(fresh_emu: Emulator, stepping: SteppingClock) -> AsyncIterator[AsyncSystemUserClient]:
    """An async client of the emulator on the stepping clock, closed at teardown."""
    async with AsyncSystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=fresh_emu.endpoint,
                                     clock=stepping.clock) as c:
        yield c


class Scripted:
    """An AsyncTransport answering every GET with ``answer`` (a document, or an HttpResponse), after ``hold`` is set."""

    def __init__(self, answer: Any = None, hold: asyncio.Event | None = None) -> None:
        self.answer = VALID if answer is None else answer
        self.hold = hold
        self.gets: list[str] = []

    async def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        self.gets.append(url)
        if self.hold is not None:
            await self.hold.wait()
        if isinstance(self.answer, HttpResponse):
            return self.answer
        return HttpResponse(200, HeaderMap({"Content-Type": "application/json"}), json.dumps(self.answer).encode())

    async def aclose(self) -> None:
        pass


def reader(transport: Scripted, clock: Any, deadline: float = 5) -> AsyncTenantStates:
    return AsyncTenantStates(transport, "https://online.superoffice.com", clock, deadline=deadline)


# --- the emulator's state API -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_running_tenant_state(client: AsyncSystemUserClient, fresh_emu: Emulator, stepping: SteppingClock) -> None:
    """A running tenant: the same frozen TenantState as the sync client's, read with one GET through the async transport."""
    state = await client.tenant_state(CTX)
    assert isinstance(state, TenantState)
    assert (state.context_identifier, state.state, state.running) == (CTX, "Running", True)
    assert state.api_url == f"{fresh_emu.base_url}/{CTX}/api" and state.valid_until > stepping.wall_now
    assert fresh_emu.state_request_count == 1 and fresh_emu.exchange_count == 0


@pytest.mark.asyncio
async def test_online_maintenance_is_running(client: AsyncSystemUserClient, fresh_emu: Emulator) -> None:
    """OnlineMaintenance has IsRunning true: the state is returned, not raised."""
    fresh_emu.set_tenant_state(CTX, "OnlineMaintenance")
    assert (await client.tenant_state(CTX)).state == "OnlineMaintenance"


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(NOT_RUNNING_STATES))
async def test_each_state_that_is_not_running_raises_its_own_error(
    client: AsyncSystemUserClient, fresh_emu: Emulator, name: str
) -> None:
    """Every documented state with IsRunning false raises TenantNotRunningError (retryable for the transient ones)."""
    ctx = "Cust00000" if name == "Unknown" else CTX  # a tenant the state API does not know is Unknown
    if name != "Unknown":
        fresh_emu.set_tenant_state(CTX, name)
    with pytest.raises(TenantNotRunningError) as caught:
        await client.tenant_state(ctx)
    error = caught.value
    assert not isinstance(error, AuthenticationRejectedError)
    assert error.state == name and error.retryable is (name in TRANSIENT)
    assert error.retry_after is not None and error.tenant_state.running is False


@pytest.mark.asyncio
async def test_state_is_kept_until_valid_until(
    client: AsyncSystemUserClient, fresh_emu: Emulator, stepping: SteppingClock
) -> None:
    """Asked again before ValidUntil: no request; once it has passed (on the client's clock): read again."""
    await client.tenant_state(CTX)
    stepping.advance(299)
    await client.tenant_state(CTX)
    assert fresh_emu.state_request_count == 1
    stepping.advance(2)
    await client.tenant_state(CTX)
    assert fresh_emu.state_request_count == 2


@pytest.mark.asyncio
async def test_state_that_is_not_running_is_kept_too(client: AsyncSystemUserClient, fresh_emu: Emulator) -> None:
    """A tenant in maintenance raises again until ValidUntil without asking the state API again."""
    fresh_emu.set_tenant_state(CTX, "OfflineMaintenance")
    for _ in range(3):
        with pytest.raises(TenantNotRunningError):
            await client.tenant_state(CTX)
    assert fresh_emu.state_request_count == 1


@pytest.mark.asyncio
async def test_twenty_concurrent_callers_cause_one_get(client: AsyncSystemUserClient, fresh_emu: Emulator) -> None:
    """20 tasks asking for a cold tenant's state at once cause one GET and all get the state."""
    got = await asyncio.gather(*(client.tenant_state(CTX) for _ in range(20)))
    assert fresh_emu.state_request_count == 1 and len({id(s) for s in got}) == 1


@pytest.mark.asyncio
async def test_context_identifier_is_checked(client: AsyncSystemUserClient, fresh_emu: Emulator) -> None:
    """An empty tenant or one with a line break is a ConfigurationError, before any request."""
    for bad in ("", "Cust1\n"):
        with pytest.raises(ConfigurationError):
            await client.tenant_state(bad)
    assert fresh_emu.state_request_count == 0


@pytest.mark.asyncio
async def test_state_url_follows_the_environment() -> None:
    """With environment=sod the state is read from https://sod.superoffice.com/api/state/{ctx}, through the async transport."""
    transport = Scripted(HttpResponse(503, HeaderMap(), b""))
    async with AsyncSystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, environment="sod",
                                     transport=transport) as client:
        with pytest.raises(TransportError) as caught:
            await client.tenant_state("Cust 1/2")
    assert transport.gets == ["https://sod.superoffice.com/api/state/Cust%201%2F2"]
    assert caught.value.status == 503 and caught.value.retryable is True


# --- hostile answers: the sync parser, a few representative ones -----------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "match"), [
    ({**VALID, "ContextIdentifier": "Cust99999"}, "not for the tenant"),
    ({**VALID, "Api": "http://online2.superoffice.com/Cust12345/api"}, "not https"),
    ({**VALID, "Api": "https://evil.example/Cust12345/api"}, "points at evil.example"),
    (HttpResponse(200, HeaderMap({"Content-Type": "text/html"}), b"<html/>"), "not labelled JSON"),
], ids=["other-tenant", "plain-http", "outside-superoffice", "html"])
async def test_hostile_answer_is_refused_by_the_shared_parser(
    answer: Any, match: str, stepping: SteppingClock
) -> None:
    """Hostile answers read through the async reader raise the sync parser's ProtocolError, and nothing is kept."""
    states = reader(Scripted(answer), stepping.clock)
    with pytest.raises(ProtocolError, match=match):
        await states.get(CTX)
    assert len(states) == 0 and states._reading == {}


# --- single flight across tasks ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelling_the_first_caller_does_not_cancel_the_read(stepping: SteppingClock) -> None:
    """The task that started the GET is cancelled: the others still get the state, from that one GET."""
    hold = asyncio.Event()
    transport = Scripted(hold=hold)
    states = reader(transport, stepping.clock)
    first = asyncio.create_task(states.get(CTX))
    await asyncio.sleep(0)
    second = asyncio.create_task(states.get(CTX))
    await asyncio.sleep(0)
    first.cancel()
    hold.set()
    assert (await second).running is True
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(transport.gets) == 1 and states._reading == {}


@pytest.mark.asyncio
async def test_a_failed_read_is_shared_then_tried_again(stepping: SteppingClock) -> None:
    """Tasks waiting on a GET that fails all get its error; the next call reads again."""
    transport = Scripted(HttpResponse(503, HeaderMap(), b""))
    states = reader(transport, stepping.clock)
    errors = await asyncio.gather(*(states.get(CTX) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(e, TransportError) for e in errors) and len(transport.gets) == 1
    transport.answer = VALID
    assert (await states.get(CTX)).running and len(transport.gets) == 2


@pytest.mark.asyncio
async def test_waiting_for_another_tasks_read_ends_at_the_deadline() -> None:
    """A task whose budget is shorter than the read it waits for gives up at its deadline (retryable); the read goes on."""
    from sut_soap._clock import SYSTEM_CLOCK

    hold = asyncio.Event()
    transport = Scripted(hold=hold)
    states = reader(transport, SYSTEM_CLOCK, deadline=5)
    first = asyncio.create_task(states.get(CTX))
    await asyncio.sleep(0)
    budget = _deadline.open_budget(0.05, SYSTEM_CLOCK.monotonic)
    try:
        with pytest.raises(TransportError, match="did not finish within the deadline") as caught:
            await states.get(CTX)
    finally:
        _deadline.leave(budget)
    assert caught.value.retryable is True
    hold.set()
    assert (await first).running and len(transport.gets) == 1


@pytest.mark.asyncio
async def test_a_read_cancelled_outright_is_forgotten(stepping: SteppingClock) -> None:
    """A GET task cancelled itself (say at loop shutdown): its waiters see the cancellation, the next call reads again."""
    hold = asyncio.Event()
    transport = Scripted(hold=hold)
    states = reader(transport, stepping.clock)
    waiter = asyncio.create_task(states.get(CTX))
    while not transport.gets:  # the GET is under way
        await asyncio.sleep(0)
    states._reading[CTX.casefold()].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert states._reading == {}
    hold.set()
    assert (await states.get(CTX)).running and len(transport.gets) == 2
