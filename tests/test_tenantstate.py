"""client.tenant_state(): SuperOffice's tenant state API read through the client's transport, against the
emulator's state API and against scripted hostile answers; what it keeps and for how long."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support import RecordingServer, SteppingClock

from sut_soap import (
    AuthenticationRejectedError,
    ConfigurationError,
    ProtocolError,
    SutSoapError,
    SystemUserClient,
    TenantNotRunningError,
    TenantState,
    TransportError,
)
from sut_soap.contract import NOT_RUNNING_STATES
from sut_soap.keys import load_private_key
from sut_soap.tenantstate import TenantStates, parse_state, state_url
from sut_soap.testing.emulator import Emulator
from sut_soap.transport import HeaderMap, HttpResponse

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-state-secret-3e9"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryState7"
TRANSIENT = {"OfflineMaintenance", "Provisioning", "MigrationPending"}


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


@pytest.fixture
def client(fresh_emu: Emulator, stepping: SteppingClock) -> Iterator[SystemUserClient]:
    """A client of the emulator on the stepping clock."""
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=fresh_emu.endpoint,
                          clock=stepping.clock) as c:
        yield c


# --- the emulator's state API -------------------------------------------------------------------


def test_running_tenant_state(client: SystemUserClient, fresh_emu: Emulator, stepping: SteppingClock) -> None:
    """A running tenant: a frozen TenantState with its endpoint, API URL and an aware ValidUntil, read with one GET."""
    state = client.tenant_state(CTX)
    assert isinstance(state, TenantState)
    assert (state.context_identifier, state.state, state.running) == (CTX, "Running", True)
    assert state.endpoint == f"{fresh_emu.base_url}/{CTX}" and state.api_url == f"{fresh_emu.base_url}/{CTX}/api"
    assert state.valid_until.tzinfo is not None and state.valid_until > stepping.wall_now
    assert fresh_emu.state_request_count == 1 and fresh_emu.exchange_count == 0
    with pytest.raises(AttributeError):
        state.running = False  # type: ignore[misc]


def test_online_maintenance_is_running(client: SystemUserClient, fresh_emu: Emulator) -> None:
    """OnlineMaintenance has IsRunning true: the state is returned, not raised."""
    fresh_emu.set_tenant_state(CTX, "OnlineMaintenance")
    assert client.tenant_state(CTX).state == "OnlineMaintenance"


@pytest.mark.parametrize("name", sorted(NOT_RUNNING_STATES - {"Unknown"}))
def test_each_state_that_is_not_running_raises_its_own_error(
    client: SystemUserClient, fresh_emu: Emulator, name: str
) -> None:
    """Every documented state with IsRunning false raises TenantNotRunningError, never a rejected-exchange error."""
    fresh_emu.set_tenant_state(CTX, name)
    with pytest.raises(TenantNotRunningError) as caught:
        client.tenant_state(CTX)
    error = caught.value
    assert not isinstance(error, AuthenticationRejectedError) and isinstance(error, SutSoapError)
    assert error.state == name and error.context_identifier == CTX and name in str(error)
    assert error.retryable is (name in TRANSIENT)
    assert error.retry_after is not None and 0 < error.retry_after <= 301
    assert isinstance(error.tenant_state, TenantState) and error.tenant_state.running is False


def test_unknown_tenant_is_not_running(client: SystemUserClient) -> None:
    """A tenant the state API does not know answers State Unknown without URLs: TenantNotRunningError, not retryable."""
    with pytest.raises(TenantNotRunningError) as caught:
        client.tenant_state("Cust00000")
    assert caught.value.state == "Unknown" and caught.value.retryable is False
    assert caught.value.tenant_state.api_url is None


def test_state_is_kept_until_valid_until(client: SystemUserClient, fresh_emu: Emulator, stepping: SteppingClock) -> None:
    """Asked again before ValidUntil: no request; once it has passed (on the client's clock): read again."""
    client.tenant_state(CTX)
    stepping.advance(299)
    client.tenant_state(CTX)
    assert fresh_emu.state_request_count == 1
    stepping.advance(2)
    client.tenant_state(CTX)
    assert fresh_emu.state_request_count == 2


def test_state_that_is_not_running_is_kept_too(client: SystemUserClient, fresh_emu: Emulator) -> None:
    """A tenant in maintenance raises again until ValidUntil without asking the state API again."""
    fresh_emu.set_tenant_state(CTX, "OfflineMaintenance")
    for _ in range(3):
        with pytest.raises(TenantNotRunningError):
            client.tenant_state(CTX)
    assert fresh_emu.state_request_count == 1


def test_valid_until_already_passed_is_not_kept(client: SystemUserClient, fresh_emu: Emulator) -> None:
    """A ValidUntil in the past: the state is returned but not kept, so each call reads it."""
    fresh_emu.state_valid_for = -5
    client.tenant_state(CTX)
    client.tenant_state(CTX)
    assert fresh_emu.state_request_count == 2


def test_tenant_state_is_one_get_for_concurrent_callers(client: SystemUserClient, fresh_emu: Emulator) -> None:
    """20 threads asking for a cold tenant's state at once cause one GET."""
    start = threading.Barrier(20)

    def one() -> None:
        start.wait()
        client.tenant_state(CTX)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert fresh_emu.state_request_count == 1


def test_context_identifier_is_checked(client: SystemUserClient) -> None:
    """An empty tenant or one with a line break is a ConfigurationError, before any request."""
    for bad in ("", "Cust1\n"):
        with pytest.raises(ConfigurationError):
            client.tenant_state(bad)


def test_state_url_follows_the_environment() -> None:
    """With environment=sod the state is read from https://sod.superoffice.com/api/state/{ctx}, through the client's transport."""

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, Any]] = []

        def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
            self.calls.append((method, url, kwargs))
            return HttpResponse(503, HeaderMap(), b"")

        def close(self) -> None:
            pass

    recorder = Recorder()
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, environment="sod",
                          transport=recorder) as client, pytest.raises(TransportError) as caught:
        client.tenant_state("Cust 1/2")
    ((method, url, kwargs),) = recorder.calls
    assert (method, url) == ("GET", "https://sod.superoffice.com/api/state/Cust%201%2F2")
    assert kwargs["max_bytes"] == 64 * 1024 and kwargs["deadline"] is not None
    assert caught.value.status == 503 and caught.value.retryable is True


