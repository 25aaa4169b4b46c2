"""SystemUserClient end to end against the bundled emulator over real HTTP on loopback: tickets,
rejections, faults, configuration; its stores when they fail, get_tickets and its pool, and what a
dump of a client shows."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support import (
    ClientFactory,
    HookedLock,
    LogCanary,
    ScriptedTransport,
    SteppingClock,
    error_texts,
    watch_logs,
)

import sut_soap._core
import sut_soap.client as client_module
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
from sut_soap._rejection import rejection
from sut_soap.cache import CachedTicket, InMemoryTicketCache
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.transport import HttpResponse, HttpTransport

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
REFERENCE_WSDL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "PartnerSystemUserService.official.wsdl"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-5f1d"
CTX = "Cust12345"
SYSTEM_USER_TOKEN = "Acme Sync-canary8k8Q7"
OTHER_CTX = "Cust67890"
OTHER_TOKEN = "Other Sync-canary2x"
THIRD_CTX = "Cust24680"
THIRD_TOKEN = "Third Sync-canary3z"
SECRETS = (CLIENT_SECRET, SYSTEM_USER_TOKEN, OTHER_TOKEN, THIRD_TOKEN)
NOWHERE = "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc"  # never contacted


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with three tenants."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_USER_TOKEN, serial="1234567")
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_TOKEN, serial="7654321")
        emu.add_tenant(THIRD_CTX, system_user_token=THIRD_TOKEN, serial="2468024")
        yield emu


@pytest.fixture
def client(emu: Emulator) -> Iterator[SystemUserClient]:
    """A client of the emulator, closed at teardown."""
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint) as c:
        yield c


@pytest.fixture
def make_client() -> Iterator[Callable[..., SystemUserClient]]:
    """Clients with this module's secret and key, towards NOWHERE unless told otherwise; closed at teardown."""
    factory = ClientFactory(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=NOWHERE)
    yield factory
    factory.close()


@pytest.fixture
def canary() -> Iterator[LogCanary]:
    """Every log record and warning of the test, checked for the module's secrets at teardown."""
    yield from watch_logs(CLIENT_SECRET, SYSTEM_USER_TOKEN, OTHER_TOKEN)


# --- success ------------------------------------------------------------------------------


def test_authenticate_returns_validated_ticket(client: SystemUserClient, emu: Emulator, canary: LogCanary) -> None:
    """A real exchange gives a ticket whose fields come from the validated JWT."""
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    ticket = client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert isinstance(ticket, SystemUserTicket)
    assert ticket.ticket.startswith("7T:")
    assert ticket.context_identifier == CTX
    assert ticket.serial == "1234567"
    assert ticket.webapi_url == f"{emu.base_url}/{CTX}/api/"
    assert ticket.netserver_url is not None and ticket.netserver_url.startswith(emu.base_url)
    assert ticket.associate_id == 5
    assert ticket.expires_at > datetime.now(timezone.utc)
    assert ticket.expires_at.tzinfo is not None
    assert before <= ticket.obtained_at <= datetime.now(timezone.utc)
    assert ticket.claims["iss"] == "SuperOffice AS"
    assert ticket.token.count(".") == 2
    canary.secrets |= {ticket.ticket, ticket.token}
    canary.check(repr(ticket), str(ticket), repr(client))


def test_ticket_is_frozen_with_read_only_claims(client: SystemUserClient) -> None:
    """The ticket and its claims cannot be changed after validation."""
    ticket = client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    with pytest.raises(AttributeError):
        ticket.ticket = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ticket.claims["iss"] = "x"  # type: ignore[index]


def test_rest_headers(client: SystemUserClient) -> None:
    """The REST helper gives SOTicket authorization and the application token."""
    ticket = client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert ticket.rest_headers(CLIENT_SECRET) == {
        "Authorization": f"SOTicket {ticket.ticket}",
        "SO-AppToken": CLIENT_SECRET,
    }


