"""The sut-soap command line: output, exit codes, and no secrets on either stream."""

from __future__ import annotations

import datetime
import email.utils
import io
import ipaddress
import json
import re
import runpy
import shutil
import ssl
import stat
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from jwt_factory import jwks_for, mint, public_pem, rsa_key
from support import reset_emulator
from support import run_cli as run

import sut_soap.cli
from sut_soap.cli import main
from sut_soap.client import SystemUserClient
from sut_soap.keys import KeyFilePermissionWarning, load_private_key, private_key_to_rsa_xml
from sut_soap.signing import sign_system_user_token
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.tokens import CLAIM_PREFIX, CLAIM_TICKET

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
XML_KEY = KEYS / "test-partner.xml"
PUBLIC_PEM = KEYS / "test-partner-public.pem"
FINGERPRINT = (
    "SHA256:29:5b:aa:b9:9b:76:f8:5f:b1:61:54:c2:a0:15:d9:c1:4f:a2:76:c8:a5:1c:31:58:0b:97:9a:a4:02:7d:86:41"
)
SECRET = "cli-canary-secret-77aa"
CTX = "Cust12345"
TOKEN = "Cli Sync-canary5m"
TICKET = "7T:CliCanaryTicket-0123456789abcdef"
SYSTEM_TOKEN_CLAIM = CLAIM_PREFIX + "system_token"
# Pieces of the private key as it appears in the XML and PEM fixtures.
KEY_SNIPPET = re.search(r"<D>\s*([A-Za-z0-9+/]{40})", XML_KEY.read_text(encoding="utf-8-sig")).group(1)  # type: ignore[union-attr]
PEM_SNIPPET = (KEYS / "test-partner-pkcs8.pem").read_text().splitlines()[5]
COMMANDS = ("sign", "envelope", "ticket", "verify", "inspect", "convert-key", "doctor")


# ------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(
        client_secret=SECRET,
        partner_public_key=load_private_key(XML_KEY.read_bytes()),
        signing_key=rsa_key(0),
    ) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    yield from reset_emulator(emulator)


@pytest.fixture
def key_0600(tmp_path: Path) -> Path:
    """The test partner key as a 0600 file (git checks fixtures out 0644, which warns)."""
    target = tmp_path / "partner.xml"
    shutil.copyfile(XML_KEY, target)
    target.chmod(0o600)
    return target


def ticket_args(emu: Emulator, *extra: str) -> list[str]:
    return [
        "ticket", "--endpoint", emu.endpoint, "--context-identifier", CTX,
        "--system-user-token", TOKEN, "--private-key", str(XML_KEY), "--client-secret", SECRET, *extra,
    ]


def envelope_args(*extra: str) -> list[str]:
    return [
        "envelope", "--environment", "sod", "--client-secret", SECRET, "--context-identifier", CTX,
        "--system-user-token", TOKEN, "--private-key", str(XML_KEY), *extra,
    ]


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
        assert "PRIVATE KEY-----" not in text and "<Modulus>" not in text
        assert KEY_SNIPPET not in text and PEM_SNIPPET not in text


def lines_by_check(out: str) -> dict[str, str]:
    """doctor's report as {check name: status}."""
    result = {}
    for line in out.splitlines():
        status, name = line[:5].strip(), line[5:17].strip()
        result[name] = status
    return result


def minted(**overrides: Any) -> str:
    return mint(rsa_key(0), ticket=TICKET, system_token=TOKEN, **overrides)


# A minimal local server for doctor: skewed Date header, optional TLS, canned SOAP rejection.

REJECTION = (
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    b'<AuthenticationResponse xmlns="http://www.superoffice.com/superid/partnersystemuser/0.1">'
    b"<IsSuccessful>false</IsSuccessful><Token/><ErrorMessage>InvalidApplicationToken</ErrorMessage>"
    b"</AuthenticationResponse></s:Body></s:Envelope>"
)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    skew = 0.0
    jwks = b""


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StubServer

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.server.skew, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.lower().startswith("/login/.well-known/jwks"):
            self._send(self.server.jwks, "application/json")
        else:
            self._send(b"<html><body>PartnerSystemUserService</body></html>", "text/html")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(REJECTION, "text/xml; charset=utf-8")