def test_state_url_for_an_explicit_endpoint_is_its_origin(fresh_emu: Emulator) -> None:
    """With endpoint= the state API is on that endpoint's scheme and host."""
    assert state_url("http://127.0.0.1:8080/", "Cust1") == "http://127.0.0.1:8080/api/state/Cust1"


def test_oversize_answer_is_refused_by_the_transport(client: SystemUserClient, recording_server: RecordingServer) -> None:
    """An answer above 64 KiB is cut by the client transport's size cap (real HTTP): ProtocolError, nothing parsed."""
    recording_server.body = b"[" + b" " * 70_000 + b"]"
    reader = TenantStates(client.transport, recording_server.base_url, client.clock, deadline=5)
    with pytest.raises(ProtocolError, match="larger than"):
        reader.get(CTX)
    assert len(recording_server.seen) == 1


# --- hostile answers, read one by one -------------------------------------------------------------

VALID = {
    "ContextIdentifier": CTX, "Endpoint": "https://online2.superoffice.com/Cust12345", "State": "Running",
    "IsRunning": True, "ValidUntil": "2026-02-23T09:52:01.9342965Z", "Api": "https://online2.superoffice.com/Cust12345/api",
}
JSON = {"Content-Type": "application/json; charset=utf-8"}


def answer(document: Any = None, *, status: int = 200, headers: dict[str, str] | None = None,
           raw: bytes | None = None) -> HttpResponse:
    body = raw if raw is not None else json.dumps(VALID if document is None else document).encode()
    return HttpResponse(status, HeaderMap(JSON if headers is None else headers), body)


def parse(response: HttpResponse, source: str = "online.superoffice.com") -> TenantState:
    return parse_state(response, context_identifier=CTX, source_host=source)


def test_documented_answer_is_read() -> None:
    """SuperOffice's documented example reads into its fields; .NET's seven fraction digits are cut to microseconds."""
    state = parse(answer())
    assert state.valid_until == datetime(2026, 2, 23, 9, 52, 1, 934296, tzinfo=timezone.utc)
    assert state.api_url == VALID["Api"] and state.endpoint == VALID["Endpoint"]


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2026-02-23T09:52:01Z", datetime(2026, 2, 23, 9, 52, 1, tzinfo=timezone.utc)),
    ("2026-02-23T11:52:01.5+02:00", datetime(2026, 2, 23, 9, 52, 1, 500000, tzinfo=timezone.utc)),
    ("2026-02-23T04:22:01-05:30", datetime(2026, 2, 23, 9, 52, 1, tzinfo=timezone.utc)),
])
def test_valid_until_forms(stamp: str, expected: datetime) -> None:
    """ValidUntil with Z or an offset, with or without a fraction, becomes the same aware UTC instant."""
    assert parse(answer({**VALID, "ValidUntil": stamp})).valid_until == expected


