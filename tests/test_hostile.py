"""HOSTILE.md, case by case: one ``test_case_NN_*`` per case, in the catalogue's sections.

Every case expects one exception class of sut-soap's tree (``EXPECTED`` below, the single source
the tests raise against and figure 15 checks) or a stated success, and its network side effects
(requests counted at the server, connections counted at the socket). Two autouse fixtures run
around every test here:

- ``canary`` captures every log record at DEBUG (root, zeep, zeep.transports, urllib3, requests,
  sut_soap) and every warning, and at teardown fails on any of the six secrets: the client
  secret, the partner key's PEM/XML text, the system user token, and the signed tokens, JWTs and
  tickets the test produced (harvested from the servers and the results). ``check_error`` walks
  an error's whole ``__cause__``/``__context__`` chain the same way.
- ``net`` counts every ``connect`` and name lookup and refuses (and fails the test on) anything
  that would leave loopback: DNS failure and black holes are simulated on 127.0.0.1.

HOSTILE's indicative names map onto the project's tree: ConfigError -> ConfigurationError;
RedirectRefused, ServiceUnavailable, DeadlineExceeded -> TransportError (``status``,
``retryable``); MalformedResponse, ResponseTooLarge -> ProtocolError; ExchangeRejected ->
AuthenticationRejectedError or SoapFaultError. tests/README.md has the table.
"""

from __future__ import annotations

import base64
import errno
import gzip
import io
import ipaddress
import json
import logging
import math
import os
import re
import select
import socket
import struct
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from xml.sax.saxutils import unescape

import pytest
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from jwt_factory import b64url, jwk_for, mint, mint_raw, public_pem, rsa_key, self_signed_cert
from support import (
    KAT_ASCII,
    KAT_UTF8,
    SIGNED_MINUTE,
    SIGNED_TOKEN,
    ClientFactory,
    FakeResponse,
    Reply,
    ScriptedServer,
    Sleeper,
    TlsServer,
    error_texts,
    make_cert,
    rejection,
)
from support import authentication_response as response
from support import soap_envelope as envelope
from support import soap_fault as fault

import sut_soap.errors
from sut_soap import (
    AuthenticationRejectedError,
    Clock,
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    SystemUserClient,
    SystemUserTicket,
    TokenValidationError,
    TransportError,
    rest,
)
from sut_soap.cache import CachedTicket, InMemoryTicketCache
from sut_soap.keys import KeyFilePermissionWarning, load_private_key, private_key_to_pem, private_key_to_rsa_xml
from sut_soap.retry import RetryPolicy
from sut_soap.signing import sign_system_user_token, timestamp
from sut_soap.soap import Answer, parse_answer
from sut_soap.testing import scan_for_secrets
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.tokens import CLAIM_TICKET, JwksKeySource, StaticKeySource, TokenValidator
from sut_soap.transport import HttpResponse, HttpTransport

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-H0st1le-c4"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryH0st1leQ7"
SERIAL = "1234567"
PATH = "/Login/Services/PartnerSystemUserService.svc"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
               "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

# The one exception class each case expects (None: a stated success). Tests raise against this.
EXPECTED: dict[int, type[BaseException] | None] = {
    1: KeyFilePermissionWarning, 2: KeyFilePermissionWarning,
    3: ConfigurationError, 4: ConfigurationError, 5: ConfigurationError, 6: ConfigurationError,
    7: ConfigurationError, 8: ConfigurationError, 9: ConfigurationError, 10: None,
    11: ConfigurationError, 12: ConfigurationError, 13: None, 14: ConfigurationError,
    15: None, 16: None, 17: TransportError, 18: None,
    19: TransportError, 20: TransportError, 21: TransportError, 22: TransportError, 23: TransportError,
    24: TransportError, 25: TransportError, 26: TransportError, 27: ProtocolError, 28: ProtocolError,
    29: ProtocolError,
    30: TransportError, 31: TransportError, 32: TransportError, 33: TransportError, 34: SoapFaultError,
    35: SoapFaultError, 36: TransportError, 37: ProtocolError, 38: ProtocolError, 39: ProtocolError,
    40: ProtocolError, 41: ProtocolError, 42: ProtocolError, 43: ProtocolError, 44: ProtocolError,
    45: ProtocolError, 46: AuthenticationRejectedError, 47: AuthenticationRejectedError,
    **dict.fromkeys(range(48, 56), ProtocolError),
    **dict.fromkeys(range(56, 75), TokenValidationError),
    75: None, 76: None, 77: None, 78: TransportError, 79: TransportError, 80: None, 81: None,
    82: None, 83: None, 84: None,
}


# --- canary -------------------------------------------------------------------------------------


def _key_secrets() -> set[str]:
    """Distinctive text of the partner key: every PEM body line (PKCS#8, PKCS#1) and its XML private values."""
    pems = (private_key_to_pem(PARTNER_KEY).decode(), (KEYS / "test-partner-pkcs1.pem").read_text())
    lines = {line for pem in pems for line in pem.splitlines() if line and not line.startswith("-----")}
    xml = private_key_to_rsa_xml(PARTNER_KEY)
    values = re.findall(r"<(?:P|Q|DP|DQ|InverseQ|D)>([^<]+)<", xml)
    return {line for line in lines if len(line) >= 16} | {v[:48] for v in values}


KEY_SECRETS = _key_secrets()


class Canary:
    """Every log record at DEBUG and every warning of one test, checked for the six secrets."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setLevel(logging.DEBUG)
        self.handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.secrets: set[str] = {CLIENT_SECRET, TOKEN, *KEY_SECRETS}
        self.caught: list[warnings.WarningMessage] = []
        self.records = 0

    def add(self, *values: object) -> None:
        for value in values:
            if isinstance(value, str) and len(value) >= 12:
                self.secrets.add(value)

    def add_jwt(self, token: str) -> None:
        """A JWT and the ticket claim inside it."""
        self.add(token)
        try:
            payload = token.split(".", 2)[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            self.add(claims.get(CLAIM_TICKET))
        except (IndexError, ValueError, AttributeError, TypeError):
            pass

    def keep(self, ticket: SystemUserTicket) -> SystemUserTicket:
        self.add(ticket.ticket)
        self.add_jwt(ticket.token)
        return ticket

    def harvest(self, body: bytes) -> None:
        """The signed system tokens inside request envelopes (unescaped as well as escaped) or REST bodies."""
        for match in SIGNED_TOKEN.finditer(body):
            text = match.group(1).decode("utf-8", "replace")
            self.add(text, unescape(text))
        if body.lstrip().startswith(b"{"):
            with suppress(ValueError, AttributeError):
                self.add(json.loads(body).get("SignedSystemToken"))

    def text(self) -> str:
        return "\n".join([self.stream.getvalue(), *(str(w.message) for w in self.caught)])

    def check(self, *texts: str) -> None:
        haystack = "\n".join((self.text(), *texts))
        leaked = [secret[:12] + "..." for secret in self.secrets if secret in haystack]
        assert not leaked, f"secrets leaked: {leaked}"


_ACTIVE: list[Canary] = []  # the running test's canary, for helpers that register produced secrets


def canary_now() -> Canary:
    assert _ACTIVE
    return _ACTIVE[-1]


@pytest.fixture(autouse=True)
def canary() -> Iterator[Canary]:
    """HOSTILE 82/83: every logger at DEBUG, every warning recorded; no secret anywhere at teardown."""
    c = Canary()
    names = ["", "zeep", "zeep.transports", "urllib3", "requests", "sut_soap"]
    saved = {n: logging.getLogger(n).level for n in names}
    logging.getLogger().addHandler(c.handler)
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    _ACTIVE.append(c)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            c.caught = caught
            yield c
    finally:
        logging.getLogger().removeHandler(c.handler)
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)
        _ACTIVE.remove(c)
    c.check()


def check_error(error: BaseException) -> None:
    """No secret in the error or its chain; the message is at most 1 KiB."""
    canary_now().check(*error_texts(error))
    if isinstance(error, SutSoapError):
        assert len(error.message) <= 1024


@contextmanager
def raises(case: int) -> Iterator[Any]:
    """pytest.raises for the one class HOSTILE case ``case`` expects, exactly that class, then check_error."""
    expected = EXPECTED[case]
    assert expected is not None and issubclass(expected, SutSoapError)
    with pytest.raises(expected) as info:
        yield info
    assert type(info.value) is expected, f"case {case}: {type(info.value).__name__}, not {expected.__name__}"
    check_error(info.value)


# --- network guard --------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    host = host.split("%", maxsplit=1)[0].strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Net:
    """Connections and name lookups made during a test; ``blocked`` must stay empty."""

    def __init__(self) -> None:
        self.connects: list[Any] = []
        self.lookups: list[str] = []
        self.blocked: list[Any] = []

    def to_port(self, port: int) -> int:
        return sum(1 for a in self.connects if isinstance(a, tuple) and a[1] == port)


@pytest.fixture(autouse=True)
def net(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Net]:
    """Count every connect and lookup; refuse (and fail on) anything beyond loopback."""
    n = Net()
    if "socket_disabled" in request.fixturenames:
        yield n  # pytest-socket already refuses every socket; patching over it would outlive the test
        return
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        n.connects.append(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(str(address[0])):
            n.blocked.append(address)
            raise OSError(errno.ENETUNREACH, "the test refuses non-loopback addresses")
        real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        n.lookups.append(name)
        if host is not None and not _loopback(name):
            n.blocked.append(name)
            raise socket.gaierror(socket.EAI_NONAME, "the test refuses non-loopback names")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    yield n
    assert n.blocked == [], f"attempted to leave loopback: {n.blocked}"


# --- servers and clients --------------------------------------------------------------------------


class ShiftClock:
    """UTC now plus an offset the test sets (time passing: monotonic time moves too), plus ``wall_jump``, which
    moves the wall clock alone; shared by the emulator (wall) and the clients (``CLOCK.clock``)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.wall_jump = 0.0
        self.clock = Clock(now=self, monotonic=self.monotonic)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset + self.wall_jump)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


CLOCK = ShiftClock()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY, clock=CLOCK,
                  signing_key=rsa_key(2)) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial=SERIAL)
        yield emu


@pytest.fixture
def emu(emulator: Emulator, canary: Canary) -> Iterator[Emulator]:
    CLOCK.offset = CLOCK.wall_jump = 0.0
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()
    CLOCK.offset = CLOCK.wall_jump = 0.0
    for request in emulator.requests:
        canary.harvest(request.body)
    assert emulator.internal_errors == []


@pytest.fixture
def server(canary: Canary) -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s
    for body in s.bodies:
        canary.harvest(body)


@pytest.fixture
def make_client() -> Iterator[Callable[..., SystemUserClient]]:
    factory = ClientFactory(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, timeout=(1.0, 1.0), clock=CLOCK.clock)
    yield factory
    factory.close()


def get(client: SystemUserClient, ctx: str = CTX, token: str = TOKEN) -> SystemUserTicket:
    return canary_now().keep(client.get_ticket(context_identifier=ctx, system_user_token=token))


def authenticate(client: SystemUserClient, ctx: str = CTX, token: str = TOKEN) -> SystemUserTicket:
    return canary_now().keep(client.authenticate(context_identifier=ctx, system_user_token=token))


