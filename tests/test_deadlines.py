"""Every call ends on time: the watchdog cuts a request still running at its deadline (headers or body
dripped, a silent server, a hanging connect or TLS handshake), the client's ``deadline=`` budget bounds
every request and wait of a call (retries, a JWKS fetch, the single flight, the JWKS lock), and every
transport error names its host and phase. Against real loopback servers; the watchdog and the budget
also on their own."""

from __future__ import annotations

import ipaddress
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from support import (
    ClientFactory,
    DrippingServer,
    ScriptedServer,
    SteppingClock,
    TlsServer,
    make_cert,
    unanswered_port,
)

from sut_soap import ConfigurationError, RetryPolicy, TransportError
from sut_soap._deadline import leave, open_budget, remaining
from sut_soap._watchdog import WATCHDOG, Watch, Watchdog
from sut_soap.keys import load_private_key
from sut_soap.keysources import JwksKeySource
from sut_soap.testing.emulator import Emulator
from sut_soap.transport import HttpResponse, HttpTransport, call_transport

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-d3ad"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryD3ad"
JWKS_HOST = "127.0.0.2"  # another loopback address, so an error naming it names the JWKS, not the endpoint
MARGIN = 0.5  # how late after its deadline a cut call may end on a busy test machine
NOWHERE = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"  # never contacted

Serve = Callable[..., DrippingServer]
MakeTransport = Callable[..., HttpTransport]
Pair = tuple[socket.socket, socket.socket]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with one tenant."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """Clients with this module's secret and key and a pinned public key, towards NOWHERE unless told otherwise."""
    factory = ClientFactory(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, public_key=PARTNER_KEY.public_key(), endpoint=NOWHERE
    )
    yield factory
    factory.close()


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts DrippingServers (``serve(mode, **options)``) and closes every one at teardown."""
    servers: list[DrippingServer] = []

    def start(mode: str, **options: Any) -> DrippingServer:
        server = DrippingServer(mode, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def transport() -> Iterator[MakeTransport]:
    """Makes HttpTransports and closes every one at teardown."""
    made: list[HttpTransport] = []

    def make(*args: Any, **options: Any) -> HttpTransport:
        made.append(HttpTransport(*args, **options))
        return made[-1]

    yield make
    for each in made:
        each.close()


def timed(call: Callable[[], object]) -> tuple[TransportError, float]:
    """The TransportError ``call`` raised and the seconds it took to raise it."""
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        call()
    return info.value, time.monotonic() - started


def jwks_url(server: DrippingServer) -> str:
    return server.base_url + "/login/.well-known/jwks"


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` on a daemon thread; the dict gets its ``error`` and ``seconds`` once it ends."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            call()
        except Exception as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# --- the transport: a request still running at its deadline is cut ------------------------------------


def test_dripped_headers_are_cut_at_the_deadline(serve: Serve, transport: MakeTransport) -> None:
    """Headers dripped a byte every 0.1 s (never a read timeout) end in a retryable TransportError at the deadline."""
    server = serve("headers")
    error, seconds = timed(lambda: transport(timeout=(1, 1), deadline=2).request("POST", server.url, body=b"<x/>"))
    assert 1.9 <= seconds < 2 + MARGIN
    assert error.retryable
    assert (error.phase, error.host) == ("wait for headers", "127.0.0.1")
    assert "127.0.0.1" in error.message
    assert "the request may have reached the server" in error.message


def test_dripped_body_is_cut_at_the_deadline(serve: Serve, transport: MakeTransport) -> None:
    """A body dripped a byte every 0.1 s ends in a retryable TransportError at the deadline, phase "body"."""
    server = serve("body")
    error, seconds = timed(lambda: transport(timeout=(1, 1), deadline=2).request("POST", server.url, body=b"<x/>"))
    assert 1.9 <= seconds < 2 + MARGIN
    assert error.retryable
    assert (error.phase, error.host) == ("body", "127.0.0.1")
    assert "reading the response body from 127.0.0.1" in error.message


def test_silent_tls_handshake_is_cut_at_the_transports_deadline(
    serve: Serve, transport: MakeTransport
) -> None:
    """A server that never answers the TLS handshake is cut at the transport's deadline, before the connect timeout."""
    url = serve("silent").url.replace("http://", "https://")
    error, seconds = timed(lambda: transport(timeout=(1.5, 1.5), deadline=0.3).request("POST", url, body=b"<x/>"))
    assert seconds < 0.3 + MARGIN
    assert (error.phase, error.host) == ("TLS", "127.0.0.1")