@contextmanager
def stub_server(*, skew: float = 0.0, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve the stub on loopback; yields its endpoint URL."""
    server = _StubServer(("127.0.0.1", 0), _StubHandler)
    server.skew = skew
    server.jwks = json.dumps(jwks_for((rsa_key(0), "stub-kid"))).encode()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}/Login/Services/PartnerSystemUserService.svc"
    finally:
        server.shutdown()
        server.server_close()


def loopback_certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (its file) and a server context using it."""
    key = rsa_key(2)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(ski, False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "loopback.crt"
    key_file = tmp_path / "loopback.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


# ------------------------------------------------------------------------------------------
# sign


def test_sign_known_answer() -> None:
    """sign prints the signed token alone, reproducible with --timestamp."""
    code, out, err = run(
        "sign", "--system-user-token", "Acme Sync-8k8Q7DmBgo", "--private-key", str(XML_KEY),
        "--timestamp", "202611281330",
    )
    assert code == 0
    assert out.startswith("Acme Sync-8k8Q7DmBgo.202611281330.E1jErSl6K9kyOKOPTSdfOARTjj98")
    assert out.count("\n") == 1
    assert err == ""


@pytest.mark.parametrize("stamp", ["20261128133", "2026112813300", "202613011330", "abcdefghijkl"])
def test_sign_bad_timestamp(stamp: str) -> None:
    """A malformed --timestamp is a usage error (exit 2)."""
    code, out, err = run("sign", "--system-user-token", "x", "--private-key", str(XML_KEY), "--timestamp", stamp)
    assert code == 2
    assert out == ""
    assert "timestamp" in err


def test_sign_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token and key can come from SUT_SOAP_* variables instead of flags."""
    monkeypatch.setenv("SUT_SOAP_SYSTEM_USER_TOKEN", "Acme Sync-8k8Q7DmBgo")
    monkeypatch.setenv("SUT_SOAP_PRIVATE_KEY", str(XML_KEY))
    code, out, _ = run("sign", "--timestamp", "202611281330")
    assert code == 0
    assert "E1jErSl6K9kyOKOPTSdfOARTjj98" in out


def test_sign_encrypted_key_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """--password-env names the variable that holds an encrypted key's password."""
    monkeypatch.setenv("KEYPASS", "sut-soap-test")
    code, out, _ = run(
        "sign", "--system-user-token", "Acme Sync-8k8Q7DmBgo", "--private-key", str(KEYS / "test-partner-encrypted.pem"),
        "--password-env", "KEYPASS", "--timestamp", "202611281330",
    )
    assert code == 0
    assert "E1jErSl6K9kyOKOPTSdfOARTjj98" in out


def test_key_permission_warning_is_one_plain_line() -> None:
    """A key file open to others warns in one 'sut-soap: warning:' line, not Python's two-line format."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", KeyFilePermissionWarning)
        code, _out, err = run("sign", "--system-user-token", "x", "--private-key", str(XML_KEY))
    assert code == 0
    assert err.startswith("sut-soap: warning: private key file")
    assert err.count("\n") == 1
    assert "chmod 600" in err


# ------------------------------------------------------------------------------------------
# envelope


def test_envelope_masks_secrets_by_default() -> None:
    """envelope prints the envelope with ApplicationToken and SignedSystemToken masked, headers on stderr."""
    code, out, err = run(*envelope_args())
    assert code == 0
    assert "<tns:ApplicationToken>***</tns:ApplicationToken>" in out
    assert "<tns:SignedSystemToken>***</tns:SignedSystemToken>" in out
    assert f"<tns:ContextIdentifier>{CTX}</tns:ContextIdentifier>" in out
    assert 'SOAPAction: "http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate"' in err
    assert "POST https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc" in err
    assert "nothing was sent" in err
    assert_no_secrets(out, err)


def test_envelope_show_secrets_is_byte_exact() -> None:
    """--show-secrets prints exactly the bytes SystemUserClient would POST."""
    stamp = datetime.datetime(2026, 11, 28, 13, 30, tzinfo=datetime.timezone.utc)
    signed = sign_system_user_token(TOKEN, XML_KEY.read_bytes(), at=stamp)
    with SystemUserClient(client_secret=SECRET, private_key=XML_KEY.read_bytes(), environment="sod") as client:
        body, _headers = client.build_envelope(context_identifier=CTX, signed_system_token=signed)
    code, out, _err = run(*envelope_args("--timestamp", "202611281330", "--show-secrets"))
    assert code == 0
    assert out == body.decode("utf-8")


def test_envelope_sends_nothing(emu: Emulator) -> None:
    """envelope never contacts the endpoint it names."""
    before = (emu.exchange_count, emu.connection_count)
    code, _, _ = run(
        "envelope", "--endpoint", emu.endpoint, "--client-secret", SECRET, "--context-identifier", CTX,
        "--system-user-token", TOKEN, "--private-key", str(XML_KEY),
    )
    assert code == 0
    assert (emu.exchange_count, emu.connection_count) == before


def test_envelope_signed_token_from_stdin() -> None:
    """--signed-token - reads an already signed token from stdin and puts it in the envelope unchanged."""
    signed = f"{TOKEN}.202611281330.c2lnbmF0dXJl"
    code, out, err = run(
        "envelope", "--client-secret", SECRET, "--context-identifier", CTX, "--signed-token", "-", "--show-secrets",
        stdin=signed + "\n",
    )
    assert code == 0
    assert f"<tns:SignedSystemToken>{signed}</tns:SignedSystemToken>" in out
    assert "UTC minute 202611281330" in err


def test_envelope_masks_xml_escaped_secret() -> None:
    """A client secret with XML special characters is masked in its escaped form too."""
    code, out, err = run(
        "envelope", "--client-secret", "a&b<c>" + SECRET, "--context-identifier", CTX,
        "--signed-token", f"{TOKEN}.202611281330.c2ln",
    )
    assert code == 0
    assert "a&amp;b" not in out and "&lt;c" not in out
    assert_no_secrets(out, err)


# ------------------------------------------------------------------------------------------
# ticket


def test_ticket_prints_ticket_alone(emu: Emulator) -> None:
    """ticket prints only the ticket on stdout and a summary without secrets on stderr."""
    code, out, err = run(*ticket_args(emu))
    assert code == 0
    assert out.startswith("7T:") and out.count("\n") == 1
    assert CTX in err and "1234567" in err
    assert out.strip() not in err
    assert_no_secrets(out, err)


def test_ticket_json(emu: Emulator) -> None:
    """--json prints one object with the ticket, tenant, serial, URLs, expiry and claims."""
    code, out, _err = run(*ticket_args(emu, "--json"))
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"ticket", "context_identifier", "serial", "webapi_url", "netserver_url", "expires_at", "claims"}
    assert data["ticket"].startswith("7T:")
    assert data["context_identifier"] == CTX
    assert data["serial"] == "1234567"


def test_ticket_json_masks_system_token_claim(emu: Emulator) -> None:
    """--json masks the system_token claim: the system user token is a secret."""
    code, out, _err = run(*ticket_args(emu, "--json"))
    assert code == 0
    assert json.loads(out)["claims"][SYSTEM_TOKEN_CLAIM] == "***"
    assert_no_secrets(out)


def test_ticket_verbose_masks_secrets(emu: Emulator) -> None:
    """-v shows the steps on stderr and still no secret."""
    code, out, err = run(*ticket_args(emu, "-v"))
    assert code == 0
    assert "* endpoint" in err
    assert_no_secrets(out, err)


def test_ticket_verbose_shows_both_envelopes_masked(emu: Emulator) -> None:
    """-v prints the request and response envelopes with secret elements, the JWT and the ticket masked."""
    code, out, err = run(*ticket_args(emu, "-v"))
    assert code == 0
    assert "> <?xml" in err and "<tns:ApplicationToken>***</tns:ApplicationToken>" in err
    assert "<tns:SignedSystemToken>***</tns:SignedSystemToken>" in err
    assert "< <s:Envelope" in err and "<Token>***</Token>" in err
    assert "signed the system user token for UTC minute" in err
    assert "eyJ" not in err
    assert out.strip() not in err
    assert_no_secrets(err)


def test_ticket_verbose_shows_rejection_answer(emu: Emulator) -> None:
    """-v shows the response envelope of a rejection too, and the exit code is 1."""
    emu.inject(Fault.REJECT, message="NeedsReapproval", times=1)
    code, out, err = run(*ticket_args(emu, "-v"))
    assert code == 1
    assert "<IsSuccessful>false</IsSuccessful>" in err
    assert "NeedsReapproval" in err
    assert out == ""
    assert_no_secrets(err)


def test_ticket_verbose_masks_truncated_answer(emu: Emulator) -> None:
    """-v masks the JWT even in an answer cut off mid-envelope, where no parser can help (exit 3)."""
    emu.inject(Fault.TRUNCATED_BODY, times=1)
    code, _out, err = run(*ticket_args(emu, "-v"))
    assert code == 3
    assert "<Token>***" in err
    assert "eyJ" not in err
    assert_no_secrets(err)


def test_ticket_record_then_replay(emu: Emulator, tmp_path: Path) -> None:
    """ticket --record saves the exchange without secrets, and replay runs it offline (exit 0)."""
    pytest.importorskip("sut_soap.testing.recording")
    directory = tmp_path / "recording"
    code, out, err = run(*ticket_args(emu, "--record", str(directory), "-v"))
    assert code == 0, err
    saved = [p.read_text(errors="replace") for p in directory.iterdir()]
    assert saved
    assert_no_secrets(*saved)
    assert out.strip() not in "".join(saved)
    code, _out, err = run("replay", str(directory))
    assert code == 0, err


def test_ticket_from_environment_variables(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every secret can come from the environment, keeping it out of the command line."""
    monkeypatch.setenv("SUT_SOAP_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("SUT_SOAP_SYSTEM_USER_TOKEN", TOKEN)
    monkeypatch.setenv("SUT_SOAP_CONTEXT_IDENTIFIER", CTX)
    monkeypatch.setenv("SUT_SOAP_PRIVATE_KEY", str(XML_KEY))
    monkeypatch.setenv("SUT_SOAP_ENDPOINT", emu.endpoint)
    code, out, err = run("ticket")
    assert code == 0, err
    assert out.startswith("7T:")


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.REJECT, 1),
        (Fault.SOAP_FAULT_500, 1),
        (Fault.SERVICE_UNAVAILABLE_HTML, 3),
        (Fault.TRUNCATED_BODY, 3),
        (Fault.EXPIRED_TOKEN, 4),
        (Fault.WRONG_TENANT_TOKEN, 4),
    ],
)
def test_ticket_exit_codes(emu: Emulator, fault: Fault, expected: int) -> None:
    """Rejections exit 1, transport and protocol failures 3, bad JWTs 4; two plain lines, no traceback."""
    emu.inject(fault, times=1)
    code, out, err = run(*ticket_args(emu))
    assert code == expected
    assert out == ""
    assert err.startswith("sut-soap: ")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    assert_no_secrets(out, err)