def test_each_exchange_new_ticket(client: SystemUserClient) -> None:
    """Two exchanges give two different tickets (no caching in authenticate)."""
    a = client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    b = client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert a.ticket != b.ticket


def test_request_goes_to_configured_endpoint(client: SystemUserClient, emu: Emulator) -> None:
    """The POST goes to the configured URL with the documented headers, never the WSDL's address."""
    client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    sent = emu.requests[-1]
    assert sent.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert sent.headers["SOAPAction"] == (
        '"http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate"'
    )
    assert sent.headers["Host"] == emu.base_url.removeprefix("http://")
    assert b"<tns:ContextIdentifier>Cust12345</tns:ContextIdentifier>" in sent.body
    assert b"addressing" not in sent.body


def test_one_client_many_tenants_many_threads(client: SystemUserClient) -> None:
    """One client shared by threads serves two tenants, each getting its own ticket."""
    results: list[tuple[str, SystemUserTicket]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(ctx: str, token: str) -> None:
        try:
            for _ in range(5):
                t = client.authenticate(context_identifier=ctx, system_user_token=token)
                with lock:
                    results.append((ctx, t))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(CTX, SYSTEM_USER_TOKEN) if i % 2 else (OTHER_CTX, OTHER_TOKEN))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(results) == 40
    assert all(ctx == t.context_identifier for ctx, t in results)
    assert {t.serial for ctx, t in results if ctx == OTHER_CTX} == {"7654321"}
    assert len({t.ticket for _, t in results}) == 40


def test_offline_public_key(emu: Emulator) -> None:
    """With public_key= the JWT is checked against that key and the JWKS is never fetched."""
    pem = emu.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    before = emu.jwks_count
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, public_key=pem
    ) as c:
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert emu.jwks_count == before


def test_jwks_cached_and_refetched_on_rotation(emu: Emulator) -> None:
    """The JWKS is fetched once, then again only for a new kid and not within the first 1 s refetch wait."""
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint) as c:
        now = [1000.0]
        c._validator._key_source._clock = lambda: now[0]  # type: ignore[attr-defined]
        before = emu.jwks_count
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        assert emu.jwks_count == before + 1
        emu.rotate_key()
        now[0] += 0.5
        with pytest.raises(TokenValidationError) as info:
            c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        assert info.value.check == "key"
        assert emu.jwks_count == before + 1
        now[0] += 0.5
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        assert emu.jwks_count == before + 2


def test_explicit_jwks_url(emu: Emulator) -> None:
    """jwks_url= is used for the keys."""
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, jwks_url=emu.jwks_url
    ) as c:
        assert c.jwks_url == emu.jwks_url
        assert c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN).serial == "1234567"


def test_expected_serial(emu: Emulator) -> None:
    """expected_serial= refuses a JWT for another tenant database."""
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, expected_serial="999"
    ) as c, pytest.raises(TokenValidationError) as info:
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.check == "serial"


@pytest.mark.skipif(not REFERENCE_WSDL.is_file(), reason="../shared/reference is not beside the checkout")
def test_official_wsdl_works(emu: Emulator) -> None:
    """wsdl= with SuperOffice's published WSDL performs the same exchange."""
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, wsdl=REFERENCE_WSDL
    ) as c:
        assert c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN).context_identifier == CTX
    assert b"addressing" not in emu.requests[-1].body


def test_alphabetical_member_order() -> None:
    """An answer with WCF's alphabetical member order (ErrorMessage, IsSuccessful, Token) is read."""
    with Emulator(
        client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY, member_order="alphabetical"
    ) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_USER_TOKEN, serial="1234567")
        with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint) as c:
            assert c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN).ticket


def test_callers_session_used(emu: Emulator) -> None:
    """session= is used for the exchange and the JWKS, and left open."""
    session = requests.Session()
    calls: list[str] = []
    session.hooks["response"].append(lambda r, *a, **k: calls.append(r.request.method))
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, session=session
    ) as c:
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert calls == ["POST", "GET"]
    session.get(emu.jwks_url).raise_for_status()


