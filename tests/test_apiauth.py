"""Calling the tenant's API with client.auth(), through requests and httpx, against the emulator's tenant API
over real HTTP on loopback: the headers, a revoked ticket, 50 concurrent 401s, bodies that can and cannot be
replayed, a second 401, other origins and redirects, and secrets in logs, reprs and errors."""

from __future__ import annotations

import io
import logging
import pickle
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from support import HTTP_LIBRARIES, ApiCaller, RecordingServer, error_texts, watch_logs

from sut_soap import (
    AuthenticationRejectedError,
    ConfigurationError,
    SystemUserClient,
    TenantAuth,
    TenantNotRunningError,
)
from sut_soap.apiauth import _decide
from sut_soap.cache import InMemoryTicketCache
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-api-secret-77c1"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryApi42"
PRINCIPAL = "/v1/User/currentPrincipal"
ECHO = "/v1/Echo"

Caller = Callable[..., ApiCaller]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with one tenant registered before it starts (so reset() keeps it)."""
    emu = Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY)
    emu.add_tenant(CTX, system_user_token=TOKEN)
    with emu:
        yield emu


@pytest.fixture
def client(fresh_emu: Emulator) -> Iterator[SystemUserClient]:
    """A client of the emulator (its tenant state and tenant API included), closed at teardown."""
    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=fresh_emu.endpoint) as c:
        yield c


@pytest.fixture
def auth(client: SystemUserClient) -> TenantAuth:
    """The auth object for the module's tenant, its base URL from the emulator's tenant state."""
    return client.auth(context_identifier=CTX, system_user_token=TOKEN)


def current_ticket(client: SystemUserClient) -> str:
    return client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket


def revoke_current(client: SystemUserClient, emu: Emulator) -> str:
    """Make sure a ticket is cached, revoke it at the emulator, and return it."""
    ticket = current_ticket(client)
    emu.revoke_ticket(ticket)
    return ticket


# --- what a request carries -------------------------------------------------------------------


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_request_carries_the_current_ticket_and_the_client_secret(
    library: str, auth: TenantAuth, client: SystemUserClient, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """A request gets Authorization: SOTicket <the cached ticket> and SO-AppToken: <client secret>; the tenant API takes them."""
    response = api_caller(library, auth)("GET", auth.base_url + PRINCIPAL)
    assert response.status_code == 200 and response.json()["ContextIdentifier"] == CTX
    (sent,) = fresh_emu.api_requests
    assert sent.ticket == current_ticket(client) and sent.app_token == CLIENT_SECRET
    assert fresh_emu.exchange_count == 1


def test_auth_object_is_an_httpx_auth_and_a_requests_auth(auth: TenantAuth) -> None:
    """With httpx installed the one object is an httpx.Auth (so httpx runs its auth flow) and a requests auth callable."""
    assert isinstance(auth, httpx.Auth) and isinstance(auth, requests.auth.AuthBase) is False and callable(auth)
    assert isinstance(auth, TenantAuth)


def test_without_httpx_the_auth_object_is_requests_only(
    client: SystemUserClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When httpx cannot be imported, client.auth() still works and returns a plain TenantAuth (no httpx base)."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    monkeypatch.delitem(sys.modules, "sut_soap.apiauth._httpx", raising=False)
    auth = client.auth(context_identifier=CTX, system_user_token=TOKEN)
    assert type(auth) is TenantAuth


def test_base_url_is_the_tenant_states_api(auth: TenantAuth, fresh_emu: Emulator) -> None:
    """auth.base_url is the Api of the tenant's state (the emulator's /{ctx}/api), read once and kept."""
    assert auth.base_url == f"{fresh_emu.base_url}/{CTX}/api"
    assert auth.base_url == f"{fresh_emu.base_url}/{CTX}/api"
    assert fresh_emu.state_request_count == 1


def test_explicit_base_url_skips_the_tenant_state(client: SystemUserClient, fresh_emu: Emulator) -> None:
    """With base_url= the auth object never reads the tenant state, and a trailing slash is dropped."""
    auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=f"{fresh_emu.base_url}/{CTX}/api/")
    assert auth.base_url == f"{fresh_emu.base_url}/{CTX}/api"
    response = requests.get(auth.base_url + PRINCIPAL, auth=auth, timeout=10)
    assert response.status_code == 200 and fresh_emu.state_request_count == 0


@pytest.mark.parametrize("base_url", ["http://example.com/api", "ftp://127.0.0.1/api", "https://u:p@example.com/api"])
def test_base_url_must_be_https_without_credentials(client: SystemUserClient, base_url: str) -> None:
    """A base_url that is plain http to a remote host, not http(s), or carries credentials is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="base_url"):
        client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=base_url)


