"""The retry policy (sut_soap.retry) and the rejection memory, through the client: what is retried, how long it
waits, what never is."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from support import (
    SIGNED_MINUTE,
    SIGNED_TOKEN,
    ClientFactory,
    FakeResponse,
    FrozenClock,
    LogCanary,
    Reply,
    ScriptedServer,
    Sleeper,
    SteppingClock,
    error_texts,
    rejection,
    watch_logs,
)
from support import soap_fault as fault

from sut_soap import (
    AuthenticationRejectedError,
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    SystemUserClient,
    SystemUserTicket,
    TokenValidationError,
    TransportError,
)
from sut_soap.cache import InMemoryTicketCache
from sut_soap.client import DEFAULT_REJECTION_COOLDOWN
from sut_soap.keys import load_private_key
from sut_soap.retry import DEFAULT_RETRY, RetryPolicy, is_transient
from sut_soap.soap import parse_answer, parse_retry_after
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.transport import HttpTransport

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-r3try"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryR3try1"
OTHER_TOKEN = "Acme Sync-canaryR3try2"


# --- helpers ----------------------------------------------------------------------------------


HTML = "<html><head><title>Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with the tenant CTX."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted loopback server, closed at teardown."""
    with ScriptedServer() as s:
        yield s

@pytest.fixture
def sleeper() -> Sleeper:
    """An injected sleep that only records its waits."""
    return Sleeper()


@pytest.fixture
def make_client() -> Iterator[Callable[..., SystemUserClient]]:
    """Clients with this module's secret and key, closed at teardown."""
    factory = ClientFactory(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY)
    yield factory
    factory.close()


@pytest.fixture
def canary() -> Iterator[LogCanary]:
    """Every log record and warning of the test, checked at teardown for the secrets and a line of the partner key."""
    pem = PARTNER_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    yield from watch_logs(CLIENT_SECRET, TOKEN, OTHER_TOKEN, pem.splitlines()[5])


def signed_tokens(bodies: list[bytes]) -> set[str]:
    return {match.group(1).decode() for body in bodies if (match := SIGNED_TOKEN.search(body))}


# --- the policy itself --------------------------------------------------------------------------


def test_full_jitter_backoff_is_capped() -> None:
    """Waits are random() * min(backoff_cap, backoff_base * 2**(n-1)), botocore's full jitter."""
    error = TransportError("cannot connect", retryable=True)
    top = RetryPolicy(attempts=10, backoff_base=0.5, backoff_cap=20.0, random=lambda: 1.0)
    assert [top.delay(error, n) for n in range(1, 10)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0, 20.0]
    assert top.delay(error, 10) is None
    quarter = RetryPolicy(attempts=10, random=lambda: 0.25)
    assert quarter.delay(error, 3) == 0.5
    assert RetryPolicy(random=lambda: 0.0).delay(error, 1) == 0.0


def test_default_policy() -> None:
    """The default is 3 attempts, 0.5 s base, 20 s cap, Retry-After up to 30 s, 30 s in all."""
    assert (DEFAULT_RETRY.attempts, DEFAULT_RETRY.backoff_base, DEFAULT_RETRY.backoff_cap) == (3, 0.5, 20.0)
    assert (DEFAULT_RETRY.retry_after_cap, DEFAULT_RETRY.deadline) == (30.0, 30.0)
    assert DEFAULT_REJECTION_COOLDOWN == 60.0
    assert "sleep" not in repr(DEFAULT_RETRY)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransportError("cannot connect", retryable=True), True),
        (TransportError("broke mid-answer", status=200, retryable=True), True),
        (TransportError("HTTP 502", status=502, retryable=True), True),
        (TransportError("HTTP 503", status=503, retryable=True), True),
        (TransportError("HTTP 504", status=504, retryable=True), True),
        (TransportError("HTTP 429", status=429, retryable=True), True),
        (TransportError("TLS handshake failed", retryable=False), False),
        (TransportError("HTTP 404", status=404, retryable=True), False),
        (TransportError("HTTP 500", status=500, retryable=True), False),
        (TransportError("HTTP 401", status=401, retryable=False), False),
        (SoapFaultError("s:Server", fault_code="s:Server", fault_string="", retryable=True), True),
        (SoapFaultError("s:Client", fault_code="s:Client", fault_string="", retryable=False), False),
        (ProtocolError("not SOAP"), False),
        (AuthenticationRejectedError("no", error_message="Denied"), False),
        (TokenValidationError("bad", check="signature"), False),
        (ConfigurationError("bad"), False),
        (SutSoapError("other", retryable=True), False),
        (RuntimeError("not ours"), False),
    ],
)
def test_classification(error: BaseException, transient: bool) -> None:
    """Only connection failures, timeouts, 429/502/503/504 and s:Server faults count as transient."""
    assert is_transient(error) is transient
    assert (RetryPolicy().delay(error, 1) is not None) is (transient and getattr(error, "status", None) != 429)