def test_silent_tls_handshake_ends_within_the_call_deadline(
    serve: Serve, make_client: ClientFactory
) -> None:
    """authenticate against a server that never answers the TLS handshake ends at the deadline, phase "TLS"."""
    url = serve("silent").url.replace("http://", "https://")
    client = make_client(url, timeout=(5, 5), deadline=1)
    error, seconds = timed(lambda: client.authenticate(context_identifier=CTX, system_user_token=TOKEN))
    assert 0.9 <= seconds < 1 + MARGIN
    assert error.retryable
    assert (error.phase, error.host) == ("TLS", "127.0.0.1")
    assert "TLS handshake with 127.0.0.1" in error.message
    assert "may have reached the server" not in error.message


def test_hanging_connect_ends_at_the_request_deadline(transport: MakeTransport) -> None:
    """A connect that hangs ends at the request's deadline=, before the connect timeout, phase "connect"."""
    with unanswered_port() as port:
        url = f"http://127.0.0.1:{port}/"
        error, seconds = timed(lambda: transport(timeout=(5, 5)).request("GET", url, deadline=1))
    assert 0.9 <= seconds < 1 + MARGIN
    assert error.retryable
    assert (error.phase, error.host) == ("connect", "127.0.0.1")
    assert "connecting to 127.0.0.1" in error.message
    assert "may have reached the server" not in error.message


def test_hanging_connect_ends_at_the_transports_deadline(transport: MakeTransport) -> None:
    """A connect that hangs ends at the transport's own deadline, before the connect timeout."""
    with unanswered_port() as port:
        url = f"http://127.0.0.1:{port}/"
        _, seconds = timed(lambda: transport(timeout=(1.5, 1.5), deadline=0.3).request("GET", url))
    assert seconds < 0.3 + MARGIN


def test_own_session_is_cut_at_the_deadline(serve: Serve, transport: MakeTransport) -> None:
    """A requests.Session of the caller's own, passed as session=, is cut at the deadline too."""
    server = serve("headers")
    with requests.Session() as session:
        error, seconds = timed(
            lambda: transport(session, timeout=(0.5, 0.5), deadline=1).request("POST", server.url, body=b"<x/>")
        )
    assert 0.9 <= seconds < 1 + MARGIN
    assert (error.phase, error.retryable) == ("wait for headers", True)


def test_request_is_watched_while_it_runs_and_released_after(transport: MakeTransport) -> None:
    """A request is on the watchdog while it runs, and off it once it ended in time."""
    seen: list[int] = []

    def answer(handler: Any) -> None:
        seen.append(len(WATCHDOG))
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    before = len(WATCHDOG)  # requests other tests left running, if any
    with ScriptedServer() as server:
        server.script.append(answer)
        response = transport(timeout=(1, 1), deadline=2).request("POST", server.url, body=b"<x/>")
    assert response.content == b"ok"
    assert seen == [before + 1]
    assert len(WATCHDOG) == before


# --- the transport: every error names its host and phase ----------------------------------------------


def test_closed_after_the_request_may_have_reached_the_server(serve: Serve, transport: MakeTransport) -> None:
    """A connection the server closes after reading the request: retryable, "wait for headers", may have reached it."""
    server = serve("close")
    error, _ = timed(lambda: transport(timeout=(1, 1), deadline=2).request("POST", server.url, body=b"<x/>"))
    assert server.requests == 1
    assert error.retryable
    assert (error.phase, error.host) == ("wait for headers", "127.0.0.1")
    assert "may have reached the server" in error.message
    assert "cannot connect" not in error.message


