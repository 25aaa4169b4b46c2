"""SystemUserClient edges: configuration conflicts, failing stores, single-flight corners, bounded memos, pool growth."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import requests.adapters
from support import ClientFactory, FrozenClock, reset_emulator

import sut_soap._flight as flight_module
import sut_soap.client as client_module
from sut_soap import (
    AuthenticationRejectedError,
    ConfigurationError,
    SutSoapError,
    SystemUserClient,
    SystemUserTicket,
    TransportError,
)
from sut_soap.cache import CachedTicket, InMemoryTicketCache
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.transport import HttpTransport

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-3dg3s"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryEdg3s1"
OTHER_CTX = "Cust67890"
OTHER_TOKEN = "Other Sync-canaryEdg3s2"
THIRD_CTX = "Cust24680"
THIRD_TOKEN = "Third Sync-canaryEdg3s3"
SECRETS = (CLIENT_SECRET, TOKEN, OTHER_TOKEN, THIRD_TOKEN)
NOWHERE = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"  # never contacted
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "http://www.superoffice.com/superid/partnersystemuser/0.1"
CONTEXT_IN_BODY = re.compile(rb"<tns:ContextIdentifier>([^<]*)</tns:ContextIdentifier>")
FORWARD = object()  # a scripted action's "send it to the real server"
WAIT = 5.0  # seconds any ordering event may take before the test fails instead of hanging


# --- helpers ----------------------------------------------------------------------------------


class Response:
    """What parse_answer reads of an HTTP answer."""

    def __init__(self, body: str, status: int = 200) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = body.encode("utf-8")


def rejection(message: str = "InvalidSystemToken") -> Response:
    return Response(
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><AuthenticationResponse xmlns="{TNS}" '
        f'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><IsSuccessful>false</IsSuccessful>'
        f'<Token i:nil="true"/><ErrorMessage>{message}</ErrorMessage></AuthenticationResponse></s:Body></s:Envelope>'
    )


class Transport:
    """A caller's transport (no ``session``): records each POST, runs scripted actions, else forwards to ``inner``."""

    def __init__(self, inner: HttpTransport | None = None) -> None:
        self.inner = inner
        self.posts: list[tuple[str, str]] = []  # (tenant, thread name)
        self.script: list[Callable[[], Any]] = []
        self.by_tenant: dict[str, Callable[[], Any]] = {}
        self._lock = threading.Lock()

    def request(self, method: str, url: str, *, body: bytes | None = None, **kwargs: Any) -> Any:
        if method != "POST":
            if self.inner is None:
                raise ConnectionError("no server behind this transport")
            return self.inner.request(method, url, body=body, **kwargs)
        match = CONTEXT_IN_BODY.search(body or b"")
        tenant = match.group(1).decode() if match else ""
        with self._lock:
            self.posts.append((tenant, threading.current_thread().name))
            action = self.script.pop(0) if self.script else self.by_tenant.get(tenant)
        answer = action() if action is not None else FORWARD
        if answer is not FORWARD:
            return answer
        if self.inner is None:
            raise ConnectionError("no server behind this transport")
        return self.inner.request(method, url, body=body, **kwargs)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


class HookedLock:
    """A lock that runs ``hook`` once, just before its first acquisition: a deterministic race."""

    def __init__(self, hook: Callable[[], None]) -> None:
        self.real = threading.Lock()
        self.hook: Callable[[], None] | None = hook

    def __enter__(self) -> HookedLock:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        self.real.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.real.release()


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
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_TOKEN, serial="7654321")
        emu.add_tenant(THIRD_CTX, system_user_token=THIRD_TOKEN, serial="2468024")
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    yield from reset_emulator(emulator)


@pytest.fixture
def make_client() -> Iterator[Callable[..., SystemUserClient]]:
    factory = ClientFactory(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=NOWHERE)
    yield factory
    factory.close()


def get(client: SystemUserClient, ctx: str = CTX, token: str = TOKEN) -> SystemUserTicket:
    return client.get_ticket(context_identifier=ctx, system_user_token=token)


# --- configuration ----------------------------------------------------------------------------


def test_public_key_and_jwks_url_together_are_refused() -> None:
    """public_key= and jwks_url= name two key sources: a ConfigurationError, with no secret in it."""
    with pytest.raises(ConfigurationError, match="either public_key= or jwks_url=") as info:
        SystemUserClient(
            client_secret=CLIENT_SECRET,
            private_key=PARTNER_KEY,
            endpoint=NOWHERE,
            public_key=PARTNER_KEY.public_key(),
            jwks_url="https://example.com/login/.well-known/jwks",
        )
    assert CLIENT_SECRET not in str(info.value) + repr(info.value)