def test_ticket_names_the_failed_jwt_check(emu: Emulator) -> None:
    """A JWT that fails validation names the check (here: expiry) on stderr."""
    emu.inject(Fault.EXPIRED_TOKEN, times=1)
    code, _out, err = run(*ticket_args(emu))
    assert code == 4
    assert "the JWT failed the 'expiry' check" in err


def test_ticket_wrong_secret_exit_1(emu: Emulator) -> None:
    """A wrong client secret exits 1 and does not echo the secret given."""
    args = ticket_args(emu)
    args[args.index(SECRET)] = "other-canary-secret"
    code, _out, err = run(*args)
    assert code == 1
    assert "other-canary-secret" not in err
    assert "InvalidApplicationToken" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["ticket"],
        ["ticket", "--environment", "nowhere", "--context-identifier", CTX, "--system-user-token", TOKEN,
         "--private-key", str(XML_KEY), "--client-secret", SECRET],
        ["ticket", "--endpoint", "http://example.com/x", "--context-identifier", CTX, "--system-user-token", TOKEN,
         "--private-key", str(XML_KEY), "--client-secret", SECRET],
        ["ticket", "--endpoint", "http://127.0.0.1:9/x", "--context-identifier", CTX, "--system-user-token", TOKEN,
         "--private-key", str(XML_KEY), "--client-secret", SECRET, "--timeout", "0"],
        ["sign", "--system-user-token", "x", "--private-key", "/nonexistent/key.pem"],
        ["sign", "--system-user-token", "x", "--private-key", str(KEYS / "rsa-1024.pem")],
        ["sign", "--system-user-token", "x", "--private-key", str(XML_KEY), "--password-env", "SUT_SOAP_UNSET_VAR"],
        ["envelope", "--client-secret", SECRET, "--context-identifier", CTX],
        ["envelope", "--client-secret", SECRET, "--context-identifier", CTX, "--signed-token", "x.202611281330.c2ln",
         "--system-user-token", TOKEN],
        ["verify", "x.y.z"],
        ["verify", "x.y.z", "--context-identifier", CTX],
        ["inspect", "-"],
        ["convert-key", "/nonexistent/key.xml"],
        ["convert-key", str(KEYS / "test-partner-public.pem")],
        ["doctor"],
        ["doctor", "--endpoint", "http://example.com/x"],
        ["no-such-command"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    """Bad flags, bad endpoints, unusable keys and missing values exit 2 with a message, no traceback."""
    code, out, err = run(*argv, stdin="")
    assert code == 2
    assert err.strip()
    assert "Traceback" not in err
    assert_no_secrets(out, err)


def test_usage_error_is_two_lines() -> None:
    """A usage error is the problem and where to look, not argparse's whole usage block."""
    code, _out, err = run("ticket", "--timeout")
    assert code == 2
    assert err == "sut-soap ticket: argument --timeout: expected one argument\n  check: sut-soap ticket --help\n"


@pytest.mark.parametrize(
    "argv", [["--client-secrt", SECRET], [f"--api-key={SECRET}"], [f"--c={SECRET}"]], ids=["spaced", "equals", "ambiguous"]
)
def test_usage_error_does_not_echo_values(argv: list[str]) -> None:
    """A misspelt or ambiguous flag is named in the usage error but its value (maybe a secret) is not."""
    code, _out, err = run("ticket", *argv)
    assert code == 2
    assert argv[0].split("=")[0] in err
    assert SECRET not in err


def test_connection_refused_exit_3() -> None:
    """Nothing listening exits 3."""
    code, _, err = run(
        "ticket", "--endpoint", "http://127.0.0.1:9/x", "--context-identifier", CTX, "--system-user-token", TOKEN,
        "--private-key", str(XML_KEY), "--client-secret", SECRET, "--timeout", "2",
    )
    assert code == 3
    assert "connect" in err


def test_debug_shows_traceback(emu: Emulator) -> None:
    """--debug lets the typed error propagate for a traceback."""
    emu.inject(Fault.REJECT, times=1)
    from sut_soap.errors import AuthenticationRejectedError

    with pytest.raises(AuthenticationRejectedError):
        main(["--debug", *ticket_args(emu)], stdout=io.StringIO(), stderr=io.StringIO())


def test_unexpected_exception_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug surfaces as one line naming the exception type, never its (possibly secret) message."""

    def broken(*_args: object) -> int:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(sut_soap.cli, "_cmd_inspect", broken)
    code, _out, err = run("inspect", "x")
    assert code == 3
    assert err == "sut-soap: unexpected RuntimeError; run with --debug for the traceback\n"


# ------------------------------------------------------------------------------------------
# verify


@pytest.fixture
def public_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "federated-login.pem"
    path.write_bytes(public_pem(rsa_key(0)))
    return path


def test_verify_prints_claims_with_ticket_masked(public_key_file: Path) -> None:
    """verify validates and prints header and claims as JSON; the ticket and system_token claims are masked."""
    token = minted()
    code, out, err = run("verify", token, "--public-key", str(public_key_file), "--context-identifier", CTX)
    assert code == 0, err
    data = json.loads(out)
    assert data["verified"] is True
    assert data["header"]["alg"] == "RS256"
    assert data["claims"][CLAIM_PREFIX + "ctx"] == CTX
    assert data["claims"][CLAIM_TICKET] == "***"
    assert data["claims"][SYSTEM_TOKEN_CLAIM] == "***"
    assert TICKET not in out + err and token not in out + err
    assert_no_secrets(out, err)


def test_verify_show_ticket(public_key_file: Path) -> None:
    """--show-ticket prints the ticket claim; the system_token claim stays masked."""
    code, out, _ = run(
        "verify", minted(), "--public-key", str(public_key_file), "--context-identifier", CTX, "--show-ticket"
    )
    assert code == 0
    assert json.loads(out)["claims"][CLAIM_TICKET] == TICKET
    assert TOKEN not in out


def test_verify_reads_token_from_stdin(public_key_file: Path) -> None:
    """TOKEN - reads the JWT from stdin, keeping it out of shell history."""
    code, out, _ = run(
        "verify", "-", "--public-key", str(public_key_file), "--context-identifier", CTX, stdin=minted() + "\n"
    )
    assert code == 0
    assert json.loads(out)["verified"] is True


def test_verify_with_jwks_file(tmp_path: Path) -> None:
    """--jwks-file validates against a saved JWKS document."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_for((rsa_key(0), "test-kid"))))
    code, _out, err = run("verify", minted(), "--jwks-file", str(path), "--context-identifier", CTX)
    assert code == 0, err


def test_verify_with_jwks_url(emu: Emulator) -> None:
    """--jwks-url fetches the key set, as the client does (here the emulator's)."""
    code, _out, err = run(
        "verify", mint(rsa_key(0), kid=emu.kid), "--jwks-url", emu.jwks_url, "--context-identifier", CTX
    )
    assert code == 0, err
    assert emu.jwks_url in err


def test_verify_environment_variable_selects_jwks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a key flag, SUT_SOAP_ENVIRONMENT picks the environment's JWKS (an unknown one is exit 2)."""
    monkeypatch.setenv("SUT_SOAP_ENVIRONMENT", "nowhere")
    code, _out, err = run("verify", minted(), "--context-identifier", CTX)
    assert code == 2
    assert "unknown environment" in err


@pytest.mark.parametrize(
    ("token", "check"),
    [
        (lambda: minted(exp=int(time.time()) - 3600, iat=int(time.time()) - 4000, nbf=None), "expiry"),
        (lambda: minted(ctx="Cust99999"), "context"),
        (lambda: mint(rsa_key(1), ticket=TICKET), "signature"),
        (lambda: minted(headers={"alg": "HS256"}), "algorithm"),
        (lambda: minted(iss="Someone Else"), "issuer"),
        (lambda: minted(aud="spn:999"), "audience"),
        (lambda: "not-a-jwt", "format"),
    ],
)
def test_verify_failure_names_the_check(public_key_file: Path, token: Any, check: str) -> None:
    """A failed validation exits 4 and names the check that failed, without echoing the token."""
    value = token()
    code, out, err = run("verify", value, "--public-key", str(public_key_file), "--context-identifier", CTX)
    assert code == 4
    assert out == ""
    assert f"the JWT failed the {check!r} check" in err
    assert value not in err and TICKET not in err
    assert len(err.strip().splitlines()) <= 2


def test_verify_unreachable_jwks_exit_3() -> None:
    """A JWKS that cannot be fetched is a transport failure (exit 3)."""
    code, _out, err = run(
        "verify", minted(), "--jwks-url", "http://127.0.0.1:9/login/.well-known/jwks", "--context-identifier", CTX
    )
    assert code == 3
    assert "JWKS" in err


# ------------------------------------------------------------------------------------------
# inspect


def test_inspect_is_labelled_unverified() -> None:
    """inspect decodes any well-formed JWT, even one nobody can verify, and labels it UNVERIFIED."""
    token = mint(rsa_key(1), ticket=TICKET, system_token=TOKEN)
    code, out, err = run("inspect", token)
    assert code == 0
    data = json.loads(out)
    assert data["verified"] is False and "UNVERIFIED" in data
    assert err.startswith("UNVERIFIED")
    assert data["header"]["kid"] == "test-kid"
    assert data["claims"][CLAIM_TICKET] == "***" and data["claims"][SYSTEM_TOKEN_CLAIM] == "***"
    assert TICKET not in out + err and token not in out + err
    assert_no_secrets(out, err)


def test_inspect_show_ticket() -> None:
    """inspect --show-ticket prints the ticket claim."""
    code, out, _ = run("inspect", minted(), "--show-ticket")
    assert code == 0
    assert json.loads(out)["claims"][CLAIM_TICKET] == TICKET


def test_inspect_explains_times() -> None:
    """inspect explains exp, nbf and iat on stderr, so an expired JWT or a skewed clock shows at a glance."""
    now = int(time.time())
    code, _out, err = run("inspect", minted(exp=now - 120, iat=now - 420, nbf=now - 420))
    assert code == 0
    assert "exp (expires)" in err and "(2 min ago)" in err
    assert "iat (issued)" in err and "nbf (not before)" in err


def test_inspect_malformed_exit_4() -> None:
    """A token that is not a JWT exits 4 and names the format check."""
    code, _out, err = run("inspect", "-", stdin="abc.def")
    assert code == 4
    assert "'format' check" in err


# ------------------------------------------------------------------------------------------
# convert-key


def test_convert_xml_to_pem_mode_0600(tmp_path: Path) -> None:
    """convert-key writes PKCS#8 PEM with mode 0600 and prints only the public key fingerprint."""
    target = tmp_path / "partner.pem"
    code, out, err = run("convert-key", str(XML_KEY), "--out", str(target))
    assert code == 0
    assert out == FINGERPRINT + "\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    original = load_private_key(XML_KEY.read_bytes()).private_numbers()
    assert load_private_key(target.read_bytes()).private_numbers() == original
    assert_no_secrets(out, err)


def test_convert_pem_to_xml(tmp_path: Path) -> None:
    """--to xml writes the .NET <RSAKeyValue> document .NET's ToXmlString(true) would."""
    target = tmp_path / "partner.xml"
    code, _out, err = run("convert-key", str(KEYS / "test-partner-pkcs1.pem"), "--to", "xml", "--out", str(target))
    assert code == 0
    assert target.read_text() == private_key_to_rsa_xml(load_private_key(XML_KEY.read_bytes()))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert_no_secrets(err)


def test_convert_default_output_next_to_input(key_0600: Path) -> None:
    """Without --out the PEM goes next to the input with the suffix .pem."""
    code, _out, _err = run("convert-key", str(key_0600))
    assert code == 0
    assert key_0600.with_suffix(".pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_convert_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing output file is left alone (exit 2) unless --force, which also makes it 0600."""
    target = tmp_path / "partner.pem"
    target.write_text("keep me")
    target.chmod(0o644)
    code, _out, err = run("convert-key", str(XML_KEY), "--out", str(target))
    assert code == 2
    assert "--force" in err
    assert target.read_text() == "keep me"
    code, _out, _err = run("convert-key", str(XML_KEY), "--out", str(target), "--force")
    assert code == 0
    assert target.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["partner.pem"]


def test_convert_refuses_to_overwrite_its_input(key_0600: Path) -> None:
    """Converting a file onto itself is refused."""
    code, _out, err = run("convert-key", str(key_0600), "--to", "xml")
    assert code == 2
    assert "overwrite the input" in err


# ------------------------------------------------------------------------------------------
# doctor


def test_doctor_all_ok_against_emulator(emu: Emulator, key_0600: Path) -> None:
    """doctor checks endpoint, SOAP, clock, JWKS and the key pair: all OK, TLS skipped on loopback http."""
    code, out, err = run(
        "doctor", "--endpoint", emu.endpoint, "--private-key", str(key_0600), "--public-key", str(PUBLIC_PEM)
    )
    assert code == 0, out + err
    assert lines_by_check(out) == {
        "endpoint": "OK", "tls": "SKIP", "soap": "OK", "clock": "OK", "jwks": "OK", "private key": "OK",
        "key pair": "OK",
    }
    assert "SKIP tls         (http on loopback)" in out
    assert FINGERPRINT in out
    assert "nothing failed" in err


def test_doctor_never_sends_the_client_secret(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor's SOAP probe carries a dummy ApplicationToken, never the client secret or token from the environment."""
    monkeypatch.setenv("SUT_SOAP_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("SUT_SOAP_SYSTEM_USER_TOKEN", TOKEN)
    before = len(emu.requests)
    code, _out, _err = run("doctor", "--endpoint", emu.endpoint)
    assert code == 0
    probes = emu.requests[before:]
    assert len(probes) == 1
    body = probes[0].body
    assert b"<tns:ApplicationToken>sut-soap-doctor-probe</tns:ApplicationToken>" in body
    assert SECRET.encode() not in body and TOKEN.encode() not in body


def test_doctor_key_pair_mismatch_exit_2(emu: Emulator, key_0600: Path, tmp_path: Path) -> None:
    """A public key that is not the private key's half fails 'key pair' and exits 2."""
    other = tmp_path / "other.pem"
    other.write_bytes(public_pem(rsa_key(1)))
    code, out, _err = run("doctor", "--endpoint", emu.endpoint, "--private-key", str(key_0600), "--public-key", str(other))
    assert code == 2
    assert lines_by_check(out)["key pair"] == "FAIL"
    assert "does NOT match" in out


def test_doctor_public_key_as_dotnet_xml(emu: Emulator, key_0600: Path, tmp_path: Path) -> None:
    """The partner public key may be the .NET <RSAKeyValue> with only Modulus and Exponent."""
    full = XML_KEY.read_text(encoding="utf-8-sig")
    public_xml = tmp_path / "public.xml"
    public_xml.write_text(full[: full.index("<P>")] + "</RSAKeyValue>")
    code, out, _err = run(
        "doctor", "--endpoint", emu.endpoint, "--private-key", str(key_0600), "--public-key", str(public_xml)
    )
    assert code == 0, out
    assert lines_by_check(out)["key pair"] == "OK"


def test_doctor_small_key_fails(emu: Emulator) -> None:
    """A private key under 2048 bits fails 'private key' and exits 2."""
    code, out, _err = run("doctor", "--endpoint", emu.endpoint, "--private-key", str(KEYS / "rsa-1024.pem"))
    assert code == 2
    assert lines_by_check(out)["private key"] == "FAIL"
    assert "1024" in out


def test_doctor_key_file_open_to_others_warns(emu: Emulator) -> None:
    """A key file readable by others is a WARN on the 'private key' line (and not a failure)."""
    code, out, _err = run("doctor", "--endpoint", emu.endpoint, "--private-key", str(XML_KEY))
    assert code == 0
    assert lines_by_check(out)["private key"] == "WARN"
    assert "chmod 600" in out


@pytest.mark.parametrize(("skew", "status", "code"), [(-180.0, "WARN", 0), (7200.0, "FAIL", 2)])
def test_doctor_clock_against_date_header(skew: float, status: str, code: int) -> None:
    """The local clock is compared with the server's Date: WARN beyond 1 minute, FAIL (exit 2) beyond 10."""
    with stub_server(skew=skew) as endpoint:
        result, out, err = run("doctor", "--endpoint", endpoint)
    assert result == code, out + err
    checks = lines_by_check(out)
    assert checks["clock"] == status
    assert checks["soap"] == "OK" and checks["jwks"] == "OK"
    assert ("ahead of" if skew < 0 else "behind") in out


def test_doctor_unreachable_exit_3() -> None:
    """Nothing listening: endpoint and JWKS FAIL, the checks that need an answer are skipped, exit 3."""
    code, out, _err = run("doctor", "--endpoint", "http://127.0.0.1:9/Login/Services/PartnerSystemUserService.svc")
    assert code == 3
    checks = lines_by_check(out)
    assert checks["endpoint"] == "FAIL" and checks["jwks"] == "FAIL"
    assert checks["soap"] == "SKIP" and checks["clock"] == "SKIP"
    assert "connection refused" in out


def test_doctor_wrong_path_fails_endpoint_and_soap(emu: Emulator) -> None:
    """A URL with nothing behind it (HTTP 404) fails 'endpoint' and 'soap' with what to check."""
    code, out, _err = run("doctor", "--endpoint", emu.base_url + "/Login/Services/Nothing.svc")
    assert code == 3
    checks = lines_by_check(out)
    assert checks["endpoint"] == "FAIL" and checks["soap"] == "FAIL"
    assert "PartnerSystemUserService.svc" in out


def test_doctor_jwks_unavailable_exit_3(emu: Emulator) -> None:
    """A JWKS answering 503 fails 'jwks' and exits 3."""
    emu.inject(Fault.JWKS_UNAVAILABLE)
    code, out, _err = run("doctor", "--endpoint", emu.endpoint)
    assert code == 3
    assert lines_by_check(out)["jwks"] == "FAIL"
    assert "503" in out


def test_doctor_tls_untrusted_certificate(tmp_path: Path) -> None:
    """An https endpoint with an untrusted certificate fails 'tls' and says why (exit 3)."""
    _cert, context = loopback_certificate(tmp_path)
    with stub_server(tls=context) as endpoint:
        code, out, _err = run("doctor", "--endpoint", endpoint, "--timeout", "3")
    assert code == 3
    assert lines_by_check(out)["tls"] == "FAIL"
    assert "certificate" in out


def test_doctor_tls_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An https endpoint whose certificate verifies passes 'tls' and names the TLS version."""
    cert, context = loopback_certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with stub_server(tls=context) as endpoint:
        code, out, err = run("doctor", "--endpoint", endpoint, "--timeout", "3")
    assert code == 0, out + err
    assert lines_by_check(out)["tls"] == "OK"
    assert "certificate verified for 127.0.0.1 (TLSv1" in out


# ------------------------------------------------------------------------------------------
# emulator, demo, help, start-up


@pytest.mark.parametrize("prefix", [[], ["--debug"]])
def test_emulator_passes_arguments_through(prefix: list[str]) -> None:
    """sut-soap emulator hands its arguments to the emulator's own parser (--help exits 0)."""
    code, out, _err = run(*prefix, "emulator", "--help")
    assert code == 0
    assert "--port" in out and "--tenant" in out


def test_emulator_bad_flag_exit_2() -> None:
    """An unknown emulator flag is a usage error (exit 2)."""
    code, _out, err = run("emulator", "--no-such-flag")
    assert code == 2
    assert "--no-such-flag" in err


def test_replay_passes_arguments_through() -> None:
    """sut-soap replay hands its arguments to the recording module's own parser (--help exits 0)."""
    pytest.importorskip("sut_soap.testing.recording")
    code, out, _err = run("replay", "--help")
    assert code == 0
    assert "DIR" in out


def test_demo_runs() -> None:
    """sut-soap demo completes a real exchange against the emulator and shows the ticket."""
    code, out, _ = run("demo")
    assert code == 0
    assert "8. Ticket      7T:" in out
    assert "9. Cache       get_ticket again: the same ticket, no exchange" in out
    assert "spn:1234567" in out
    assert "environment=\"sod\"" in out


def test_help_lists_every_command() -> None:
    """The top-level --help names every command and documents exit codes and environment variables."""
    code, out, _ = run("--help")
    assert code == 0
    for command in (*COMMANDS, "emulator", "replay", "demo"):
        assert command in out
    assert "exit codes" in out and "SUT_SOAP_CLIENT_SECRET" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_mentions_exit_codes_and_env(command: str) -> None:
    """Each command's --help documents the exit codes and the environment variables."""
    code, out, _ = run(command, "--help")
    assert code == 0
    assert "exit codes" in out and "SUT_SOAP_CLIENT_SECRET" in out


def test_help_never_shows_secret_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values read from SUT_SOAP_* variables never appear in --help."""
    monkeypatch.setenv("SUT_SOAP_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("SUT_SOAP_SYSTEM_USER_TOKEN", TOKEN)
    code, out, _ = run("ticket", "--help")
    assert code == 0
    assert_no_secrets(out)


@pytest.mark.parametrize("argv", [["--help"], ["sign", "--help"]])
def test_help_does_not_import_heavy_modules(argv: list[str]) -> None:
    """--help and sign --help start without zeep, the client, cryptography, requests or lxml."""
    code = (
        "import sys; from sut_soap.cli import main; "
        f"rc = main({argv!r}); "
        "heavy = [m for m in ('zeep', 'sut_soap.client', 'cryptography', 'requests', 'lxml') if m in sys.modules]; "
        "print(heavy, rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[] 0"


def test_python_dash_m() -> None:
    """python -m sut_soap runs the same command line."""
    result = subprocess.run([sys.executable, "-m", "sut_soap", "--help"], check=False, capture_output=True, text=True)
    assert result.returncode == 0
    assert "sut-soap" in result.stdout


def test_python_dash_m_exits_with_the_command_line_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """python -m sut_soap runs cli.main() and exits with its status (0 for --help)."""
    monkeypatch.setattr(sys, "argv", ["sut-soap", "--help"])
    with pytest.raises(SystemExit) as caught:
        # run_path, not run_module: the pytest11 entry point makes pytest's assertion rewriter
        # the loader of sut_soap's modules, and it cannot hand runpy their code.
        runpy.run_path(str(Path(sut_soap.__file__).with_name("__main__.py")), run_name="__main__")
    assert caught.value.code == 0
    assert "sut-soap" in capsys.readouterr().out
