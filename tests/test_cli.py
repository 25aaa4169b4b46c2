"""The sut-soap command line: output, exit codes, and no secrets on either stream; doctor against the
emulator and against a scripted server that misbehaves; the masking of printed envelopes."""

from __future__ import annotations

import datetime
import email.utils
import io
import ipaddress
import json
import re
import runpy
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from jwt_factory import jwks_for, mint, public_pem, rsa_key
from support import (
    DrippingServer,
    QuietServer,
    b64_int,
    make_cert,
    rejection,
    serve_in_background,
    soap_envelope,
    soap_fault,
)
from support import run_cli as run

import sut_soap.cli
from sut_soap.cli._common import MASK, _Masker, _print_error
from sut_soap.cli.doctor import _load_partner_public_key
from sut_soap.client import SystemUserClient
from sut_soap.errors import ConfigurationError
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


KEY_SNIPPET = re.search(r"<D>\s*([A-Za-z0-9+/]{40})", XML_KEY.read_text(encoding="utf-8-sig")).group(1)  # type: ignore[union-attr]


PEM_SNIPPET = (KEYS / "test-partner-pkcs8.pem").read_text().splitlines()[5]


COMMANDS = ("sign", "envelope", "ticket", "verify", "inspect", "convert-key", "doctor", "warm")


# An answer that accepts doctor's dummy probe (a real service never would).
ACCEPTED = (
    '<AuthenticationResponse xmlns="http://www.superoffice.com/superid/partnersystemuser/0.1">'
    "<IsSuccessful>true</IsSuccessful><Token>x.y.z</Token><ErrorMessage>InvalidApplicationToken</ErrorMessage>"
    "</AuthenticationResponse>"
)


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module: the fixture partner key, the tenant CTX."""
    with Emulator(
        client_secret=SECRET,
        partner_public_key=load_private_key(XML_KEY.read_bytes()),
        signing_key=rsa_key(0),
    ) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


@pytest.fixture
def key_0600(tmp_path: Path) -> Path:
    """The test partner key as a 0600 file (git checks fixtures out 0644, which warns)."""
    target = tmp_path / "partner.xml"
    shutil.copyfile(XML_KEY, target)
    target.chmod(0o600)
    return target


@pytest.fixture
def public_key_file(tmp_path: Path) -> Path:
    """The federated login public key (rsa_key(0)) as a PEM file."""
    path = tmp_path / "federated-login.pem"
    path.write_bytes(public_pem(rsa_key(0)))
    return path


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


# A scripted server for doctor: each route's reply, and the Date header it sends (now + skew, a given
# text, or none); optionally TLS.

JWKS = json.dumps(jwks_for((rsa_key(0), "doctor-kid"))).encode()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/xml; charset=utf-8"})


@dataclass
class Script:
    get: Reply = field(default_factory=lambda: Reply(body=b"<html/>", headers={"Content-Type": "text/html"}))
    post: Reply = field(default_factory=lambda: Reply(body=rejection("InvalidApplicationToken")))
    jwks: Reply = field(default_factory=lambda: Reply(body=JWKS, headers={"Content-Type": "application/json"}))
    date: str | None = "now"
    skew: float = 0.0
    posts: list[bytes] = field(default_factory=list)


class _Server(QuietServer):
    script: Script


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_header(self, keyword: str, value: str) -> None:
        # BaseHTTPRequestHandler always sends Date; the script decides whether and what.
        if keyword == "Date":
            script = self.server.script
            if script.date is None:
                return
            value = email.utils.formatdate(time.time() + script.skew, usegmt=True) if script.date == "now" else script.date
        super().send_header(keyword, value)

    def _reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def do_GET(self) -> None:
        script = self.server.script
        self._reply(script.jwks if "jwks" in self.path.lower() else script.get)

    def do_POST(self) -> None:
        self.server.script.posts.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self._reply(self.server.script.post)


@contextmanager
def scripted(script: Script, *, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve ``script`` on loopback; yields the endpoint URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.script = script
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    serve_in_background(server)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/Login/Services/PartnerSystemUserService.svc"
    finally:
        server.shutdown()
        server.server_close()


def doctor(script: Script, *extra: str) -> tuple[int, dict[str, str], str]:
    """Run doctor against the scripted server: exit code, {check: line}, and both streams."""
    with scripted(script) as endpoint:
        code, out, err = run("doctor", "--endpoint", endpoint, "--timeout", "5", *extra)
    lines = {line[5:17].strip(): line for line in out.splitlines()}
    return code, lines, out + err


def loopback_tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (its file) and a server context using it."""
    cert, key = make_cert(tmp_path, "loopback", san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def refused_public_key(tmp_path: Path, content: bytes) -> str:
    """doctor's reading of a partner public key file holding ``content`` is refused: the message, path as FILE."""
    path = tmp_path / "partner-public.xml"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError) as caught:
        _load_partner_public_key(str(path))
    assert caught.value.__cause__ is None
    return caught.value.message.replace(repr(str(path)), "FILE")


# --- sign -------------------------------------------------------------------------------------


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


def test_system_user_token_from_stdin_signs_the_same() -> None:
    """--system-user-token - reads the token from stdin (trailing newline dropped): same signature as the flag."""
    common = ("--private-key", str(XML_KEY), "--timestamp", "202601011200")
    code, from_flag, err = run("sign", "--system-user-token", TOKEN, *common)
    assert code == 0, err
    code, from_stdin, err = run("sign", "--system-user-token", "-", *common, stdin=TOKEN + "\n")
    assert code == 0, err
    assert from_stdin == from_flag and from_flag.startswith(TOKEN + ".202601011200.")