def test_member_names_match_in_any_case_and_extra_members_are_ignored() -> None:
    """camelCase members (ASP.NET's default) read the same; a Version member is ignored; the Api's trailing slash goes."""
    document = {k[0].lower() + k[1:]: v for k, v in VALID.items()}
    document["api"] = VALID["Api"] + "/"
    document["Version"] = "Release_11.10"
    assert parse(answer(document)).api_url == VALID["Api"]


def test_state_of_a_tenant_that_is_not_running_may_lack_urls() -> None:
    """A Deleted tenant with null Endpoint and empty Api is read (its URLs are None)."""
    state = parse(answer({**VALID, "State": "Deleted", "IsRunning": False, "Endpoint": None, "Api": ""}))
    assert (state.running, state.endpoint, state.api_url) == (False, None, None)


def test_emulator_state_on_loopback_is_accepted() -> None:
    """http URLs on the loopback host the state came from (the emulator) are accepted."""
    document = {**VALID, "Endpoint": "http://127.0.0.1:8080/Cust12345", "Api": "http://127.0.0.1:8080/Cust12345/api"}
    assert parse(answer(document), source="127.0.0.1").api_url == "http://127.0.0.1:8080/Cust12345/api"


HOSTILE: list[tuple[str, HttpResponse, type[SutSoapError], str]] = [
    ("html", answer(headers={"Content-Type": "text/html"}), ProtocolError, "not labelled JSON"),
    ("no content type", answer(headers={}), ProtocolError, "not labelled JSON"),
    ("latin-1", answer(headers={"Content-Type": "application/json; charset=latin-1"}), ProtocolError, "not labelled"),
    ("not json", answer(raw=b"<html>"), ProtocolError, "not well-formed JSON"),
    ("array", answer([VALID]), ProtocolError, "an array instead of an object"),
    ("duplicate", answer(raw=b'{"State": "Running", "State": "Deleted"}'), ProtocolError, "more than once"),
    ("case duplicate", answer({**VALID, "state": "Running"}), ProtocolError, "more than one State"),
    ("other tenant", answer({**VALID, "ContextIdentifier": "Cust99999"}), ProtocolError, "not for the tenant"),
    ("no tenant", answer({k: v for k, v in VALID.items() if k != "ContextIdentifier"}), ProtocolError, "not for the"),
    ("IsRunning text", answer({**VALID, "IsRunning": "true"}), ProtocolError, "IsRunning"),
    ("State number", answer({**VALID, "State": 2}), ProtocolError, "State"),
    ("State markup", answer({**VALID, "State": "<b>Running</b>"}), ProtocolError, "State"),
    ("naive ValidUntil", answer({**VALID, "ValidUntil": "2026-02-23T09:52:01"}), ProtocolError, "time zone"),
    ("ValidUntil number", answer({**VALID, "ValidUntil": 1767225600}), ProtocolError, "time zone"),
    ("impossible date", answer({**VALID, "ValidUntil": "2026-02-30T09:52:01Z"}), ProtocolError, "not a valid date"),
    ("bad offset", answer({**VALID, "ValidUntil": "2026-02-23T09:52:01+25:00"}), ProtocolError, "not a valid date"),
    ("running without Api", answer({**VALID, "Api": None}), ProtocolError, "has no Api"),
    ("Api not text", answer({**VALID, "Api": ["https://x"]}), ProtocolError, "Api is not a URL"),
    ("Api too long", answer({**VALID, "Api": "https://online2.superoffice.com/" + "a" * 3000}), ProtocolError, "not a URL"),
    ("Api bad port", answer({**VALID, "Api": "https://online2.superoffice.com:99999/x"}), ProtocolError, "valid URL"),
    ("Api with space", answer({**VALID, "Api": "https://online2.superoffice.com/a b"}), ProtocolError, "usable URL"),
    ("Api credentials", answer({**VALID, "Api": "https://u:p@online2.superoffice.com/x"}), ProtocolError, "usable"),
    ("Api no host", answer({**VALID, "Api": "https:///x"}), ProtocolError, "usable URL"),
    ("Api plain http", answer({**VALID, "Api": "http://online2.superoffice.com/x"}), ProtocolError, "not https"),
    ("Api relative", answer({**VALID, "Api": "/Cust12345/api"}), ProtocolError, "usable URL"),
    ("Api elsewhere", answer({**VALID, "Api": "https://superoffice.com.evil.example/x"}), ProtocolError, "outside"),
    ("Endpoint elsewhere", answer({**VALID, "Endpoint": "https://evil.example/x"}), ProtocolError, "outside"),
    ("redirect", answer(status=302, headers={"Location": "https://evil.example/"}), TransportError, "redirect"),
    ("server error", answer(status=503, raw=b"busy"), TransportError, "HTTP 503"),
]