# --- rejections ---------------------------------------------------------------------------


def _rejected(c: SystemUserClient, ctx: str = CTX, token: str = SYSTEM_USER_TOKEN) -> AuthenticationRejectedError:
    with pytest.raises(AuthenticationRejectedError) as info:
        c.authenticate(context_identifier=ctx, system_user_token=token)
    return info.value


def test_wrong_client_secret(emu: Emulator, canary: LogCanary) -> None:
    """A wrong client secret is rejected with the service's reason and a hint about the secret."""
    canary.secrets.add("wrong-secret-canary")
    with SystemUserClient(client_secret="wrong-secret-canary", private_key=PARTNER_KEY, endpoint=emu.endpoint) as c:
        error = _rejected(c)
    assert error.error_message.startswith("InvalidApplicationToken")
    assert "client secret" in error.hint
    assert error.retryable is False
    canary.check(*error_texts(error))


def test_unknown_tenant(client: SystemUserClient, canary: LogCanary) -> None:
    """An unknown ContextIdentifier is rejected naming the tenant problem."""
    error = _rejected(client, ctx="Cust00000")
    assert error.error_message.startswith("UnknownTenant")
    assert "Cust00000" in str(error)
    canary.check(*error_texts(error))


def test_wrong_system_user_token(client: SystemUserClient, canary: LogCanary) -> None:
    """A system user token that is not the tenant's is rejected."""
    canary.secrets.add("Not The Token-canary")
    error = _rejected(client, token="Not The Token-canary")
    assert error.error_message.startswith("InvalidSystemToken")
    canary.check(*error_texts(error))


def test_wrong_partner_key(emu: Emulator, canary: LogCanary) -> None:
    """A signature made with another key is rejected as InvalidSignature with a hint about the key."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=other, endpoint=emu.endpoint) as c:
        error = _rejected(c)
    assert error.error_message.startswith("InvalidSignature")
    assert "private key" in error.hint
    canary.check(*error_texts(error))


@pytest.mark.parametrize("skew", [timedelta(minutes=-20), timedelta(minutes=20)])
def test_clock_skew_rejected(emu: Emulator, skew: timedelta, canary: LogCanary) -> None:
    """A signing clock 20 minutes off is rejected as InvalidTimestamp with a hint about the clock."""
    with SystemUserClient(
        client_secret=CLIENT_SECRET,
        private_key=PARTNER_KEY,
        endpoint=emu.endpoint,
        clock=lambda: datetime.now(timezone.utc) + skew,
    ) as c:
        error = _rejected(c)
    assert error.error_message.startswith("InvalidTimestamp")
    assert "clock" in error.hint
    canary.check(*error_texts(error))


def test_injected_rejection_message(client: SystemUserClient, emu: Emulator) -> None:
    """The service's ErrorMessage is carried verbatim (sanitised) on the error."""
    emu.inject(Fault.REJECT, message="NeedsReapproval", times=1)
    error = _rejected(client)
    assert error.error_message == "NeedsReapproval"
    assert "approve" in error.hint


# --- faults -------------------------------------------------------------------------------