@pytest.mark.parametrize(("stdin", "message"), [("A" * (1024 * 1024 + 1), "larger than 1048576 bytes"), ("\n", "empty")])
def test_system_user_token_on_stdin_is_checked(stdin: str, message: str) -> None:
    """A token on stdin over 1 MiB, or empty, is refused (exit 2) without echoing it."""
    code, out, err = run("sign", "--system-user-token", "-", "--private-key", str(XML_KEY), stdin=stdin)
    assert code == 2 and out == ""
    assert f"--system-user-token {'on stdin is ' if 'larger' in message else 'is '}{message}" in err
    assert "AAAA" not in err


def test_key_permission_warning_is_one_plain_line() -> None:
    """A key file open to others warns in one 'sut-soap: warning:' line, not Python's two-line format."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", KeyFilePermissionWarning)
        code, _out, err = run("sign", "--system-user-token", "x", "--private-key", str(XML_KEY))
    assert code == 0
    assert err.startswith("sut-soap: warning: private key file")
    assert err.count("\n") == 1
    assert "chmod 600" in err


# --- envelope ---------------------------------------------------------------------------------


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


def test_envelope_show_secrets_prints_the_raw_envelope() -> None:
    """envelope --show-secrets writes the real envelope to stdout, the one place a user asked for it."""
    code, out, err = run(
        "envelope", "--environment", "sod", "--client-secret", SECRET, "--context-identifier", CTX,
        "--signed-token", "abc.202601011200.c2ln", "--show-secrets",
    )
    assert code == 0, err
    assert f"<tns:ApplicationToken>{SECRET}</tns:ApplicationToken>" in out
    assert "<tns:SignedSystemToken>abc.202601011200.c2ln</tns:SignedSystemToken>" in out
    assert SECRET not in err and "c2ln" not in err
    assert "signed for UTC minute 202601011200" in err


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


def test_envelope_reads_the_system_user_token_from_stdin() -> None:
    """envelope --system-user-token - signs the token read from stdin, never the dash itself."""
    code, out, err = run(
        "envelope", "--environment", "sod", "--client-secret", SECRET, "--context-identifier", CTX,
        "--system-user-token", "-", "--private-key", str(XML_KEY), "--timestamp", "202601011200", "--show-secrets",
        stdin=TOKEN + "\n",
    )
    assert code == 0, err
    assert f">{TOKEN}.202601011200." in out
    assert TOKEN not in err


def test_envelope_rejects_timestamp_with_a_signed_token() -> None:
    """--timestamp with --signed-token is a usage error (exit 2): the token is already signed."""
    code, out, err = run(
        "envelope", "--environment", "sod", "--client-secret", SECRET, "--context-identifier", CTX,
        "--signed-token", "abc.202601011200.c2ln", "--timestamp", "202601011200",
    )
    assert code == 2 and out == ""
    assert "--timestamp applies only when signing here" in err
    assert SECRET not in err and "c2ln" not in err


def test_envelope_masks_xml_escaped_secret() -> None:
    """A client secret with XML special characters is masked in its escaped form too."""
    code, out, err = run(
        "envelope", "--client-secret", "a&b<c>" + SECRET, "--context-identifier", CTX,
        "--signed-token", f"{TOKEN}.202611281330.c2ln",
    )
    assert code == 0
    assert "a&amp;b" not in out and "&lt;c" not in out
    assert_no_secrets(out, err)


# --- ticket -----------------------------------------------------------------------------------


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


def test_ticket_requires_a_target() -> None:
    """ticket without --environment or --endpoint is a usage error naming both and the variable."""
    code, _out, err = run(
        "ticket", "--context-identifier", CTX, "--system-user-token", TOKEN, "--private-key", str(XML_KEY),
        "--client-secret", SECRET,
    )
    assert code == 2
    assert "--environment or --endpoint is required" in err and "SUT_SOAP_ENVIRONMENT" in err
    assert SECRET not in err and TOKEN not in err


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


def test_connection_refused_exit_3() -> None:
    """Nothing listening exits 3."""
    code, _, err = run(
        "ticket", "--endpoint", "http://127.0.0.1:9/x", "--context-identifier", CTX, "--system-user-token", TOKEN,
        "--private-key", str(XML_KEY), "--client-secret", SECRET, "--timeout", "2",
    )
    assert code == 3
    assert "connect" in err


# --- usage errors and the top-level safety net ------------------------------------------------


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


def test_help_survives_a_garbage_columns_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """COLUMNS that is not a number falls back to the terminal or 80 columns; --help still prints."""
    monkeypatch.setenv("COLUMNS", "wide")
    code, out, _err = run("sign", "--help")
    assert code == 0 and "--system-user-token" in out


def test_unexpected_exception_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug surfaces as one line naming the exception type, never its (possibly secret) message."""

    def broken(*_args: object) -> int:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(sut_soap.cli, "_cmd_inspect", broken)
    code, _out, err = run("inspect", "x")
    assert code == 3
    assert err == "sut-soap: unexpected RuntimeError; run with --debug for the traceback\n"


