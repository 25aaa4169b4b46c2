"""The sut-soap command line: output, exit codes, and no secrets on either stream."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sut_soap.cli import main
from sut_soap.emulator import Emulator, Fault
from sut_soap.keys import load_private_key

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
XML_KEY = KEYS / "test-partner.xml"
SECRET = "cli-canary-secret-77aa"
CTX = "Cust12345"
TOKEN = "Cli Sync-canary5m"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(client_secret=SECRET, partner_public_key=load_private_key(XML_KEY.read_bytes())) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLIENT_SECRET", "PRIVATE_KEY", "SYSTEM_USER_TOKEN", "CONTEXT_IDENTIFIER", "ENVIRONMENT", "ENDPOINT"):
        monkeypatch.delenv(f"SUT_SOAP_{name}", raising=False)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def ticket_args(emu: Emulator, *extra: str) -> list[str]:
    return [
        "ticket", "--endpoint", emu.endpoint, "--context-identifier", CTX,
        "--system-user-token", TOKEN, "--private-key", str(XML_KEY), "--client-secret", SECRET, *extra,
    ]


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
        assert "PRIVATE KEY" not in text and "<Modulus>" not in text


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


def test_ticket_verbose_masks_secrets(emu: Emulator) -> None:
    """-v shows the steps on stderr and still no secret."""
    code, out, err = run(*ticket_args(emu, "-v"))
    assert code == 0
    assert "* endpoint" in err
    assert_no_secrets(out, err)


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
        ["sign", "--system-user-token", "x", "--private-key", "/nonexistent/key.pem"],
        ["sign", "--system-user-token", "x", "--private-key", str(KEYS / "rsa-1024.pem")],
        ["no-such-command"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    """Bad flags, bad endpoints and unusable keys exit 2 with a message, no traceback."""
    code, _, err = run(*argv)
    assert code == 2
    assert "Traceback" not in err
    assert_no_secrets(err)


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


def test_help_mentions_exit_codes_and_env() -> None:
    """--help documents the exit codes and the environment variables."""
    code, out, _ = run("ticket", "--help")
    assert code == 0
    assert "exit codes" in out and "SUT_SOAP_CLIENT_SECRET" in out


@pytest.mark.parametrize("argv", [["--help"], ["sign", "--help"]])
def test_help_does_not_import_zeep(argv: list[str]) -> None:
    """--help starts without importing zeep (or the client)."""
    code = (
        "import sys; from sut_soap.cli import main; "
        f"rc = main({argv!r}); print('zeep' in sys.modules, 'sut_soap.client' in sys.modules, rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False False 0"


def test_python_dash_m() -> None:
    """python -m sut_soap runs the same command line."""
    result = subprocess.run([sys.executable, "-m", "sut_soap", "--help"], check=False, capture_output=True, text=True)
    assert result.returncode == 0
    assert "sut-soap" in result.stdout


def test_demo_runs() -> None:
    """sut-soap demo completes a real exchange against the emulator and shows the ticket."""
    code, out, _ = run("demo")
    assert code == 0
    assert "8. Ticket      7T:" in out
    assert "spn:1234567" in out
    assert "environment=\"sod\"" in out
