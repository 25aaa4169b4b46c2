"""TLS: certificates are always checked, failures are final and happen before the envelope is sent."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from support import PATH, TlsServer, make_cert

from sut_soap import ConfigurationError, SystemUserClient, TransportError
from sut_soap.keys import load_private_key
from sut_soap.retry import RetryPolicy
from sut_soap.transport import HttpTransport

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-client-secret-t1s"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryT1s"
_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
        "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[Callable[..., TlsServer]]:
    servers: list[TlsServer] = []

    def start(name: str, *, san: x509.GeneralName | None = None, expired: bool = False) -> TlsServer:
        cert, key = make_cert(tmp_path, name, san=san or x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                              expired=expired)
        server = TlsServer(cert, key)
        server.cert = cert  # type: ignore[attr-defined]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


class NoSleep:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1


def client_for(url: str, **kwargs: Any) -> SystemUserClient:
    return SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=url, **kwargs)


# --- handshake failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "trusted", "expired", "san", "reason"),
    [
        ("untrusted", False, False, None, "self-signed certificate"),
        ("hostname", True, False, x509.DNSName("other.example"), "mismatch"),
        ("expired", True, True, None, "expired"),
    ],
)
def test_tls_failure_is_final_and_sends_nothing(
    tls: Callable[..., TlsServer], monkeypatch: pytest.MonkeyPatch,
    case: str, trusted: bool, expired: bool, san: x509.GeneralName | None, reason: str,
) -> None:
    """HOSTILE 20: an untrusted, misnamed or expired certificate is a TransportError, not retried, body never sent."""
    server = tls(case, san=san, expired=expired)
    if trusted:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert))  # type: ignore[attr-defined]
    sleep = NoSleep()
    with client_for(server.url, retry=RetryPolicy(sleep=sleep)) as client, pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert "TLS" in info.value.message and reason in info.value.message.lower()
    assert info.value.retryable is False
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert sleep.calls == 0
    assert server.connections == 1
    assert server.handshakes == 0
    assert server.received == b""
    for text in (str(info.value), repr(info.value)):
        assert CLIENT_SECRET not in text and TOKEN not in text


def test_trusted_certificate_reaches_the_server(tls: Callable[..., TlsServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: with the certificate trusted through REQUESTS_CA_BUNDLE the handshake and the POST happen."""
    server = tls("good")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert))  # type: ignore[attr-defined]
    with client_for(server.url, retry=None) as client, pytest.raises(TransportError) as info:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.status == 503
    assert server.handshakes == 1
    assert b"POST " + PATH.encode() in server.received and b"<tns:ContextIdentifier>" in server.received


# --- CA bundles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_missing_ca_bundle_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    """HOSTILE 14: a CA bundle variable naming a missing file is a ConfigurationError at construction."""
    monkeypatch.setenv(variable, str(tmp_path / "no-such-bundle.pem"))
    with pytest.raises(ConfigurationError, match=variable):
        client_for("https://online.superoffice.com" + PATH)
    with pytest.raises(ConfigurationError, match=variable):
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, environment="online",
                         session=requests.Session())