def test_keyboard_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during a command exits 130 quietly, as shells expect."""
    def interrupted(*args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(sut_soap.cli, "_cmd_sign", interrupted)
    code, out, err = run("sign", "--system-user-token", TOKEN, "--private-key", str(XML_KEY))
    assert code == 130 and out == "" and "Traceback" not in err


# --- verify -----------------------------------------------------------------------------------


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


# --- inspect ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(30, "in 30 s"), (-90, "90 s ago"), (3600, "in 60 min"), (3 * 3600, "in 3.0 h"), (-5 * 3600, "5.0 h ago")],
)
def test_inspect_describes_times_relative_to_now(offset: int, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """inspect shows exp relative to now in s, min or h, and in the past as 'ago'."""
    now = 1_800_000_000
    monkeypatch.setattr(time, "time", lambda: float(now))
    token = mint(rsa_key(0), now=now, exp=now + offset, nbf=now - 10_000)
    code, out, err = run("inspect", token)
    assert code == 0, err
    assert "exp (expires)" in out + err
    assert expected in out + err


def test_inspect_skips_times_that_are_not_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """exp as a digit string is read as a number; a boolean or an absurd value is skipped, not a crash."""
    now = 1_800_000_000
    monkeypatch.setattr(time, "time", lambda: float(now))
    token = mint(rsa_key(0), now=now, exp=str(now + 30), nbf=True, iat=10**30)
    code, out, err = run("inspect", token)
    assert code == 0, err
    text = out + err
    assert "exp (expires)" in text and "in 30 s" in text
    assert "nbf (not before)" not in text and "iat (issued)" not in text


def test_inspect_malformed_exit_4() -> None:
    """A token that is not a JWT exits 4 and names the format check."""
    code, _out, err = run("inspect", "-", stdin="abc.def")
    assert code == 4
    assert "'format' check" in err


# --- convert-key ------------------------------------------------------------------------------


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


def test_convert_key_into_a_missing_directory(tmp_path: Path) -> None:
    """convert-key to a path whose directory does not exist is a ConfigurationError (exit 2), not a traceback."""
    target = tmp_path / "no" / "such" / "dir" / "key.pem"
    code, out, err = run("convert-key", str(XML_KEY), "--out", str(target))
    assert code == 2 and out == ""
    assert "sut-soap:" in err and "Traceback" not in err
    assert not target.exists()


# --- doctor against the emulator --------------------------------------------------------------


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


# --- doctor against a scripted server ---------------------------------------------------------


@pytest.mark.parametrize(("skew", "status", "code"), [(-180.0, "WARN", 0), (7200.0, "FAIL", 2)])
def test_doctor_clock_against_date_header(skew: float, status: str, code: int) -> None:
    """The local clock is compared with the server's Date: WARN beyond 1 minute, FAIL (exit 2) beyond 10."""
    with scripted(Script(skew=skew)) as endpoint:
        result, out, err = run("doctor", "--endpoint", endpoint)
    assert result == code, out + err
    checks = lines_by_check(out)
    assert checks["clock"] == status
    assert checks["soap"] == "OK" and checks["jwks"] == "OK"
    assert ("ahead of" if skew < 0 else "behind") in out


def test_doctor_unparsable_date_header_is_a_clock_warning() -> None:
    """A Date header that is not an HTTP date cannot be compared: WARN quoting it."""
    code, lines, _ = doctor(Script(date="yesterday-ish"))
    assert lines["clock"].startswith("WARN") and "'yesterday-ish' is not an HTTP date" in lines["clock"]
    assert code == 0


def test_doctor_missing_date_header_is_a_clock_warning() -> None:
    """Without any Date header the clock cannot be checked: WARN, the rest still runs."""
    code, lines, _ = doctor(Script(date=None))
    assert lines["clock"].startswith("WARN") and "no Date header" in lines["clock"]
    assert lines["jwks"].startswith("OK") and "doctor-kid" in lines["jwks"]
    assert code == 0


def test_doctor_date_without_timezone_is_not_compared() -> None:
    """A Date header with no zone ("-0000" parses naive) is not trusted for skew."""
    code, lines, _ = doctor(Script(date="Sat, 28 Nov 2026 12:00:00 -0000"))
    assert lines["clock"].startswith("WARN") and "not an HTTP date" in lines["clock"]
    assert code == 0


def test_doctor_tls_untrusted_certificate(tmp_path: Path) -> None:
    """An https endpoint with an untrusted certificate fails 'tls' and says why (exit 3)."""
    _cert, context = loopback_tls(tmp_path)
    with scripted(Script(), tls=context) as endpoint:
        code, out, _err = run("doctor", "--endpoint", endpoint, "--timeout", "3")
    assert code == 3
    assert lines_by_check(out)["tls"] == "FAIL"
    assert "certificate" in out


def test_doctor_tls_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An https endpoint whose certificate verifies passes 'tls' and names the TLS version."""
    cert, context = loopback_tls(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with scripted(Script(), tls=context) as endpoint:
        code, out, err = run("doctor", "--endpoint", endpoint, "--timeout", "3")
    assert code == 0, out + err
    assert lines_by_check(out)["tls"] == "OK"
    assert "certificate verified for 127.0.0.1 (TLSv1" in out


def test_doctor_reports_a_redirect_it_will_not_follow() -> None:
    """A 3xx on the endpoint is a WARN naming the Location; the probe's redirect is a SOAP FAIL, exit 3."""
    moved = Reply(status=302, body=b"", headers={"Location": "https://elsewhere.example/x"})
    code, lines, _ = doctor(Script(get=moved, post=moved))
    assert lines["endpoint"].startswith("WARN") and "'https://elsewhere.example/x'" in lines["endpoint"]
    assert "does not follow" in lines["endpoint"]
    assert lines["soap"].startswith("FAIL")
    assert code == 3


def test_doctor_server_error_fails_the_endpoint() -> None:
    """An HTTP 5xx from GET is a FAIL ("failing or unavailable") and exit 3 (remote trouble)."""
    code, lines, _ = doctor(Script(get=Reply(status=503, body=b"down", headers={"Content-Type": "text/plain"})))
    assert lines["endpoint"].startswith("FAIL") and "HTTP 503 (text/plain)" in lines["endpoint"]
    assert "failing or unavailable" in lines["endpoint"]
    assert code == 3