def test_client_attributes_never_show_the_client_secret(make_client: Callable[..., SystemUserClient]) -> None:
    """vars(client), as a debugger or crash reporter dumps it, shows the client secret as '***' only."""
    client = make_client()
    dumped = repr(vars(client))
    assert CLIENT_SECRET not in dumped
    assert "'***'" in dumped
    assert str(client._client_secret) == repr(client._client_secret) == "'***'"


def test_verification_check_follows_the_transports_session(make_client: Callable[..., SystemUserClient]) -> None:
    """A transport whose session skips TLS checks towards SuperOffice is refused; one without a session is used as is."""
    insecure = HttpTransport(requests.Session())
    insecure.session.verify = False
    with pytest.raises(ConfigurationError, match="verify=False"):
        make_client(None, environment="online", transport=insecure)
    insecure.session.close()
    client = make_client(None, environment="online", transport=Transport())
    assert client.jwks_url == "https://online.superoffice.com/login/.well-known/jwks"
    assert client.retry is None  # a caller's transport is not retried unless asked


def test_insecure_session_with_a_pinned_key_names_only_the_endpoint_host(
    make_client: Callable[..., SystemUserClient], caplog: pytest.LogCaptureFixture
) -> None:
    """With public_key= there is no JWKS URL: verify=False is still refused for the endpoint, and opting in warns for it alone."""
    session = requests.Session()
    session.verify = False
    options: dict[str, Any] = {"environment": "online", "session": session, "public_key": PARTNER_KEY.public_key()}
    with pytest.raises(ConfigurationError, match=re.escape("online.superoffice.com")):
        make_client(None, **options)
    caplog.set_level(logging.WARNING, logger="sut_soap")
    client = make_client(None, allow_insecure_tls=True, **options)
    assert client.jwks_url is None
    [record] = [r for r in caplog.records if r.name.startswith("sut_soap")]
    assert "verification is OFF for online.superoffice.com " in record.getMessage()
    assert_no_secrets(caplog.text)
    session.close()