@pytest.mark.parametrize(("response", "error", "match"), [case[1:] for case in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_answer_is_refused_naming_what_to_check(
    response: HttpResponse, error: type[SutSoapError], match: str
) -> None:
    """Each hostile answer raises its typed error with a message naming the problem and a hint."""
    with pytest.raises(error, match=match) as caught:
        parse(response)
    assert caught.value.hint


def test_loopback_state_may_not_point_elsewhere() -> None:
    """A state read from loopback (the emulator) may not send the ticket to another host, even one of SuperOffice."""
    with pytest.raises(ProtocolError, match=r"outside 127\.0\.0\.1"):
        parse(answer(), source="127.0.0.1")


# --- the reader's memory ------------------------------------------------------------------------


class Scripted:
    """A transport answering every GET with ``document`` (after ``hold`` is set, when given)."""

    def __init__(self, document: dict[str, Any], hold: threading.Event | None = None) -> None:
        self.document = document
        self.hold = hold
        self.gets: list[str] = []

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        self.gets.append(url)
        if self.hold is not None:
            self.hold.wait(5)
        ctx = url.rsplit("/", 1)[1]
        return answer({**self.document, "ContextIdentifier": ctx})

    def close(self) -> None:
        pass


def valid_for(stepping: SteppingClock, seconds: float) -> dict[str, Any]:
    moment = (stepping.wall_now + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {**VALID, "ValidUntil": moment}


def test_reader_holds_at_most_max_entries(stepping: SteppingClock) -> None:
    """Beyond max_entries the least recently read tenant is dropped (and read again when asked for)."""
    transport = Scripted(valid_for(stepping, 600))
    reader = TenantStates(transport, "https://online.superoffice.com/", stepping.clock, deadline=5, max_entries=2)
    for ctx in ("Cust1", "Cust2", "Cust1", "Cust3", "Cust1", "Cust2"):
        reader.get(ctx)
    assert len(reader) == 2
    assert [url.rsplit("/", 1)[1] for url in transport.gets] == ["Cust1", "Cust2", "Cust3", "Cust2"]


def test_reader_keeps_a_day_at_most(stepping: SteppingClock) -> None:
    """A ValidUntil a year away is kept one day, not a year."""
    transport = Scripted(valid_for(stepping, 365 * 86400))
    reader = TenantStates(transport, "https://online.superoffice.com", stepping.clock, deadline=5)
    reader.get(CTX)
    stepping.advance(86_399)
    reader.get(CTX)
    stepping.advance(2)
    reader.get(CTX)
    assert len(transport.gets) == 2


def test_forget_drops_the_kept_state(stepping: SteppingClock) -> None:
    """forget() makes the next get() read the state again."""
    transport = Scripted(valid_for(stepping, 600))
    reader = TenantStates(transport, "https://online.superoffice.com", stepping.clock, deadline=5)
    reader.get(CTX)
    reader.forget(CTX.upper())
    reader.get(CTX)
    assert len(transport.gets) == 2


def test_waiting_for_another_threads_read_ends_at_the_deadline() -> None:
    """A caller waiting for another thread's read of the same tenant gives up at the deadline (retryable)."""
    from sut_soap._clock import SYSTEM_CLOCK

    hold = threading.Event()
    document = {**VALID, "ValidUntil": "2999-01-01T00:00:00Z"}
    reader = TenantStates(Scripted(document, hold), "https://online.superoffice.com", SYSTEM_CLOCK, deadline=0.2)
    first = threading.Thread(target=reader.get, args=(CTX,))
    first.start()
    try:
        while not reader._reading:
            pass
        with pytest.raises(TransportError, match="did not finish within the deadline") as caught:
            reader.get(CTX)
        assert caught.value.retryable is True
    finally:
        hold.set()
        first.join(5)
    assert reader.get(CTX).running and reader._reading == {}


def test_reader_after_fork_has_no_read_in_progress(stepping: SteppingClock) -> None:
    """In a forked child the reader keeps its states but has new locks and no read in progress."""
    reader = TenantStates(Scripted(valid_for(stepping, 600)), "https://online.superoffice.com", stepping.clock,
                          deadline=5)
    reader.get(CTX)
    reader._reading["x"] = [threading.Lock(), 1]
    reader._reset_after_fork()
    assert reader._reading == {} and len(reader) == 1
