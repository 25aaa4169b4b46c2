"""The emulator's tenant side over real HTTP: the state API and its knob, the authenticated tenant API, revoked
tickets, its faults and counters, and reset()."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sut_soap import SystemUserClient
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
SECRET = "canary-emu-api-secret"
CTX = "Cust12345"
OTHER = "Cust67890"
TOKEN = "Acme Sync-canaryEmu"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with two tenants registered before it starts."""
    emu = Emulator(client_secret=SECRET, partner_public_key=PARTNER_KEY)
    emu.add_tenant(CTX, system_user_token=TOKEN)
    emu.add_tenant(OTHER, system_user_token=TOKEN + "2")
    with emu:
        yield emu


@pytest.fixture
def api(emu: Emulator) -> Iterator[Emulator]:
    """The emulator with its tenant side as at start."""
    emu.reset()
    yield emu
    emu.reset()


def ticket_for(emu: Emulator, ctx: str = CTX) -> str:
    """A ticket the emulator minted for ``ctx``."""
    token = TOKEN if ctx == CTX else TOKEN + "2"
    with SystemUserClient(client_secret=SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint) as client:
        return client.authenticate(context_identifier=ctx, system_user_token=token).ticket


def call(emu: Emulator, path: str, *, ticket: str | None, secret: str | None = SECRET, method: str = "GET",
         body: bytes | None = None) -> requests.Response:
    headers = {}
    if ticket is not None:
        headers["Authorization"] = f"SOTicket {ticket}"
    if secret is not None:
        headers["SO-AppToken"] = secret
    return requests.request(method, emu.base_url + path, headers=headers, data=body, timeout=10)


def test_state_api_points_back_at_the_emulator(api: Emulator) -> None:
    """GET /api/state/{ctx}: SuperOffice's six members, JSON, Endpoint and Api on the emulator, ValidUntil in .NET's form."""
    response = requests.get(f"{api.base_url}/api/state/{CTX.lower()}", timeout=10)
    document = response.json()
    assert response.headers["Content-Type"].startswith("application/json")
    assert document["ContextIdentifier"] == CTX and document["State"] == "Running" and document["IsRunning"] is True
    assert document["Api"] == f"{api.base_url}/{CTX}/api" and document["Endpoint"] == f"{api.base_url}/{CTX}"
    assert document["ValidUntil"].endswith("0Z") and len(document["ValidUntil"].split(".")[1]) == 8
    assert api.state_request_count == 1 and api.api_request_count == 0


def test_state_knob_and_its_checks(api: Emulator) -> None:
    """set_tenant_state takes SuperOffice's documented states only; Running again clears the knob."""
    api.set_tenant_state(CTX, "Suspended")
    assert requests.get(f"{api.base_url}/api/state/{CTX}", timeout=10).json()["IsRunning"] is False
    api.set_tenant_state(CTX)
    assert requests.get(f"{api.base_url}/api/state/{CTX}", timeout=10).json()["State"] == "Running"
    with pytest.raises(ValueError, match="unknown tenant state"):
        api.set_tenant_state(CTX, "Backup")


def test_state_api_takes_get_only(api: Emulator) -> None:
    """A POST to the state API is a 405 naming GET."""
    response = requests.post(f"{api.base_url}/api/state/{CTX}", data=b"", timeout=10)
    assert response.status_code == 405 and response.headers["Allow"] == "GET"


def test_current_principal_with_a_valid_ticket(api: Emulator) -> None:
    """A ticket the emulator minted for the tenant, with the client secret: the principal as JSON; the request is recorded."""
    ticket = ticket_for(api)
    response = call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=ticket)
    assert response.status_code == 200 and response.json()["AssociateId"] == 5
    (recorded,) = api.api_requests
    assert recorded.ticket == ticket and recorded.app_token == SECRET and ticket not in repr(recorded)


@pytest.mark.parametrize(("ticket", "secret", "reason"), [
    (None, SECRET, "no Authorization"),
    ("7T:never-minted", SECRET, "not issued for this tenant"),
    ("mint", "wrong-secret", "not the application's client secret"),
    ("mint", None, "not the application's client secret"),
    ("other", SECRET, "not issued for this tenant"),
])
def test_tenant_api_refuses_bad_credentials_with_401(api: Emulator, ticket: str | None, secret: str | None,
                                                     reason: str) -> None:
    """No ticket, a ticket it never minted or minted for another tenant, a wrong or missing SO-AppToken: 401."""
    if ticket == "mint":
        ticket = ticket_for(api)
    elif ticket == "other":
        ticket = ticket_for(api, OTHER)
    response = call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=ticket, secret=secret)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "SOTicket"
    assert reason in response.json()["Message"]