def test_doctor_action_not_supported_means_a_different_service() -> None:
    """A SOAP Fault with ActionNotSupported says the URL is a SOAP service but not this one: FAIL."""
    post = Reply(status=500, body=soap_fault("a:ActionNotSupported", "The message with Action cannot be processed"))
    code, lines, _ = doctor(Script(post=post))
    assert lines["soap"].startswith("FAIL") and "not the PartnerSystemUserService" in lines["soap"]
    assert code == 3


def test_doctor_other_soap_fault_is_a_warning() -> None:
    """Any other SOAP Fault to the probe is a WARN quoting the fault code and string; nothing else fails."""
    post = Reply(status=500, body=soap_fault("s:Server", "Internal error in the partner service"))
    code, lines, _ = doctor(Script(post=post))
    assert lines["soap"].startswith("WARN")
    assert "s:Server" in lines["soap"] and "Internal error in the partner service" in lines["soap"]
    assert code == 0


def test_doctor_not_a_soap_answer_fails() -> None:
    """An HTML page in answer to the probe is a FAIL saying no SOAP answer came back."""
    post = Reply(status=200, body=b"<html><body>login</body></html>", headers={"Content-Type": "text/html"})
    code, lines, _ = doctor(Script(post=post))
    assert lines["soap"].startswith("FAIL") and "no SOAP answer" in lines["soap"]
    assert code == 3


def test_doctor_warns_when_the_dummy_probe_is_accepted() -> None:
    """A service that accepts the dummy credentials is suspicious: WARN, not OK."""
    code, lines, _ = doctor(Script(post=Reply(body=soap_envelope(ACCEPTED))))
    assert lines["soap"].startswith("WARN") and "ACCEPTED a dummy probe" in lines["soap"]
    assert code == 0


def test_doctor_jwks_that_is_not_a_key_fails() -> None:
    """A JWKS URL that answers an HTML page is a FAIL saying the content is no usable key, and exit 3."""
    page = Reply(body=b"<html>sign in</html>", headers={"Content-Type": "text/html"})
    code, lines, _ = doctor(Script(jwks=page))
    assert lines["jwks"].startswith("FAIL") and "not a parseable public key" in lines["jwks"]
    assert code == 3


def test_doctor_pem_key_at_the_jwks_url_is_not_a_key_set() -> None:
    """A PEM public key served where the JWKS belongs loads as a key, but is "not JSON": FAIL, exit 3."""
    pem = Reply(body=public_pem(rsa_key(0)), headers={"Content-Type": "application/x-pem-file"})
    code, lines, _ = doctor(Script(jwks=pem))
    assert lines["jwks"].startswith("FAIL") and "not JSON" in lines["jwks"]
    assert code == 3


def test_doctor_single_jwk_is_not_a_key_set() -> None:
    """A lone JWK where a JWKS belongs loads as a key, but doctor FAILs it: the client needs a 'keys' list."""
    single = json.dumps(jwks_for((rsa_key(0), "solo"))["keys"][0]).encode()
    code, lines, _ = doctor(Script(jwks=Reply(body=single, headers={"Content-Type": "application/json"})))
    assert lines["jwks"].startswith("FAIL") and "a single JWK, not a JWKS" in lines["jwks"]
    assert code == 3


def test_doctor_jwks_http_error_fails() -> None:
    """A JWKS URL answering 404 is a FAIL with the status."""
    code, lines, _ = doctor(Script(jwks=Reply(status=404, body=b"", headers={})))
    assert lines["jwks"].startswith("FAIL") and "HTTP 404" in lines["jwks"]
    assert code == 3


def test_doctor_public_key_alone_is_checked_but_not_compared(tmp_path: Path) -> None:
    """--public-key without --private-key: the key loads (fingerprint shown), the pair check is a SKIP."""
    public = tmp_path / "partner-public.pem"
    public.write_bytes(public_pem(rsa_key(1)))
    code, lines, _ = doctor(Script(), "--public-key", str(public))
    assert lines["key pair"].startswith("SKIP") and "SHA256:" in lines["key pair"]
    assert "give a loadable --private-key" in lines["key pair"]
    assert code == 0