def test_retry_after_rules() -> None:
    """Retry-After is the wait when within the cap; beyond it, or a 429 without it, means no retry."""
    p = RetryPolicy(random=lambda: 1.0)
    assert p.delay(TransportError("503", status=503, retryable=True, retry_after=2.0), 1) == 2.0
    assert p.delay(TransportError("503", status=503, retryable=True, retry_after=30.0), 1) == 30.0
    assert p.delay(TransportError("503", status=503, retryable=True, retry_after=30.5), 1) is None
    assert p.delay(TransportError("429", status=429, retryable=True, retry_after=1.0), 1) == 1.0
    assert p.delay(TransportError("429", status=429, retryable=True), 1) is None
    assert p.delay(TransportError("429", status=429, retryable=True, retry_after=float("inf")), 1) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0}, {"attempts": 11}, {"attempts": True}, {"attempts": 2.0},
        {"backoff_base": -1}, {"backoff_cap": float("nan")}, {"retry_after_cap": float("inf")},
        {"deadline": 0}, {"deadline": 3601}, {"sleep": None},
    ],
)
def test_policy_values_checked(kwargs: dict[str, Any]) -> None:
    """Unbounded or nonsensical policy values are configuration errors."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize("kwargs", [{"retry": "3"}, {"rejection_cooldown": -1}, {"rejection_cooldown": True},
                                    {"rejection_cooldown": float("nan")}, {"allow_insecure_tls": "yes"}])
def test_client_options_checked(kwargs: dict[str, Any], make_client: Callable[..., SystemUserClient]) -> None:
    """retry=, rejection_cooldown= and allow_insecure_tls= are checked at construction."""
    with pytest.raises(ConfigurationError):
        make_client("http://127.0.0.1:9/x", **kwargs)


# --- Retry-After --------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    """Retry-After is delay-seconds or an HTTP-date (against the answer's Date); anything else is None."""
    date = "Sat, 28 Nov 2026 13:00:00 GMT"
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("100000") == 100000.0
    assert parse_retry_after("Sat, 28 Nov 2026 13:00:05 GMT", date=date) == 5.0
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:00 GMT", date=date) == 0.0
    now = datetime.now(timezone.utc)
    far = parse_retry_after(format_datetime(now + timedelta(days=3), usegmt=True))
    assert far is not None and far > 3 * 86400 - 5
    for bad in (None, "", "-1", "1.5", "soon", "२", "Sat, 99 Nov 2026 13:00:00 GMT", "x" * 5000):
        assert parse_retry_after(bad) is None


def test_status_error_carries_status_and_retry_after() -> None:
    """parse_answer puts the status and the parsed Retry-After on the TransportError, any header case."""
    headers = requests.structures.CaseInsensitiveDict({"retry-after": "7"})
    with pytest.raises(TransportError) as info:
        parse_answer(FakeResponse(HTML.encode(), 503, headers))
    assert (info.value.status, info.value.retry_after, info.value.retryable) == (503, 7.0, True)
    with pytest.raises(TransportError) as info:
        parse_answer(FakeResponse(b"", 429, {"RETRY-AFTER": "3"}))
    assert (info.value.status, info.value.retry_after) == (429, 3.0)
    with pytest.raises(TransportError) as info:
        parse_answer(FakeResponse(b"", 502))
    assert info.value.retry_after is None


# --- what is retried, against real HTTP ---------------------------------------------------------


def test_transient_503_is_retried_then_succeeds(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """Two 503s then a success: get_ticket returns the ticket after 3 exchanges and two jittered waits."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=2)
    before = emu.exchange_count
    ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert isinstance(ticket, SystemUserTicket)
    assert emu.exchange_count == before + 3
    assert sleeper.waits == [0.5, 1.0]


def test_attempts_are_bounded_and_the_last_error_surfaces(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """A 503 that persists costs exactly 3 attempts, then its retryable TransportError is raised."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    before = emu.exchange_count
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert (info.value.status, info.value.retryable) == (503, True)
    assert emu.exchange_count == before + 3
    assert len(sleeper.waits) == 2
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_retry_after_seconds_is_honoured(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """A 503 with Retry-After: 2 waits exactly 2 s (not the jittered backoff) before trying again."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, retry_after=2, times=1)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX
    assert sleeper.waits == [2.0]


@pytest.mark.parametrize(
    "retry_after",
    ["100000", "31", format_datetime(datetime.now(timezone.utc) + timedelta(days=365), usegmt=True)],
)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_beyond_the_cap_fails_without_sleeping(
    server: ScriptedServer, sleeper: Sleeper, make_client: Callable[..., SystemUserClient],
    status: int, retry_after: str,
) -> None:
    """A Retry-After beyond 30 s (seconds or HTTP-date) is not waited for: one attempt, then the error."""
    server.default = Reply(status, b"", {"Retry-After": retry_after})
    client = make_client(server.url, retry=sleeper.policy())
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.status == status
    assert info.value.retry_after is not None and info.value.retry_after > 30
    assert server.posts == 1
    assert sleeper.waits == []


def test_429_is_retried_only_when_it_says_how_long(
    server: ScriptedServer, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """429 with Retry-After: 1 is retried after 1 s; a bare 429 is not retried at all."""
    client = make_client(server.url, retry=sleeper.policy())
    server.script = [Reply(429, b"", {"Retry-After": "1"}), Reply(429)]
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.status == 429
    assert server.posts == 2
    assert sleeper.waits == [1.0]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(502, HTML, {"Content-Type": "text/html"}), TransportError),
        (Reply(504, HTML.replace("502 Bad", "504 Gateway"), {"Content-Type": "text/html"}), TransportError),
        (Reply(503), TransportError),
        (Reply(500, fault("s:Server"), {"Content-Type": "text/xml"}), SoapFaultError),
    ],
    ids=["502-html", "504-html", "503-empty", "soap-server-fault"],
)
def test_transient_answers_use_every_attempt(
    server: ScriptedServer, sleeper: Sleeper, make_client: Callable[..., SystemUserClient],
    reply: Reply, expected: type[SutSoapError],
) -> None:
    """502/504 pages, an empty 503 and an s:Server fault are retried up to 3 attempts, then raised."""
    server.default = reply
    client = make_client(server.url, retry=sleeper.policy())
    with pytest.raises(expected) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.retryable is True
    assert server.posts == 3
    assert len(sleeper.waits) == 2
    if isinstance(info.value, TransportError):
        assert info.value.excerpt is None or len(info.value.excerpt) <= 256


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(401, "<html><body>401 Unauthorized</body></html>", {"Content-Type": "text/html"}), TransportError),
        (Reply(403, "Forbidden", {"Content-Type": "text/plain"}), TransportError),
        (Reply(404, "Not Found"), TransportError),
        (Reply(500, HTML), TransportError),
        (Reply(307, b"", {"Location": "http://127.0.0.1:9/elsewhere"}), TransportError),
        (Reply(500, fault("s:Client", "Bad request"), {"Content-Type": "text/xml"}), SoapFaultError),
        (Reply(200, fault("s:Client", "Bad request"), {"Content-Type": "text/xml"}), SoapFaultError),
        (Reply(500, fault("a:InternalServiceFault"), {"Content-Type": "text/xml"}), SoapFaultError),
        (Reply(200, rejection("InvalidSignature")), AuthenticationRejectedError),
        (Reply(200, rejection("Denied", token="eyJhbGciOiJSUzI1NiJ9.e30.c2ln")), AuthenticationRejectedError),
        (Reply(200, "<html>maintenance</html>", {"Content-Type": "text/html"}), ProtocolError),
        (Reply(200, '{"IsSuccessful": true}', {"Content-Type": "application/json"}), ProtocolError),
    ],
    ids=["401", "403", "404", "500-html", "307", "client-fault-500", "client-fault-200", "wcf-internal-fault",
         "rejected", "rejected-with-token", "html-200", "json-200"],
)
def test_final_answers_are_never_retried(
    server: ScriptedServer, sleeper: Sleeper, make_client: Callable[..., SystemUserClient],
    reply: Reply, expected: type[SutSoapError],
) -> None:
    """Rejections, client faults, 4xx other than 429, redirects and non-SOAP answers cost exactly 1 attempt."""
    server.default = reply
    client = make_client(server.url, retry=sleeper.policy())
    with pytest.raises(expected):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert server.posts == 1
    assert sleeper.waits == []


def test_connection_reset_is_retried(emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]) -> None:
    """A connection closed without an answer is retried and the next attempt's ticket is returned."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    emu.inject(Fault.DISCONNECT, times=1)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX
    assert len(sleeper.waits) == 1


def test_connection_refused_is_retried_three_times(
    sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """Nothing listening: 3 connection attempts through the caller's session, then a retryable TransportError."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    attempts: list[str] = []

    class Counting(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            attempts.append(f"{method!s} {url!s}")
            return super().request(method, url, *args, **kwargs)

    client = make_client(f"http://127.0.0.1:{port}/x", session=Counting(), retry=sleeper.policy())
    with pytest.raises(TransportError, match="cannot connect") as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.retryable is True
    assert attempts == [f"POST http://127.0.0.1:{port}/x"] * 3
    assert len(sleeper.waits) == 2


def test_jwt_failures_are_not_retried(emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]) -> None:
    """A JWT that fails validation is raised after one exchange; retrying could not change it."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    emu.inject(Fault.EXPIRED_TOKEN)
    before = emu.exchange_count
    with pytest.raises(TokenValidationError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.exchange_count == before + 1
    assert sleeper.waits == []


def test_jwks_outage_does_not_exchange_again(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """A JWKS outage after a successful exchange is retried by validating the same JWT again: no second exchange."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    emu.inject(Fault.JWKS_UNAVAILABLE)
    before, fetches = emu.exchange_count, emu.jwks_count
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.retryable is True
    assert emu.exchange_count == before + 1
    assert emu.jwks_count == fetches + 3
    assert sleeper.waits == [0.5, 1.0]


def test_configuration_errors_are_not_retried(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """A control character in the tenant is refused before any exchange, with no wait."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    before = emu.exchange_count
    with pytest.raises(ConfigurationError):
        client.get_ticket(context_identifier="Cust\x0012", system_user_token=TOKEN)
    assert emu.exchange_count == before
    assert sleeper.waits == []


def test_each_retry_signs_again_with_a_fresh_timestamp(
    server: ScriptedServer, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """HOSTILE 17: attempt 1 at 12:59:59.9 signs 1259; the retry at 13:00:00.2 signs 1300, not the old token."""
    times = iter([
        datetime(2026, 1, 1, 12, 59, 59, 900_000, tzinfo=timezone.utc),
        datetime(2026, 1, 1, 13, 0, 0, 200_000, tzinfo=timezone.utc),
        datetime(2026, 1, 1, 13, 0, 1, 0, tzinfo=timezone.utc),
    ])
    client = make_client(server.url, retry=sleeper.policy(), clock=lambda: next(times))
    with pytest.raises(TransportError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    minutes = [SIGNED_MINUTE.search(body).group(1) for body in server.bodies]  # type: ignore[union-attr]
    assert minutes == [b"202601011259", b"202601011300", b"202601011300"]
    tokens = [SIGNED_TOKEN.search(body).group(1) for body in server.bodies]  # type: ignore[union-attr]
    assert tokens[0] != tokens[1] == tokens[2]  # PKCS#1 v1.5 is deterministic: same minute, same bytes


# --- the total deadline -------------------------------------------------------------------------


def test_no_wait_that_would_pass_the_deadline(
    server: ScriptedServer, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """With a 1 s deadline, a 0.6 s wait is taken but the next 1.2 s one is not: 2 attempts, then the error."""
    client = make_client(server.url, retry=sleeper.policy(backoff_base=0.6, deadline=1.0))
    with pytest.raises(TransportError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert server.posts == 2
    assert sleeper.waits == [0.6]


def test_retry_after_past_the_deadline_is_not_waited_for(
    server: ScriptedServer, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """A Retry-After within its cap but beyond what is left of the deadline ends the call at once."""
    server.default = Reply(503, b"", {"Retry-After": "20"})
    client = make_client(server.url, retry=sleeper.policy(deadline=10.0))
    with pytest.raises(TransportError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert server.posts == 1
    assert sleeper.waits == []


def test_a_hanging_attempt_is_cut_at_the_deadline(
    server: ScriptedServer, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """A server that never answers costs the call its deadline (0.5 s), not the 10 s read timeout."""
    server.default = lambda h: server.release.wait(5)
    client = make_client(server.url, timeout=(1.0, 10.0), retry=RetryPolicy(deadline=0.5, sleep=sleeper))
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 1.5
    assert info.value.retryable is True
    assert server.posts == 1


# --- when retries do not apply ------------------------------------------------------------------


def test_renewal_with_a_valid_ticket_is_not_retried(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient], caplog: pytest.LogCaptureFixture
) -> None:
    """HOSTILE 77: a failed renewal returns the still-valid ticket at once, with no retry and no wait."""
    clock = SteppingClock()
    client = make_client(emu.endpoint, retry=sleeper.policy(), clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
    first = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(400)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    before = emu.exchange_count
    caplog.set_level(logging.WARNING, logger="sut_soap")
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN) is first
    assert emu.exchange_count == before + 1
    assert sleeper.waits == []
    assert len(caplog.records) == 1


@pytest.mark.parametrize("retry", [None, "one-attempt"])
def test_retries_can_be_switched_off(
    emu: Emulator, make_client: Callable[..., SystemUserClient], retry: str | None
) -> None:
    """retry=None and RetryPolicy(attempts=1) both mean one attempt per get_ticket."""
    sleeper = Sleeper()
    client = make_client(emu.endpoint, retry=None if retry is None else RetryPolicy(attempts=1, sleep=sleeper))
    assert client.retry is None
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    before = emu.exchange_count
    with pytest.raises(TransportError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.exchange_count == before + 1
    assert sleeper.waits == []


def test_authenticate_is_always_one_exchange(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """authenticate never retries, whatever the policy: it is the one-exchange primitive."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    before = emu.exchange_count
    with pytest.raises(TransportError):
        client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.exchange_count == before + 1
    assert sleeper.waits == []


def test_a_callers_transport_is_not_retried_unless_asked(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """With transport= and no retry=, one attempt (recordings and replays stay one-to-one); retry= turns it on."""
    plain = make_client(emu.endpoint, transport=HttpTransport())
    assert plain.retry is None
    asked = make_client(emu.endpoint, transport=HttpTransport(), retry=sleeper.policy())
    assert asked.retry is not None
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    with pytest.raises(TransportError):
        plain.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    assert asked.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX
    assert len(sleeper.waits) == 1
    assert make_client(emu.endpoint).retry == DEFAULT_RETRY


def test_waiters_share_the_outcome_of_the_retried_exchange(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient]
) -> None:
    """10 threads on a cold tenant during two 503s: one leader makes 3 exchanges, all get its ticket."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)  # JWKS fetched
    client.invalidate(CTX)
    emu.inject(Fault.LATENCY, seconds=0.1, times=1)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=2)
    barrier = threading.Barrier(10)
    got: list[SystemUserTicket] = []
    before = emu.exchange_count

    def work() -> None:
        barrier.wait(5)
        got.append(client.get_ticket(context_identifier=CTX, system_user_token=TOKEN))

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 10 and len({id(t) for t in got}) == 1
    assert emu.exchange_count == before + 3


def test_key_rotation_while_the_jwks_is_down_is_retried_without_another_exchange(
    emu: Emulator, make_client: Callable[..., SystemUserClient]
) -> None:
    """A JWT with a rotated kid while the JWKS is briefly down is validated again after the retry wait: one exchange, a ticket."""
    clock = SteppingClock()
    client = make_client(emu.endpoint, clock=clock.clock, retry=RetryPolicy(backoff_base=2.0, random=lambda: 1.0))
    client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)  # the JWKS is fetched and cached
    client.invalidate(CTX)
    emu.rotate_key()
    emu.inject(Fault.JWKS_UNAVAILABLE, times=1)
    clock.advance(5)
    before, fetches = emu.exchange_count, emu.jwks_count
    ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert ticket.context_identifier == CTX
    assert emu.exchange_count == before + 1
    assert emu.jwks_count == fetches + 2  # the failed refetch, then the one after the 2 s wait
    assert clock.sleeps == [2.0]


# --- the negative cache -------------------------------------------------------------------------


def test_rejection_is_not_sent_again_within_the_cooldown(
    emu: Emulator, make_client: Callable[..., SystemUserClient]
) -> None:
    """HOSTILE 46: a rejected get_ticket is answered from memory for 60 s, then exchanged again."""
    clock = FrozenClock()
    client = make_client(emu.endpoint, clock=clock)
    emu.inject(Fault.REJECT, message="NeedsReapproval")
    before = emu.exchange_count
    with pytest.raises(AuthenticationRejectedError) as first:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    clock.advance(59)
    with pytest.raises(AuthenticationRejectedError) as again:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.exchange_count == before + 1
    assert again.value is not first.value
    assert again.value.error_message == first.value.error_message == "NeedsReapproval"
    assert again.value.hint == first.value.hint
    assert "remembered" in str(again.value)
    assert again.value.retryable is False
    clock.advance(1)
    with pytest.raises(AuthenticationRejectedError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert emu.exchange_count == before + 2


def test_invalidate_forgets_the_rejection(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """After invalidate(tenant) the next get_ticket exchanges again (the administrator re-approved)."""
    client = make_client(emu.endpoint)
    emu.inject(Fault.REJECT, message="NeedsReapproval", times=1)
    with pytest.raises(AuthenticationRejectedError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    client.invalidate(CTX, ticket="7T:some-other-ticket")  # only a stale-ticket check: keeps the rejection
    with pytest.raises(AuthenticationRejectedError, match="remembered"):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    client.invalidate(CTX)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX


def test_remembered_rejection_skips_the_fleet_lock(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """A remembered rejection is answered before the shared store's lock: no round trip to it either."""
    locks: list[str] = []

    class LockingStore(InMemoryTicketCache):
        @contextmanager
        def lock(self, key: str, timeout: float) -> Iterator[None]:
            locks.append(key)
            yield

    client = make_client(emu.endpoint, cache=LockingStore())
    emu.inject(Fault.REJECT, times=1)
    with pytest.raises(AuthenticationRejectedError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert len(locks) == 1
    for _ in range(3):
        with pytest.raises(AuthenticationRejectedError, match="remembered"):
            client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert len(locks) == 1


def test_rejection_cooldown_zero_disables_it(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """rejection_cooldown=0 sends every get_ticket after a rejection."""
    client = make_client(emu.endpoint, rejection_cooldown=0)
    emu.inject(Fault.REJECT, times=1)
    with pytest.raises(AuthenticationRejectedError):
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX


def test_rejection_memory_is_per_token_and_not_for_authenticate(
    emu: Emulator, make_client: Callable[..., SystemUserClient]
) -> None:
    """Another system user token is still sent; authenticate always exchanges; the wall clock set back cannot extend it."""
    offset = [timedelta(0)]
    client = make_client(emu.endpoint, clock=lambda: datetime.now(timezone.utc) + offset[0], rejection_cooldown=0.2)
    with pytest.raises(AuthenticationRejectedError):
        client.get_ticket(context_identifier=CTX, system_user_token=OTHER_TOKEN)
    before = emu.exchange_count
    assert client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).context_identifier == CTX
    with pytest.raises(AuthenticationRejectedError):
        client.authenticate(context_identifier=CTX, system_user_token=OTHER_TOKEN)
    assert emu.exchange_count == before + 2
    offset[0] = timedelta(hours=-1)
    time.sleep(0.25)
    with pytest.raises(AuthenticationRejectedError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=OTHER_TOKEN)
    assert "remembered" not in str(info.value)
    assert emu.exchange_count == before + 3


# --- secrets on the retry paths -----------------------------------------------------------------


def test_retry_paths_leak_no_secret(
    emu: Emulator, sleeper: Sleeper, make_client: Callable[..., SystemUserClient], canary: LogCanary
) -> None:
    """At DEBUG on every logger: one line per retry, and no secret in logs, errors, chains or warnings."""
    client = make_client(emu.endpoint, retry=sleeper.policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=2)
    ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    retry_lines = [line for line in canary.text().splitlines() if "retrying in" in line]
    assert len(retry_lines) == 2
    assert all(line.startswith("sut_soap.retry DEBUG") and CTX in line and "HTTP 503" in line for line in retry_lines)
    texts: list[str] = [repr(ticket), repr(client)]
    client.invalidate(CTX)
    for inject in (
        {"fault": Fault.SERVICE_UNAVAILABLE_HTML},
        {"fault": Fault.SOAP_FAULT_500, "code": "Server", "message": f"echo {TOKEN} {CLIENT_SECRET}"},
        {"fault": Fault.DISCONNECT},
        {"fault": Fault.REJECT, "message": f"Denied {TOKEN}"},
    ):
        emu.clear_faults()
        emu.inject(**inject)  # type: ignore[arg-type]
        for _ in range(2):  # the second rejection comes from the negative cache
            with pytest.raises(SutSoapError) as info:
                client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
            texts += error_texts(info.value)
    canary.secrets |= {ticket.ticket, ticket.token} | signed_tokens([r.body for r in emu.requests])
    assert len(canary.secrets) > 8  # the signed tokens of this test's exchanges are among them
    canary.check(*texts)
