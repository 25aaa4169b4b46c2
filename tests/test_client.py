"""SystemUserClient end to end against the bundled emulator over real HTTP on loopback."""

from __future__ import annotations

import io
import logging
import threading
import traceback
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support import reset_emulator

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
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.transport import HttpResponse, HttpTransport

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
REFERENCE_WSDL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "PartnerSystemUserService.official.wsdl"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-5f1d"
CTX = "Cust12345"
SYSTEM_USER_TOKEN = "Acme Sync-canary8k8Q7"
OTHER_CTX = "Cust67890"
OTHER_TOKEN = "Other Sync-canary2x"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_USER_TOKEN, serial="1234567")
        emu.add_tenant(OTHER_CTX, system_user_token=OTHER_TOKEN, serial="7654321")
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    yield from reset_emulator(emulator)


@pytest.fixture
def client(emu: Emulator) -> Iterator[SystemUserClient]:
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint) as c:
        yield c


class Canary:
    """Captures every log record at DEBUG and every warning, to prove no secret leaks."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setLevel(logging.DEBUG)
        self.handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.secrets: set[str] = {CLIENT_SECRET, SYSTEM_USER_TOKEN, OTHER_TOKEN}

    def text(self) -> str:
        return self.stream.getvalue()

    def check(self, *texts: str) -> None:
        haystack = "\n".join((self.text(), *texts))
        for secret in self.secrets:
            assert secret not in haystack


@pytest.fixture
def canary() -> Iterator[Canary]:
    c = Canary()
    root = logging.getLogger()
    names = ["", "zeep", "zeep.transports", "urllib3", "requests", "sut_soap"]
    saved = {n: logging.getLogger(n).level for n in names}
    root.addHandler(c.handler)
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield c
    root.removeHandler(c.handler)
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)
    c.check(*(str(w.message) for w in caught))


def error_texts(error: BaseException) -> list[str]:
    """str, repr and the formatted chain of an error, causes and contexts included."""
    out: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    out.append("".join(traceback.format_exception(error)))
    return out


# --- success ------------------------------------------------------------------------------


def test_authenticate_returns_validated_ticket(client: SystemUserClient, emu: Emulator, canary: Canary) -> None:
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
    """The JWKS is fetched once, then again only for a new kid and not within the cooldown."""
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint) as c:
        now = [1000.0]
        c._validator._key_source._clock = lambda: now[0]  # type: ignore[attr-defined]
        before = emu.jwks_count
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        assert emu.jwks_count == before + 1
        emu.rotate_key()
        now[0] += 5
        with pytest.raises(TokenValidationError) as info:
            c.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        assert info.value.check == "key"
        assert emu.jwks_count == before + 1
        now[0] += 30
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


def test_wrong_client_secret(emu: Emulator, canary: Canary) -> None:
    """A wrong client secret is rejected with the service's reason and a hint about the secret."""
    canary.secrets.add("wrong-secret-canary")
    with SystemUserClient(client_secret="wrong-secret-canary", private_key=PARTNER_KEY, endpoint=emu.endpoint) as c:
        error = _rejected(c)
    assert error.error_message.startswith("InvalidApplicationToken")
    assert "client secret" in error.hint
    assert error.retryable is False
    canary.check(*error_texts(error))


def test_unknown_tenant(client: SystemUserClient, canary: Canary) -> None:
    """An unknown ContextIdentifier is rejected naming the tenant problem."""
    error = _rejected(client, ctx="Cust00000")
    assert error.error_message.startswith("UnknownTenant")
    assert "Cust00000" in str(error)
    canary.check(*error_texts(error))


def test_wrong_system_user_token(client: SystemUserClient, canary: Canary) -> None:
    """A system user token that is not the tenant's is rejected."""
    canary.secrets.add("Not The Token-canary")
    error = _rejected(client, token="Not The Token-canary")
    assert error.error_message.startswith("InvalidSystemToken")
    canary.check(*error_texts(error))


def test_wrong_partner_key(emu: Emulator, canary: Canary) -> None:
    """A signature made with another key is rejected as InvalidSignature with a hint about the key."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=other, endpoint=emu.endpoint) as c:
        error = _rejected(c)
    assert error.error_message.startswith("InvalidSignature")
    assert "private key" in error.hint
    canary.check(*error_texts(error))


@pytest.mark.parametrize("skew", [timedelta(minutes=-20), timedelta(minutes=20)])
def test_clock_skew_rejected(emu: Emulator, skew: timedelta, canary: Canary) -> None:
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


def test_soap_fault(client: SystemUserClient, emu: Emulator, canary: Canary) -> None:
    """An HTTP 500 s:Fault becomes SoapFaultError with code and text."""
    emu.inject(Fault.SOAP_FAULT_500, times=1)
    with pytest.raises(SoapFaultError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.status == 500
    assert info.value.fault_code
    canary.check(*error_texts(info.value))


def test_html_503(client: SystemUserClient, emu: Emulator, canary: Canary) -> None:
    """An IIS 503 page becomes a retryable TransportError with the status and a short excerpt."""
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    with pytest.raises(TransportError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.status == 503
    assert info.value.retryable is True
    assert info.value.excerpt and len(info.value.excerpt) <= 200
    canary.check(*error_texts(info.value))


@pytest.mark.parametrize("fault", [Fault.EMPTY_BODY, Fault.TRUNCATED_BODY])
def test_broken_bodies(client: SystemUserClient, emu: Emulator, fault: Fault, canary: Canary) -> None:
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


def test_expired_token(client: SystemUserClient, emu: Emulator, canary: Canary) -> None:
    """A JWT that expired an hour ago fails the expiry check."""
    emu.inject(Fault.EXPIRED_TOKEN, times=1)
    with pytest.raises(TokenValidationError) as info:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.check == "expiry"
    canary.check(*error_texts(info.value))


def test_wrong_tenant_token(client: SystemUserClient, emu: Emulator, canary: Canary) -> None:
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