def test_doctor_unloadable_public_key_fails_the_pair(tmp_path: Path) -> None:
    """A --public-key file that is not a key is a FAIL on the pair check (exit 2: local trouble)."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key at all\n")
    code, lines, _ = doctor(Script(), "--public-key", str(junk))
    assert lines["key pair"].startswith("FAIL")
    assert code == 2


def test_doctor_unloadable_private_key_fails(tmp_path: Path) -> None:
    """A --private-key that does not load is a FAIL on that line, never an exception, and never echoes the file."""
    broken = tmp_path / "partner.xml"
    broken.write_text("<RSAKeyValue><Modulus>AQAB</Modulus></RSAKeyValue>")
    broken.chmod(0o600)
    code, lines, text = doctor(Script(), "--private-key", str(broken))
    assert lines["private key"].startswith("FAIL")
    assert code == 2
    assert "<Modulus>" not in text


# --- doctor's reading of the partner public key -----------------------------------------------


def test_missing_public_key_file_is_refused_with_the_os_reason(tmp_path: Path) -> None:
    """A public key path that does not exist is refused with the OS reason."""
    path = tmp_path / "nope.xml"
    with pytest.raises(ConfigurationError) as caught:
        _load_partner_public_key(str(path))
    assert caught.value.message == f"cannot read the public key file {str(path)!r}: No such file or directory"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><RSAKeyValue>&x;</RSAKeyValue>',
         "the public key file FILE carries a DTD or declaration; refused"),
        (b"<RSAKeyValue><Modulus>", "the public key file FILE is not well-formed XML"),
        (f"<RSAKeyValue><Modulus>{b64_int(3233)}</Modulus><Exponent>AQAB</Exponent><D>AQAB</D></RSAKeyValue>".encode(),
         "the public key file FILE holds a private key"),
        (b"<RSAKeyValue><Modulus>not base64!</Modulus><Exponent>AQAB</Exponent></RSAKeyValue>",
         "the public key file FILE: <Modulus> is not Base64"),
        (b"<RSAKeyValue><Exponent>AQAB</Exponent></RSAKeyValue>",
         "the public key file FILE is XML without <Modulus> and <Exponent>"),
        (f"<RSAKeyValue><Modulus>{b64_int(3233)}</Modulus><Exponent>{b64_int(2)}</Exponent></RSAKeyValue>".encode(),
         "the public key file FILE does not hold a valid RSA public key"),
    ],
    ids=["dtd", "not-well-formed", "private-member", "not-base64", "no-modulus", "even-exponent"],
)
def test_unusable_dotnet_public_key_is_refused_with_the_reason(tmp_path: Path, content: bytes, expected: str) -> None:
    """A .NET XML public key with a DTD, broken XML, private members, bad Base64 or impossible numbers is refused."""
    assert refused_public_key(tmp_path, content) == expected


def test_processing_instruction_in_dotnet_public_key_is_skipped(tmp_path: Path) -> None:
    """A processing instruction among the <RSAKeyValue> children is ignored and the key loads."""
    numbers = rsa_key(0).public_key().public_numbers()
    path = tmp_path / "partner-public.xml"
    path.write_text(
        f"<RSAKeyValue><?exported by=portal?><Modulus>{b64_int(numbers.n)}</Modulus>"
        f"<Exponent>{b64_int(numbers.e)}</Exponent></RSAKeyValue>"
    )
    assert _load_partner_public_key(str(path)).public_numbers() == numbers


# --- envelopes printed masked -----------------------------------------------------------------


def test_secret_in_cdata_or_child_elements_is_masked_by_the_parsed_pass() -> None:
    """A secret element whose value hides in CDATA or in child elements is blanked, other elements kept."""
    data = (
        b'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<s:Header><ApplicationToken><![CDATA[SecretCanary]]></ApplicationToken></s:Header>"
        b"<s:Body><Token><part>JwtCanary</part></Token><ContextIdentifier>Cust12345</ContextIdentifier></s:Body>"
        b"</s:Envelope>"
    )
    shown = _Masker().envelope(data)
    assert "SecretCanary" not in shown
    assert "JwtCanary" not in shown
    assert f"<ApplicationToken>{MASK}</ApplicationToken>" in shown
    assert f"<Token>{MASK}</Token>" in shown
    assert "<ContextIdentifier>Cust12345</ContextIdentifier>" in shown
    assert shown.startswith("<?xml version='1.0' encoding='utf-8'?>\n")


def test_envelope_without_hidden_secrets_is_shown_unchanged() -> None:
    """An envelope whose secret elements are empty is printed exactly as it came (no re-serialisation)."""
    text = '<E xmlns="urn:x">\n  <Token/>\n  <Other a="1">keep</Other>\n</E>'
    assert _Masker().envelope(text.encode()) == text


def test_masker_ignores_blank_values() -> None:
    """Blank or missing values are never registered as secrets (masking them would blank every space)."""
    masker = _Masker()
    masker.add(None, "", "   ", "SecretValue")
    assert masker.text("x   y SecretValue") == f"x   y {MASK}"


# --- emulator, replay, demo, help, start-up ---------------------------------------------------


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


# --- a new user's first hour: hints, --debug, values with whitespace, files written ------------


REJECTION_HINTS = [
    ("InvalidApplicationToken", "--client-secret"),
    ("UnknownTenant", "--context-identifier"),
    ("InvalidTimestamp", "clock"),
    ("InvalidSystemToken", "--system-user-token"),
    ("InvalidSignature", "--private-key"),
    ("UnsupportedTokenType", "Jwt"),
    ("Revoked", "revoked"),
    ("Denied", "denied"),
    ("NeedsReapproval", "approve the application again"),
    ("Expired", "expired"),
]


@pytest.mark.parametrize(("reason", "expected"), REJECTION_HINTS)
def test_each_rejection_reason_gets_its_own_hint(emu: Emulator, reason: str, expected: str) -> None:
    """Every documented rejection reason is answered with the hint for that reason."""
    emu.inject(Fault.REJECT, message=f"{reason}: explained", times=1)
    code, _out, err = run(*ticket_args(emu))
    assert code == 1
    hint = err.split("  check: ", 1)[1]
    assert expected in hint
    others = {e for r, e in REJECTION_HINTS if r != reason and e.startswith("--")}
    assert not any(flag in hint for flag in others if flag != expected)


def test_wrong_system_user_token_gets_the_system_user_token_hint(emu: Emulator) -> None:
    """A system user token the tenant does not have (InvalidSystemToken) points at --system-user-token, not the secret."""
    args = ticket_args(emu)
    args[args.index(TOKEN)] = "Cli Sync-wrong-token"
    code, _out, err = run(*args)
    assert code == 1
    assert "InvalidSystemToken" in err
    hint = err.split("  check: ", 1)[1]
    assert "--system-user-token" in hint and "client secret" not in hint


def test_debug_keeps_the_documented_exit_code(emu: Emulator) -> None:
    """--debug shows the traceback and still exits with the documented code (1 for a rejection)."""
    emu.inject(Fault.REJECT, times=1)
    code, _out, err = run("--debug", *ticket_args(emu))
    assert code == 1
    assert "Traceback" in err and "AuthenticationRejectedError" in err
    assert_no_secrets(err)


def test_debug_after_the_command_name(emu: Emulator) -> None:
    """--debug may follow the command name, as in `sut-soap ticket ... --debug`."""
    emu.inject(Fault.SERVICE_UNAVAILABLE_HTML, times=1)
    code, _out, err = run(*ticket_args(emu), "--debug")
    assert code == 3
    assert "Traceback" in err


def test_debug_masks_known_secrets_in_an_unexpected_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception under --debug prints its traceback with known secrets masked, and exits 3."""
    def broken(args: Any, *_rest: object) -> int:
        args.masker.add(SECRET)
        raise RuntimeError(f"boom {SECRET}")

    monkeypatch.setattr(sut_soap.cli, "_cmd_sign", broken)
    code, _out, err = run("sign", "--debug", "--system-user-token", TOKEN, "--private-key", str(XML_KEY))
    assert code == 3
    assert "RuntimeError: boom ***" in err
    assert SECRET not in err


