"""The command line's diagnostic paths: doctor against misbehaving servers, and usage errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jwt_factory import jwks_for, mint, public_pem, rsa_key
from support import run_cli as run

import sut_soap.cli

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
XML_KEY = KEYS / "test-partner.xml"
SECRET = "cli-edge-canary-secret-31"
TOKEN = "Edge Sync-canary9q"
CTX = "Cust777"
PATH = "/Login/Services/PartnerSystemUserService.svc"
NS = "http://www.superoffice.com/superid/partnersystemuser/0.1"


def envelope(inner: str) -> bytes:
    return (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{inner}'
            "</s:Body></s:Envelope>").encode()


def answer(successful: bool) -> bytes:
    token = "x.y.z" if successful else ""
    return envelope(f'<AuthenticationResponse xmlns="{NS}"><IsSuccessful>{str(successful).lower()}</IsSuccessful>'
                    f"<Token>{token}</Token><ErrorMessage>InvalidApplicationToken</ErrorMessage>"
                    "</AuthenticationResponse>")


def fault(code: str, text: str) -> bytes:
    return envelope(f"<s:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring></s:Fault>")


REJECTED = answer(False)
JWKS = json.dumps(jwks_for((rsa_key(0), "edge-kid"))).encode()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/xml; charset=utf-8"})


@dataclass
class Script:
    get: Reply = field(default_factory=lambda: Reply(body=b"<html/>", headers={"Content-Type": "text/html"}))
    post: Reply = field(default_factory=lambda: Reply(body=REJECTED))
    jwks: Reply = field(default_factory=lambda: Reply(body=JWKS, headers={"Content-Type": "application/json"}))
    date: str | None = "now"
    posts: list[bytes] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: Script


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_header(self, keyword: str, value: str) -> None:
        # BaseHTTPRequestHandler always sends Date; the script decides whether and what.
        if keyword == "Date":
            date = self.server.script.date
            if date is None:
                return
            value = value if date == "now" else date
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
def scripted(script: Script) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.script = script
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PATH}"
    finally:
        server.shutdown()
        server.server_close()


def doctor(script: Script, *extra: str) -> tuple[int, dict[str, str], str]:
    """Run doctor against the scripted server: exit code, {check: line}, and both streams."""
    with scripted(script) as endpoint:
        code, out, err = run("doctor", "--endpoint", endpoint, "--timeout", "5", *extra)
    lines = {line[5:17].strip(): line for line in out.splitlines()}
    return code, lines, out + err


# ------------------------------------------------------------------------------------------
# doctor against servers that are not what they should be

pytestmark = pytest.mark.network


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
    post = Reply(status=500, body=fault("a:ActionNotSupported", "The message with Action cannot be processed"))
    code, lines, _ = doctor(Script(post=post))
    assert lines["soap"].startswith("FAIL") and "not the PartnerSystemUserService" in lines["soap"]
    assert code == 3


def test_doctor_other_soap_fault_is_a_warning() -> None:
    """Any other SOAP Fault to the probe is a WARN quoting the fault code and string; nothing else fails."""
    post = Reply(status=500, body=fault("s:Server", "Internal error in the partner service"))
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
    code, lines, _ = doctor(Script(post=Reply(body=answer(True))))
    assert lines["soap"].startswith("WARN") and "ACCEPTED a dummy probe" in lines["soap"]
    assert code == 0


def test_doctor_unparsable_date_header_is_a_clock_warning() -> None:
    """A Date header that is not an HTTP date cannot be compared: WARN quoting it."""
    code, lines, _ = doctor(Script(date="yesterday-ish"))
    assert lines["clock"].startswith("WARN") and "'yesterday-ish' is not an HTTP date" in lines["clock"]
    assert code == 0


def test_doctor_missing_date_header_is_a_clock_warning() -> None:
    """Without any Date header the clock cannot be checked: WARN, the rest still runs."""
    code, lines, _ = doctor(Script(date=None))
    assert lines["clock"].startswith("WARN") and "no Date header" in lines["clock"]
    assert lines["jwks"].startswith("OK") and "edge-kid" in lines["jwks"]
    assert code == 0


def test_doctor_date_without_timezone_is_not_compared() -> None:
    """A Date header with no zone ("-0000" parses naive) is not trusted for skew."""
    code, lines, _ = doctor(Script(date="Sat, 28 Nov 2026 12:00:00 -0000"))
    assert lines["clock"].startswith("WARN") and "not an HTTP date" in lines["clock"]
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


# ------------------------------------------------------------------------------------------
# usage errors and the top-level safety net


def test_envelope_rejects_timestamp_with_a_signed_token() -> None:
    """--timestamp with --signed-token is a usage error (exit 2): the token is already signed."""
    code, out, err = run(
        "envelope", "--environment", "sod", "--client-secret", SECRET, "--context-identifier", CTX,
        "--signed-token", "abc.202601011200.c2ln", "--timestamp", "202601011200",
    )
    assert code == 2 and out == ""
    assert "--timestamp applies only when signing here" in err
    assert SECRET not in err and "c2ln" not in err


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


def test_system_user_token_from_stdin_signs_the_same() -> None:
    """--system-user-token - reads the token from stdin (trailing newline dropped): same signature as the flag."""
    common = ("--private-key", str(XML_KEY), "--timestamp", "202601011200")
    code, from_flag, err = run("sign", "--system-user-token", TOKEN, *common)
    assert code == 0, err
    code, from_stdin, err = run("sign", "--system-user-token", "-", *common, stdin=TOKEN + "\n")
    assert code == 0, err
    assert from_stdin == from_flag and from_flag.startswith(TOKEN + ".202601011200.")


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


@pytest.mark.parametrize(("stdin", "message"), [("A" * (1024 * 1024 + 1), "larger than 1048576 bytes"), ("\n", "empty")])
def test_system_user_token_on_stdin_is_checked(stdin: str, message: str) -> None:
    """A token on stdin over 1 MiB, or empty, is refused (exit 2) without echoing it."""
    code, out, err = run("sign", "--system-user-token", "-", "--private-key", str(XML_KEY), stdin=stdin)
    assert code == 2 and out == ""
    assert f"--system-user-token {'on stdin is ' if 'larger' in message else 'is '}{message}" in err
    assert "AAAA" not in err


def test_ticket_requires_a_target() -> None:
    """ticket without --environment or --endpoint is a usage error naming both and the variable."""
    code, _out, err = run(
        "ticket", "--context-identifier", CTX, "--system-user-token", TOKEN, "--private-key", str(XML_KEY),
        "--client-secret", SECRET,
    )
    assert code == 2
    assert "--environment or --endpoint is required" in err and "SUT_SOAP_ENVIRONMENT" in err
    assert SECRET not in err and TOKEN not in err


def test_convert_key_into_a_missing_directory(tmp_path: Path) -> None:
    """convert-key to a path whose directory does not exist is a ConfigurationError (exit 2), not a traceback."""
    target = tmp_path / "no" / "such" / "dir" / "key.pem"
    code, out, err = run("convert-key", str(XML_KEY), "--out", str(target))
    assert code == 2 and out == ""
    assert "sut-soap:" in err and "Traceback" not in err
    assert not target.exists()


def test_keyboard_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during a command exits 130 quietly, as shells expect."""
    def interrupted(*args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(sut_soap.cli, "_cmd_sign", interrupted)
    code, out, err = run("sign", "--system-user-token", TOKEN, "--private-key", str(XML_KEY))
    assert code == 130 and out == "" and "Traceback" not in err


def test_unexpected_exception_is_one_line_without_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug surfaces as one line naming the exception type, never its message (which could hold a secret)."""
    def buggy(*args: Any) -> int:
        raise RuntimeError(f"boom {SECRET}")

    monkeypatch.setattr(sut_soap.cli, "_cmd_sign", buggy)
    code, _out, err = run("sign", "--system-user-token", TOKEN, "--private-key", str(XML_KEY))
    assert code != 0
    assert "unexpected RuntimeError" in err and "--debug" in err
    assert SECRET not in err and "Traceback" not in err


def test_debug_lets_the_traceback_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """--debug re-raises unexpected exceptions so the user sees the traceback."""
    def buggy(*args: Any) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(sut_soap.cli, "_cmd_sign", buggy)
    with pytest.raises(RuntimeError, match="boom"):
        run("--debug", "sign", "--system-user-token", TOKEN, "--private-key", str(XML_KEY))


def test_help_survives_a_garbage_columns_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """COLUMNS that is not a number falls back to the terminal or 80 columns; --help still prints."""
    monkeypatch.setenv("COLUMNS", "wide")
    code, out, _err = run("sign", "--help")
    assert code == 0 and "--system-user-token" in out


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