def test_revoked_ticket_gets_401(api: Emulator) -> None:
    """After revoke_ticket the tenant API answers 401 for that ticket only."""
    ticket, fresh = ticket_for(api), ticket_for(api)
    api.revoke_ticket(ticket)
    assert call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=ticket).json()["Message"] == "the ticket was revoked"
    assert call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=fresh).status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_echo_answers_the_body(api: Emulator, method: str) -> None:
    """POST and PUT /{ctx}/api/v1/Echo answer the method and body they received."""
    response = call(api, f"/{CTX}/api/v1/Echo", ticket=ticket_for(api), method=method, body=b"hello")
    assert response.json() == {"Method": method, "Length": 5, "Body": "hello"}


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", f"/{CTX}/api/v1/Echo", 405), ("PUT", f"/{CTX}/api/v1/User/currentPrincipal", 405),
    ("GET", f"/{CTX}/api/v1/Nothing", 404), ("GET", "/Cust00000/api/v1/User/currentPrincipal", 404),
    ("PUT", "/elsewhere", 404), ("POST", "/elsewhere", 404),
    ("GET", "/Login/api/PartnerSystemUser/Authenticate", 405),
])
def test_other_routes(api: Emulator, method: str, path: str, status: int) -> None:
    """Wrong methods get 405, unknown paths and tenants 404; /Login/api/... stays the login service's."""
    assert call(api, path, ticket=ticket_for(api), method=method, body=b"" if method != "GET" else None).status_code == status


def test_tenant_that_is_not_running_answers_503(api: Emulator) -> None:
    """While its state is OfflineMaintenance the tenant API answers 503."""
    ticket = ticket_for(api)
    api.set_tenant_state(CTX, "OfflineMaintenance")
    assert call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=ticket).status_code == 503


def test_api_faults(api: Emulator) -> None:
    """API_UNAUTHORIZED answers 401 whatever the ticket, for ``times`` requests; API_LATENCY needs seconds."""
    ticket = ticket_for(api)
    api.inject(Fault.API_UNAUTHORIZED, tenant=CTX, times=1)
    assert call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=ticket).status_code == 401
    assert call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=ticket).status_code == 200
    with pytest.raises(ValueError, match="needs seconds"):
        api.inject(Fault.API_LATENCY)
    assert api.api_request_count == 2


def test_latency_on_a_stopping_emulator_answers_503() -> None:
    """An API_LATENCY wait cut short by stop() answers 503 rather than hang."""
    import threading

    emu = Emulator(client_secret=SECRET, partner_public_key=PARTNER_KEY)
    emu.add_tenant(CTX, system_user_token=TOKEN)
    with emu:
        emu.inject(Fault.API_LATENCY, seconds=30)
        replies: list[object] = []
        from sut_soap.testing._wcf import Headers

        worker = threading.Thread(target=lambda: replies.append(
            emu._handle_tenant("GET", f"/{CTX}/api/v1/User/currentPrincipal", Headers(()), b"")))
        worker.start()
        for _ in range(500):
            if emu.api_request_count:
                break
            threading.Event().wait(0.01)
    worker.join(5)
    assert [getattr(r, "status", None) for r in replies] == [503]


def test_reset_forgets_tickets_states_and_counters(api: Emulator) -> None:
    """reset(): minted and revoked tickets, states, recorded requests and both counters start over."""
    ticket = ticket_for(api)
    api.set_tenant_state(CTX, "Suspended")
    call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=ticket)
    requests.get(f"{api.base_url}/api/state/{CTX}", timeout=10)
    api.reset()
    assert (api.api_request_count, api.state_request_count, api.api_requests) == (0, 0, [])
    assert json.loads(requests.get(f"{api.base_url}/api/state/{CTX}", timeout=10).content)["State"] == "Running"
    assert call(api, f"/{CTX}/api/v1/User/currentPrincipal", ticket=ticket).status_code == 401