def test_password_env_never_echoes_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password typed into --password-env by mistake (no such variable) is never echoed."""
    monkeypatch.delenv("Hunter2Password", raising=False)
    code, out, err = run(
        "sign", "--system-user-token", TOKEN, "--private-key", str(KEYS / "test-partner-encrypted.pem"),
        "--password-env", "Hunter2Password",
    )
    assert code == 2
    assert "--password-env" in err
    assert "Hunter2Password" not in out + err


@pytest.mark.parametrize("value", [SECRET + "\n", " " + SECRET, SECRET + "\r\n"], ids=["newline", "space", "crlf"])
def test_secret_with_surrounding_whitespace_is_refused_naming_the_variable(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A client secret with surrounding whitespace (a pasted line) is refused before sending, naming its variable."""
    monkeypatch.setenv("SUT_SOAP_CLIENT_SECRET", value)
    args = ticket_args(emu)
    del args[args.index("--client-secret") : args.index("--client-secret") + 2]
    before = emu.exchange_count
    code, _out, err = run(*args)
    assert code == 2
    assert "SUT_SOAP_CLIENT_SECRET" in err and "whitespace" in err
    assert emu.exchange_count == before
    assert_no_secrets(err)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--context-identifier", CTX + " "), ("--system-user-token", TOKEN + "\n"), ("--system-user-token", "\t" + TOKEN)],
)
def test_tenant_and_token_with_surrounding_whitespace_are_refused(emu: Emulator, flag: str, value: str) -> None:
    """A tenant or system user token with leading or trailing whitespace is refused (exit 2), naming the flag."""
    args = ticket_args(emu)
    args[args.index(flag) + 1] = value
    code, _out, err = run(*args)
    assert code == 2
    assert flag in err and "whitespace" in err
    assert_no_secrets(err)


def test_ticket_transport_error_names_the_host_and_why() -> None:
    """A ticket that cannot connect says which host failed and why, once, without the URL prefix of old."""
    code, _, err = run(
        "ticket", "--endpoint", "http://127.0.0.1:9/x", "--context-identifier", CTX, "--system-user-token", TOKEN,
        "--private-key", str(XML_KEY), "--client-secret", SECRET, "--timeout", "2",
    )
    assert code == 3
    assert err.startswith("sut-soap: cannot connect to 127.0.0.1 (connection refused)\n")
    assert "may have reached the server" not in err
    assert "POST " not in err


def test_ticket_jwks_failure_names_the_jwks_url(emu: Emulator) -> None:
    """A JWKS that cannot be fetched is named by its URL in ticket's error, with the HTTP status."""
    emu.inject(Fault.JWKS_UNAVAILABLE)
    code, _, err = run(*ticket_args(emu))
    assert code == 3
    assert "the JWKS endpoint answered HTTP 503" in err and emu.jwks_url in err


def dripping_ticket_args(server: DrippingServer, *extra: str) -> list[str]:
    return [
        "ticket", "--endpoint", server.url, "--context-identifier", CTX, "--system-user-token", TOKEN,
        "--private-key", str(XML_KEY), "--client-secret", SECRET, *extra,
    ]


def test_ticket_deadline_cuts_a_server_dripping_its_headers() -> None:
    """ticket --deadline 1 against headers dripped a byte per 0.1 s exits 3 within 1.5 s, naming host and deadline."""
    with DrippingServer("headers") as server:
        started = time.monotonic()
        code, out, err = run(*dripping_ticket_args(server, "--deadline", "1", "--timeout", "1"))
        elapsed = time.monotonic() - started
    assert code == 3
    assert elapsed < 1.5, elapsed
    assert "no complete answer from 127.0.0.1 within the" in err and "deadline" in err
    assert "waiting for the response headers from 127.0.0.1; the request may have reached the server" in err
    assert "--deadline" in err and "deadline=" not in err
    assert out == ""
    assert_no_secrets(out, err)


@pytest.mark.parametrize("command", ["ticket", "doctor"])
@pytest.mark.parametrize("value", ["0", "-1", "3600.5", "nan", "inf"])
def test_deadline_out_of_range_is_a_usage_error(command: str, value: str) -> None:
    """--deadline not above 0 and at most 3600 exits 2 naming --deadline, before anything is sent."""
    with DrippingServer("close") as server:
        argv = dripping_ticket_args(server) if command == "ticket" else ["doctor", "--endpoint", server.url]
        code, out, err = run(*argv, "--deadline", value)
        assert server.requests == 0
    assert code == 2
    assert err.startswith("sut-soap: --deadline must be above 0 and at most 3600 seconds\n")
    assert_no_secrets(out, err)