def test_soap_fault(client: SystemUserClient, emu: Emulator, canary: LogCanary) -> None:
    """An HTTP 500 s:Fault becomes SoapFaultError with code and text."""
    emu.inject(Fault.SOAP_FAULT_500, times=1)
    with pytest.raises(SoapFaultError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.status == 500
    assert info.value.fault_code
    canary.check(*error_texts(info.value))


def test_html_503(client: SystemUserClient, emu: Emulator, canary: LogCanary) -> None:
    """An IIS 503 page becomes a retryable TransportError with the status and a short excerpt."""
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    with pytest.raises(TransportError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.status == 503
    assert info.value.retryable is True
    assert info.value.excerpt and len(info.value.excerpt) <= 200
    canary.check(*error_texts(info.value))


@pytest.mark.parametrize("fault", [Fault.EMPTY_BODY, Fault.TRUNCATED_BODY])
def test_broken_bodies(client: SystemUserClient, emu: Emulator, fault: Fault, canary: LogCanary) -> None:
    """An empty or truncated 200 answer is a ProtocolError."""
    emu.inject(fault, times=1)
    with pytest.raises(ProtocolError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    canary.check(*error_texts(info.value))


def test_disconnect(client: SystemUserClient, emu: Emulator) -> None:
    """A connection closed without an answer is a retryable TransportError."""
    emu.inject(Fault.DISCONNECT, times=1)
    with pytest.raises(TransportError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.retryable is True


def test_latency_beyond_read_timeout(emu: Emulator) -> None:
    """A service slower than the read timeout gives a retryable TransportError, not a hang."""
    emu.inject(Fault.LATENCY, seconds=1.0, times=1)
    with SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint, timeout=(1.0, 0.2)
    ) as c, pytest.raises(TransportError) as info:
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.retryable is True


def test_expired_token(client: SystemUserClient, emu: Emulator, canary: LogCanary) -> None:
    """A JWT that expired an hour ago fails the expiry check."""
    emu.inject(Fault.EXPIRED_TOKEN, times=1)
    with pytest.raises(TokenValidationError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.check == "expiry"
    canary.check(*error_texts(info.value))


def test_wrong_tenant_token(client: SystemUserClient, emu: Emulator, canary: LogCanary) -> None:
    """A valid JWT for another tenant fails the context check."""
    emu.inject(Fault.WRONG_TENANT_TOKEN, times=1)
    with pytest.raises(TokenValidationError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.check == "context"
    canary.check(*error_texts(info.value))


def test_jwks_unavailable(client: SystemUserClient, emu: Emulator) -> None:
    """An unreachable JWKS is a retryable TransportError, not a validation failure."""
    emu.inject(Fault.JWKS_UNAVAILABLE, times=1)
    with pytest.raises(TransportError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.retryable is True


def test_per_tenant_fault_spares_others(client: SystemUserClient, emu: Emulator) -> None:
    """A fault injected for one tenant leaves the other tenant's exchange alone."""
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, tenant=OTHER_CTX)
    assert client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN).ticket
    with pytest.raises(TransportError):
        client.authenticate(context_identifier=OTHER_CTX, system_user_token=OTHER_TOKEN)


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"client_secret": ""}, "client secret is empty"),
        ({"client_secret": "a\x00b"}, "control character"),
        ({"endpoint": "http://online.superoffice.com/Login/Services/PartnerSystemUserService.svc"}, "plain http"),
        ({"environment": "sod"}, "either environment"),
        ({"endpoint": None}, "no endpoint"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": None}, "timeout"),
        ({"jwks_url": "http://example.com/jwks"}, "http"),
        ({"session": requests.Session(), "transport": HttpTransport()}, "either session"),
        ({"transport": object()}, "transport must be a sut_soap.Transport"),
        ({"private_key": KEYS / "rsa-1024.pem"}, "1024"),
    ],
)
def test_configuration_errors(kwargs: dict[str, object], match: str) -> None:
    """Unusable settings raise ConfigurationError before any I/O."""
    settings: dict[str, object] = {
        "client_secret": CLIENT_SECRET,
        "private_key": PARTNER_KEY,
        "endpoint": "http://127.0.0.1:9/x",
    }
    settings.update(kwargs)
    with pytest.raises(ConfigurationError, match=match) as info:
        SystemUserClient(**settings)  # type: ignore[arg-type]
    assert CLIENT_SECRET not in "".join(error_texts(info.value))


@pytest.mark.parametrize(
    ("ctx", "token"), [("", SYSTEM_USER_TOKEN), (CTX, ""), ("Cust\x0012", SYSTEM_USER_TOKEN), (CTX, "a\x1bb")]
)
def test_bad_tenant_values(client: SystemUserClient, emu: Emulator, ctx: str, token: str) -> None:
    """Empty values or control characters in the tenant's values are refused before sending."""
    before = emu.exchange_count
    with pytest.raises(ConfigurationError):
        client.authenticate(context_identifier=ctx, system_user_token=token)
    assert emu.exchange_count == before


def test_environment_endpoints() -> None:
    """environment= picks the SuperOffice host for the exchange and the JWKS."""
    c = SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, environment="stage")
    assert c.endpoint == "https://qaonline.superoffice.com/Login/Services/PartnerSystemUserService.svc"
    assert c.jwks_url == "https://qaonline.superoffice.com/login/.well-known/jwks"
    assert CLIENT_SECRET not in repr(c)