def test_ca_bundle_is_read_once_when_the_transport_is_built(
    tls: Callable[..., TlsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle named when the client was built is the one trusted, even after the variable changes."""
    server = tls("once")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert))  # type: ignore[attr-defined]
    with client_for(server.url, retry=None) as client:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        with pytest.raises(TransportError) as info:
            client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
    assert info.value.status == 503 and server.handshakes == 1


def test_ca_bundle_without_certificates_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bundle that exists but holds no certificate fails the first https request as a ConfigurationError."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    transport = HttpTransport()
    transport.prepare(["https://online.superoffice.com" + PATH])
    with pytest.raises(ConfigurationError, match="CURL_CA_BUNDLE names a CA bundle with no certificate"):
        transport.request("GET", "https://online.superoffice.com" + PATH)


def test_without_a_bundle_the_system_store_is_trusted(tls: Callable[..., TlsServer]) -> None:
    """With no bundle variable the own pools trust the system store, which does not know a test CA."""
    server = tls("system")
    transport = HttpTransport()
    with pytest.raises(TransportError, match="TLS handshake"):
        transport.request("GET", server.url)
    context = transport._tls
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0 or ssl.get_default_verify_paths().capath


def test_certifi_is_the_fallback_for_an_empty_system_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Where the system store has no CA certificate (no file, an empty directory), certifi's bundle is loaded."""
    import certifi

    from sut_soap.transport import _pools

    empty = tmp_path / "certs"
    empty.mkdir()
    paths = ssl.DefaultVerifyPaths(None, str(empty), "SSL_CERT_FILE", None, "SSL_CERT_DIR", None)  # type: ignore[call-arg,arg-type]
    loaded: list[str | None] = []

    class Empty(ssl.SSLContext):
        def cert_store_stats(self) -> dict[str, int]:
            return {"x509_ca": 0}

        def load_verify_locations(self, cafile: Any = None, capath: Any = None, cadata: Any = None) -> None:
            loaded.append(cafile)

    monkeypatch.setattr(_pools.ssl, "create_default_context", lambda: Empty(ssl.PROTOCOL_TLS_CLIENT))
    monkeypatch.setattr(_pools.ssl, "get_default_verify_paths", lambda: paths)
    _pools.system_trust_context(None)
    assert loaded == [certifi.where()]
    (empty / "ca.pem").write_text("")
    loaded.clear()
    _pools.system_trust_context(None)
    assert loaded == []


def test_missing_ca_bundle_does_not_matter_without_https(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Over plain http to loopback (the emulator) the bundle is never used, so it is not checked."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    client_for("http://127.0.0.1:9" + PATH).close()


def test_session_verify_naming_a_missing_bundle_is_refused(tmp_path: Path) -> None:
    """A caller's session whose verify= names a missing file is refused before any request."""
    session = requests.Session()
    session.verify = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="verify="):
        client_for("https://online.superoffice.com" + PATH, session=session)


def test_session_verify_naming_an_existing_bundle_is_accepted(tmp_path: Path) -> None:
    """A caller's session whose verify= names a bundle that exists is used as it is."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    session = requests.Session()
    session.verify = str(bundle)
    client_for("https://online.superoffice.com" + PATH, session=session).close()
    assert session.verify == str(bundle)


# --- verify=False -------------------------------------------------------------------------------


def test_session_without_verification_is_refused() -> None:
    """HOSTILE 14: a caller's session with verify=False towards SuperOffice is a ConfigurationError."""
    session = requests.Session()
    session.verify = False
    with pytest.raises(ConfigurationError, match="verify=False") as info:
        SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, environment="online", session=session)
    assert "online.superoffice.com" in info.value.message
    assert CLIENT_SECRET not in str(info.value)


def test_insecure_opt_in_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """allow_insecure_tls=True accepts verify=False with a single WARNING naming the host, no secret."""
    session = requests.Session()
    session.verify = False
    caplog.set_level(logging.DEBUG, logger="sut_soap")
    SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, environment="online", session=session,
                     allow_insecure_tls=True).close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "online.superoffice.com" in warnings[0].getMessage()
    assert CLIENT_SECRET not in caplog.text


def test_insecure_jwks_host_is_refused_too() -> None:
    """verify=False is refused when only the JWKS host is remote https: the JWT keys would be unchecked."""
    session = requests.Session()
    session.verify = False
    with pytest.raises(ConfigurationError, match=r"example\.com"):
        client_for("http://127.0.0.1:9" + PATH, session=session, jwks_url="https://example.com/jwks")


def test_verify_false_on_loopback_is_allowed(caplog: pytest.LogCaptureFixture) -> None:
    """A test server on loopback with verify=False needs no opt-in and logs no warning."""
    session = requests.Session()
    session.verify = False
    caplog.set_level(logging.WARNING)
    client_for("https://127.0.0.1:8443" + PATH, session=session).close()
    assert not caplog.records