def test_refused_connection_names_host_and_phase(transport: MakeTransport) -> None:
    """A refused connection: retryable, phase "connect", "connection refused" and the host in the message."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    error, _ = timed(lambda: transport(timeout=(1, 1)).request("GET", f"http://127.0.0.1:{port}/"))
    assert error.retryable
    assert (error.phase, error.host) == ("connect", "127.0.0.1")
    assert "connection refused" in error.message
    assert "127.0.0.1" in error.message
    assert "may have reached the server" not in error.message


def test_read_timeout_before_headers_names_host_and_phase(serve: Serve, transport: MakeTransport) -> None:
    """No headers within the read timeout: retryable, phase "wait for headers", may have reached the server."""
    server = serve("silent")
    error, seconds = timed(lambda: transport(timeout=(1, 0.3), deadline=5).request("POST", server.url, body=b"<x/>"))
    assert seconds < 0.3 + MARGIN
    assert error.retryable
    assert (error.phase, error.host) == ("wait for headers", "127.0.0.1")
    assert "read timeout" in error.message
    assert "127.0.0.1" in error.message
    assert "may have reached the server" in error.message


def test_untrusted_certificate_names_host_and_phase(tmp_path: Path, transport: MakeTransport) -> None:
    """An untrusted certificate: not retryable, phase "TLS", the host in the message."""
    cert, key = make_cert(tmp_path, "untrusted", san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server = TlsServer(cert, key)
    try:
        error, _ = timed(lambda: transport(timeout=(1, 1)).request("POST", server.url, body=b"<x/>"))
    finally:
        server.close()
    assert not error.retryable
    assert (error.phase, error.host) == ("TLS", "127.0.0.1")
    assert "TLS handshake with 127.0.0.1 failed" in error.message
    assert server.received == b""


# --- the client's deadline= ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, 3601, True, "5", None])
def test_deadline_out_of_range_is_refused(make_client: ClientFactory, value: object) -> None:
    """deadline= that is not a number of seconds above 0 and at most 3600 is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="deadline"):
        make_client(deadline=value)


@pytest.mark.parametrize("given", [2.5, 7, 0.001, 3600])
def test_deadline_attribute_is_the_given_value(make_client: ClientFactory, given: float) -> None:
    """client.deadline is deadline= as given, in seconds."""
    assert make_client(deadline=given).deadline == given


def test_deadline_defaults_to_30_seconds(make_client: ClientFactory) -> None:
    """client.deadline is 30 s when deadline= is not given."""
    assert make_client().deadline == 30.0


def test_authenticate_ends_within_the_deadline(serve: Serve, make_client: ClientFactory) -> None:
    """authenticate against dripped headers raises a retryable TransportError at the client's deadline."""
    server = serve("headers")
    client = make_client(server.url, timeout=(1, 1), deadline=2)
    error, seconds = timed(lambda: client.authenticate(context_identifier=CTX, system_user_token=TOKEN))
    assert 1.9 <= seconds < 2 + MARGIN
    assert (error.phase, error.retryable) == ("wait for headers", True)