def test_every_error_is_a_sut_soap_error() -> None:
    """The public error classes all derive from SutSoapError."""
    for cls in (ConfigurationError, TransportError, ProtocolError, SoapFaultError,
                AuthenticationRejectedError, TokenValidationError):
        assert issubclass(cls, SutSoapError)


def test_a_zeep_style_transport_is_refused_with_what_to_use_instead() -> None:
    """A transport with only zeep's post()/load() is refused, and the hint points at session= and the new seam."""

    class ZeepStyle:
        def post(self, address: str, message: bytes, headers: dict[str, str]) -> object:
            raise AssertionError("never called")

    with pytest.raises(ConfigurationError) as info:
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint="http://127.0.0.1:9/x",
                         transport=ZeepStyle())  # type: ignore[arg-type]
    assert "request(method, url, ...)" in info.value.message
    assert "session=" in (info.value.hint or "") and "zeep transports are no longer accepted" in (info.value.hint or "")


def test_every_request_goes_through_the_clients_transport(emu: Emulator) -> None:
    """The client's transport property is the one its exchange POST and its JWKS GET went through."""
    seen: list[tuple[str, str]] = []

    class Spy(HttpTransport):
        def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
            seen.append((method, url))
            return super().request(method, url, **kwargs)

    spy = Spy()
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint,
                          transport=spy) as client:
        assert client.transport is spy
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert seen == [("POST", emu.endpoint), ("GET", client.jwks_url)]


def assert_no_secrets(*texts: str) -> None:
    for secret in SECRETS:
        assert all(secret not in text for text in texts)


def get(client: SystemUserClient, ctx: str = CTX, token: str = SYSTEM_USER_TOKEN) -> SystemUserTicket:
    return client.get_ticket(context_identifier=ctx, system_user_token=token)


# --- configuration and what a client shows ----------------------------------------------------


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
    client = make_client(None, environment="online", transport=ScriptedTransport())
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


# --- get_ticket -------------------------------------------------------------------------------


def test_str_subclass_values_still_use_the_cache(make_client: Callable[..., SystemUserClient], emu: Emulator) -> None:
    """Tenant values of a str subclass skip the fast path but are checked and still served from the cache."""

    class TenantId(str):
        pass

    client = make_client(emu.endpoint)
    before = emu.exchange_count
    first = get(client, TenantId(CTX), TenantId(SYSTEM_USER_TOKEN))
    assert get(client, TenantId(CTX), TenantId(SYSTEM_USER_TOKEN)) is first
    assert get(client) is first
    assert emu.exchange_count == before + 1
    with pytest.raises(ConfigurationError, match="context identifier must be a string"):
        client.get_ticket(context_identifier=None, system_user_token=SYSTEM_USER_TOKEN)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="system user token contains a control character"):
        get(client, TenantId(CTX), TenantId("bad\x00token"))
    assert emu.exchange_count == before + 1