@pytest.mark.parametrize(("ctx", "token"), [("", TOKEN), (CTX, " padded"), (CTX, 5)])
def test_auth_values_are_checked(client: SystemUserClient, ctx: Any, token: Any) -> None:
    """An empty tenant or a malformed system user token is refused when the auth object is built."""
    with pytest.raises(ConfigurationError):
        client.auth(context_identifier=ctx, system_user_token=token)


# --- a revoked ticket ---------------------------------------------------------------------------

REPLAYABLE = {
    "requests": [b'{"n": 1}', '{"n": 1}', {"n": 1}, "file"],
    "httpx": [b'{"n": 1}', '{"n": 1}', {"n": 1}],
}


@pytest.mark.parametrize(
    ("library", "body"), [(lib, body) for lib in HTTP_LIBRARIES for body in REPLAYABLE[lib]],
    ids=lambda v: v if isinstance(v, str) and v in HTTP_LIBRARIES else type(v).__name__ if v != "file" else "file",
)
def test_revoked_ticket_is_replaced_with_one_exchange_and_the_request_resent(
    library: str, body: Any, auth: TenantAuth, client: SystemUserClient, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """A 401 on a revoked ticket: exactly one exchange, the request resent once with the new ticket and the same body."""
    revoked = revoke_current(client, fresh_emu)
    before = fresh_emu.exchange_count
    sent_body = io.BytesIO(b"xx" + b'{"n": 1}') if body == "file" else body
    if body == "file":
        sent_body.seek(2)  # a file body is rewound to where it started, not to 0
    response = api_caller(library, auth)("POST", auth.base_url + ECHO, sent_body)
    assert response.status_code == 200
    assert response.json()["Body"].replace(" ", "") == '{"n":1}'
    assert fresh_emu.exchange_count == before + 1
    first, again = fresh_emu.api_requests
    assert first.ticket == revoked and again.ticket == current_ticket(client) != revoked
    assert first.body == again.body


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_fifty_concurrent_401s_on_one_ticket_cause_one_exchange(
    library: str, auth: TenantAuth, client: SystemUserClient, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """50 threads whose requests all get 401 on the same revoked ticket cause one exchange in all, and all succeed."""
    revoked = revoke_current(client, fresh_emu)
    url = auth.base_url + PRINCIPAL
    before = fresh_emu.exchange_count
    fresh_emu.inject(Fault.API_LATENCY, tenant=CTX, seconds=0.5, times=50)  # every thread sends before any 401 lands
    callers = [api_caller(library, auth) for _ in range(50)]
    start = threading.Barrier(50)
    statuses: list[int] = []

    def one(caller: ApiCaller) -> None:
        start.wait()
        statuses.append(caller("GET", url).status_code)

    threads = [threading.Thread(target=one, args=(caller,)) for caller in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 50
    assert fresh_emu.exchange_count == before + 1
    assert sum(1 for r in fresh_emu.api_requests if r.ticket == revoked) == 50
    assert fresh_emu.api_request_count == 100


def _stream() -> Iterator[bytes]:
    yield b"part one,"
    yield b"part two"


class _Unseekable(io.RawIOBase):
    """A file body whose position cannot be told (a pipe, a socket): not replayable."""

    def __init__(self) -> None:
        self.data = io.BytesIO(b"from a pipe")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self.data.readinto(buffer)

    def tell(self) -> int:
        raise OSError("illegal seek")

    def seek(self, *args: Any) -> int:
        raise OSError("illegal seek")


@pytest.mark.parametrize(("library", "make_body"), [
    ("requests", _stream), ("httpx", _stream), ("requests", _Unseekable), ("httpx", lambda: io.BytesIO(b"a file")),
], ids=["requests-generator", "httpx-generator", "requests-pipe", "httpx-file"])
def test_body_that_cannot_be_replayed_is_not_resent_and_warned_once(
    library: str, make_body: Callable[[], Any], auth: TenantAuth, client: SystemUserClient, fresh_emu: Emulator,
    api_caller: Caller, caplog: pytest.LogCaptureFixture,
) -> None:
    """A generator or stream body: the 401 goes back unsent, one one-line WARNING, the ticket is invalidated for the next call."""
    revoked = revoke_current(client, fresh_emu)
    caller = api_caller(library, auth)
    with caplog.at_level(logging.DEBUG):
        response = caller("POST", auth.base_url + ECHO, make_body())
    assert response.status_code == 401 and fresh_emu.api_request_count == 1
    warnings_ = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_) == 1 and warnings_[0].name == "sut_soap.auth"
    text = warnings_[0].getMessage()
    assert "\n" not in text and "returned unsent" in text and CTX in text
    assert CLIENT_SECRET not in text and revoked not in text
    assert caller("GET", auth.base_url + PRINCIPAL).status_code == 200  # the next call exchanged
    assert current_ticket(client) != revoked


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_second_401_goes_back_to_the_caller(
    library: str, auth: TenantAuth, client: SystemUserClient, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """When the resent request gets 401 as well, that 401 is returned: two requests, one exchange, no loop."""
    current_ticket(client)
    fresh_emu.inject(Fault.API_UNAUTHORIZED, tenant=CTX, times=2)
    before = fresh_emu.exchange_count
    response = api_caller(library, auth)("POST", auth.base_url + ECHO, b"once")
    assert response.status_code == 401
    assert fresh_emu.api_request_count == 2 and fresh_emu.exchange_count == before + 1


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_401_on_a_request_without_our_ticket_is_returned(
    library: str, auth: TenantAuth, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """A 401 for a request whose Authorization the caller replaced is returned as it is: nothing invalidated, no exchange."""
    caller = api_caller(library, auth)
    session_auth: Any = auth

    def replace_header(request: Any) -> Any:
        request = session_auth(request) if library == "requests" else request
        request.headers["Authorization"] = "Bearer not-ours"
        return request

    current = auth.base_url + PRINCIPAL
    if library == "requests":
        response = caller.session.get(current, auth=replace_header, timeout=10)
    else:
        caller.session.event_hooks["request"].append(replace_header)
        response = caller("GET", current)
    assert response.status_code == 401 and fresh_emu.api_request_count == 1


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_store_that_hands_back_the_refused_ticket_is_not_resent(
    library: str, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """If invalidating cannot remove the refused ticket (a store that ignores deletes), the 401 is returned, not resent."""

    class Sticky(InMemoryTicketCache):
        def delete(self, key: str) -> None:
            pass

        delete_if = None  # type: ignore[assignment]

    with SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=fresh_emu.endpoint,
                          cache=Sticky()) as sticky:
        auth = sticky.auth(context_identifier=CTX, system_user_token=TOKEN)
        fresh_emu.revoke_ticket(sticky.get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket)
        response = api_caller(library, auth)("GET", auth.base_url + PRINCIPAL)
    assert response.status_code == 401 and fresh_emu.api_request_count == 1


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_failed_exchange_after_a_401_is_raised(
    library: str, auth: TenantAuth, client: SystemUserClient, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """When getting the new ticket fails (the tenant's approval is gone), that error is raised instead of the 401."""
    revoke_current(client, fresh_emu)
    fresh_emu.inject(Fault.REJECT, tenant=CTX, message="Revoked: the application was revoked")
    caller = api_caller(library, auth)
    with pytest.raises(AuthenticationRejectedError, match="Revoked"):
        caller("GET", auth.base_url + PRINCIPAL)
    assert fresh_emu.api_request_count == 1


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_tenant_that_is_not_running_is_refused_before_sending(
    library: str, auth: TenantAuth, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """With the base URL from the tenant state, a tenant in OfflineMaintenance raises TenantNotRunningError; nothing is sent."""
    fresh_emu.set_tenant_state(CTX, "OfflineMaintenance")
    with pytest.raises(TenantNotRunningError) as caught:
        api_caller(library, auth)("GET", f"{fresh_emu.base_url}/{CTX}/api{PRINCIPAL}")
    assert caught.value.state == "OfflineMaintenance" and fresh_emu.api_request_count == 0


# --- other origins and redirects ------------------------------------------------------------------


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_request_to_another_origin_is_refused_and_not_sent(
    library: str, auth: TenantAuth, recording_server: RecordingServer, api_caller: Caller
) -> None:
    """A request to any origin but the tenant API's raises ConfigurationError naming both origins; the server sees nothing."""
    with pytest.raises(ConfigurationError, match="refusing to send the ticket") as caught:
        api_caller(library, auth)("GET", recording_server.base_url + "/elsewhere?q=1")
    assert recording_server.seen == []
    assert "q=1" not in str(caught.value) and recording_server.base_url in str(caught.value)


def _secret_headers(headers: dict[str, str]) -> list[str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return [name for name in ("authorization", "so-apptoken") if name in lowered]


@pytest.mark.parametrize(("library", "status"), [
    ("requests", 302), ("requests", 307), ("httpx", 302), ("httpx", 308),
])
def test_secret_headers_do_not_follow_a_redirect_to_another_origin(
    library: str, status: int, client: SystemUserClient, recording_server: RecordingServer, api_caller: Caller,
) -> None:
    """Followed redirects to another origin carry neither SOTicket nor SO-AppToken (httpx: with auth.redirect_guard)."""
    with RecordingServer() as fresh_emu:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=fresh_emu.base_url + "/api")
        fresh_emu.script = [(status, {"Location": recording_server.base_url + "/moved"})]
        response = api_caller(library, auth, guard=True)("POST", auth.base_url + ECHO, b"x")
        assert response.status_code == 200
        assert _secret_headers(fresh_emu.seen[0][2]) == ["authorization", "so-apptoken"]
    ((_, path, headers),) = recording_server.seen
    assert path == "/moved" and _secret_headers(headers) == []


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_secret_headers_follow_a_redirect_within_the_origin(
    library: str, client: SystemUserClient, api_caller: Caller
) -> None:
    """A redirect to another path of the same origin keeps both headers (the tenant's own API)."""
    with RecordingServer() as fresh_emu:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=fresh_emu.base_url + "/api")
        fresh_emu.script = [(302, {"Location": "/api/v1/other"})]
        response = api_caller(library, auth, guard=True)("GET", auth.base_url + PRINCIPAL)
        assert response.status_code == 200
        assert [_secret_headers(h) for _, _, h in fresh_emu.seen] == [["authorization", "so-apptoken"]] * 2


def test_requests_strips_secrets_when_a_resent_request_is_redirected_away(
    client: SystemUserClient, recording_server: RecordingServer, api_caller: Caller
) -> None:
    """requests: the resent request's answer is a redirect to another origin; the next hop carries no secret header."""
    with RecordingServer() as fresh_emu:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=fresh_emu.base_url + "/api")
        fresh_emu.script = [(401, {}), (302, {"Location": recording_server.base_url + "/moved"})]
        response = api_caller("requests", auth)("GET", auth.base_url + PRINCIPAL)
        assert response.status_code == 200 and len(fresh_emu.seen) == 2
    ((_, _, headers),) = recording_server.seen
    assert _secret_headers(headers) == []


def test_requests_not_following_redirects_prepares_no_secret_for_the_next_hop(
    client: SystemUserClient, recording_server: RecordingServer, api_caller: Caller
) -> None:
    """requests with allow_redirects=False: response.next, the request requests prepares for the hop, has no secret header."""
    with RecordingServer() as fresh_emu:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=fresh_emu.base_url + "/api")
        fresh_emu.script = [(302, {"Location": recording_server.base_url + "/moved"})]
        response = api_caller("requests", auth, follow_redirects=False)("GET", auth.base_url + PRINCIPAL)
        assert response.status_code == 302 and response.next is not None
        assert _secret_headers(dict(response.next.headers)) == []


def test_httpx_without_the_guard_sends_the_app_token_on_and_warns(
    client: SystemUserClient, recording_server: RecordingServer, api_caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """What cannot be prevented from the auth object: httpx, following a redirect, copies SO-AppToken (not Authorization); one WARNING says so."""
    with RecordingServer() as fresh_emu:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=fresh_emu.base_url + "/api")
        fresh_emu.script = [(302, {"Location": recording_server.base_url + "/moved"})]
        with caplog.at_level(logging.WARNING, logger="sut_soap.auth"):
            response = api_caller("httpx", auth)("GET", auth.base_url + PRINCIPAL)
    assert response.status_code == 200
    ((_, _, headers),) = recording_server.seen
    assert _secret_headers(headers) == ["so-apptoken"]
    (record,) = [r for r in caplog.records if r.name == "sut_soap.auth"]
    assert "redirect_guard" in record.getMessage() and CLIENT_SECRET not in record.getMessage()


def test_httpx_401_after_a_redirect_to_another_origin_is_not_resent(
    client: SystemUserClient, recording_server: RecordingServer, api_caller: Caller
) -> None:
    """httpx: a 401 from the origin a redirect led to is returned as it is: nothing invalidated, nothing resent there."""
    with RecordingServer() as fresh_emu:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=fresh_emu.base_url + "/api")
        fresh_emu.script = [(302, {"Location": recording_server.base_url + "/moved"})]
        recording_server.script = [(401, {})]
        response = api_caller("httpx", auth, guard=True)("GET", auth.base_url + PRINCIPAL)
    assert response.status_code == 401 and len(recording_server.seen) == 1 and len(fresh_emu.seen) == 1


def test_httpx_async_client_is_refused(auth: TenantAuth) -> None:
    """httpx.AsyncClient with this (blocking) auth object raises ConfigurationError before anything is sent."""
    import asyncio

    async def call() -> None:
        async with httpx.AsyncClient(auth=auth) as http:
            await http.get("http://127.0.0.1:9/never")

    with pytest.raises(ConfigurationError, match=r"httpx\.Client"):
        asyncio.run(call())


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("library", HTTP_LIBRARIES)
def test_secrets_never_appear_in_logs_at_debug(
    library: str, client: SystemUserClient, fresh_emu: Emulator, api_caller: Caller
) -> None:
    """Every logger at DEBUG (urllib3, requests, httpx, httpcore, sut_soap) over a 401, a resend and a WARNING: no secret."""
    tickets: list[str] = []
    for canary in watch_logs(CLIENT_SECRET, TOKEN):
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN)
        caller = api_caller(library, auth)
        assert caller("GET", auth.base_url + PRINCIPAL).status_code == 200
        tickets.append(revoke_current(client, fresh_emu))
        assert caller("POST", auth.base_url + ECHO, b"payload").status_code == 200
        tickets.append(revoke_current(client, fresh_emu))
        assert caller("POST", auth.base_url + ECHO, _stream()).status_code == 401
        tickets.append(current_ticket(client))
        canary.secrets.update(tickets)
        assert "sut_soap.auth WARNING" in canary.text() and "sut_soap.auth DEBUG" in canary.text()
    assert len(set(tickets)) == 3


def test_repr_errors_and_pickling_show_no_secret(auth: TenantAuth, client: SystemUserClient) -> None:
    """The auth object's repr names the tenant and hides the secret; pickling is refused; its errors name no secret."""
    ticket = current_ticket(client)
    shown = repr(auth) + str(auth)
    assert CTX in shown and "***" in shown and CLIENT_SECRET not in shown and TOKEN not in shown
    with pytest.raises(ConfigurationError, match="cannot be pickled"):
        pickle.dumps(auth)
    with pytest.raises(ConfigurationError) as caught:
        requests.get("http://127.0.0.1:9/x", auth=auth, timeout=1)
    assert not [t for t in error_texts(caught.value) if CLIENT_SECRET in t or ticket in t or TOKEN in t]


# --- the decisions, one by one -----------------------------------------------------------------


@pytest.mark.parametrize(("url", "origin"), [
    ("https://Sod2.SuperOffice.com/Cust1/api", ("https", "sod2.superoffice.com", 443)),
    ("http://127.0.0.1:8080/x", ("http", "127.0.0.1", 8080)),
    ("https://[::1]/x", ("https", "::1", 443)),
    ("/relative", None),
    ("https://host:99999/", None),
    ("mailto:someone", None),
])
def test_origin_of_a_url(url: str, origin: tuple[str, str, int] | None) -> None:
    """An origin is scheme, lower-case host and port (the default one when absent); a URL without one has none."""
    assert _decide.origin_of(url) == origin


def test_origins_are_shown_without_path_or_query() -> None:
    """Messages show scheme://host:port only, IPv6 in brackets, and say so when there is no origin."""
    assert _decide.shown_origin(_decide.origin_of("https://[::1]:8443/p?secret=1")) == "https://[::1]:8443"
    assert _decide.shown_origin(_decide.Origin("x", "h", None)) == "x://h"
    assert _decide.shown_origin(None) == "a URL without an origin"


@pytest.mark.parametrize(("value", "ticket"), [
    ("SOTicket 7T:abc", "7T:abc"), ("SOTicket ", None), ("Bearer 7T:abc", None), (None, None), (5, None),
])
def test_ticket_in_an_authorization_header(value: object, ticket: str | None) -> None:
    """Only an ``SOTicket <ticket>`` value carries one of our tickets."""
    assert _decide.ticket_in(value) == ticket


@pytest.mark.parametrize(("source", "target", "strips"), [
    ("https://a.example/x", "https://a.example/y", False),
    ("https://a.example/x", "https://b.example/y", True),
    ("http://a.example/x", "https://a.example/x", True),
    ("https://a.example/x", "https://a.example:444/x", True),
    ("not a url", "https://a.example/", True),
])
def test_redirect_strips_secrets_on_any_change_of_origin(source: str, target: str, strips: bool) -> None:
    """Secrets are kept only on a redirect within one origin; an http->https upgrade counts as another origin."""
    assert _decide.strips_on_redirect(source, target) is strips


@pytest.mark.parametrize(("kwargs", "verdict"), [
    ({"status": 200}, _decide.Verdict.PASS),
    ({"sent_ticket": None}, _decide.Verdict.PASS),
    ({"resent": True}, _decide.Verdict.PASS),
    ({"at_tenant": False}, _decide.Verdict.PASS),
    ({"replayable": False}, _decide.Verdict.GIVE_BACK),
    ({}, _decide.Verdict.RESEND),
])
def test_what_a_response_means(kwargs: dict[str, Any], verdict: _decide.Verdict) -> None:
    """Only a first 401 at the tenant on our ticket acts: resent when replayable, else given back."""
    options: dict[str, Any] = {"status": 401, "sent_ticket": "7T:x", "resent": False, "at_tenant": True,
                               "replayable": True, **kwargs}
    assert _decide.after_401(**options) is verdict


def test_a_state_without_api_url_is_a_configuration_error() -> None:
    """A caller's client double whose tenant state has no API URL gets a ConfigurationError, not a crash."""

    class Double:
        def tenant_state(self, ctx: str) -> Any:
            return type("State", (), {"api_url": None})()

    credentials = _decide.Credentials(Double(), None, CTX, TOKEN, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="names no API URL"):
        credentials.base_url  # noqa: B018


def test_stripping_keeps_an_authorization_that_is_not_ours() -> None:
    """Before a hop to another origin SO-AppToken always goes; an Authorization of the caller's own (not SOTicket) stays."""
    from sut_soap.apiauth._requests import _strip

    request = requests.Request("GET", "https://a.example/", headers={
        "Authorization": "Bearer caller's", "SO-AppToken": "s"}).prepare()
    _strip(request)
    assert dict(request.headers) == {"Authorization": "Bearer caller's"}