def parse(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return parse_answer(FakeResponse(body, status, headers or {}), secrets=(CLIENT_SECRET, TOKEN))


@contextmanager
def within(seconds: float) -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"took {elapsed:.3f} s, more than {seconds} s"


def key_file(tmp_path: Path, mode: int = 0o600, source: str = "test-partner-pkcs8.pem") -> Path:
    path = tmp_path / source
    path.write_bytes((KEYS / source).read_bytes())
    path.chmod(mode)
    return path


# =================================================================================================
# Configuration and key material
# =================================================================================================


def test_case_01_group_readable_key_file_warns(tmp_path: Path, canary: Canary, net: Net) -> None:
    """HOSTILE 1: a key file with a 0o077 bit loads with a warning naming path and mode, never the key bytes."""
    quiet = key_file(tmp_path, 0o600)
    load_private_key(quiet)
    assert not [w for w in canary.caught if issubclass(w.category, KeyFilePermissionWarning)]
    for mode in (0o640, 0o604, 0o644, 0o666):
        path = key_file(tmp_path, mode)
        canary.caught.clear()
        assert load_private_key(path).private_numbers() == PARTNER_KEY.private_numbers()
        found = [w for w in canary.caught if issubclass(w.category, KeyFilePermissionWarning)]
        assert len(found) == 1 and found[0].category is EXPECTED[1]
        text = str(found[0].message)
        assert str(path) in text and f"{mode:#o}" in text
        canary.check(text)
    assert net.connects == []


def test_case_02_key_file_of_another_uid_warns(
    tmp_path: Path, canary: Canary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOSTILE 2: a key file owned by another uid loads with a warning naming path and owner, never the key bytes."""
    path = key_file(tmp_path, 0o600)
    real_uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real_uid + 1)
    load_private_key(path)
    found = [w for w in canary.caught if w.category is EXPECTED[2]]
    assert len(found) == 1
    text = str(found[0].message)
    assert str(path) in text and f"uid {real_uid}" in text


def test_case_03_encrypted_pem_without_passphrase(tmp_path: Path, net: Net) -> None:
    """HOSTILE 3: an encrypted PEM and no passphrase is a ConfigurationError, not cryptography's TypeError."""
    path = key_file(tmp_path, source="test-partner-encrypted.pem")
    for source in (path, path.read_bytes(), path.read_text()):
        with raises(3) as info:
            load_private_key(source)
        assert "password" in str(info.value).lower()
    with raises(3):
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=path, environment="online")
    assert net.connects == []


def test_case_04_encrypted_pem_wrong_passphrase(tmp_path: Path) -> None:
    """HOSTILE 4: an encrypted PEM with the wrong passphrase is a ConfigurationError."""
    path = key_file(tmp_path, source="test-partner-encrypted.pem")
    assert load_private_key(path, password="sut-soap-test").key_size == 2048
    with raises(4):
        load_private_key(path, password="not-the-passphrase")


def test_case_05_public_key_or_certificate_as_private_key(tmp_path: Path) -> None:
    """HOSTILE 5: a public-key PEM, a certificate or a public-only RSAKeyValue given as the private key is refused."""
    certificate = self_signed_cert(PARTNER_KEY).public_bytes(serialization.Encoding.PEM)
    public_xml = re.sub(r"<P>.*</RSAKeyValue>", "</RSAKeyValue>", private_key_to_rsa_xml(PARTNER_KEY))
    for source in ((KEYS / "test-partner-public.pem").read_bytes(), certificate, public_xml.encode()):
        with raises(5):
            load_private_key(source)


def test_case_06_non_rsa_or_small_keys() -> None:
    """HOSTILE 6: EC and Ed25519 private keys and RSA-1024 are refused (RSA >= 2048 only)."""
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for source in ((KEYS / "ec-p256.pem").read_bytes(), ed, (KEYS / "rsa-1024.pem").read_bytes(),
                   ec.generate_private_key(ec.SECP256R1())):
        with raises(6):
            load_private_key(source)  # type: ignore[arg-type]


def test_case_07_rsa_xml_supported_truncated_and_empty_refused(tmp_path: Path) -> None:
    """HOSTILE 7: .NET RSAKeyValue XML is supported (tested converter); truncated PEM/XML and empty files are refused."""
    assert load_private_key(KEYS / "test-partner.xml").private_numbers() == PARTNER_KEY.private_numbers()
    pem = (KEYS / "test-partner-pkcs8.pem").read_bytes()
    xml = (KEYS / "test-partner.xml").read_bytes()
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    empty.chmod(0o600)
    for source in (pem[: len(pem) // 2], pem[:-40], xml[: len(xml) // 2], empty, b"", b"  \n"):
        with raises(7):
            load_private_key(source)


@pytest.mark.parametrize("what", ["endpoint", "jwks_url"])
def test_case_08_plain_http_endpoint_refused(what: str, net: Net) -> None:
    """HOSTILE 8: http://online.superoffice.com (endpoint or JWKS) is a ConfigurationError before any I/O."""
    url = "http://online.superoffice.com" + (PATH if what == "endpoint" else "/login/.well-known/jwks")
    options: dict[str, Any] = {what: url} if what == "endpoint" else {"environment": "online", what: url}
    with raises(8) as info:
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, **options)
    assert "http" in info.value.message
    assert net.connects == [] and net.lookups == []


@pytest.mark.parametrize(
    "url",
    [
        "https://a@b/Login/Services/PartnerSystemUserService.svc",
        "https://user:pw@online.superoffice.com" + PATH,
        "http://bud2.superoffice.no" + PATH,
        "ftp://online.superoffice.com" + PATH,
        "https://online.superoffice.com" + PATH + "#frag",
        "https:///nohost",
        "https://online.superoffice.com:99999" + PATH,
        "https://online.super office.com" + PATH,
    ],
)
def test_case_09_unacceptable_endpoint_urls(url: str, net: Net) -> None:
    """HOSTILE 9: userinfo, non-https, fragments, no host, bad port or whitespace in the endpoint: refused, 0 requests."""
    with raises(9):
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=url)
    assert net.connects == [] and net.lookups == []


def test_case_10_outgoing_url_is_the_configured_one(emu: Emulator, make_client: Callable[..., SystemUserClient],
                                                    net: Net) -> None:
    """HOSTILE 10: the POST goes to the configured URL, never the WSDL's own soap:address."""
    addresses: list[tuple[str, str]] = []

    class Spy(HttpTransport):
        def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
            addresses.append((method, url))
            return super().request(method, url, **kwargs)

    client = make_client(emu.endpoint, transport=Spy(timeout=(1.0, 1.0)), timeout=(1.0, 1.0))
    authenticate(client)
    assert [url for method, url in addresses if method == "POST"] == [emu.endpoint]
    assert [url for method, url in addresses if method == "GET"] == [client.jwks_url]
    assert all(_loopback(str(a[0])) for a in net.connects)
    wsdl = (ROOT / "wsdl" / "PartnerSystemUserService.wsdl").read_text()
    wsdl_addresses = re.findall(r'location="([^"]+)"', wsdl)
    assert wsdl_addresses and emu.endpoint not in wsdl_addresses


@pytest.mark.parametrize("empty", ["client_secret", "context_identifier", "system_user_token"])
@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_case_11_empty_values_refused(empty: str, value: str, emu: Emulator,
                                      make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 11: an empty client secret, ContextIdentifier or system user token is refused before any exchange."""
    before = emu.exchange_count
    with raises(11):
        if empty == "client_secret":
            make_client(emu.endpoint, client_secret=value)
        else:
            args = {"context_identifier": CTX, "system_user_token": TOKEN, empty: value}
            make_client(emu.endpoint).get_ticket(**args)
    assert emu.exchange_count == before


@pytest.mark.parametrize("where", ["client_secret", "context_identifier", "system_user_token"])
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\ud800", "\uffff"])
def test_case_12_control_characters_refused(where: str, char: str, emu: Emulator,
                                            make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 12: NUL and other control or non-XML characters in a secret or value are refused, 0 requests."""
    before = emu.exchange_count
    bad = {"client_secret": CLIENT_SECRET, "context_identifier": CTX, "system_user_token": TOKEN}[where] + char + "x"
    with raises(12) as info:
        if where == "client_secret":
            make_client(emu.endpoint, client_secret=bad)
        else:
            args = {"context_identifier": CTX, "system_user_token": TOKEN, where: bad}
            make_client(emu.endpoint).authenticate(**args)
    assert "U+" in info.value.message
    assert emu.exchange_count == before


def test_case_13_xml_metacharacters_escaped_and_signed_raw(make_client: Callable[..., SystemUserClient],
                                                           canary: Canary) -> None:
    """HOSTILE 13: & < > ]]> in the secret and token are escaped on the wire, and the signature covers the raw text."""
    secret = "canary-sec&<r>]]>et-H0st1le"
    token = "Acme & <Sync> ]]>-canaryEsc4pe"
    canary.add(secret, token)
    with Emulator(client_secret=secret, partner_public_key=PARTNER_KEY, signing_key=rsa_key(2)) as emu:
        emu.add_tenant(CTX, system_user_token=token, serial=SERIAL)
        ticket = authenticate(make_client(emu.endpoint, client_secret=secret, clock=None), token=token)
        (request,) = emu.requests
    canary.harvest(request.body)
    assert ticket.context_identifier == CTX  # the emulator verified the signature over the raw token
    assert b"]]>" not in request.body and b"<Sync>" not in request.body
    assert b"&amp; &lt;Sync&gt; ]]&gt;" in request.body
    assert request.body.count(b"<tns:ApplicationToken>") == 1 and request.body.count(b"<tns:SignedSystemToken>") == 1


def test_case_14_insecure_tls_settings_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, net: Net) -> None:
    """HOSTILE 14: verify=False or a CA bundle variable naming a missing file is a ConfigurationError."""
    session = requests.Session()
    session.verify = False
    with raises(14) as info:
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, environment="online", session=session)
    assert "verify=False" in info.value.message
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "unknown-bundle.pem"))
    with raises(14) as info:
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, environment="online")
    assert "REQUESTS_CA_BUNDLE" in info.value.message
    assert net.connects == [] and net.lookups == []


# =================================================================================================
# Signing
# =================================================================================================



def test_case_15_timestamp_is_utc_whatever_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOSTILE 15: 2026-01-01T13:05:59.999Z under TZ=Pacific/Auckland stamps 202601011305 (UTC, 24 h, padded)."""
    at = datetime(2026, 1, 1, 13, 5, 59, 999000, tzinfo=timezone.utc)
    monkeypatch.setenv("TZ", "Pacific/Auckland")
    time.tzset()
    try:
        assert time.localtime(at.timestamp()).tm_hour == 2  # the zone really is in effect
        assert timestamp(at) == "202601011305"
        assert timestamp(at.astimezone()) == "202601011305"
        assert sign_system_user_token("Acme Sync-x", PARTNER_KEY, at=at.astimezone()).split(".")[1] == "202601011305"
        assert timestamp(datetime(2026, 1, 1, 9, 5, tzinfo=timezone.utc)) == "202601010905"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_case_16_known_answer_pkcs1v15_not_pss() -> None:
    """HOSTILE 16: the fixed key and minute sign to the OpenSSL vector; it verifies as PKCS1v15/SHA-256, not PSS."""
    at = datetime(2026, 11, 28, 13, 30, 42, tzinfo=timezone.utc)
    assert sign_system_user_token("Acme Sync-8k8Q7DmBgo", PARTNER_KEY, at=at) == KAT_ASCII
    message, _, signature = KAT_ASCII.rpartition(".")
    raw = base64.b64decode(signature)
    PARTNER_KEY.public_key().verify(raw, message.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        PARTNER_KEY.public_key().verify(raw, message.encode(), pss, hashes.SHA256())


def test_case_17_retry_resigns_with_the_new_minute(server: ScriptedServer,
                                                   make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 17: attempt 1 at 12:59:59.9, retry at 13:00:00.2: the retry carries ...1300, signed afresh."""
    first = datetime(2026, 1, 1, 12, 59, 59, 900000, tzinfo=timezone.utc)
    second = datetime(2026, 1, 1, 13, 0, 0, 200000, tzinfo=timezone.utc)
    sleeper = Sleeper()
    client = make_client(server.url, clock=lambda: first if server.posts == 0 else second,
                         retry=sleeper.policy(attempts=2))
    with raises(17) as info:
        get(client)
    assert info.value.status == 503
    assert [SIGNED_MINUTE.search(b).group(1) for b in server.bodies] == [b"202601011259", b"202601011300"]  # type: ignore[union-attr]
    signatures = [SIGNED_TOKEN.search(b).group(1).rsplit(b".", 1)[1] for b in server.bodies]  # type: ignore[union-attr]
    assert signatures[0] != signatures[1]


