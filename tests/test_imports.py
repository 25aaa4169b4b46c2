"""What importing the library loads: the light names never pull in the heavy dependencies."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("zeep", "requests", "urllib3", "lxml", "jwt", "cryptography")


@pytest.mark.parametrize(
    "statement",
    [
        "import sut_soap",
        "from sut_soap import TicketCache, CachedTicket, SystemUserTicket",
        "from sut_soap import InMemoryTicketCache, SutSoapError",
        "import sut_soap._contract",
        "from sut_soap import Clock",
    ],
)
def test_light_imports_load_no_heavy_dependency(statement: str) -> None:
    """The package, its cache and ticket names and the protocol constants load none of zeep, requests, urllib3, lxml, PyJWT or cryptography."""
    probe = (
        f"{statement}\n"
        "import sys\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""


def test_heavy_probe_sees_a_heavy_import() -> None:
    """The probe above does notice a heavy dependency when one is loaded (the client loads zeep)."""
    probe = "import sut_soap.client, sys\nprint('zeep' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "True"


def test_protocol_constants_have_one_home() -> None:
    """The claim names and namespaces the tokens, SOAP layer and emulator use are the ones in _contract."""
    from sut_soap import _contract, emulator, soap, tokens

    assert tokens.CLAIM_TICKET is _contract.CLAIM_TICKET
    assert tokens.ISSUER is _contract.ISSUER
    assert soap.SOAP_ACTION is _contract.SOAP_ACTION
    assert emulator.SOAP_ACTION is _contract.SOAP_ACTION
    assert emulator.CLAIM_PREFIX is _contract.CLAIM_PREFIX
    assert _contract.SOAP_ACTION == "http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate"