def test_cache_property_is_the_store_in_use(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """client.cache is the store given (or the default in-memory one) and holds what get_ticket cached."""
    store = InMemoryTicketCache()
    assert make_client(emu.endpoint, cache=store).cache is store
    client = make_client(emu.endpoint)
    assert isinstance(client.cache, InMemoryTicketCache)
    assert len(client.cache) == 0
    ticket = get(client)
    assert len(client.cache) == 1
    [(entry, _)] = client.cache._entries.values()
    assert entry.ticket is ticket


# --- get_ticket -------------------------------------------------------------------------------


def test_str_subclass_values_still_use_the_cache(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """Tenant values of a str subclass skip the fast path but are checked and still served from the cache."""

    class TenantId(str):
        pass

    client = make_client(emu.endpoint)
    before = emu.exchange_count
    first = get(client, TenantId(CTX), TenantId(TOKEN))
    assert get(client, TenantId(CTX), TenantId(TOKEN)) is first
    assert get(client) is first
    assert emu.exchange_count == before + 1
    with pytest.raises(ConfigurationError, match="context identifier must be a string"):
        client.get_ticket(context_identifier=None, system_user_token=TOKEN)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="system user token contains a control character"):
        get(client, TenantId(CTX), TenantId("bad\x00token"))
    assert emu.exchange_count == before + 1


def test_fingerprint_memo_is_bounded_and_cleared_when_full(
    make_client: Callable[..., SystemUserClient], emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the token fingerprint memo is full it is cleared; cached tickets are still found and never mixed up."""
    monkeypatch.setattr(client_module, "_FINGERPRINT_MEMO", 2)
    client = make_client(emu.endpoint, retry=None)
    tickets = {ctx: get(client, ctx, token) for ctx, token in ((CTX, TOKEN), (OTHER_CTX, OTHER_TOKEN))}
    assert len(client._fingerprints) == 2
    third = get(client, THIRD_CTX, THIRD_TOKEN)  # the memo was full: cleared, then this one kept
    assert len(client._fingerprints) == 1
    before = emu.exchange_count
    assert get(client) is tickets[CTX]
    assert get(client, OTHER_CTX, OTHER_TOKEN) is tickets[OTHER_CTX]
    assert get(client, THIRD_CTX, THIRD_TOKEN) is third
    assert emu.exchange_count == before
    assert len(client._fingerprints) <= 2
    with pytest.raises(AuthenticationRejectedError):  # another tenant's token is never served CTX's ticket
        get(client, CTX, OTHER_TOKEN)
    assert emu.exchange_count == before + 1


def test_callers_get_the_valid_ticket_while_one_renews_it(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """While one caller renews a still-valid ticket, others get that ticket at once instead of waiting."""
    clock = FrozenClock()
    transport = Transport(HttpTransport())
    client = make_client(emu.endpoint, transport=transport, clock=clock, ticket_lifetime=600, refresh_ahead=300)
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
    transport = Transport()
    client = make_client(transport=transport)
    reject_once_followed, entered = blocking(waiting, lambda: rejection("InvalidSystemToken"))
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
    transport = Transport()
    client = make_client(transport=transport)
    interrupted, entered = blocking(waiting, interrupt)
    transport.script += [interrupted, lambda: rejection("InvalidSystemToken")]
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


def test_follower_gives_up_after_twice_the_exchange_bound(
    make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller waiting on a stuck exchange waits at most 2 x (2 x (connect + read) + 30 s), then gets a retryable TransportError."""
    TimedOutEvent.timeouts = []
    monkeypatch.setattr(flight_module, "Flight", flight_class(TimedOutEvent))
    transport = Transport()  # no server: the held exchange then fails to connect
    client = make_client(transport=transport, timeout=(2.0, 3.0))
    release = threading.Event()
    stuck, entered = blocking(release, lambda: FORWARD)
    transport.script.append(stuck)
    leader = Outcome(lambda: get(client))
    assert entered.wait(WAIT)
    with pytest.raises(TransportError, match=f"exchange for tenant {CTX} in another thread did not finish") as info:
        get(client)
    assert info.value.retryable is True
    assert TimedOutEvent.timeouts == [2 * (2 * (2.0 + 3.0) + 30.0)]
    release.set()
    leader.join()
    assert isinstance(leader.error, TransportError)
    assert len(transport.posts) == 1
    assert_no_secrets(str(info.value), repr(info.value))


# --- the rejection memo -----------------------------------------------------------------------


def test_rejection_remembered_while_queueing_is_raised_without_an_exchange(
    make_client: Callable[..., SystemUserClient],
) -> None:
    """A rejection remembered after this caller's first check but before it leads is raised, not exchanged again."""
    transport = Transport()
    transport.by_tenant[CTX] = lambda: rejection("InvalidSystemToken")
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
    """A full rejection memo evicts cooled-down entries and keeps live ones; full of live ones, it starts over."""
    monkeypatch.setattr(flight_module, "_REJECTION_MEMO", 2)
    clock = FrozenClock()
    transport = Transport()
    transport.by_tenant[CTX] = lambda: rejection("InvalidSystemToken")
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
    # Full of live entries (b, c): the next rejection starts the memo over with itself alone.
    assert "remembered" not in str(reject("token-a"))
    assert len(transport.posts) == 4
    assert "remembered" in str(reject("token-a"))
    assert "remembered" not in str(reject("token-b"))
    assert len(transport.posts) == 5
    assert len(client._rejections._entries) <= 2


# --- invalidate -------------------------------------------------------------------------------


class FlakyStore(InMemoryTicketCache):
    """An in-memory store whose get or delete can be made to fail, like a Redis that blips."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_get = False
        self.fail_delete = False
        self.deletes = 0

    def get(self, key: str) -> CachedTicket | None:
        if self.fail_get:
            raise ConnectionError("redis://admin:hunter2@cache:6379 unreachable")
        return super().get(key)

    def delete(self, key: str) -> None:
        self.deletes += 1
        if self.fail_delete:
            raise ConnectionError("redis://admin:hunter2@cache:6379 unreachable")
        super().delete(key)


def test_invalidate_with_ticket_forgets_it_when_the_store_cannot_be_read(
    make_client: Callable[..., SystemUserClient], emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """invalidate(ticket=) with an unreadable store forgets the entry (it cannot tell it is stale): no refused ticket again."""
    store = FlakyStore()
    client = make_client(emu.endpoint, cache=store)
    refused = get(client)
    caplog.set_level(logging.DEBUG, logger="sut_soap")
    store.fail_get = True
    client.invalidate(CTX, ticket=refused)  # does not raise
    store.fail_get = False
    assert store.deletes == 1
    before = emu.exchange_count
    renewed = get(client)
    assert renewed.ticket != refused.ticket
    assert emu.exchange_count == before + 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "ticket cache get failed (ConnectionError); carrying on without the cache"
    assert "hunter2" not in caplog.text
    assert_no_secrets(caplog.text)
    assert refused.ticket not in caplog.text


def test_invalidate_ends_the_renewal_backoff_even_if_the_delete_fails(
    make_client: Callable[..., SystemUserClient], emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """After a failed renewal, invalidate() ends the 30 s back-off: the next call renews even if the store kept the entry."""
    clock = FrozenClock()
    store = FlakyStore()
    client = make_client(emu.endpoint, cache=store, clock=clock, ticket_lifetime=600, refresh_ahead=300)
    first = get(client)
    clock.advance(400)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    before = emu.exchange_count
    assert get(client) is first  # renewal failed: the valid ticket, and a back-off
    assert get(client) is first
    assert emu.exchange_count == before + 1
    caplog.set_level(logging.WARNING, logger="sut_soap")
    store.fail_delete = True
    client.invalidate(CTX)
    assert "ticket cache delete failed (ConnectionError)" in caplog.text
    assert "hunter2" not in caplog.text
    renewed = get(client)
    assert renewed.ticket != first.ticket
    assert emu.exchange_count == before + 2


# --- the shared store's lock ------------------------------------------------------------------


class LockStore(InMemoryTicketCache):
    """An in-memory store with a lock() that can fail to be taken or to be released."""

    def __init__(self, *, fail_call: bool = False, fail_enter: bool = False, fail_exit: bool = False) -> None:
        super().__init__()
        self.fail_call, self.fail_enter, self.fail_exit = fail_call, fail_enter, fail_exit
        self.events: list[str] = []

    def lock(self, key: str, timeout: float) -> Any:
        self.events.append("lock")
        if self.fail_call:
            raise OSError("redis://admin:hunter2@cache:6379 refused")
        store = self

        class Held:
            def __enter__(self) -> None:
                store.events.append("enter")
                if store.fail_enter:
                    raise TimeoutError("lock not acquired: redis://admin:hunter2@cache")

            def __exit__(self, *exc_info: object) -> None:
                store.events.append("exit")
                if store.fail_exit:
                    raise RuntimeError("lock expired: redis://admin:hunter2@cache")

        return Held()


@pytest.mark.parametrize(
    ("options", "events", "operation", "error"),
    [
        ({"fail_call": True}, ["lock"], "lock", "OSError"),
        ({"fail_enter": True}, ["lock", "enter"], "lock", "TimeoutError"),
        ({"fail_exit": True}, ["lock", "enter", "exit"], "unlock", "RuntimeError"),
    ],
)
def test_failing_store_lock_does_not_fail_the_call(
    make_client: Callable[..., SystemUserClient],
    emu: Emulator,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, bool],
    events: list[str],
    operation: str,
    error: str,
) -> None:
    """A store lock that cannot be taken or released is skipped: one exchange, the ticket cached, one WARNING without secrets."""
    store = LockStore(**options)
    client = make_client(emu.endpoint, cache=store)
    caplog.set_level(logging.DEBUG, logger="sut_soap")
    before = emu.exchange_count
    ticket = get(client)
    assert ticket.context_identifier == CTX
    assert emu.exchange_count == before + 1
    assert store.events == events  # a lock never entered is never exited
    assert get(client) is ticket  # cached despite the lock failure
    client.invalidate(CTX)
    assert get(client).ticket != ticket.ticket  # a second failure within a minute: logged at DEBUG only
    failures = [r for r in caplog.records if "ticket cache" in r.getMessage()]
    assert [r.getMessage() for r in failures] == [
        f"ticket cache {operation} failed ({error}); carrying on without the cache"
    ] * 2
    assert [r.levelno for r in failures] == [logging.WARNING, logging.DEBUG]
    assert "hunter2" not in caplog.text
    assert_no_secrets(caplog.text)
    assert ticket.ticket not in caplog.text


# --- get_tickets ------------------------------------------------------------------------------


def test_get_tickets_turns_an_unexpected_exception_into_that_tenants_error(
    make_client: Callable[..., SystemUserClient], emu: Emulator
) -> None:
    """A non-SutSoapError from one tenant (a transport answering None) becomes its error; the batch goes on."""
    transport = Transport(HttpTransport())
    transport.by_tenant[OTHER_CTX] = lambda: None
    client = make_client(emu.endpoint, transport=transport)
    tenants = {CTX: TOKEN, OTHER_CTX: OTHER_TOKEN, THIRD_CTX: THIRD_TOKEN}
    result = client.get_tickets(tenants, max_workers=3)
    assert list(result) == list(tenants)
    assert isinstance(result[CTX], SystemUserTicket) and isinstance(result[THIRD_CTX], SystemUserTicket)
    error = result[OTHER_CTX]
    assert type(error) is SutSoapError
    assert str(error) == "unexpected AttributeError while getting the ticket"
    assert error.retryable is False
    assert not client._flights  # nothing left waiting: the next call exchanges again
    del transport.by_tenant[OTHER_CTX]
    assert get(client, OTHER_CTX, OTHER_TOKEN).context_identifier == OTHER_CTX


def test_get_tickets_with_one_worker_runs_in_the_callers_thread(make_client: Callable[..., SystemUserClient]) -> None:
    """max_workers=1 (or a single tenant) exchanges one tenant after another on the calling thread, in order."""
    transport = Transport()
    client = make_client(transport=transport)
    tenants = {CTX: TOKEN, OTHER_CTX: OTHER_TOKEN, THIRD_CTX: THIRD_TOKEN}
    result = client.get_tickets(tenants, max_workers=1)
    assert list(result) == list(tenants)
    assert all(isinstance(error, TransportError) for error in result.values())
    me = threading.current_thread().name
    assert transport.posts == [(CTX, me), (OTHER_CTX, me), (THIRD_CTX, me)]
    result = client.get_tickets({CTX: "another token"})
    assert isinstance(result[CTX], TransportError)
    assert transport.posts[-1] == (CTX, me)


def bad_tenants(n: int) -> dict[str, str]:
    """Tenants whose token is blank: each fails before any I/O, but get_tickets still sizes its pool."""
    return {f"Cust{i:05d}": " " for i in range(n)}


def test_get_tickets_grows_the_clients_own_pool(
    make_client: Callable[..., SystemUserClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many workers grow the client's own pool to match; the old pool closes with the client, never shrinks."""
    client = make_client()
    assert isinstance(client.transport, HttpTransport)
    session = client.transport.session
    initial = session.get_adapter(NOWHERE)
    assert isinstance(initial, requests.adapters.HTTPAdapter)
    assert initial._pool_maxsize == client_module.DEFAULT_MAX_WORKERS
    closed: list[str] = []
    monkeypatch.setattr(initial, "close", lambda: closed.append("initial"))
    result = client.get_tickets(bad_tenants(40), max_workers=24)
    assert all(isinstance(error, ConfigurationError) for error in result.values())
    grown = session.get_adapter(NOWHERE)
    assert grown is not initial and session.get_adapter("https://example.com/") is grown
    assert grown._pool_maxsize == 24
    assert closed == []  # threads may still be using the old pool
    client.get_tickets(bad_tenants(40), max_workers=4)
    client.get_tickets(bad_tenants(3), max_workers=200)  # 3 tenants need 3 workers
    assert session.get_adapter(NOWHERE) is grown
    client.close()
    assert closed == ["initial"]


def test_concurrent_pool_growth_builds_one_pool(make_client: Callable[..., SystemUserClient]) -> None:
    """Two batches growing the pool at once mount one new pool, not one each (no connections thrown away)."""
    client = make_client()
    assert isinstance(client.transport, HttpTransport)
    session = client.transport.session
    mounted: list[str] = []
    real_mount = session.mount

    def mount(prefix: str, adapter: requests.adapters.BaseAdapter) -> None:
        mounted.append(prefix)
        real_mount(prefix, adapter)

    session.mount = mount  # type: ignore[method-assign]
    client.transport._pool_lock = HookedLock(lambda: client.get_tickets(bad_tenants(30), max_workers=30))  # type: ignore[assignment]
    client.get_tickets(bad_tenants(30), max_workers=30)
    assert sorted(mounted) == ["http://", "https://"]
    assert session.get_adapter(NOWHERE)._pool_maxsize == 30


def test_a_dump_of_a_used_client_shows_no_token_or_ticket(
    emu: Emulator, make_client: Callable[..., SystemUserClient]
) -> None:
    """After get_ticket, vars(client) (as a crash reporter dumps it) holds no system user token, secret or ticket."""
    client = make_client(emu.endpoint, jwks_url=emu.jwks_url)
    ticket = get(client)
    dumped = repr(vars(client)) + str(vars(client))
    assert_no_secrets(dumped)
    assert ticket.ticket not in dumped and ticket.token not in dumped
    assert "<1 token fingerprints>" in dumped