def test_case_18_non_ascii_token_signs_utf8() -> None:
    """HOSTILE 18: a non-ASCII system user token is signed as UTF-8 bytes (OpenSSL-made known answer)."""
    at = datetime(2026, 1, 1, 13, 5, tzinfo=timezone.utc)
    assert sign_system_user_token("Sørlandet Å Sync-Ωmega", PARTNER_KEY, at=at) == KAT_UTF8
    message, _, signature = KAT_UTF8.rpartition(".")
    PARTNER_KEY.public_key().verify(base64.b64decode(signature), message.encode("utf-8"), padding.PKCS1v15(),
                                    hashes.SHA256())


# =================================================================================================
# Transport
# =================================================================================================


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("failure", ["refused", "dns"])
def test_case_19_refused_or_unresolvable_is_retried_three_times(
    failure: str, make_client: Callable[..., SystemUserClient], net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOSTILE 19: connection refused / DNS failure is a retryable TransportError after at most 3 attempts."""
    port = _unused_port()
    host = "127.0.0.1"
    lookups: list[str] = []
    if failure == "dns":
        host = "no-such-host.sut-soap.localhost"
        real = socket.getaddrinfo

        def fail(name: Any, *args: Any, **kwargs: Any) -> Any:
            if name == host:
                lookups.append(name)
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(name, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", fail)
    sleeper = Sleeper()
    client = make_client(f"http://{host}:{port}{PATH}", retry=sleeper.policy(), public_key=PARTNER_KEY.public_key())
    with raises(19) as info:
        get(client)
    assert info.value.retryable is True and info.value.status is None
    assert len(sleeper.waits) == 2
    assert (len(lookups) if failure == "dns" else net.to_port(port)) == 3


@pytest.mark.parametrize(
    ("trusted", "expired", "san", "reason"),
    [
        (False, False, x509.IPAddress(ipaddress.ip_address("127.0.0.1")), "self-signed"),
        (True, False, x509.DNSName("other.example"), "mismatch"),
        (True, True, x509.IPAddress(ipaddress.ip_address("127.0.0.1")), "expired"),
    ],
    ids=["untrusted", "hostname-mismatch", "expired"],
)
def test_case_20_tls_failure_is_final_and_sends_nothing(
    trusted: bool, expired: bool, san: x509.GeneralName, reason: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., SystemUserClient],
) -> None:
    """HOSTILE 20: an untrusted, misnamed or expired certificate: TransportError, not retried, no byte of the body sent."""
    cert, key = make_cert(tmp_path, "server", san=san, expired=expired)
    tls = TlsServer(cert, key)
    try:
        if trusted:
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        sleeper = Sleeper()
        client = make_client(tls.url, retry=sleeper.policy(), public_key=PARTNER_KEY.public_key())
        with raises(20) as info:
            get(client)
        assert info.value.retryable is False and "TLS" in info.value.message
        assert reason in info.value.message.lower()
        assert sleeper.waits == []
        assert tls.connections == 1 and tls.handshakes == 0 and tls.received == b""
    finally:
        tls.close()


def test_case_21_connect_black_hole_times_out(make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 21: a listener whose backlog is full (SYNs dropped) gives a TransportError within the connect timeout."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    port = int(hole.getsockname()[1])
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with suppress(OSError):  # BlockingIOError: the handshake completes in the background
                socket.socket.connect(filler, ("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        client = make_client(f"http://127.0.0.1:{port}{PATH}", timeout=(0.3, 1.0), retry=None,
                             public_key=PARTNER_KEY.public_key())
        with within(1.0), raises(21) as info:
            authenticate(client)
        assert info.value.retryable is True and "connect" in info.value.message
    finally:
        for s in (*fillers, hole):
            s.close()


def _silent(server: ScriptedServer) -> Callable[[BaseHTTPRequestHandler], None]:
    def handle(h: BaseHTTPRequestHandler) -> None:
        server.release.wait(5)

    return handle


def test_case_22_accept_then_silence(server: ScriptedServer, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 22: a server that accepts and never answers gives a retryable TransportError within the read timeout."""
    server.default = _silent(server)
    client = make_client(server.url, timeout=(1.0, 0.3), retry=None)
    with within(1.0), raises(22) as info:
        authenticate(client)
    assert info.value.retryable is True and "read timeout" in info.value.message
    assert server.posts == 1


def test_case_23_slow_drip_stops_at_the_total_deadline(server: ScriptedServer,
                                                       make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 23: a server dripping 1 byte per 0.1 s is cut at the call's total deadline (1 s here) + < 1 s."""

    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            while not server.release.wait(0.1):
                h.wfile.write(b"<")
                h.wfile.flush()
        except OSError:
            pass

    server.default = drip
    client = make_client(server.url, timeout=(1.0, 0.5), retry=RetryPolicy(deadline=1.0, sleep=lambda s: None))
    with within(2.0), raises(23) as info:
        get(client)
    assert info.value.retryable is True and "deadline" in info.value.message
    assert server.posts == 1


@pytest.mark.parametrize("how", ["reset", "short-content-length"])
def test_case_24_broken_answer(how: str, server: ScriptedServer, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 24: a reset mid-answer or a body shorter than Content-Length is a retryable TransportError."""

    def broken(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"<s:Envelope xmlns:s=")
        h.wfile.flush()
        if how == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True

    server.default = broken
    client = make_client(server.url, retry=None)
    with raises(24) as info:
        authenticate(client)
    assert info.value.retryable is True
    assert server.posts == 1


def test_case_25_redirect_to_plain_http_is_refused(server: ScriptedServer, make_client: Callable[..., SystemUserClient],
                                                   net: Net) -> None:
    """HOSTILE 25: 307 -> http://evil.example is refused; exactly 1 request, the body is never re-sent."""
    server.default = Reply(307, b"", (("Location", "http://evil.example/steal"),))
    sleeper = Sleeper()
    client = make_client(server.url, retry=sleeper.policy())
    with raises(25) as info:
        get(client)
    assert info.value.status == 307 and info.value.retryable is False
    assert server.posts == 1 and sleeper.waits == []
    assert "evil.example" not in net.lookups


@pytest.mark.parametrize("status", [301, 302, 308])
def test_case_26_redirect_to_another_https_host_is_refused(
    status: int, server: ScriptedServer, make_client: Callable[..., SystemUserClient], net: Net
) -> None:
    """HOSTILE 26: 301/302/308 -> another https host is refused; 1 request, nothing from the other origin."""
    server.default = Reply(status, b"", (("Location", "https://other.example" + PATH),))
    client = make_client(server.url, retry=Sleeper().policy())
    with raises(26) as info:
        get(client)
    assert info.value.status == status and info.value.retryable is False
    assert server.posts == 1
    assert all(_loopback(str(a[0])) for a in net.connects) and "other.example" not in net.lookups


def test_case_27_oversized_answer_stops_at_the_cap(server: ScriptedServer,
                                                   make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 27: a 2 MiB 200 answer is a ProtocolError once 1 MiB has been read."""
    server.default = Reply(200, b"<s:Envelope>" + b"x" * (2 * 1024 * 1024), (("Content-Type", "text/xml"),))
    client = make_client(server.url, retry=Sleeper().policy())
    with raises(27) as info:
        get(client)
    assert "larger than 1048576 bytes" in info.value.message
    assert server.posts == 1


_BOMB: list[bytes] = []


def _gzip_bomb() -> bytes:
    """256 gzip members of 1 MiB of zeros each: about 256 KiB that inflate to 256 MiB."""
    if not _BOMB:
        _BOMB.append(gzip.compress(b"\0" * (1 << 20), 9) * 256)
    return _BOMB[0]


def test_case_28_gzip_bomb(server: ScriptedServer, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 28: a 256 KiB gzip bomb inflating to 256 MiB is a ProtocolError; memory +<= 10 MiB; message <= 1 KiB."""
    bomb = _gzip_bomb()
    assert len(bomb) < 300 * 1024
    server.default = Reply(200, bomb, (("Content-Type", "text/xml"), ("Content-Encoding", "gzip")))
    client = make_client(server.url, retry=None)
    tracemalloc.start()
    try:
        with raises(28) as info:
            authenticate(client)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 10 * 1024 * 1024
    assert len(str(info.value)) <= 1024
    assert server.posts == 1


def test_case_29_content_encoding_chain(server: ScriptedServer, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 29: Content-Encoding: gzip x 6 is a typed ProtocolError (urllib3 allows 5 stages)."""
    body = envelope(response("<IsSuccessful>false</IsSuccessful>"))
    for _ in range(6):
        body = gzip.compress(body)
    server.default = Reply(200, body, (("Content-Encoding", ", ".join(["gzip"] * 6)),))
    client = make_client(server.url, retry=Sleeper().policy())
    with raises(29) as info:
        get(client)
    assert "Content-Encoding" in info.value.message
    assert server.posts == 1


# =================================================================================================
# HTTP status and SOAP envelope
# =================================================================================================


def test_case_30_503_retry_after_is_honoured(server: ScriptedServer, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 30: 503 with Retry-After: 2 is retried after >= 2 s each time, then a retryable TransportError."""
    server.default = Reply(503, b"", (("Retry-After", "2"),))
    sleeper = Sleeper()
    client = make_client(server.url, retry=sleeper.policy())
    with raises(30) as info:
        get(client)
    assert info.value.status == 503 and info.value.retryable is True and info.value.retry_after == 2.0
    assert sleeper.waits == [2.0, 2.0]
    assert server.posts == 3


@pytest.mark.parametrize("retry_after", ["100000", "date"])
def test_case_31_retry_after_beyond_the_cap_fails_at_once(
    retry_after: str, server: ScriptedServer, make_client: Callable[..., SystemUserClient]
) -> None:
    """HOSTILE 31: 429 with Retry-After 100000 s or an HTTP-date years ahead: no sleep, one request, TransportError."""
    value = format_datetime(datetime(2099, 1, 1, tzinfo=timezone.utc), usegmt=True) if retry_after == "date" else (
        retry_after
    )
    server.default = Reply(429, b"slow down", (("Retry-After", value),))
    sleeper = Sleeper()
    client = make_client(server.url, retry=sleeper.policy())
    with raises(31) as info:
        get(client)
    assert info.value.status == 429 and info.value.retry_after is not None and info.value.retry_after > 30
    assert sleeper.waits == [] and server.posts == 1


NGINX = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n<center><h1>{status} Bad Gateway</h1>"
    "</center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n" + "<!-- padding -->" * 100
)


@pytest.mark.parametrize("status", [502, 504])
def test_case_32_gateway_html_is_retried(status: int, server: ScriptedServer,
                                         make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 32: 502/504 nginx HTML is retried, then a TransportError with a short, tag-free excerpt."""
    server.default = Reply(status, NGINX.format(status=status).encode(), (("Content-Type", "text/html"),))
    sleeper = Sleeper()
    client = make_client(server.url, retry=sleeper.policy())
    with raises(32) as info:
        get(client)
    error = info.value
    assert error.status == status and error.retryable is True
    assert error.excerpt and len(error.excerpt) <= 256 and "<" not in error.excerpt and "nginx" in error.excerpt
    assert server.posts == 3 and len(sleeper.waits) == 2


@pytest.mark.parametrize(("status", "body"), [(401, "<html><body>Unauthorized</body></html>"), (403, "Forbidden")])
def test_case_33_unauthorised_is_not_retried(status: int, body: str, server: ScriptedServer,
                                             make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 33: 401/403 (HTML or text) without a SOAP answer is a non-retryable TransportError, 0 retries."""
    server.default = Reply(status, body.encode())
    sleeper = Sleeper()
    client = make_client(server.url, retry=sleeper.policy())
    with raises(33) as info:
        get(client)
    assert info.value.status == status and info.value.retryable is False
    assert server.posts == 1 and sleeper.waits == []


@pytest.mark.parametrize("status", [500, 200])
def test_case_34_client_fault_is_final_and_sanitised(status: int, server: ScriptedServer,
                                                     make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 34: an s:Client fault (HTTP 500 or 200) is a SoapFaultError, 0 retries, faultstring cut and sanitised."""
    text = f"Bad request {CLIENT_SECRET}\x85\x9f\t" + "y" * 5000
    server.default = Reply(status, fault("s:Client", text))
    sleeper = Sleeper()
    client = make_client(server.url, retry=sleeper.policy())
    with raises(34) as info:
        get(client)
    error = info.value
    assert error.fault_code == "s:Client" and error.retryable is False and error.status == status
    assert len(error.fault_string) <= 256 and not re.search(r"[\x00-\x1f\x7f-\x9f]", error.fault_string)
    assert "***" in error.fault_string
    assert server.posts == 1 and sleeper.waits == []


def test_case_35_server_fault_is_retried_then_raised(server: ScriptedServer,
                                                     make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 35: an s:Server fault is retryable: retried up to 3 attempts, then a retryable SoapFaultError."""
    server.default = Reply(500, fault("s:Server", "busy"))
    sleeper = Sleeper()
    client = make_client(server.url, retry=sleeper.policy())
    with raises(35) as info:
        get(client)
    assert info.value.fault_code == "s:Server" and info.value.retryable is True
    assert server.posts == 3 and len(sleeper.waits) == 2


@pytest.mark.parametrize(
    "body",
    [
        envelope(response("<IsSuccessful>false</IsSuccessful>")),
        b"<root><detail>" + CLIENT_SECRET.encode() + b" " + b"d" * 5000 + b"END-OF-BODY-MARKER</detail></root>",
    ],
    ids=["envelope-not-fault", "other-xml"],
)
def test_case_36_500_with_xml_that_is_no_fault(body: bytes, server: ScriptedServer,
                                               make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 36: HTTP 500 with well-formed non-Fault XML is a TransportError(500): excerpt only, scrubbed, not retried."""
    server.default = Reply(500, body)
    client = make_client(server.url, retry=Sleeper().policy())
    with raises(36) as info:
        get(client)
    error = info.value
    assert error.status == 500 and error.retryable is False
    assert "END-OF-BODY-MARKER" not in str(error) and len(error.excerpt or "") <= 256
    assert server.posts == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body><h1>Welcome</h1></body></html>", "text/html"),
        (b'{"IsSuccessful": true, "Token": "x"}', "application/json"),
        (bytes(range(256)), "application/octet-stream"),
        (b"", "text/xml"),
        (b'{"IsSuccessful": true}', "text/xml; charset=utf-8"),
        (b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head><body/></html>', "text/xml"),
    ],
    ids=["html", "json", "binary", "empty", "json-as-text-xml", "xhtml"],
)
def test_case_37_200_that_is_not_soap(body: bytes, content_type: str, net: Net) -> None:
    """HOSTILE 37: HTTP 200 with HTML, JSON, binary, an empty body, a mislabelled body or XHTML is a ProtocolError."""
    with raises(37) as info:
        parse(body, headers={"Content-Type": content_type})
    assert info.value.status == 200
    assert net.connects == []


def test_case_38_truncated_xml(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 38: truncated XML is a ProtocolError (parsed directly and from the emulator's TRUNCATED_BODY)."""
    good = envelope(response("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>"))
    for cut in (len(good) // 2, len(good) - 1, 10):
        with raises(38):
            parse(good[:cut])
    emu.inject(Fault.TRUNCATED_BODY, times=1)
    before = emu.exchange_count
    with raises(38):
        get(make_client(emu.endpoint, retry=Sleeper().policy()))
    assert emu.exchange_count == before + 1


@pytest.mark.parametrize("body", [f'<s:Envelope xmlns:s="{SOAP11}"><s:Body/></s:Envelope>'.encode(), envelope("")])
def test_case_39_empty_body(body: bytes) -> None:
    """HOSTILE 39: <s:Body/> is a ProtocolError (zeep raised a bare IndexError)."""
    with raises(39) as info:
        parse(body)
    assert "0 elements" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        f'<s:Envelope xmlns:s="{SOAP11}"/>',
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Header/></s:Envelope>',
        f'<s:Envelope xmlns:s="{SOAP11}"><Body>{response("<IsSuccessful>true</IsSuccessful>")}</Body></s:Envelope>',
    ],
)
def test_case_40_envelope_without_body(body: str) -> None:
    """HOSTILE 40: an envelope without a SOAP Body is a ProtocolError (zeep raised a bare TypeError)."""
    with raises(40) as info:
        parse(body.encode())
    assert "0 Body elements" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        envelope("just text"),
        envelope("text <x:Foo xmlns:x='urn:x'/>"),
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><:a/></s:Body></s:Envelope>'.encode(),
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><a:/></s:Body></s:Envelope>'.encode(),
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><u:Unbound/></s:Body></s:Envelope>'.encode(),
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><1a/></s:Body></s:Envelope>'.encode(),
        b"<s:Envelope><s:Body/></s:Envelope>",
    ],
    ids=["text", "text-and-element", "empty-prefix", "empty-local", "unbound-prefix", "digit-name", "unbound-env"],
)
def test_case_41_text_body_and_invalid_names(body: bytes) -> None:
    """HOSTILE 41: a Body holding only text, or elements with empty or invalid names, is a ProtocolError."""
    with raises(41):
        parse(body)


@pytest.mark.parametrize(
    "body",
    [
        envelope('<Other xmlns="urn:x"><IsSuccessful>true</IsSuccessful></Other>'),
        envelope('<AuthenticationResponse xmlns="urn:wrong-namespace"><IsSuccessful>true</IsSuccessful>'
                 "</AuthenticationResponse>"),
        envelope(response("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>"), SOAP12),
        envelope(response("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>"), "urn:evil-envelope"),
    ],
    ids=["unexpected-element", "wrong-namespace", "soap12", "unknown-envelope"],
)
def test_case_42_unexpected_payload_or_envelope(body: bytes) -> None:
    """HOSTILE 42: an unexpected Body element, SOAP 1.2 or an unknown envelope namespace is a ProtocolError."""
    with raises(42):
        parse(body)


@pytest.mark.parametrize(
    "body",
    [
        envelope(response("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>") * 2),
        envelope(response("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token><Token>d.e.f</Token>")),
        envelope(response("<IsSuccessful>false</IsSuccessful><IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>")),
    ],
    ids=["two-responses", "two-tokens", "two-flags"],
)
def test_case_43_duplicated_members(body: bytes) -> None:
    """HOSTILE 43: a duplicated AuthenticationResponse, Token or IsSuccessful is a ProtocolError (no first-wins)."""
    with raises(43):
        parse(body)


@pytest.mark.parametrize(
    "flag", ["", '<IsSuccessful i:nil="true"/>', "<IsSuccessful>maybe</IsSuccessful>",
             "<IsSuccessful>TRUE</IsSuccessful>", "<IsSuccessful></IsSuccessful>", "<IsSuccessful>yes</IsSuccessful>"],
    ids=["missing", "nil", "maybe", "uppercase", "empty", "yes"],
)
def test_case_44_is_successful_must_be_an_xsd_boolean(flag: str) -> None:
    """HOSTILE 44: IsSuccessful missing, nil or not an xs:boolean is a ProtocolError; true/false/1/0 are accepted."""
    with raises(44):
        parse(envelope(response(f"{flag}<Token>a.b.c</Token>")))
    for text, value in (("true", True), ("1", True), ("false", False), ("0", False), (" true\n", True)):
        answer = parse(envelope(response(f"<IsSuccessful>{text}</IsSuccessful><Token>a.b.c</Token>")))
        assert answer.is_successful is value


@pytest.mark.parametrize(
    "token", ["", "<Token/>", "<Token>   </Token>", '<Token i:nil="true"/>', "<Token>" + "a" * (16 * 1024 + 1) + "</Token>"],
    ids=["missing", "empty", "blank", "nil", "over-16KiB"],
)
def test_case_45_success_without_a_usable_token(token: str) -> None:
    """HOSTILE 45: IsSuccessful=true with the Token missing, empty, nil or over 16 KiB is a ProtocolError."""
    with raises(45):
        parse(envelope(response(f"<IsSuccessful>true</IsSuccessful>{token}")))


def test_case_46_rejection_is_final_sanitised_and_remembered(
    server: ScriptedServer, emu: Emulator, make_client: Callable[..., SystemUserClient]
) -> None:
    """HOSTILE 46: IsSuccessful=false is AuthenticationRejectedError, 0 retries, ErrorMessage <= 256 sanitised, 60 s memory."""
    emu.inject(Fault.REJECT, message="Invalid signature")
    sleeper = Sleeper()
    client = make_client(emu.endpoint, retry=sleeper.policy())
    before = emu.exchange_count
    with raises(46) as info:
        get(client)
    assert info.value.error_message == "Invalid signature" and info.value.retryable is False
    with raises(46) as again:
        get(client)
    assert "remembered" in again.value.message
    assert emu.exchange_count == before + 1 and sleeper.waits == []

    server.default = Reply(200, rejection("Invalid\x85 signature\x9f\t\r\n" + "z" * 10_000))
    other = make_client(server.url, retry=Sleeper().policy())
    with raises(46) as long:
        get(other)
    message = long.value.error_message
    assert message.startswith("Invalid signature z") and len(message) <= 256
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", message)
    with raises(46):
        get(other)
    assert server.posts == 1


def test_case_47_rejection_with_a_token_never_uses_it(server: ScriptedServer,
                                                      make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 47: IsSuccessful=false with a Token is a rejection; the token is never validated, used or shown."""
    token = mint(rsa_key(0), now=time.time(), kid=None)
    canary_now().add_jwt(token)
    server.default = Reply(200, rejection(f"Denied {token}", token))
    sleeper = Sleeper()
    client = make_client(server.url, retry=sleeper.policy())
    with raises(47) as info:
        get(client)
    assert token not in info.value.error_message and "***" in info.value.error_message
    assert server.posts == 1 and server.gets == 0 and sleeper.waits == []


# =================================================================================================
# XML attacks (each < 100 ms, no connection, no file read)
# =================================================================================================

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + f']>\n<s:Envelope xmlns:s="{SOAP11}"><s:Body>{response("<IsSuccessful>true</IsSuccessful><Token>&lol9;</Token>")}'
    "</s:Body></s:Envelope>"
)
XMLBOMB2 = (
    '<!DOCTYPE bomb [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">]>'
    + f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>{response("<IsSuccessful>true</IsSuccessful><Token>" + "&a;" * 1000 + "</Token>")}'
    "</s:Body></s:Envelope>"
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
@pytest.mark.parametrize("document", [BILLION_LAUGHS, XMLBOMB2], ids=["xmlbomb", "xmlbomb2"])
def test_case_48_billion_laughs(document: str, encoding: str, socket_disabled: None) -> None:
    """HOSTILE 48: billion laughs (also UTF-16, past a byte-level DOCTYPE check) is a ProtocolError in < 100 ms."""
    body = document.replace('<?xml version="1.0"?>', "").encode(encoding)
    with within(0.1), raises(48):
        parse(body)


def test_case_49_quadratic_blowup(socket_disabled: None) -> None:
    """HOSTILE 49: the quadratic blowup (one 10 KiB entity referenced 10,000 times) is a ProtocolError in < 100 ms."""
    entity = "a" * 10_000
    body = (f'<!DOCTYPE r [<!ENTITY a "{entity}">]><s:Envelope xmlns:s="{SOAP11}"><s:Body>'
            f'{response("<IsSuccessful>true</IsSuccessful><Token>" + "&a;" * 10_000 + "</Token>")}'
            "</s:Body></s:Envelope>")
    for data in (body.encode(), body.encode("utf-16")):
        with within(0.1), raises(49):
            parse(data)


def test_case_50_xxe_local_file(tmp_path: Path, socket_disabled: None) -> None:
    """HOSTILE 50: an external entity naming a local file is a ProtocolError and the file's text appears nowhere."""
    secret_file = tmp_path / "passwd"
    secret_file.write_text("root:x:0:0:FILE-CANARY-6b1f:/root:/bin/bash\n")
    for target in (secret_file.as_uri(), "file:///etc/passwd"):
        body = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "{target}">]>'
                f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>'
                f'{response("<IsSuccessful>false</IsSuccessful><ErrorMessage>&xxe;</ErrorMessage>")}'
                "</s:Body></s:Envelope>")
        for data in (body.encode(), body.replace('<?xml version="1.0"?>', "").encode("utf-16")):
            with within(0.1), raises(50) as info:
                parse(data)
            assert not any("FILE-CANARY-6b1f" in t or "root:x:0:0" in t for t in error_texts(info.value))


@contextmanager
def listener() -> Iterator[tuple[int, Callable[[], bool]]]:
    """A loopback port whose accept queue tells whether anything connected to it."""
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1]), lambda: bool(select.select([sock], [], [], 0.05)[0])
    finally:
        sock.close()


def test_case_51_xxe_over_http_and_parameter_entities(net: Net) -> None:
    """HOSTILE 51: http:// general and external parameter entities are a ProtocolError with no connection attempt."""
    with listener() as (port, connected):
        url = f"http://127.0.0.1:{port}/x"
        bodies = [
            f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "{url}/general">]><s:Envelope xmlns:s="{SOAP11}"><s:Body>'
            f'{response("<IsSuccessful>false</IsSuccessful><ErrorMessage>&xxe;</ErrorMessage>")}</s:Body></s:Envelope>',
            f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/param.dtd"> %p;]><s:Envelope xmlns:s="{SOAP11}"><s:Body>'
            f'{response("<IsSuccessful>false</IsSuccessful>")}</s:Body></s:Envelope>',
        ]
        for body in bodies:
            for data in (body.encode(), body.encode("utf-16")):
                with within(0.1), raises(51):
                    parse(data)
        assert not connected()
    assert net.connects == []