def test_deadline_that_is_not_a_number_is_a_usage_error() -> None:
    """A --deadline that is not a number is argparse's two-line usage error naming --deadline (exit 2)."""
    code, _out, err = run("ticket", "--deadline", "soon")
    assert code == 2
    assert err.startswith("sut-soap ticket: argument --deadline: invalid float value")


def test_ticket_deadline_of_3600_is_accepted(emu: Emulator) -> None:
    """--deadline 3600, the largest allowed, gets a ticket as the default does."""
    code, out, err = run(*ticket_args(emu, "--deadline", "3600"))
    assert code == 0, err
    assert out.startswith("7T:") and out.count("\n") == 1


def test_doctor_deadline_bounds_each_probe() -> None:
    """doctor --deadline 1 against a dripping server cuts the endpoint GET and the JWKS GET at 1 s each (exit 3)."""
    with DrippingServer("headers") as server:
        started = time.monotonic()
        code, out, err = run("doctor", "--endpoint", server.url, "--deadline", "1", "--timeout", "1")
        elapsed = time.monotonic() - started
    assert code == 3
    assert elapsed < 3.0, elapsed
    lines = {line[5:17].strip(): line for line in out.splitlines()}
    assert lines["endpoint"].startswith("FAIL") and lines["jwks"].startswith("FAIL")
    for name in ("endpoint", "jwks"):
        assert "no complete answer from 127.0.0.1 within the deadline (1 s for this request)" in lines[name]
    assert lines["soap"].startswith("SKIP")
    assert_no_secrets(out, err)


def test_doctor_tls_handshake_cut_at_the_deadline_is_not_blamed_on_the_ca_bundle() -> None:
    """A TLS handshake the server never answers FAILs 'tls' at --deadline, without the CA bundle advice."""
    with DrippingServer("silent") as server:
        endpoint = server.url.replace("http://", "https://")
        code, out, _err = run("doctor", "--endpoint", endpoint, "--deadline", "1", "--timeout", "1")
    assert code == 3
    tls = next(line for line in out.splitlines() if line[5:17].strip() == "tls")
    assert tls.startswith("FAIL") and "TLS handshake with 127.0.0.1" in tls
    assert "REQUESTS_CA_BUNDLE" not in tls


def _existing_recording(emu: Emulator, tmp_path: Path) -> list[str]:
    directory = tmp_path / "rec"
    assert run(*ticket_args(emu, "--record", str(directory)))[0] == 0
    return ticket_args(emu, "--record", str(directory))


@pytest.mark.parametrize(
    ("case", "flag", "python_name"),
    [
        ("record", "--record", "overwrite="),
        ("environment", "--endpoint", "endpoint="),
        ("serial", "--expected-serial", "expected_serial"),
        ("remote", "--allow-remote", "allow_remote="),
    ],
)
def test_cli_hints_name_flags_not_python_parameters(
    emu: Emulator, tmp_path: Path, public_key_file: Path, case: str, flag: str, python_name: str
) -> None:
    """Hints printed by the command line name its flags, never the library's Python parameters."""
    argv = {
        "record": lambda: _existing_recording(emu, tmp_path),
        "environment": lambda: [*ticket_args(emu)[:1], "--environment", "nowhere", *ticket_args(emu)[3:]],
        "serial": lambda: ["verify", minted(), "--public-key", str(public_key_file), "--context-identifier", CTX,
                           "--expected-serial", "7654321"],
        "remote": lambda: ["emulator", "--host", "192.0.2.1", "--port", "0"],
    }[case]()
    code, out, err = run(*argv)
    assert code != 0
    assert flag in out + err
    assert python_name not in out + err


def test_ticket_jwt_out_writes_the_jwt_mode_0600(emu: Emulator, tmp_path: Path) -> None:
    """ticket --jwt-out FILE writes the JWT alone, mode 0600, ready for `verify`/`inspect`."""
    target = tmp_path / "jwt.txt"
    code, out, err = run(*ticket_args(emu, "--jwt-out", str(target)))
    assert code == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    jwt_text = target.read_text()
    assert jwt_text.count(".") == 2 and jwt_text.startswith("eyJ")
    assert str(target) in err and jwt_text.strip() not in out + err
    code, _out, _err = run("verify", "-", "--jwks-url", emu.jwks_url, "--context-identifier", CTX, stdin=jwt_text)
    assert code == 0


def test_ticket_jwt_out_keeps_a_jwt_that_failed_validation(emu: Emulator, tmp_path: Path) -> None:
    """A JWT that fails validation is still written by --jwt-out, so `verify`/`inspect` can show why."""
    emu.inject(Fault.EXPIRED_TOKEN, times=1)
    target = tmp_path / "jwt.txt"
    code, _out, _err = run(*ticket_args(emu, "--jwt-out", str(target)))
    assert code == 4
    code, _out, err = run("verify", "-", "--jwks-url", emu.jwks_url, "--context-identifier", CTX,
                          stdin=target.read_text())
    assert code == 4 and "'expiry'" in err