def test_get_ticket_retries_live_inside_the_deadline(serve: Serve, make_client: ClientFactory) -> None:
    """get_ticket with the default retry policy against dripped headers ends at the deadline, not after 3 attempts."""
    server = serve("headers")
    client = make_client(server.url, timeout=(1, 1), deadline=2)
    assert client.retry is not None and client.retry.attempts == 3
    error, seconds = timed(lambda: client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
    assert 1.9 <= seconds < 2 + MARGIN
    assert (error.phase, error.retryable) == ("wait for headers", True)
    assert server.requests == 1


def test_get_ticket_retry_waits_stop_at_the_deadline(serve: Serve, make_client: ClientFactory) -> None:
    """get_ticket's retries and their waits fit in the client's deadline, however many attempts are left."""
    server = serve("close")
    stepping = SteppingClock()
    retry = RetryPolicy(attempts=10, random=lambda: 1.0)  # waits 0.5, 1, 2, 4, ... s on the client's clock
    client = make_client(server.url, timeout=(1, 1), deadline=2, retry=retry, clock=stepping.clock)
    error, _ = timed(lambda: client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
    assert error.retryable
    assert stepping.sleeps == [0.5, 1.0]
    assert server.requests == 3


def test_spent_budget_sends_nothing() -> None:
    """Under a budget already spent, call_transport raises a retryable TransportError and never calls the transport."""
    calls: list[str] = []

    class Recording:
        def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
            calls.append(url)
            return HttpResponse(200, {}, b"")

        def close(self) -> None:
            pass

    budget = open_budget(0.0, time.monotonic)
    try:
        error, _ = timed(lambda: call_transport(Recording(), "POST", "http://127.0.0.1:9/x"))
    finally:
        leave(budget)
    assert calls == []
    assert error.retryable
    assert (error.phase, error.host) == ("connect", "127.0.0.1")


def test_request_deadline_is_cut_to_what_is_left_of_the_budget() -> None:
    """Inside a budget, call_transport passes the transport the shorter of its deadline= and what is left."""
    deadlines: list[float | None] = []

    class Recording:
        def request(self, method: str, url: str, *, deadline: float | None = None, **kwargs: Any) -> HttpResponse:
            deadlines.append(deadline)
            return HttpResponse(200, {}, b"")

        def close(self) -> None:
            pass

    budget = open_budget(1.0, time.monotonic)
    try:
        call_transport(Recording(), "GET", "http://127.0.0.1:9/x", deadline=10.0)
        call_transport(Recording(), "GET", "http://127.0.0.1:9/x")
        call_transport(Recording(), "GET", "http://127.0.0.1:9/x", deadline=0.25)
    finally:
        leave(budget)
    first, second, third = deadlines
    assert first is not None and 0.9 < first <= 1.0
    assert second is not None and 0.9 < second <= 1.0
    assert third == 0.25


# --- the budget reaches the JWKS fetch and every wait ---------------------------------------------------


def test_dripped_jwks_is_cut_within_the_authenticate_deadline(
    emu: Emulator, serve: Serve, make_client: ClientFactory
) -> None:
    """authenticate whose JWKS drips its headers ends within the deadline, the error naming the JWKS host and phase."""
    jwks = serve("headers", host=JWKS_HOST)
    client = make_client(emu.endpoint, public_key=None, jwks_url=jwks_url(jwks), timeout=(0.5, 0.5), deadline=1)
    error, seconds = timed(lambda: client.authenticate(context_identifier=CTX, system_user_token=TOKEN))
    assert seconds < 1 + MARGIN
    assert jwks.requests == 1
    assert error.retryable
    assert (error.phase, error.host) == ("wait for headers", JWKS_HOST)
    assert "JWKS" in error.message
    assert JWKS_HOST in error.message


def test_silent_jwks_ends_within_the_get_ticket_deadline(
    emu: Emulator, serve: Serve, make_client: ClientFactory
) -> None:
    """get_ticket whose JWKS never answers ends within the client's deadline, long before the read timeout."""
    jwks = serve("silent", host=JWKS_HOST)
    client = make_client(emu.endpoint, public_key=None, jwks_url=jwks_url(jwks), timeout=(5, 5), deadline=1)
    error, seconds = timed(lambda: client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
    assert seconds < 1 + MARGIN
    assert error.retryable
    assert (error.phase, error.host) == ("wait for headers", JWKS_HOST)


def test_silent_jwks_ends_within_the_retry_deadline(
    emu: Emulator, serve: Serve, make_client: ClientFactory
) -> None:
    """get_ticket whose JWKS never answers ends within a RetryPolicy(deadline=) shorter than the client's."""
    jwks = serve("silent", host=JWKS_HOST)
    client = make_client(
        emu.endpoint, public_key=None, jwks_url=jwks_url(jwks), timeout=(1.5, 1.5), retry=RetryPolicy(deadline=0.3)
    )
    _, seconds = timed(lambda: client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
    assert seconds < 0.3 + MARGIN


def test_follower_waits_at_most_its_own_deadline(serve: Serve, make_client: ClientFactory) -> None:
    """A get_ticket waiting on another thread's exchange for the tenant gives up at its own deadline, retryably."""
    server = serve("headers")
    client = make_client(server.url, timeout=(0.5, 0.5), deadline=1)
    leader, led = in_thread(lambda: client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))
    assert server.wait_for_requests(1)

    def follow() -> None:
        budget = open_budget(0.3, time.monotonic)
        try:
            client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        finally:
            leave(budget)

    follower, followed = in_thread(follow)
    follower.join(5)
    leader.join(5)
    assert server.requests == 1
    assert isinstance(followed["error"], TransportError) and followed["error"].retryable
    assert "did not finish within this call's deadline" in followed["error"].message
    assert followed["seconds"] < 0.3 + MARGIN
    assert isinstance(led["error"], TransportError) and led["error"].phase == "wait for headers"
    assert led["seconds"] < 1 + MARGIN


def test_jwks_lock_wait_ends_within_the_budget(serve: Serve) -> None:
    """A key lookup waiting for another thread's JWKS fetch gives up at its budget, retryably, naming the host."""
    jwks = serve("silent", host=JWKS_HOST)
    source = JwksKeySource(jwks_url(jwks), timeout=(2.0, 2.0))

    def fetch() -> None:
        budget = open_budget(1.0, time.monotonic)
        try:
            source.get_key("test-kid")
        finally:
            leave(budget)

    try:
        fetcher, fetched = in_thread(fetch)
        assert jwks.wait_for_requests(1)  # the fetcher holds the lock now
        budget = open_budget(0.3, time.monotonic)
        try:
            error, seconds = timed(lambda: source.get_key("test-kid"))
        finally:
            leave(budget)
        fetcher.join(5)
    finally:
        source.close()
    assert seconds < 0.3 + 0.3
    assert error.retryable
    assert error.host == JWKS_HOST
    assert JWKS_HOST in error.message
    assert jwks.requests == 1
    assert isinstance(fetched["error"], TransportError) and fetched["seconds"] < 1 + MARGIN


# --- the budget on its own -------------------------------------------------------------------------------


class FakeMonotonic:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_budget_outside_a_call() -> None:
    """remaining() is None outside any budget."""
    assert remaining() is None


def test_budget_counts_down_on_its_clock() -> None:
    """remaining() is the budget's seconds less the time its monotonic clock moved, zero or less once spent."""
    clock = FakeMonotonic()
    budget = open_budget(10.0, clock)
    try:
        clock.now += 3.0
        assert remaining() == 7.0
        clock.now += 8.0
        assert remaining() == -1.0
    finally:
        leave(budget)


def test_nested_budget_only_shortens() -> None:
    """A budget opened inside another ends at the earlier of the two ends."""
    clock = FakeMonotonic()
    outer = open_budget(5.0, clock)
    try:
        longer = open_budget(60.0, clock)
        assert remaining() == 5.0
        leave(longer)
        shorter = open_budget(2.0, clock)
        assert remaining() == 2.0
        leave(shorter)
    finally:
        leave(outer)


def test_leave_restores_the_outer_budget() -> None:
    """Leaving a nested budget makes the outer one current again; leaving that one, none."""
    clock = FakeMonotonic()
    outer = open_budget(5.0, clock)
    inner = open_budget(1.0, clock)
    clock.now += 0.5
    assert remaining() == 0.5
    leave(inner)
    assert remaining() == 4.5
    leave(outer)
    assert remaining() is None


def test_budget_is_per_thread() -> None:
    """A budget opened in one thread is not seen in another."""
    seen: list[float | None] = []
    budget = open_budget(5.0, time.monotonic)
    try:
        thread = threading.Thread(target=lambda: seen.append(remaining()))
        thread.start()
        thread.join(5)
    finally:
        leave(budget)
    assert seen == [None]


# --- the watchdog on its own -----------------------------------------------------------------------------


class Connection:
    """What the watchdog needs of a connection: the watch that claimed it last."""

    watch: Watch | None = None


@pytest.fixture
def dog() -> Watchdog:
    """A watchdog of the test's own, not the process's."""
    return Watchdog()


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A connected socket pair; the first has a 1 s timeout, so a read that is not cut ends."""
    left, right = socket.socketpair()
    left.settimeout(1.0)
    yield left, right
    left.close()
    right.close()


def wait_until(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    """Whether ``condition`` held within ``seconds``."""
    ends = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > ends:
            return False
        time.sleep(0.005)
    return True


def asleep(dog: Watchdog, *, until: float) -> bool:
    """Whether the watchdog's thread is waiting (its lock free) for a wake-up at ``until``."""
    if dog._wakes_at != until or not dog._wakeup.acquire(blocking=False):
        return False
    dog._wakeup.release()
    return True


def is_shut(sock: socket.socket) -> bool:
    """Whether a read on ``sock`` (with nothing sent to it) ends at once with end of file."""
    sock.settimeout(0.2)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_new_watch_is_running_and_counted(dog: Watchdog) -> None:
    """A new watch is at "connect", not cut, ends ``seconds`` from now, and counted until released."""
    before = time.monotonic()
    watch = dog.watch(30.0)
    assert (watch.phase, watch.cut, watch.connection, watch.sock) == ("connect", False, None, None)
    assert before + 30.0 <= watch.ends <= time.monotonic() + 30.0
    assert len(dog) == 1
    dog.release(watch)
    assert len(dog) == 0


def test_released_watch_is_never_cut(dog: Watchdog, pair: Pair) -> None:
    """A request released before its deadline is never cut, and its socket is left alone."""
    connection = Connection()
    watch = dog.watch(0.05)
    dog.attach(watch, connection, pair[0])
    dog.release(watch)
    time.sleep(0.15)
    assert not watch.cut
    assert (watch.connection, watch.sock) == (None, None)
    assert not is_shut(pair[0])


def test_cut_at_the_deadline_shuts_the_socket(dog: Watchdog, pair: Pair) -> None:
    """At its deadline a running request is cut: watch.cut is set and a read blocked on its socket returns at once."""
    connection = Connection()
    watch = dog.watch(0.1)
    dog.attach(watch, connection, pair[0])
    started = time.monotonic()
    assert pair[0].recv(1) == b""  # blocked until the watchdog shut the socket
    assert 0.05 <= time.monotonic() - started < 0.6
    assert watch.cut
    assert len(dog) == 0


def test_earlier_deadline_wakes_the_watchdog(dog: Watchdog, pair: Pair) -> None:
    """A request whose deadline is earlier than the watchdog's next wake-up is still cut on time."""
    later = dog.watch(30.0)
    watch = dog.watch(0.1)
    dog.attach(watch, Connection(), pair[0])
    assert wait_until(lambda: watch.cut, 1.0)
    assert not later.cut
    dog.release(later)


def test_attach_after_the_deadline_shuts_at_once(dog: Watchdog, pair: Pair) -> None:
    """A socket attached to a request already cut (say, one that connected late) is shut down at once."""
    connection = Connection()
    watch = dog.watch(0.01)
    assert wait_until(lambda: watch.cut)
    dog.attach(watch, connection, None)  # still connecting: nothing to shut yet
    assert connection.watch is watch
    dog.attach(watch, connection, pair[0])
    assert is_shut(pair[0])


def test_attach_without_socket_keeps_the_one_known(dog: Watchdog, pair: Pair) -> None:
    """Attaching a connection without a socket keeps the socket already known, which the cut then shuts."""
    connection = Connection()
    watch = dog.watch(0.1)
    dog.attach(watch, connection, pair[0])
    dog.attach(watch, connection, None)
    assert watch.sock is pair[0]
    assert pair[0].recv(1) == b""


def test_connection_claimed_by_a_later_request_is_not_shut(dog: Watchdog, pair: Pair) -> None:
    """A late cut of an earlier request leaves alone the connection a later request now uses."""
    connection = Connection()
    earlier = dog.watch(0.1)
    dog.attach(earlier, connection, pair[0])
    later = dog.watch(30.0)
    dog.attach(later, connection, pair[0])
    assert wait_until(lambda: earlier.cut)
    assert not is_shut(pair[0])
    assert connection.watch is later
    dog.release(later)


def test_shutting_a_closed_socket_is_harmless(dog: Watchdog) -> None:
    """A cut request whose socket its reader already closed raises nothing."""
    left, right = socket.socketpair()
    left.close()
    right.close()
    watch = dog.watch(0.01)
    assert wait_until(lambda: watch.cut)
    dog.attach(watch, Connection(), left)


def test_duplicate_is_cut_after_tls_takes_the_socket_over(dog: Watchdog, pair: Pair) -> None:
    """With duplicate=, the cut still reaches a connection whose socket the TLS layer took over (detached)."""
    watch = dog.watch(0.1)
    dog.attach(watch, Connection(), pair[0], duplicate=True)
    taken = socket.socket(fileno=pair[0].detach())  # what ssl's wrap_socket does to the plain socket
    taken.settimeout(1.0)
    try:
        assert taken.recv(1) == b""  # blocked until the watchdog shut the connection through its duplicate
        assert watch.cut
    finally:
        taken.close()


def test_release_closes_the_duplicate(dog: Watchdog, pair: Pair) -> None:
    """Releasing a request closes the duplicate its watch made, and leaves the connection's own socket open."""
    watch = dog.watch(30.0)
    dog.attach(watch, Connection(), pair[0], duplicate=True)
    duplicate = watch.sock
    assert duplicate is not None and duplicate is not pair[0] and watch.owned
    dog.release(watch)
    assert duplicate.fileno() == -1
    assert not watch.owned
    assert not is_shut(pair[0])


def test_attaching_a_new_socket_closes_the_duplicate(dog: Watchdog, pair: Pair) -> None:
    """Once the request reports its TLS socket, the duplicate of the plain one is closed and the new one watched."""
    connection = Connection()
    watch = dog.watch(30.0)
    dog.attach(watch, connection, pair[0], duplicate=True)
    duplicate = watch.sock
    assert duplicate is not None
    dog.attach(watch, connection, pair[1])
    assert duplicate.fileno() == -1
    assert (watch.sock, watch.owned) == (pair[1], False)
    dog.release(watch)


def test_reset_ends_the_old_thread_and_a_new_watch_starts_another(dog: Watchdog) -> None:
    """After _reset_after_fork the old thread ends, nothing is watched, and the next watch starts a new thread."""
    first = dog.watch(0.5)
    old = dog._thread
    assert old is not None
    assert wait_until(lambda: asleep(dog, until=first.ends))
    dog._reset_after_fork()
    old.join(2.0)
    assert not old.is_alive()
    assert len(dog) == 0
    watch = dog.watch(0.05)
    assert dog._thread is not None and dog._thread is not old
    assert wait_until(lambda: watch.cut)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_starts_a_watchdog_thread_of_its_own(dog: Watchdog) -> None:
    """In a child forked while a request was watched, nothing is watched and the first watch starts a new thread."""
    held = dog.watch(30.0)
    parent_thread = dog._thread
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs only in the child, which coverage does not follow
        code = 1
        try:
            if dog._thread is None and len(dog) == 0:
                code = 2
                watch = dog.watch(0.05)
                if dog._thread is not None and dog._thread is not parent_thread and wait_until(lambda: watch.cut):
                    code = 0
        finally:
            os._exit(code)
    dog.release(held)
    assert reap(pid, 5.0) == 0  # 1: the parent's thread or watch was seen; 2: no new thread cut in time


def reap(pid: int, seconds: float) -> int | None:
    """The exit code of child ``pid``, or None when it did not end within ``seconds`` (it is killed then)."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None