def test_case_52_external_dtd_without_entities(net: Net) -> None:
    """HOSTILE 52: <!DOCTYPE ... SYSTEM "http://127.0.0.1:port/x.dtd"> and no entities: ProtocolError, never fetched."""
    with listener() as (port, connected):
        body = (f'<!DOCTYPE s:Envelope SYSTEM "http://127.0.0.1:{port}/x.dtd"><s:Envelope xmlns:s="{SOAP11}"><s:Body>'
                f'{response("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>")}</s:Body></s:Envelope>')
        for data in (body.encode(), body.encode("utf-16")):
            with within(0.1), raises(52) as info:
                parse(data)
            assert "DTD" in info.value.message
        assert not connected()
    assert net.connects == []


@pytest.mark.parametrize(
    "dtd",
    [
        "<!DOCTYPE s:Envelope [<!ELEMENT s:Envelope ANY>]>",
        '<!DOCTYPE r [<!ENTITY a "&b;"><!ENTITY b "&a;">]>',
    ],
    ids=["internal-dtd", "cyclic-entities"],
)
def test_case_53_internal_dtd_or_cyclic_entities(dtd: str, socket_disabled: None) -> None:
    """HOSTILE 53: an internal DTD with no entities, or cyclic entities, is a ProtocolError in < 100 ms."""
    body = dtd + envelope(response("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>")).decode()
    for data in (body.encode(), body.encode("utf-16")):
        with within(0.1), raises(53):
            parse(data)