def test_ticket_jwt_out_is_never_half_written(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails midway leaves the previous file whole and no temporary file behind."""
    target = tmp_path / "jwt.txt"
    target.write_text("previous\n")

    def failing_fsync(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sut_soap.cli.tickets.os, "fsync", failing_fsync)
    code, _out, err = run(*ticket_args(emu, "--jwt-out", str(target)))
    assert code == 2
    assert "No space left on device" in err and str(target) in err
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["jwt.txt"]


def test_version() -> None:
    """sut-soap --version prints the package version and exits 0."""
    code, out, _err = run("--version")
    assert code == 0
    assert out.strip() == f"sut-soap {sut_soap.__version__}"


def test_empty_environment_variable_is_reported_as_empty(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty SUT_SOAP_* variable is reported as set but empty, not as missing."""
    monkeypatch.setenv("SUT_SOAP_CLIENT_SECRET", "")
    args = ticket_args(emu)
    del args[args.index("--client-secret") : args.index("--client-secret") + 2]
    code, _out, err = run(*args)
    assert code == 2
    assert "SUT_SOAP_CLIENT_SECRET is set but empty" in err


def test_empty_environment_variable_for_the_target_is_reported_as_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty SUT_SOAP_ENVIRONMENT is named as empty when no endpoint is given."""
    monkeypatch.setenv("SUT_SOAP_ENVIRONMENT", "")
    monkeypatch.delenv("SUT_SOAP_ENDPOINT", raising=False)
    code, _out, err = run(
        "ticket", "--context-identifier", CTX, "--system-user-token", TOKEN, "--private-key", str(XML_KEY),
        "--client-secret", SECRET,
    )
    assert code == 2
    assert "SUT_SOAP_ENVIRONMENT is set but empty" in err


@pytest.mark.parametrize("command", ["sign", "convert-key"])
@pytest.mark.parametrize("name", ["test-partner-public.pem", "certificate.pem"])
def test_no_permission_warning_for_a_public_key_or_certificate(tmp_path: Path, name: str, command: str) -> None:
    """A world-readable public key or certificate given as a private key is refused without a chmod 600 warning."""
    path = tmp_path / name
    if name == "certificate.pem":
        cert, _key = make_cert(tmp_path, "partner", san=x509.DNSName("partner.example"))
        path.write_bytes(Path(cert).read_bytes())
    else:
        path.write_bytes(PUBLIC_PEM.read_bytes())
    path.chmod(0o644)
    with warnings.catch_warnings():
        warnings.simplefilter("always", KeyFilePermissionWarning)
        argv = ["sign", "--system-user-token", TOKEN, "--private-key", str(path)] if command == "sign" else [
            "convert-key", str(path), "--out", str(tmp_path / "out.pem")]
        code, _out, err = run(*argv)
    assert code == 2
    assert "chmod" not in err and "warning:" not in err


def test_ticket_record_says_where_it_wrote(emu: Emulator, tmp_path: Path) -> None:
    """ticket --record names the directory and the files it wrote, and how to replay them."""
    directory = tmp_path / "recording"
    code, _out, err = run(*ticket_args(emu, "--record", str(directory)))
    assert code == 0, err
    assert f"recorded 3 file(s) in {directory}" in err
    assert f"sut-soap replay {directory}" in err


@pytest.mark.parametrize(
    "signed",
    ["not-signed", "Acme Sync.2026112813.c2lnbmF0dXJl", "Acme Sync.202613281330.c2lnbmF0dXJl",
     "Acme Sync.202611281330.not base64!", ".202611281330.c2lnbmF0dXJl", "Acme Sync.202611281330."],
    ids=["no-dots", "short-stamp", "bad-month", "bad-signature", "no-token", "empty-signature"],
)
def test_envelope_refuses_a_malformed_signed_token(signed: str) -> None:
    """envelope --signed-token refuses a value that is not <token>.<yyyyMMddHHmm>.<base64>, without echoing it."""
    code, out, err = run(
        "envelope", "--environment", "sod", "--client-secret", SECRET, "--context-identifier", CTX,
        "--signed-token", signed,
    )
    assert code == 2
    assert "--signed-token" in err and out == ""
    assert signed not in err


def test_rejection_with_an_undocumented_reason_keeps_the_library_hint(emu: Emulator) -> None:
    """A rejection whose ErrorMessage starts with no documented reason keeps the library's general hint."""
    emu.inject(Fault.REJECT, message="Something unforeseen happened", times=1)
    code, _out, err = run(*ticket_args(emu))
    assert code == 1
    assert "  check: the client secret, the tenant (ContextIdentifier)" in err


def test_error_without_a_hint_is_one_line() -> None:
    """An error whose hint is empty is printed as its message alone, without a check line."""
    err = io.StringIO()
    _print_error(ConfigurationError("nothing to check", hint=""), err, _Masker())
    assert err.getvalue() == "sut-soap: nothing to check\n"


def test_ticket_jwt_out_into_a_missing_directory_exits_2(emu: Emulator, tmp_path: Path) -> None:
    """--jwt-out naming a file in a directory that does not exist is a usage error naming the file."""
    target = tmp_path / "missing" / "jwt.txt"
    code, out, err = run(*ticket_args(emu, "--jwt-out", str(target)))
    assert code == 2
    assert f"cannot write --jwt-out {str(target)!r}" in err
    assert out == ""


def test_ticket_jwt_out_that_cannot_be_written_after_a_failure_is_a_warning(emu: Emulator, tmp_path: Path) -> None:
    """When the exchange failed too, an unwritable --jwt-out is a warning and the exchange's exit code stands."""
    emu.inject(Fault.EXPIRED_TOKEN, times=1)
    code, _out, err = run(*ticket_args(emu, "--jwt-out", str(tmp_path / "missing" / "jwt.txt")))
    assert code == 4
    assert "sut-soap: warning: cannot write --jwt-out" in err and "'expiry'" in err


def test_emulator_port_in_use_exits_2_with_the_os_reason() -> None:
    """sut-soap emulator on a port that is taken exits 2 with the operating system's reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        code, _out, err = run("emulator", "--port", str(taken.getsockname()[1]))
    assert code == 2
    assert "sut-soap emulator: [Errno" in err and "in use" in err
