"""The command line over REST: ``ticket``, ``envelope`` and ``doctor`` with ``--protocol rest`` against the bundled
emulator (or nothing at all for ``envelope``), secrets masked as they are for SOAP."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from jwt_factory import rsa_key
from support import KAT_ASCII, run_cli

from sut_soap.cli.exitcodes import EXIT_TRANSPORT
from sut_soap.keys import load_private_key
from sut_soap.rest import build_request
from sut_soap.testing.emulator import Emulator

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
XML_KEY = KEYS / "test-partner.xml"
PUBLIC_PEM = KEYS / "test-partner-public.pem"
SECRET = 'cli-rest-secret-"q"-51c'
CTX = "Cust12345"
TOKEN = "Acme Sync-clirest8Q"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module: the fixture partner key, the tenant CTX."""
    with Emulator(client_secret=SECRET, partner_public_key=load_private_key(XML_KEY.read_bytes()),
                  signing_key=rsa_key(0)) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


@pytest.fixture
def key_0600(tmp_path: Path) -> Path:
    """The test partner key as a 0600 file."""
    target = tmp_path / "partner.xml"
    shutil.copyfile(XML_KEY, target)
    target.chmod(0o600)
    return target


def no_secrets(*texts: str) -> None:
    """Neither the client secret (raw or JSON-escaped) nor the system user token is in any text."""
    for text in texts:
        for secret in (SECRET, json.dumps(SECRET)[1:-1], TOKEN):
            assert secret not in text


def test_ticket_over_rest_prints_the_ticket(emu: Emulator, key_0600: Path) -> None:
    """ticket --protocol rest exchanges at the REST endpoint and prints the ticket alone."""
    before = emu.exchange_count
    code, out, err = run_cli(
        "ticket", "--protocol", "rest", "--endpoint", emu.rest_endpoint, "--context-identifier", CTX,
        "--system-user-token", TOKEN, "--private-key", str(key_0600), "--client-secret", SECRET,
        "--jwks-url", emu.jwks_url,
    )
    assert code == 0, err
    assert out.startswith("7T:") and out.count("\n") == 1
    assert emu.exchange_count == before + 1 and emu.requests[-1].headers["Content-Type"] == "application/json"
    no_secrets(out, err)


def test_ticket_over_rest_verbose_masks_the_json(emu: Emulator, key_0600: Path, tmp_path: Path) -> None:
    """-v shows the REST request and answer with secret members masked; --jwt-out gets the answer's JWT."""
    jwt_out = tmp_path / "jwt.txt"
    code, out, err = run_cli(
        "ticket", "--protocol", "rest", "--endpoint", emu.rest_endpoint, "--context-identifier", CTX,
        "--system-user-token", TOKEN, "--private-key", str(key_0600), "--client-secret", SECRET,
        "--jwks-url", emu.jwks_url, "-v", "--jwt-out", str(jwt_out),
    )
    assert code == 0, err
    assert '>     "ApplicationToken": "***",' in err and '>     "SignedSystemToken": "***",' in err
    assert '"Token": "***"' in err and "signed the system user token for UTC minute" in err
    jwt = jwt_out.read_text().strip()
    assert jwt.count(".") == 2 and jwt not in err and out.strip() not in err
    no_secrets(err)


def test_envelope_over_rest_prints_the_masked_json(key_0600: Path) -> None:
    """envelope --protocol rest prints the JSON body with secrets masked, the REST URL and headers on stderr."""
    code, out, err = run_cli(
        "envelope", "--protocol", "rest", "--environment", "sod", "--client-secret", SECRET,
        "--context-identifier", CTX, "--system-user-token", TOKEN, "--private-key", str(key_0600),
    )
    assert code == 0, err
    document = json.loads(out)
    assert document == {"SignedSystemToken": "***", "ApplicationToken": "***", "ContextIdentifier": CTX,
                        "ReturnTokenType": "JWT"}
    assert "POST https://sod.superoffice.com/Login/api/PartnerSystemUser/Authenticate HTTP/1.1" in err
    assert "Content-Type: application/json" in err and "Accept: application/json" in err and "SOAPAction" not in err
    no_secrets(out, err)


def test_envelope_over_rest_show_secrets_is_byte_exact() -> None:
    """envelope --protocol rest --show-secrets prints exactly the documented body the client would POST."""
    code, out, _err = run_cli(
        "envelope", "--protocol", "rest", "--environment", "sod", "--client-secret", SECRET,
        "--context-identifier", CTX, "--signed-token", KAT_ASCII, "--show-secrets",
    )
    assert code == 0
    assert out == build_request(signed_token=KAT_ASCII, client_secret=SECRET, context_identifier=CTX)[0].decode()


def test_doctor_over_rest_all_ok(emu: Emulator, key_0600: Path) -> None:
    """doctor --protocol rest checks the REST endpoint with a dummy probe: a 'rest' line instead of 'soap', all OK."""
    before = len(emu.requests)
    code, out, err = run_cli(
        "doctor", "--protocol", "rest", "--endpoint", emu.rest_endpoint, "--private-key", str(key_0600),
        "--public-key", str(PUBLIC_PEM),
    )
    assert code == 0, out + err
    checks = {line[5:17].strip(): line[:5].strip() for line in out.splitlines()}
    assert checks == {"endpoint": "OK", "tls": "SKIP", "rest": "OK", "clock": "OK", "jwks": "OK",
                      "private key": "OK", "key pair": "OK"}
    assert "JSON AuthenticationResponse; the dummy probe was rejected" in out
    probe = json.loads(emu.requests[before].body)
    assert probe["ApplicationToken"] == "sut-soap-doctor-probe" and probe["ReturnTokenType"] == "JWT"


def test_doctor_over_rest_fails_on_the_soap_endpoint(emu: Emulator) -> None:
    """doctor --protocol rest pointed at the SOAP URL fails its 'rest' line (a 415 from WCF) and exits 3."""
    code, out, _err = run_cli("doctor", "--protocol", "rest", "--endpoint", emu.endpoint)
    checks = {line[5:17].strip(): line[:5].strip() for line in out.splitlines()}
    assert checks["rest"] == "FAIL" and "HTTP 415" in out
    assert code == EXIT_TRANSPORT