def test_fingerprint_memo_is_bounded_and_cleared_when_full(
    make_client: Callable[..., SystemUserClient], emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the token fingerprint memo is full it is cleared; cached tickets are still found and never mixed up."""
    monkeypatch.setattr(sut_soap._core, "FINGERPRINT_MEMO", 2)
    client = make_client(emu.endpoint, retry=None)
    tickets = {ctx: get(client, ctx, token) for ctx, token in ((CTX, SYSTEM_USER_TOKEN), (OTHER_CTX, OTHER_TOKEN))}
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


# --- invalidate, and stores that fail ---------------------------------------------------------


class FlakyStore(InMemoryTicketCache):
    """An in-memory store whose get or delete can be made to fail, like a Redis that blips.

    It has the three methods of the protocol only: no ``delete_if``, so ``invalidate(ticket=)`` reads first.
    """

    delete_if = None

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
    clock = SteppingClock()
    store = FlakyStore()
    client = make_client(emu.endpoint, cache=store, clock=clock.clock, ticket_lifetime=600, refresh_ahead=300)
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
    transport = ScriptedTransport(HttpTransport())
    transport.by_tenant[OTHER_CTX] = lambda: None
    client = make_client(emu.endpoint, transport=transport)
    tenants = {CTX: SYSTEM_USER_TOKEN, OTHER_CTX: OTHER_TOKEN, THIRD_CTX: THIRD_TOKEN}
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
    transport = ScriptedTransport()
    client = make_client(transport=transport)
    tenants = {CTX: SYSTEM_USER_TOKEN, OTHER_CTX: OTHER_TOKEN, THIRD_CTX: THIRD_TOKEN}
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
    """Many workers grow the client's own pools to match; the old pools close with the client, never shrink."""
    client = make_client()
    transport = client.transport
    assert isinstance(transport, HttpTransport) and transport.session is None
    initial = transport._pools
    assert initial.size == client_module.DEFAULT_MAX_WORKERS
    closed: list[str] = []
    monkeypatch.setattr(initial, "close", lambda: closed.append("initial"))
    result = client.get_tickets(bad_tenants(40), max_workers=24)
    assert all(isinstance(error, ConfigurationError) for error in result.values())
    grown = transport._pools
    assert grown is not initial and grown.size == 24
    assert closed == []  # threads may still be using the old pools
    client.get_tickets(bad_tenants(40), max_workers=4)
    client.get_tickets(bad_tenants(3), max_workers=200)  # 3 tenants need 3 workers
    assert transport._pools is grown
    client.close()
    assert closed == ["initial"]


def test_concurrent_pool_growth_builds_one_pool(make_client: Callable[..., SystemUserClient]) -> None:
    """Two batches growing the pools at once build one new generation, not one each (no connections thrown away)."""
    client = make_client()
    transport = client.transport
    assert isinstance(transport, HttpTransport)
    initial = transport._pools
    transport._pool_lock = HookedLock(lambda: client.get_tickets(bad_tenants(30), max_workers=30))  # type: ignore[assignment]
    client.get_tickets(bad_tenants(30), max_workers=30)
    assert transport._retired == [initial]
    assert transport._pools.size == 30


@pytest.mark.parametrize(
    ("error_message", "expected"),
    [
        ("InvalidSystemToken: the system user token of the application is not this tenant's", "the system user token"),
        ("InvalidApplicationToken: unknown application", "the client secret"),
        ("UnknownTenant: no tenant Cust0 for this application", "the ContextIdentifier"),
        ("InvalidTimestamp: the application's clock is off", "the clock"),
        ("InvalidSignature: the application key did not verify", "the private key"),
        ("UnsupportedTokenType: only Jwt for this application", "the ReturnTokenType"),
        ("NeedsReapproval", "approve the application again"),
        ("The tenant revoked the application", "revoked"),
    ],
)
def test_each_rejection_reason_gets_its_own_hint(error_message: str, expected: str) -> None:
    """The reason code that starts ErrorMessage picks the hint, before words in the explanation after it."""
    error = rejection("Cust12345", error_message)
    assert expected in error.hint