def test_case_54_deep_nesting(socket_disabled: None) -> None:
    """HOSTILE 54: 257-deep nesting is a ProtocolError (libxml2's limit of 256 is kept)."""
    deep = "<a>" * 257 + "</a>" * 257
    with within(0.1), raises(54) as info:
        parse(envelope(response(f"<IsSuccessful>true</IsSuccessful><Token>{deep}</Token>")))
    assert "well-formed" in info.value.message


def test_case_55_huge_text_node_hits_the_size_cap(server: ScriptedServer,
                                                  make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 55: an 11 MiB text node is a ProtocolError from the 1 MiB cap, before libxml2's 10M-char limit."""
    head, tail = envelope(response("<IsSuccessful>true</IsSuccessful><Token>MARK</Token>")).split(b"MARK")
    server.default = Reply(200, head + b"A" * (11 * 1024 * 1024) + tail)
    client = make_client(server.url, retry=None)
    with within(2.0), raises(55) as info:
        authenticate(client)
    assert "larger than" in info.value.message
    assert server.posts == 1


# =================================================================================================
# JWT validation
# =================================================================================================

NOW = 1_780_000_000.0
JWT_KEY = rsa_key(0)
ATTACKER = rsa_key(1)


def validator(**kwargs: Any) -> TokenValidator:
    source = kwargs.pop("source", None) or StaticKeySource([("test-kid", JWT_KEY.public_key())])
    return TokenValidator(source, clock=lambda: NOW, **kwargs)


def token(key: Any = None, **kwargs: Any) -> str:
    """A JWT minted at NOW (registered with the canary, ticket included)."""
    minted = mint(JWT_KEY if key is None else key, now=NOW, **kwargs)
    canary_now().add_jwt(minted)
    return minted


def reject(case: int, jwt: str, check: str | None = None, v: TokenValidator | None = None) -> None:
    with raises(case) as info:
        (v or validator()).validate(jwt, context_identifier=CTX)
    if check is not None:
        assert info.value.check == check


def accept(jwt: str, v: TokenValidator | None = None) -> dict[str, Any]:
    return (v or validator()).validate(jwt, context_identifier=CTX)


def test_case_56_alg_none(net: Net) -> None:
    """HOSTILE 56: alg none (or None/NONE) with an empty or non-empty signature is a TokenValidationError."""
    for alg in ("none", "None", "NONE"):
        unsigned = token(alg=alg)
        reject(56, unsigned)
        reject(56, unsigned + "c2lnbmF0dXJl", "algorithm")
    assert net.connects == []


def test_case_57_hs256_keyed_with_the_public_key() -> None:
    """HOSTILE 57: HS256 MACed with the public key as PEM, DER or SSH is a TokenValidationError, never a TypeError."""
    public = JWT_KEY.public_key()
    forms = (
        public_pem(JWT_KEY),
        public_pem(JWT_KEY, pkcs1=True),
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
    )
    for secret in forms:
        reject(57, token(secret, alg="HS256"), "algorithm")
        reject(57, token(secret, alg="HS256", kid=None), "algorithm")


@pytest.mark.parametrize("alg", ["RS512", "RS384", "PS256", "ES256", "rs256", "Rs256", "RS256 "])
def test_case_58_other_algorithms(alg: str) -> None:
    """HOSTILE 58: RS512, PS256, ES256 or a lowercase rs256 header is a TokenValidationError (RS256 is pinned)."""
    reject(58, token(headers={"alg": alg}), "algorithm")  # signed RS256 with the right key: only the header differs


def test_case_59_signed_by_another_key() -> None:
    """HOSTILE 59: a well-formed token signed by another RSA key is a TokenValidationError (signature)."""
    reject(59, token(ATTACKER), "signature")
    reject(59, token(ATTACKER, kid=None), "signature")


@pytest.mark.parametrize("header", ["jwk", "jku", "x5u", "x5c", "x5t"])
def test_case_60_key_naming_headers_are_ignored(header: str, net: Net) -> None:
    """HOSTILE 60: jwk/jku/x5u/x5c naming the attacker's key are ignored for key choice; 0 outbound requests."""
    der = self_signed_cert(ATTACKER).public_bytes(serialization.Encoding.DER)
    with listener() as (port, connected):
        values = {
            "jwk": jwk_for(ATTACKER),
            "jku": f"http://127.0.0.1:{port}/jwks",
            "x5u": f"http://127.0.0.1:{port}/cert.pem",
            "x5c": [base64.b64encode(der).decode()],
            "x5t": b64url(b"\x01" * 20),
        }
        for kid in ("test-kid", None):
            reject(60, token(ATTACKER, kid=kid, headers={header: values[header]}), "signature")
        assert not connected()
    assert net.connects == []


def _unsigned(kid: str) -> str:
    """A well-formed RS256 token with ``kid`` and a dummy signature (the kid is looked up before verifying)."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}))
    return f"{header}.{b64url(b'{}')}.{b64url(bytes(256))}"


def test_case_61_unknown_kids_do_not_storm_the_jwks(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 61: 1,000 random kids: TokenValidationError, <= 1 JWKS fetch per 30 s cooldown, a failed fetch keeps the set."""
    real = authenticate(make_client(emu.endpoint)).token
    now = [0.0]
    source = JwksKeySource(emu.jwks_url, clock=lambda: now[0])
    v = TokenValidator(source)
    before = emu.jwks_count
    for i in range(1000):
        reject(61, _unsigned(f"random-{i}-{os.urandom(4).hex()}"), "key", v)
    assert emu.jwks_count == before + 1
    now[0] += 31
    reject(61, _unsigned("after-cooldown"), "key", v)
    assert emu.jwks_count == before + 2
    for i in range(100):
        reject(61, _unsigned(f"still-cooling-{i}"), "key", v)
    assert emu.jwks_count == before + 2
    emu.inject(Fault.JWKS_UNAVAILABLE, times=1)
    now[0] += 31
    with pytest.raises(TransportError) as failed:
        v.validate(_unsigned("during-outage"), context_identifier=CTX)
    assert failed.value.status == 503 and failed.value.retryable is True
    check_error(failed.value)
    assert v.validate(real, context_identifier=CTX)[CLAIM_TICKET]  # the cached set survived the failed fetch
    assert emu.jwks_count == before + 3
    source.close()


@pytest.mark.parametrize("kid", ["../../../../etc/passwd", "1' OR '1'='1", "/login/.well-known/jwks?x=", "%2e%2e/"])
def test_case_62_kid_is_opaque(kid: str, emu: Emulator, net: Net) -> None:
    """HOSTILE 62: a kid with path traversal or SQL text is an opaque string: never in a URL, unknown -> TokenValidationError."""
    assert accept(token(kid=kid), validator(source=StaticKeySource([(kid, JWT_KEY.public_key())])))
    reject(62, token(kid=kid), "key", validator(source=StaticKeySource([("test-kid", JWT_KEY.public_key()),
                                                                         ("other", ATTACKER.public_key())])))
    source = JwksKeySource(emu.jwks_url)
    before = emu.jwks_count
    reject(62, _unsigned(kid), "key", TokenValidator(source))
    assert emu.jwks_count == before + 1  # fetched once, from the configured URL only
    assert not [a for a in net.lookups if kid in a]
    source.close()


@pytest.mark.parametrize("crit", [["exp"], [], "exp", ["b64"], None, {"a": 1}], ids=str)
def test_case_63_crit_header(crit: Any) -> None:
    """HOSTILE 63: an unknown, empty or non-list crit header is a TokenValidationError (no extension is supported)."""
    header_crit = token(headers={"crit": crit}) if crit is not None else mint_raw(
        JWT_KEY, {"alg": "RS256", "kid": "test-kid", "crit": None}, {"x": 1})
    reject(63, header_crit, "critical")


@pytest.mark.parametrize(
    ("claim", "check"),
    [("exp", "expiry"), ("iss", "issuer"), ("aud", "audience"), ("iat", None), ("nbf", None)],
)
def test_case_64_missing_claims(claim: str, check: str | None) -> None:
    """HOSTILE 64: missing exp, iss or aud is a TokenValidationError; missing iat/nbf is accepted (SuperOffice omits iat)."""
    jwt = token(claims={claim: None})
    if check is None:
        assert claim not in accept(jwt)
        assert accept(token(claims={"iat": None, "nbf": None}))
    else:
        reject(64, jwt, check)


def test_case_65_expiry_at_the_leeway_bound() -> None:
    """HOSTILE 65: exp = now - leeway - 1 s is rejected, now - leeway + 1 s accepted (frozen clock, leeway 300)."""
    reject(65, token(exp=int(NOW) - 300 - 1, iat=int(NOW) - 600, nbf=int(NOW) - 600), "expiry")
    reject(65, token(exp=int(NOW) - 300, iat=int(NOW) - 600, nbf=int(NOW) - 600), "expiry")
    assert accept(token(exp=int(NOW) - 300 + 1, iat=int(NOW) - 600, nbf=int(NOW) - 600))
    reject(65, token(exp=int(NOW) - 1), "expiry", validator(leeway=0))
    assert accept(token(exp=int(NOW) + 1), validator(leeway=0))


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_case_66_not_yet_valid(claim: str) -> None:
    """HOSTILE 66: nbf or iat beyond now + leeway is a TokenValidationError; within the leeway it is accepted."""
    reject(66, token(claims={claim: int(NOW) + 301}, exp=int(NOW) + 900),
           "not_before" if claim == "nbf" else "issued_at")
    assert accept(token(claims={claim: int(NOW) + 299}, exp=int(NOW) + 900))


def test_case_67_absurd_lifetimes() -> None:
    """HOSTILE 67: exp = 10**20, a non-finite exp, or exp - iat over the maximum lifetime is a TokenValidationError."""
    reject(67, token(exp=10**20), "lifetime")
    reject(67, token(exp=10**400), "expiry")
    reject(67, token(exp=1e308 * 10), "format")  # json writes Infinity, which is not JSON
    reject(67, token(iat=int(NOW) - 86_400, nbf=int(NOW) - 86_400, exp=int(NOW) + 100), "lifetime")
    reject(67, token(iat=int(NOW), exp=int(NOW) + 3600), "lifetime", validator(max_lifetime=600))
    assert accept(token(iat=int(NOW), exp=int(NOW) + 3600))


def test_case_68_numeric_string_dates() -> None:
    """HOSTILE 68: exp as a numeric string is refused (RFC 7519 NumericDate); iat/nbf as digit strings are accepted."""
    reject(68, token(exp=str(int(NOW) + 300)), "expiry")
    reject(68, token(exp="1e20"), "expiry")
    claims = accept(token(iat=str(int(NOW)), nbf=str(int(NOW))))
    assert claims["iat"] == str(int(NOW))
    reject(68, token(iat="1780000000.5"), "issued_at")
    reject(68, token(nbf=" 1780000000"), "not_before")


@pytest.mark.parametrize("iss", ["SuperOffice", "SuperOffice AS ", "superoffice as", ["SuperOffice AS"], "", 1])
def test_case_69_issuer_exact(iss: Any) -> None:
    """HOSTILE 69: iss other than exactly "SuperOffice AS" (case, space, list) is a TokenValidationError."""
    reject(69, token(iss=iss), "issuer")


@pytest.mark.parametrize("aud", ["spn:7654321", ["spn:1234567"], ["spn:1234567", "spn:7654321"], "1234567", ""])
def test_case_70_audience_strict(aud: Any) -> None:
    """HOSTILE 70: aud for another tenant, or any list audience, is a TokenValidationError (strict_aud)."""
    reject(70, token(aud=aud), "audience")


def test_case_71_context_mismatch(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 71: a ctx claim other than the ContextIdentifier sent is a TokenValidationError (also end to end)."""
    for ctx in ("Cust99999", "cust12345", "Cust12345 ", 12345):
        reject(71, token(ctx=ctx), "context")
    reject(71, token(ctx=None), "context")
    emu.inject(Fault.WRONG_TENANT_TOKEN, times=1)
    sleeper = Sleeper()
    before = emu.exchange_count
    with raises(71) as info:
        get(make_client(emu.endpoint, retry=sleeper.policy()))
    assert info.value.check == "context"
    assert emu.exchange_count == before + 1 and sleeper.waits == []


@pytest.mark.parametrize(
    "ticket", [None, "", 12345, ["7T:abc"], "7T:" + "a" * 4094, "7T:a b", "7T:a\tb", "7T:a\x01b", "7T:æøå", "7T:a\r\n"],
    ids=["missing", "empty", "int", "list", "over-4KiB", "space", "tab", "control", "non-ascii", "crlf"],
)
def test_case_72_ticket_claim(ticket: Any) -> None:
    """HOSTILE 72: a ticket claim missing, empty, non-string, over 4 KiB or with whitespace/control is refused."""
    reject(72, token(claims={CLAIM_TICKET: ticket}), "ticket")


def test_case_73_oversized_token_refused_before_decoding() -> None:
    """HOSTILE 73: a token over 16 KiB (8 MiB here) is a TokenValidationError in < 1 ms, before any decoding."""
    big = token(email="x" * (8 * 1024 * 1024))
    v = validator()
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        try:
            v.validate(big, context_identifier=CTX)
        except TokenValidationError as error:
            best = min(best, time.perf_counter() - started)
            assert error.check == "size"
    assert best < 0.001
    reject(73, big, "size")
    reject(73, token(email="x" * (12 * 1024)), "size")


def _good_parts() -> list[str]:
    return token().split(".")


@pytest.mark.parametrize(
    "variant",
    ["trailing-newline", "leading-space", "padding", "two-segments", "four-segments", "non-ascii",
     "header-array", "payload-array", "payload-string", "invalid-utf8", "deep-json-over-cap", "deep-json-under-cap",
     "duplicate-key", "nan", "empty-signature", "plus-slash-base64", "not-a-str"],
)
def test_case_74_malformed_compact_form(variant: str) -> None:
    """HOSTILE 74: whitespace, padding, wrong segment counts, non-ASCII, non-object or bad JSON, invalid UTF-8: refused."""
    h, p, s = _good_parts()
    head = b64url(json.dumps({"alg": "RS256", "kid": "test-kid"}))
    jwt: Any = {
        "trailing-newline": f"{h}.{p}.{s}\n",
        "leading-space": f" {h}.{p}.{s}",
        "padding": f"{h}.{p}.{s}" + "=" * (-len(s) % 4 or 4),
        "two-segments": f"{h}.{p}",
        "four-segments": f"{h}.{p}.{s}.{s}",
        "non-ascii": f"{h}.{p}é.{s}",
        "header-array": mint_raw(JWT_KEY, b'["RS256"]', {"x": 1}),
        "payload-array": mint_raw(JWT_KEY, {"alg": "RS256", "kid": "test-kid"}, b"[1,2]"),
        "payload-string": mint_raw(JWT_KEY, {"alg": "RS256", "kid": "test-kid"}, b'"claims"'),
        "invalid-utf8": mint_raw(JWT_KEY, {"alg": "RS256", "kid": "test-kid"}, b'{"iss":"\xff\xfe"}'),
        "deep-json-over-cap": f"{head}.{b64url(b'[' * 100_000 + b']' * 100_000)}.{s}",
        "deep-json-under-cap": mint_raw(JWT_KEY, {"alg": "RS256", "kid": "test-kid"},
                                        b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        "duplicate-key": mint_raw(JWT_KEY, b'{"alg":"none","alg":"RS256","kid":"test-kid"}', {"x": 1}),
        "nan": mint_raw(JWT_KEY, {"alg": "RS256", "kid": "test-kid"}, b'{"exp": NaN}'),
        "empty-signature": f"{h}.{p}.",
        "plus-slash-base64": f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}" if ("-" in s or "_" in s) else f"{h}+.{p}.{s}",
        "not-a-str": f"{h}.{p}.{s}".encode(),
    }[variant]
    reject(74, jwt)


# =================================================================================================
# Cache and concurrency
# =================================================================================================


def _threads(count: int, work: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not [t for t in threads if t.is_alive()], "a thread hung"


def test_case_75_cold_cache_fifty_threads_one_exchange(emu: Emulator,
                                                      make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 75: 50 threads (Barrier) on a cold cache cause exactly 1 exchange and all get the same ticket."""
    client = make_client(emu.endpoint)
    barrier = threading.Barrier(50)
    tickets: list[str] = []
    before = emu.exchange_count

    def work(i: int) -> None:
        barrier.wait(5)
        tickets.append(get(client).ticket)

    _threads(50, work)
    assert emu.exchange_count == before + 1
    assert len(tickets) == 50 and len(set(tickets)) == 1


def test_case_76_storm_is_consistent_and_bounded(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 76: 20 threads x 4,000 get_ticket with a 2 s lifetime: 0 inconsistent snapshots, exchanges <= ceil(t/2)+1."""
    lifetime = 2.0
    client = make_client(emu.endpoint, ticket_lifetime=lifetime, refresh_ahead=0)
    barrier = threading.Barrier(20)
    bad: list[str] = []
    seen: dict[str, tuple[datetime, datetime]] = {}
    calls = [0] * 20
    before = emu.exchange_count
    started = time.monotonic()

    def work(i: int) -> None:
        barrier.wait(5)
        end = time.monotonic() + 3.0
        while calls[i] < 4000 and time.monotonic() < end:
            asked_at = CLOCK().timestamp()
            ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
            calls[i] += 1
            if ticket.context_identifier != CTX or ticket.obtained_at.timestamp() + lifetime <= asked_at:
                bad.append("dead or foreign ticket")
            snapshot = (ticket.obtained_at, ticket.expires_at)
            if seen.setdefault(ticket.ticket, snapshot) != snapshot:
                bad.append("one ticket, two (obtained_at, expires_at)")

    _threads(20, work)
    elapsed = time.monotonic() - started
    for ticket_text in seen:
        canary_now().add(ticket_text)
    exchanges = emu.exchange_count - before
    assert not bad
    assert sum(calls) >= 20 * 1000
    assert 1 <= exchanges <= math.ceil(elapsed / lifetime) + 1


def test_case_77_renewal_failure_inside_the_window_keeps_the_ticket(
    emu: Emulator, make_client: Callable[..., SystemUserClient], canary: Canary
) -> None:
    """HOSTILE 77: due for renewal and the exchange fails transiently: the valid cached ticket comes back, one WARNING."""
    client = make_client(emu.endpoint, ticket_lifetime=600, refresh_ahead=300, retry=Sleeper().policy())
    first = get(client)
    CLOCK.offset = 400  # inside the refresh-ahead window, still valid
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    before = emu.exchange_count
    mark = len(canary.stream.getvalue())
    assert get(client).ticket == first.ticket
    assert emu.exchange_count == before + 1  # one renewal attempt, not retried: the ticket is still good
    new_lines = canary.stream.getvalue()[mark:].splitlines()
    assert len([line for line in new_lines if " WARNING " in line]) == 1
    assert get(client).ticket == first.ticket and emu.exchange_count == before + 1  # 30 s renewal back-off


def test_case_78_expired_ticket_and_failed_exchange(emu: Emulator,
                                                    make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 78: the ticket has expired and the exchange fails: a typed error, the stale ticket never returned."""
    sleeper = Sleeper()
    client = make_client(emu.endpoint, ticket_lifetime=600, refresh_ahead=300, retry=sleeper.policy())
    get(client)
    CLOCK.offset = 601
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML)
    before = emu.exchange_count
    with raises(78) as info:
        get(client)
    assert info.value.status == 503
    assert emu.exchange_count == before + 3 and len(sleeper.waits) == 2


def test_case_79_failing_leader_releases_its_waiters(emu: Emulator,
                                                    make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 79: the single-flight leader fails: every waiter gets the typed error, the lock is freed, the next call works."""
    client = make_client(emu.endpoint, retry=None)
    emu.inject(Fault.LATENCY, seconds=0.3, times=1)
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []
    before = emu.exchange_count

    def work(i: int) -> None:
        barrier.wait(5)
        try:
            get(client)
        except Exception as exc:  # collected and checked below
            errors.append(exc)

    _threads(10, work)
    assert len(errors) == 10 and all(type(e) is EXPECTED[79] for e in errors)
    for error in errors:
        check_error(error)
    assert emu.exchange_count == before + 1
    assert not client._flights
    with within(5.0):
        assert get(client).context_identifier == CTX
    assert emu.exchange_count == before + 2


def test_case_80_wall_clock_jumps(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 80: the wall clock jumping back or ahead 1 h keeps the ticket (monotonic age); time passing renews it."""
    client = make_client(emu.endpoint, ticket_lifetime=1800)
    first = get(client)
    before = emu.exchange_count
    CLOCK.wall_jump = -3600
    assert get(client).ticket == first.ticket and emu.exchange_count == before
    CLOCK.wall_jump = 3600
    assert get(client).ticket == first.ticket and emu.exchange_count == before
    CLOCK.wall_jump = 0
    CLOCK.offset = 1800
    second = get(client)
    assert second.ticket != first.ticket and emu.exchange_count == before + 1
    assert second.expires_at > first.expires_at + timedelta(minutes=29)
    assert get(client).ticket == second.ticket and emu.exchange_count == before + 1


def test_case_81_downstream_ticket_invalid_reexchanges_once(emu: Emulator,
                                                           make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 81: "ticket invalid" downstream: invalidate and re-exchange once; repeated 401s cause no loop."""
    client = make_client(emu.endpoint)
    old = get(client)
    before = emu.exchange_count
    for _ in range(5):  # five threads saw the same 401 with the same ticket
        client.invalidate(CTX, ticket=old)
        new = get(client)
    assert new.ticket != old.ticket and emu.exchange_count == before + 1
    client.invalidate(CTX, ticket=new)
    assert get(client).ticket != new.ticket and emu.exchange_count == before + 2


# =================================================================================================
# Hygiene
# =================================================================================================


def test_case_82_debug_logging_everywhere_leaks_nothing(emu: Emulator, make_client: Callable[..., SystemUserClient],
                                                       canary: Canary) -> None:
    """HOSTILE 82: with root, zeep.transports, urllib3 and requests at DEBUG an exchange logs, and leaks nothing."""
    for name in ("", "zeep", "zeep.transports", "urllib3", "requests", "sut_soap"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG
    client = make_client(emu.endpoint, retry=Sleeper().policy())
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    ticket = get(client)
    authenticate(client)
    log = canary.stream.getvalue()
    assert "sut_soap.transport" in log and "sut_soap.client" in log and "retrying" in log
    canary.add(ticket.ticket, ticket.token)
    canary.check()


def test_case_83_reprs_and_error_chains_leak_nothing(emu: Emulator, make_client: Callable[..., SystemUserClient],
                                                     tmp_path: Path) -> None:
    """HOSTILE 83: repr/str of client, ticket, cache entry, validator, sources and every error (chains too): 0 hits."""
    client = make_client(emu.endpoint)
    ticket = get(client)
    entry = CachedTicket(ticket, token_fingerprint="f" * 32)
    cache = InMemoryTicketCache()
    cache.set("k", entry, 60)
    objects: list[object] = [client, ticket, entry, cache, client._validator, client._key_source,
                             Answer(True, ticket.token, None), RetryPolicy(), validator()]
    canary_now().check(*(f"{o!r} {o!s}" for o in objects))
    assert "***" in repr(ticket) and "***" in repr(client)

    signed = sign_system_user_token(TOKEN, PARTNER_KEY)
    canary_now().add(signed)
    secrets = (CLIENT_SECRET, signed, TOKEN)
    echo = f"{CLIENT_SECRET} {signed} {TOKEN}"
    errors: list[BaseException] = []
    failing: list[Callable[[], object]] = [
        lambda: load_private_key(private_key_to_pem(PARTNER_KEY).decode()[:-60]),
        lambda: load_private_key(private_key_to_rsa_xml(PARTNER_KEY)[:-30]),
        lambda: load_private_key((KEYS / "test-partner-encrypted.pem").read_bytes(), password="wrong"),
        lambda: load_private_key(str(tmp_path / private_key_to_rsa_xml(PARTNER_KEY)[60:120].replace("/", "_"))),
        lambda: parse_answer(FakeResponse(fault("s:Client", echo), 200), secrets=secrets),
        lambda: parse_answer(FakeResponse(f"<html>{echo}</html".encode(), 200), secrets=secrets),
        lambda: parse_answer(FakeResponse(f"<html>{echo}</html>".encode(), 502), secrets=secrets),
        lambda: validator().validate(ticket.token, context_identifier=CTX),
        lambda: client._validator.validate(ticket.token, context_identifier="Cust99999"),
        lambda: SystemUserClient(client_secret=CLIENT_SECRET + "\x00", private_key=PARTNER_KEY, environment="sod"),
    ]
    for fail in failing:
        with pytest.raises(SutSoapError) as info:
            fail()
        errors.append(info.value)
    assert CLIENT_SECRET not in (parse_answer(FakeResponse(rejection(echo), 200), secrets=secrets).error_message or "x")
    emu.inject(Fault.REJECT, message=f"echo {TOKEN}", times=1)
    with pytest.raises(AuthenticationRejectedError) as rejected:
        authenticate(client)
    errors.append(rejected.value)
    assert {type(e) for e in errors} >= {ConfigurationError, SoapFaultError, AuthenticationRejectedError,
                                         ProtocolError, TransportError, TokenValidationError}
    for error in errors:
        check_error(error)


def test_case_84_fixtures_hold_no_canary(canary: Canary) -> None:
    """HOSTILE 84: nothing under fixtures/ holds a JWT, ticket, signed token or undocumented key, nor this file's canaries."""
    readme = (KEYS / "README.md").read_text(encoding="utf-8")
    documented = [KEYS / name for name in re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE)]
    assert scan_for_secrets(ROOT / "fixtures", allowed_keys=documented) == []
    values = [CLIENT_SECRET.encode(), TOKEN.encode()]
    for path in (ROOT / "fixtures" / "recordings").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [v for v in values if v in data], path


# =================================================================================================
# The REST form of the exchange: each case that has a REST counterpart, once more over REST
# =================================================================================================

# Cases whose input reaches the request builder or the answer reader, which differ per protocol. The
# rest are the same code for both: key loading and signing (1-7, 14-18), the transport (19-24,
# 28-29), JWT validation (56-74), the cache and single flight (75-81) and the canary (82-84,
# which every test below runs under); SOAP Faults, envelopes and XML attacks (34-35, 39-42,
# 48-55) have no JSON form (deep nesting and duplicates do: tests/test_rest.py and below).
REST_COUNTERPARTS = (8, 9, 11, 12, 13, 25, 26, 27, 30, 31, 32, 33, 36, 37, 38, 43, 44, 45, 46, 47)
REST_JSON = (("Content-Type", "application/json; charset=utf-8"),)


def rest_parse(body: bytes | str, status: int = 200, content_type: str = "application/json") -> Answer:
    data = body.encode() if isinstance(body, str) else body
    return rest.parse_answer(FakeResponse(data, status, {"Content-Type": content_type}), secrets=(CLIENT_SECRET, TOKEN))


def rest_client(make_client: Callable[..., SystemUserClient], url: str, **options: Any) -> SystemUserClient:
    return make_client(url, protocol="rest", **options)


def test_rest_case_08_plain_http_endpoint_is_refused_before_io(net: Net) -> None:
    """HOSTILE 8 over REST: an http:// REST endpoint off loopback is a ConfigurationError; 0 connections."""
    with raises(8):
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, protocol="rest",
                         endpoint="http://online.superoffice.com/Login/api/PartnerSystemUser/Authenticate")
    assert net.connects == []


@pytest.mark.parametrize("url", ["https://a@online.superoffice.com/Login/api/PartnerSystemUser/Authenticate",
                                 "ftp://online.superoffice.com/x", "https:///nohost"])
def test_rest_case_09_unusable_endpoint_is_refused_before_io(url: str, net: Net) -> None:
    """HOSTILE 9 over REST: userinfo, another scheme or no host is a ConfigurationError; 0 connections."""
    with raises(9):
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, protocol="rest", endpoint=url)
    assert net.connects == []


@pytest.mark.parametrize("which", ["secret", "ctx", "token"])
def test_rest_case_11_empty_values_are_refused(which: str, emu: Emulator,
                                               make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 11 over REST: an empty client secret, ContextIdentifier or system user token; nothing is sent."""
    before = emu.exchange_count
    with raises(11):
        if which == "secret":
            SystemUserClient(client_secret="", private_key=PARTNER_KEY, protocol="rest", endpoint=emu.rest_endpoint)
        else:
            authenticate(rest_client(make_client, emu.rest_endpoint), *(("", TOKEN) if which == "ctx" else (CTX, "")))
    assert emu.exchange_count == before


@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\n", "\ud800"], ids=["nul", "escape", "newline", "surrogate"])
def test_rest_case_12_control_characters_are_refused(bad: str, emu: Emulator,
                                                     make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 12 over REST: NUL, control characters or a lone surrogate (which JSON escapes would carry) are refused."""
    before = emu.exchange_count
    with raises(12):
        authenticate(rest_client(make_client, emu.rest_endpoint), CTX, f"Acme{bad}Sync")
    assert emu.exchange_count == before


def test_rest_case_13_json_special_characters_are_escaped_and_signed_raw(
    server: ScriptedServer, canary: Canary
) -> None:
    """HOSTILE 13 over REST: quotes, backslashes and markup are JSON-escaped (no injection); the raw text is signed."""
    token = 'Acme "Sync" \\ <&> ]]> {"x": 1}-canaryH0st1le'
    secret = 'sec"ret\\",\n "ApplicationToken": "injected'.replace("\n", " ")
    canary.add(token, secret)
    server.default = Reply(503)
    with SystemUserClient(client_secret=secret, private_key=PARTNER_KEY, protocol="rest", endpoint=server.url,
                          retry=None, timeout=(1.0, 1.0)) as client, pytest.raises(TransportError):
        client.authenticate(context_identifier=CTX, system_user_token=token)
    document = json.loads(server.bodies[0])
    assert list(document) == ["SignedSystemToken", "ApplicationToken", "ContextIdentifier", "ReturnTokenType"]
    assert document["ApplicationToken"] == secret and document["ContextIdentifier"] == CTX
    signed_text, stamp, signature = document["SignedSystemToken"].rsplit(".", 2)
    assert signed_text == token
    PARTNER_KEY.public_key().verify(base64.b64decode(signature), f"{token}.{stamp}".encode(), padding.PKCS1v15(),
                                    hashes.SHA256())


def test_rest_case_25_redirect_to_plain_http_is_refused(server: ScriptedServer,
                                                        make_client: Callable[..., SystemUserClient], net: Net) -> None:
    """HOSTILE 25 over REST: 307 -> http://evil.example is refused; exactly 1 request, nothing re-sent."""
    server.default = Reply(307, b"", (("Location", "http://evil.example/steal"),))
    sleeper = Sleeper()
    with raises(25) as info:
        get(rest_client(make_client, server.url, retry=sleeper.policy()))
    assert info.value.status == 307 and info.value.retryable is False
    assert server.posts == 1 and sleeper.waits == [] and "evil.example" not in net.lookups


@pytest.mark.parametrize("status", [301, 302, 308])
def test_rest_case_26_redirect_to_another_https_host_is_refused(
    status: int, server: ScriptedServer, make_client: Callable[..., SystemUserClient], net: Net
) -> None:
    """HOSTILE 26 over REST: 301/302/308 -> another https host is refused; 1 request, nothing from the other origin."""
    server.default = Reply(status, b'{"IsSuccessful": true, "Token": "a.b.c"}',
                           (("Location", "https://other.example/x"), *REST_JSON))
    with raises(26) as info:
        get(rest_client(make_client, server.url, retry=Sleeper().policy()))
    assert info.value.status == status and server.posts == 1 and "other.example" not in net.lookups


def test_rest_case_27_oversized_answer_stops_at_the_cap(server: ScriptedServer,
                                                        make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 27 over REST: a 2 MiB JSON answer stops at the transport's 1 MiB cap; 100 KiB at the JSON cap."""
    server.default = Reply(200, b'{"x": "' + b"x" * (2 * 1024 * 1024) + b'"}', REST_JSON)
    with raises(27) as info:
        get(rest_client(make_client, server.url, retry=Sleeper().policy()))
    assert "larger than 1048576 bytes" in info.value.message
    server.default = Reply(200, b'{"x": "' + b"x" * (100 * 1024) + b'"}', REST_JSON)
    with raises(27) as small:
        get(rest_client(make_client, server.url, retry=None))
    assert f"larger than {rest.MAX_ANSWER_BYTES} bytes" in small.value.message
    assert server.posts == 2


def test_rest_case_30_503_retry_after_is_honoured(server: ScriptedServer,
                                                  make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 30 over REST: 503 with Retry-After: 2 is retried after 2 s each time, then a retryable TransportError."""
    server.default = Reply(503, b"", (("Retry-After", "2"),))
    sleeper = Sleeper()
    with raises(30) as info:
        get(rest_client(make_client, server.url, retry=sleeper.policy()))
    assert (info.value.status, info.value.retryable, info.value.retry_after) == (503, True, 2.0)
    assert sleeper.waits == [2.0, 2.0] and server.posts == 3


def test_rest_case_31_retry_after_beyond_the_cap_fails_at_once(
    server: ScriptedServer, make_client: Callable[..., SystemUserClient]
) -> None:
    """HOSTILE 31 over REST: 429 with Retry-After: 100000 is one request, no sleep, a TransportError."""
    server.default = Reply(429, b'{"title": "Too Many Requests"}', (("Retry-After", "100000"),
                                                                    ("Content-Type", "application/problem+json")))
    sleeper = Sleeper()
    with raises(31) as info:
        get(rest_client(make_client, server.url, retry=sleeper.policy()))
    assert info.value.status == 429 and (info.value.retry_after or 0) > 30
    assert sleeper.waits == [] and server.posts == 1


@pytest.mark.parametrize("status", [502, 504])
def test_rest_case_32_gateway_html_is_retried(status: int, server: ScriptedServer,
                                              make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 32 over REST: 502/504 nginx HTML is retried, then a TransportError with a short, tag-free excerpt."""
    server.default = Reply(status, NGINX.format(status=status).encode(), (("Content-Type", "text/html"),))
    sleeper = Sleeper()
    with raises(32) as info:
        get(rest_client(make_client, server.url, retry=sleeper.policy()))
    error = info.value
    assert error.status == status and error.retryable is True and server.posts == 3
    assert error.excerpt and len(error.excerpt) <= 256 and "<" not in error.excerpt


@pytest.mark.parametrize(("status", "body"), [(401, '{"title": "Unauthorized"}'), (403, "Forbidden")])
def test_rest_case_33_unauthorised_is_not_retried(status: int, body: str, server: ScriptedServer,
                                                  make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 33 over REST: 401/403 (JSON or text) is a non-retryable TransportError, 0 retries."""
    server.default = Reply(status, body.encode(), REST_JSON)
    sleeper = Sleeper()
    with raises(33) as info:
        get(rest_client(make_client, server.url, retry=sleeper.policy()))
    assert info.value.status == status and info.value.retryable is False
    assert server.posts == 1 and sleeper.waits == []


def test_rest_case_36_500_with_a_json_answer_is_final_and_scrubbed(
    server: ScriptedServer, make_client: Callable[..., SystemUserClient]
) -> None:
    """HOSTILE 36 over REST: HTTP 500 with JSON (even an AuthenticationResponse) is a TransportError(500), scrubbed."""
    body = json.dumps({"IsSuccessful": False, "ErrorMessage": f"{CLIENT_SECRET} " + "d" * 5000 + "END-OF-BODY"})
    server.default = Reply(500, body.encode(), REST_JSON)
    with raises(36) as info:
        get(rest_client(make_client, server.url, retry=Sleeper().policy()))
    error = info.value
    assert error.status == 500 and error.retryable is False and server.posts == 1
    assert "END-OF-BODY" not in str(error) and len(error.excerpt or "") <= 256


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body><h1>Welcome</h1></body></html>", "text/html"),
        (envelope(response("<IsSuccessful>true</IsSuccessful><Token>a.b.c</Token>")), "text/xml; charset=utf-8"),
        (b'{"IsSuccessful": true, "Token": "a.b.c"}', "text/xml"),
        (bytes(range(256)), "application/octet-stream"),
        (b"", "application/json"),
        (b"[]", "application/json"),
    ],
    ids=["html", "soap", "json-as-xml", "binary", "empty", "array"],
)
def test_rest_case_37_200_that_is_not_a_json_answer(
    body: bytes, content_type: str, server: ScriptedServer, make_client: Callable[..., SystemUserClient]
) -> None:
    """HOSTILE 37 over REST: HTTP 200 with HTML, SOAP, mislabelled JSON, binary, nothing or an array is a ProtocolError."""
    server.default = Reply(200, body, (("Content-Type", content_type),))
    with raises(37) as info:
        get(rest_client(make_client, server.url, retry=Sleeper().policy()))
    assert info.value.status == 200 and server.posts == 1


def test_rest_case_38_truncated_json(emu: Emulator, make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 38 over REST: truncated JSON is a ProtocolError (parsed directly and from the emulator's TRUNCATED_BODY)."""
    good = b'{"IsSuccessful": true, "Token": "a.b.c", "ErrorMessage": null}'
    for cut in (len(good) // 2, len(good) - 1, 1):
        with raises(38):
            rest_parse(good[:cut])
    emu.inject(Fault.TRUNCATED_BODY, times=1)
    before = emu.exchange_count
    with raises(38):
        get(rest_client(make_client, emu.rest_endpoint, retry=Sleeper().policy()))
    assert emu.exchange_count == before + 1


@pytest.mark.parametrize(
    "body",
    ['{"IsSuccessful": true, "Token": "a.b.c", "Token": "d.e.f"}',
     '{"IsSuccessful": false, "IsSuccessful": true, "Token": "a.b.c"}',
     '{"IsSuccessful": true, "Token": "a.b.c", "TOKEN": "d.e.f"}'],
    ids=["two-tokens", "two-flags", "case"],
)
def test_rest_case_43_duplicated_members(body: str) -> None:
    """HOSTILE 43 over REST: a member given twice (in any case) is a ProtocolError, never first- or last-wins."""
    with raises(43):
        rest_parse(body)


@pytest.mark.parametrize("flag", ["", '"IsSuccessful": null, ', '"IsSuccessful": "maybe", ', '"IsSuccessful": "true", ',
                                  '"IsSuccessful": 1, ', '"IsSuccessful": 0, '],
                         ids=["missing", "null", "maybe", "string", "one", "zero"])
def test_rest_case_44_is_successful_must_be_a_json_boolean(flag: str) -> None:
    """HOSTILE 44 over REST: IsSuccessful missing, null, a string or a number is a ProtocolError; true/false read."""
    with raises(44):
        rest_parse(f'{{{flag}"Token": "a.b.c"}}')
    assert rest_parse('{"IsSuccessful": false, "Token": "a.b.c"}').is_successful is False


@pytest.mark.parametrize("token", ["", ', "Token": ""', ', "Token": "   "', ', "Token": null', ', "Token": 7',
                                   ', "Token": "' + "a" * (16 * 1024 + 1) + '"'],
                         ids=["missing", "empty", "blank", "null", "number", "over-16KiB"])
def test_rest_case_45_success_without_a_usable_token(token: str) -> None:
    """HOSTILE 45 over REST: IsSuccessful true with the Token missing, empty, null, not a string or over 16 KiB."""
    with raises(45):
        rest_parse(f'{{"IsSuccessful": true{token}}}')


def test_rest_case_46_rejection_is_final_sanitised_and_remembered(
    server: ScriptedServer, emu: Emulator, make_client: Callable[..., SystemUserClient]
) -> None:
    """HOSTILE 46 over REST: IsSuccessful=false is final, ErrorMessage <= 256 and sanitised, remembered for 60 s."""
    emu.inject(Fault.REJECT, message="Invalid signature")
    sleeper = Sleeper()
    client = rest_client(make_client, emu.rest_endpoint, retry=sleeper.policy())
    before = emu.exchange_count
    with raises(46) as info:
        get(client)
    assert info.value.error_message == "Invalid signature" and info.value.retryable is False
    with raises(46) as again:
        get(client)
    assert "remembered" in again.value.message and emu.exchange_count == before + 1 and sleeper.waits == []

    message = "Invalid\u0085 signature\u009f\t\r\n" + "z" * 10_000
    server.default = Reply(200, json.dumps({"IsSuccessful": False, "ErrorMessage": message}).encode(), REST_JSON)
    other = rest_client(make_client, server.url, retry=Sleeper().policy())
    with raises(46) as long:
        get(other)
    text = long.value.error_message
    assert text.startswith("Invalid signature z") and len(text) <= 256 and not re.search(r"[\x00-\x1f\x7f-\x9f]", text)
    with raises(46):
        get(other)
    assert server.posts == 1


def test_rest_case_47_rejection_with_a_token_never_uses_it(server: ScriptedServer,
                                                           make_client: Callable[..., SystemUserClient]) -> None:
    """HOSTILE 47 over REST: IsSuccessful=false with a Token is a rejection; the token is never validated or shown."""
    token = mint(rsa_key(0), now=time.time(), kid=None)
    canary_now().add_jwt(token)
    body = json.dumps({"IsSuccessful": False, "Token": token, "ErrorMessage": f"Denied {token}"})
    server.default = Reply(200, body.encode(), REST_JSON)
    sleeper = Sleeper()
    with raises(47) as info:
        get(rest_client(make_client, server.url, retry=sleeper.policy()))
    assert token not in info.value.error_message and "***" in info.value.error_message
    assert server.posts == 1 and server.gets == 0 and sleeper.waits == []


def test_rest_every_counterpart_has_exactly_one_test() -> None:
    """Each case in REST_COUNTERPARTS has exactly one test_rest_case_NN_* here, and no other case has one."""
    numbers = sorted(int(m.group(1)) for name in globals() if (m := re.fullmatch(r"test_rest_case_(\d+)_\w+", name)))
    assert numbers == sorted(REST_COUNTERPARTS)


# =================================================================================================
# The table itself (figure 15)
# =================================================================================================


def test_every_case_has_exactly_one_test() -> None:
    """Cases 1..84 each have exactly one test_case_NN_* here and an entry in EXPECTED."""
    numbers = sorted(int(m.group(1)) for name in globals() if (m := re.fullmatch(r"test_case_(\d+)_\w+", name)))
    assert numbers == list(range(1, 85))
    assert sorted(EXPECTED) == list(range(1, 85))


def test_figure_15_every_public_error_class_has_a_case() -> None:
    """Figure 15: each public error class is expected by >= 1 case, and no case expects a bare Exception or the base."""
    # TenantNotRunningError belongs to the tenant state API, which HOSTILE.md does not catalogue: its
    # hostile answers are tests/test_tenantstate.py's.
    public = {getattr(sut_soap.errors, name) for name in sut_soap.errors.__all__} - {
        SutSoapError, sut_soap.errors.TenantNotRunningError}
    expected = {cls for cls in EXPECTED.values() if cls is not None}
    assert public <= expected
    for cls in expected:
        assert cls not in (Exception, BaseException, SutSoapError)
        assert issubclass(cls, (SutSoapError, Warning))


def test_figure_12_leeway_is_capped_at_300_seconds() -> None:
    """Figure 12: leeway 300 s is accepted, 301 s is a ConfigurationError."""
    validator(leeway=300)
    with pytest.raises(ConfigurationError):
        validator(leeway=301)

