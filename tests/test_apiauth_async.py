"""Calling the tenant's API with AsyncSystemUserClient.auth(), through httpx.AsyncClient and an aiohttp middleware,
against the emulator's tenant API over real HTTP on loopback: the headers, a revoked ticket, 50 concurrent 401s,
bodies that can and cannot be replayed, a second 401, other origins and redirects, refusing blocking libraries,
and secrets in logs, reprs and errors."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import pickle
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import httpx
import pytest
import pytest_asyncio
import requests
from support import RecordingServer, error_texts, watch_logs

from sut_soap import (
    AsyncSystemUserClient,
    AsyncTenantAuth,
    AuthenticationRejectedError,
    ConfigurationError,
    SystemUserClient,
    TenantNotRunningError,
)
from sut_soap.apiauth import _aiohttp
from sut_soap.cache import InMemoryTicketCache
from sut_soap.keys import load_private_key
from sut_soap.testing.emulator import Emulator, Fault

pytestmark = pytest.mark.network

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
PARTNER_KEY = load_private_key((KEYS / "test-partner.xml").read_bytes())
CLIENT_SECRET = "canary-async-api-secret-5d2e"
CTX = "Cust12345"
TOKEN = "Acme Sync-canaryAsyncApi9"
PRINCIPAL = "/v1/User/currentPrincipal"
ECHO = "/v1/Echo"
LIBRARIES = ("httpx", "aiohttp")


class Answer(NamedTuple):
    """What a test reads of a response, whichever library got it."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class AsyncCaller:
    """One request at a time to a tenant's API through httpx.AsyncClient or aiohttp with the async auth object.

    A body may be bytes, text, a file, an async generator or a dict (JSON). ``guard`` adds the
    auth object's ``redirect_guard`` to httpx's request hooks; ``after`` is an aiohttp middleware
    (or an httpx request hook) run after the auth object.
    """

    def __init__(self, library: str, auth: Any, *, follow_redirects: bool = True, guard: bool = False,
                 after: Any = None) -> None:
        self.library = library
        self.follow_redirects = follow_redirects
        if library == "httpx":
            hooks = [auth.redirect_guard] if guard else []
            self.session: Any = httpx.AsyncClient(
                auth=auth, follow_redirects=follow_redirects, timeout=10,
                event_hooks={"request": hooks + ([after] if after else [])},
            )
        else:
            self.session = aiohttp.ClientSession(
                middlewares=(auth, after) if after else (auth,), timeout=aiohttp.ClientTimeout(total=10)
            )

    async def __call__(self, method: str, url: str, body: Any = None) -> Answer:
        if self.library == "httpx":
            options = {"json": body} if isinstance(body, dict) else {"content": body}
            response = await self.session.request(method, url, **options)
            return Answer(response.status_code, response.content)
        options = {"json": body} if isinstance(body, dict) else {"data": body}
        async with self.session.request(method, url, allow_redirects=self.follow_redirects, **options) as response:
            return Answer(response.status, await response.read())

    async def aclose(self) -> None:
        await (self.session.aclose() if self.library == "httpx" else self.session.close())


Caller = Callable[..., AsyncCaller]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with one tenant registered before it starts (so reset() keeps it)."""
    emu = Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY)
    emu.add_tenant(CTX, system_user_token=TOKEN)
    with emu:
        yield emu


@pytest_asyncio.fixture
async def client(fresh_emu: Emulator) -> AsyncIterator[AsyncSystemUserClient]:
    """An async client of the emulator (its tenant state and tenant API included), closed at teardown."""
    async with AsyncSystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY,
                                     endpoint=fresh_emu.endpoint) as c:
        yield c


@pytest.fixture
def auth(client: AsyncSystemUserClient) -> AsyncTenantAuth:
    """The async auth object for the module's tenant, its base URL from the emulator's tenant state."""
    return client.auth(context_identifier=CTX, system_user_token=TOKEN)


@pytest_asyncio.fixture
async def caller() -> AsyncIterator[Caller]:
    """Makes AsyncCallers and closes each at teardown."""
    made: list[AsyncCaller] = []

    def make(library: str, auth: Any, **options: Any) -> AsyncCaller:
        made.append(AsyncCaller(library, auth, **options))
        return made[-1]

    yield make
    for one in made:
        await one.aclose()


async def current_ticket(client: AsyncSystemUserClient) -> str:
    return (await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)).ticket


async def revoke_current(client: AsyncSystemUserClient, emu: Emulator) -> str:
    """Make sure a ticket is cached, revoke it at the emulator, and return it."""
    ticket = await current_ticket(client)
    emu.revoke_ticket(ticket)
    return ticket


async def _stream() -> AsyncIterator[bytes]:
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


def _secret_headers(headers: dict[str, str]) -> list[str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return [name for name in ("authorization", "so-apptoken") if name in lowered]


# --- what a request carries -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_request_carries_the_current_ticket_and_the_client_secret(
    library: str, auth: AsyncTenantAuth, client: AsyncSystemUserClient, fresh_emu: Emulator, caller: Caller
) -> None:
    """A request gets Authorization: SOTicket <the cached ticket> and SO-AppToken: <client secret>; the tenant API takes them."""
    response = await caller(library, auth)("GET", await auth.base_url() + PRINCIPAL)
    assert response.status == 200 and response.json()["ContextIdentifier"] == CTX
    (sent,) = fresh_emu.api_requests
    assert sent.ticket == await current_ticket(client) and sent.app_token == CLIENT_SECRET
    assert fresh_emu.exchange_count == 1


@pytest.mark.asyncio
async def test_async_auth_object_is_an_httpx_auth_and_a_middleware(auth: AsyncTenantAuth) -> None:
    """With httpx installed the one object is an httpx.Auth and an aiohttp middleware (callable with a handler)."""
    assert isinstance(auth, httpx.Auth) and isinstance(auth, AsyncTenantAuth) and callable(auth)


@pytest.mark.asyncio
async def test_without_httpx_the_async_auth_object_is_a_middleware_only(
    client: AsyncSystemUserClient, fresh_emu: Emulator, caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When httpx cannot be imported, auth() returns a plain AsyncTenantAuth, and aiohttp uses it."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    monkeypatch.delitem(sys.modules, "sut_soap.apiauth._httpx", raising=False)
    auth = client.auth(context_identifier=CTX, system_user_token=TOKEN)
    assert type(auth) is AsyncTenantAuth
    assert (await caller("aiohttp", auth)("GET", await auth.base_url() + PRINCIPAL)).status == 200


@pytest.mark.asyncio
async def test_base_url_is_the_tenant_states_api(auth: AsyncTenantAuth, fresh_emu: Emulator) -> None:
    """await auth.base_url() is the Api of the tenant's state (the emulator's /{ctx}/api), read once and kept."""
    assert await auth.base_url() == f"{fresh_emu.base_url}/{CTX}/api"
    assert await auth.base_url() == f"{fresh_emu.base_url}/{CTX}/api"
    assert fresh_emu.state_request_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_explicit_base_url_skips_the_tenant_state(
    library: str, client: AsyncSystemUserClient, fresh_emu: Emulator, caller: Caller
) -> None:
    """With base_url= the auth object never reads the tenant state, and a trailing slash is dropped."""
    auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=f"{fresh_emu.base_url}/{CTX}/api/")
    assert await auth.base_url() == f"{fresh_emu.base_url}/{CTX}/api"
    assert (await caller(library, auth)("GET", await auth.base_url() + PRINCIPAL)).status == 200
    assert fresh_emu.state_request_count == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(("ctx", "token", "base_url"), [
    ("", TOKEN, None), (CTX, " padded", None), (CTX, TOKEN, "http://example.com/api"),
])
async def test_auth_values_are_checked(client: AsyncSystemUserClient, ctx: str, token: str, base_url: str | None) -> None:
    """An empty tenant, a malformed token or a plain-http remote base_url is refused when the auth object is built."""
    with pytest.raises(ConfigurationError):
        client.auth(context_identifier=ctx, system_user_token=token, base_url=base_url)


# --- a revoked ticket ---------------------------------------------------------------------------

REPLAYABLE = {
    "httpx": [b'{"n": 1}', '{"n": 1}', {"n": 1}],
    "aiohttp": [b'{"n": 1}', '{"n": 1}', {"n": 1}, "file"],
}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("library", "body"), [(lib, body) for lib in LIBRARIES for body in REPLAYABLE[lib]],
    ids=lambda v: v if isinstance(v, str) and v in (*LIBRARIES, "file") else type(v).__name__,
)
async def test_revoked_ticket_is_replaced_with_one_exchange_and_the_request_resent(
    library: str, body: Any, auth: AsyncTenantAuth, client: AsyncSystemUserClient, fresh_emu: Emulator,
    caller: Caller,
) -> None:
    """A 401 on a revoked ticket: exactly one exchange, the request resent once with the new ticket and the same body."""
    revoked = await revoke_current(client, fresh_emu)
    before = fresh_emu.exchange_count
    sent_body = io.BytesIO(b"xx" + b'{"n": 1}') if body == "file" else body
    if body == "file":
        sent_body.seek(2)  # a file body is rewound to where it started, not to 0
    response = await caller(library, auth)("POST", await auth.base_url() + ECHO, sent_body)
    assert response.status == 200
    assert response.json()["Body"].replace(" ", "") == '{"n":1}'
    assert fresh_emu.exchange_count == before + 1
    first, again = fresh_emu.api_requests
    assert first.ticket == revoked and again.ticket == await current_ticket(client) != revoked
    assert first.body == again.body


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_fifty_concurrent_401s_on_one_ticket_cause_one_exchange(
    library: str, auth: AsyncTenantAuth, client: AsyncSystemUserClient, fresh_emu: Emulator, caller: Caller
) -> None:
    """50 tasks whose requests all get 401 on the same revoked ticket cause one exchange in all, and all succeed."""
    revoked = await revoke_current(client, fresh_emu)
    url = await auth.base_url() + PRINCIPAL
    before = fresh_emu.exchange_count
    fresh_emu.inject(Fault.API_LATENCY, tenant=CTX, seconds=0.5, times=50)  # every task sends before any 401 lands
    one = caller(library, auth)
    answers = await asyncio.gather(*(one("GET", url) for _ in range(50)))
    assert [a.status for a in answers] == [200] * 50
    assert fresh_emu.exchange_count == before + 1
    assert sum(1 for r in fresh_emu.api_requests if r.ticket == revoked) == 50
    assert fresh_emu.api_request_count == 100


@pytest.mark.asyncio
@pytest.mark.parametrize(("library", "make_body"), [
    ("httpx", _stream), ("aiohttp", _stream), ("aiohttp", _Unseekable),
], ids=["httpx-async-generator", "aiohttp-async-generator", "aiohttp-pipe"])
async def test_body_that_cannot_be_replayed_is_not_resent_and_warned_once(
    library: str, make_body: Callable[[], Any], auth: AsyncTenantAuth, client: AsyncSystemUserClient,
    fresh_emu: Emulator, caller: Caller, caplog: pytest.LogCaptureFixture,
) -> None:
    """An async generator or stream body: the 401 goes back unsent, one one-line WARNING, the next call has a new ticket."""
    revoked = await revoke_current(client, fresh_emu)
    one = caller(library, auth)
    url = await auth.base_url()
    with caplog.at_level(logging.DEBUG):
        response = await one("POST", url + ECHO, make_body())
    assert response.status == 401 and fresh_emu.api_request_count == 1
    warnings_ = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_) == 1 and warnings_[0].name == "sut_soap.auth"
    text = warnings_[0].getMessage()
    assert "\n" not in text and "returned unsent" in text and CTX in text
    assert CLIENT_SECRET not in text and revoked not in text
    assert (await one("GET", url + PRINCIPAL)).status == 200  # the ticket was invalidated: the next call exchanged
    assert await current_ticket(client) != revoked


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_second_401_goes_back_to_the_caller(
    library: str, auth: AsyncTenantAuth, client: AsyncSystemUserClient, fresh_emu: Emulator, caller: Caller
) -> None:
    """When the resent request gets 401 as well, that 401 is returned: two requests, one exchange, no loop."""
    await current_ticket(client)
    fresh_emu.inject(Fault.API_UNAUTHORIZED, tenant=CTX, times=2)
    before = fresh_emu.exchange_count
    response = await caller(library, auth)("POST", await auth.base_url() + ECHO, b"once")
    assert response.status == 401
    assert fresh_emu.api_request_count == 2 and fresh_emu.exchange_count == before + 1


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_401_on_a_request_without_our_ticket_is_returned(
    library: str, auth: AsyncTenantAuth, client: AsyncSystemUserClient, fresh_emu: Emulator, caller: Caller
) -> None:
    """A 401 for a request whose Authorization a later hook replaced is returned as it is: nothing invalidated, no exchange."""
    ticket = await current_ticket(client)

    async def replace_hook(request: httpx.Request) -> None:
        request.headers["Authorization"] = "Bearer not-ours"

    async def replace_middleware(request: Any, handler: Any) -> Any:
        request.headers["Authorization"] = "Bearer not-ours"
        return await handler(request)

    after = replace_hook if library == "httpx" else replace_middleware
    response = await caller(library, auth, after=after)("GET", await auth.base_url() + PRINCIPAL)
    assert response.status == 401 and fresh_emu.api_request_count == 1
    assert await current_ticket(client) == ticket and fresh_emu.exchange_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_store_that_hands_back_the_refused_ticket_is_not_resent(
    library: str, fresh_emu: Emulator, caller: Caller
) -> None:
    """If invalidating cannot remove the refused ticket (a store that ignores deletes), the 401 is returned, not resent."""

    class Sticky(InMemoryTicketCache):
        def delete(self, key: str) -> None:
            pass

        delete_if = None  # type: ignore[assignment]

    async with AsyncSystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY,
                                     endpoint=fresh_emu.endpoint, cache=Sticky()) as sticky:
        auth = sticky.auth(context_identifier=CTX, system_user_token=TOKEN)
        fresh_emu.revoke_ticket((await sticky.get_ticket(context_identifier=CTX, system_user_token=TOKEN)).ticket)
        response = await caller(library, auth)("GET", await auth.base_url() + PRINCIPAL)
    assert response.status == 401 and fresh_emu.api_request_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_failed_exchange_after_a_401_is_raised(
    library: str, auth: AsyncTenantAuth, client: AsyncSystemUserClient, fresh_emu: Emulator, caller: Caller
) -> None:
    """When getting the new ticket fails (the tenant's approval is gone), that error is raised instead of the 401."""
    await revoke_current(client, fresh_emu)
    fresh_emu.inject(Fault.REJECT, tenant=CTX, message="Revoked: the application was revoked")
    url = await auth.base_url() + PRINCIPAL
    with pytest.raises(AuthenticationRejectedError, match="Revoked"):
        await caller(library, auth)("GET", url)
    assert fresh_emu.api_request_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_tenant_that_is_not_running_is_refused_before_sending(
    library: str, auth: AsyncTenantAuth, fresh_emu: Emulator, caller: Caller
) -> None:
    """With the base URL from the tenant state, a tenant in OfflineMaintenance raises TenantNotRunningError; nothing is sent."""
    fresh_emu.set_tenant_state(CTX, "OfflineMaintenance")
    with pytest.raises(TenantNotRunningError) as caught:
        await caller(library, auth)("GET", f"{fresh_emu.base_url}/{CTX}/api{PRINCIPAL}")
    assert caught.value.state == "OfflineMaintenance" and fresh_emu.api_request_count == 0


# --- other origins and redirects ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_request_to_another_origin_is_refused_and_not_sent(
    library: str, auth: AsyncTenantAuth, recording_server: RecordingServer, caller: Caller
) -> None:
    """A request to any origin but the tenant API's raises ConfigurationError naming both origins; the server sees nothing."""
    with pytest.raises(ConfigurationError, match="refusing to send the ticket") as caught:
        await caller(library, auth)("GET", recording_server.base_url + "/elsewhere?q=1")
    assert recording_server.seen == []
    assert "q=1" not in str(caught.value) and recording_server.base_url in str(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(("library", "status"), [
    ("httpx", 302), ("httpx", 308), ("aiohttp", 302), ("aiohttp", 307),
])
async def test_secret_headers_do_not_follow_a_redirect_to_another_origin(
    library: str, status: int, client: AsyncSystemUserClient, recording_server: RecordingServer, caller: Caller,
) -> None:
    """Followed redirects to another origin carry neither SOTicket nor SO-AppToken (httpx: with auth.redirect_guard)."""
    with RecordingServer() as tenant:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=tenant.base_url + "/api")
        tenant.script = [(status, {"Location": recording_server.base_url + "/moved"})]
        response = await caller(library, auth, guard=True)("POST", await auth.base_url() + ECHO, b"x")
        assert response.status == 200
        assert _secret_headers(tenant.seen[0][2]) == ["authorization", "so-apptoken"]
    ((_, path, headers),) = recording_server.seen
    assert path == "/moved" and _secret_headers(headers) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_secret_headers_follow_a_redirect_within_the_origin(
    library: str, client: AsyncSystemUserClient, caller: Caller
) -> None:
    """A redirect to another path of the same origin keeps both headers (the tenant's own API)."""
    with RecordingServer() as tenant:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=tenant.base_url + "/api")
        tenant.script = [(302, {"Location": "/api/v1/other"})]
        response = await caller(library, auth, guard=True)("GET", await auth.base_url() + PRINCIPAL)
        assert response.status == 200
        assert [_secret_headers(h) for _, _, h in tenant.seen] == [["authorization", "so-apptoken"]] * 2


@pytest.mark.asyncio
async def test_aiohttp_redirect_away_and_back_carries_the_headers_only_at_the_tenant(
    client: AsyncSystemUserClient, recording_server: RecordingServer, caller: Caller
) -> None:
    """aiohttp: tenant -> elsewhere -> tenant: the hop elsewhere carries no secret header, the hop back both again."""
    with RecordingServer() as tenant:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=tenant.base_url + "/api")
        tenant.script = [(302, {"Location": recording_server.base_url + "/away"})]
        recording_server.script = [(302, {"Location": tenant.base_url + "/api/back"})]
        response = await caller("aiohttp", auth)("GET", await auth.base_url() + PRINCIPAL)
        assert response.status == 200
        assert [(p, _secret_headers(h)) for _, p, h in tenant.seen] == [
            ("/api" + PRINCIPAL, ["authorization", "so-apptoken"]), ("/api/back", ["authorization", "so-apptoken"])]
    assert [(p, _secret_headers(h)) for _, p, h in recording_server.seen] == [("/away", [])]


@pytest.mark.asyncio
async def test_aiohttp_resent_request_redirected_away_carries_no_secret(
    client: AsyncSystemUserClient, recording_server: RecordingServer, caller: Caller
) -> None:
    """aiohttp: the resent request's answer is a redirect to another origin; that hop carries no secret header."""
    with RecordingServer() as tenant:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=tenant.base_url + "/api")
        tenant.script = [(401, {}), (302, {"Location": recording_server.base_url + "/moved"})]
        response = await caller("aiohttp", auth)("GET", await auth.base_url() + PRINCIPAL)
        assert response.status == 200 and len(tenant.seen) == 2
    ((_, _, headers),) = recording_server.seen
    assert _secret_headers(headers) == []


@pytest.mark.asyncio
async def test_aiohttp_not_following_a_redirect_then_requesting_its_target(
    client: AsyncSystemUserClient, recording_server: RecordingServer, caller: Caller
) -> None:
    """aiohttp, allow_redirects=False: the same task's next request to the redirect's target goes untouched, once; any other request is as ever."""
    with RecordingServer() as tenant:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=tenant.base_url + "/api")
        tenant.script = [(302, {"Location": recording_server.base_url + "/moved"})] * 2
        one = caller("aiohttp", auth, follow_redirects=False)
        base = await auth.base_url()
        assert (await one("GET", base + PRINCIPAL)).status == 302
        assert (await one("GET", recording_server.base_url + "/moved")).status == 200
        with pytest.raises(ConfigurationError, match="refusing to send the ticket"):
            await one("GET", recording_server.base_url + "/moved")
        assert (await one("GET", base + PRINCIPAL)).status == 302
        assert (await one("GET", base + PRINCIPAL)).status == 200  # the next request went to the tenant after all
        with pytest.raises(ConfigurationError, match="refusing to send the ticket"):
            await one("GET", recording_server.base_url + "/moved")
        assert [_secret_headers(h) for _, _, h in tenant.seen] == [["authorization", "so-apptoken"]] * 3
    ((_, _, headers),) = recording_server.seen
    assert _secret_headers(headers) == []


@pytest.mark.asyncio
async def test_aiohttp_redirect_to_a_location_that_is_no_url(
    client: AsyncSystemUserClient, caller: Caller
) -> None:
    """aiohttp: a Location that is no URL is aiohttp's own error (the middleware marks nothing, leaks nothing)."""
    with RecordingServer() as tenant:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=tenant.base_url + "/api")
        tenant.script = [(302, {"Location": "http://[::1/x"})]
        with pytest.raises(aiohttp.InvalidUrlRedirectClientError) as caught:
            await caller("aiohttp", auth)("GET", await auth.base_url() + PRINCIPAL)
    assert CLIENT_SECRET not in "".join(error_texts(caught.value))


@pytest.mark.asyncio
async def test_httpx_without_the_guard_sends_the_app_token_on_and_warns(
    client: AsyncSystemUserClient, recording_server: RecordingServer, caller: Caller,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """httpx.AsyncClient following a redirect copies SO-AppToken (not Authorization) without the guard; one WARNING says so."""
    with RecordingServer() as tenant:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=tenant.base_url + "/api")
        tenant.script = [(302, {"Location": recording_server.base_url + "/moved"})]
        with caplog.at_level(logging.WARNING, logger="sut_soap.auth"):
            response = await caller("httpx", auth)("GET", await auth.base_url() + PRINCIPAL)
    assert response.status == 200
    ((_, _, headers),) = recording_server.seen
    assert _secret_headers(headers) == ["so-apptoken"]
    (record,) = [r for r in caplog.records if r.name == "sut_soap.auth"]
    assert "redirect_guard" in record.getMessage() and CLIENT_SECRET not in record.getMessage()


# --- blocking libraries are refused ---------------------------------------------------------------


def _sync_client(emu: Emulator) -> SystemUserClient:
    return SystemUserClient(client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint)


@pytest.mark.asyncio
async def test_sync_auth_with_httpx_async_client_points_to_the_async_client(
    fresh_emu: Emulator, recording_server: RecordingServer
) -> None:
    """SystemUserClient.auth() with httpx.AsyncClient is a ConfigurationError naming the async client's auth; nothing sent."""
    with _sync_client(fresh_emu) as sync:
        auth = sync.auth(context_identifier=CTX, system_user_token=TOKEN, base_url=recording_server.base_url)
        async with httpx.AsyncClient(auth=auth) as http:
            with pytest.raises(ConfigurationError) as caught:
                await http.get(recording_server.base_url + "/x")
    assert "AsyncSystemUserClient.auth()" in caught.value.hint and recording_server.seen == []


@pytest.mark.asyncio
async def test_async_auth_with_blocking_libraries_is_refused(
    auth: AsyncTenantAuth, recording_server: RecordingServer
) -> None:
    """The async auth object with httpx.Client or requests is a ConfigurationError naming the sync client's auth; nothing sent."""
    url = recording_server.base_url + "/x"
    with httpx.Client(auth=auth) as http, pytest.raises(ConfigurationError, match=r"httpx\.Client cannot await") as one:
        http.get(url)
    with pytest.raises(ConfigurationError, match="blocking HTTP library") as two:
        requests.get(url, auth=auth, timeout=1)  # type: ignore[arg-type]
    assert all("SystemUserClient.auth()" in e.value.hint for e in (one, two)) and recording_server.seen == []


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("library", LIBRARIES)
async def test_secrets_never_appear_in_logs_at_debug(
    library: str, client: AsyncSystemUserClient, fresh_emu: Emulator, caller: Caller
) -> None:
    """Every logger at DEBUG (httpx, httpcore, aiohttp, asyncio, sut_soap) over a 401, a resend and a WARNING: no secret."""
    tickets: list[str] = []
    for canary in watch_logs(CLIENT_SECRET, TOKEN):
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN)
        one = caller(library, auth)
        url = await auth.base_url()
        assert (await one("GET", url + PRINCIPAL)).status == 200
        tickets.append(await revoke_current(client, fresh_emu))
        assert (await one("POST", url + ECHO, b"payload")).status == 200
        tickets.append(await revoke_current(client, fresh_emu))
        assert (await one("POST", url + ECHO, _stream())).status == 401
        tickets.append(await current_ticket(client))
        canary.secrets.update(tickets)
        assert "sut_soap.auth WARNING" in canary.text() and "sut_soap.auth DEBUG" in canary.text()
    assert len(set(tickets)) == 3


@pytest.mark.asyncio
async def test_repr_errors_and_pickling_show_no_secret(
    auth: AsyncTenantAuth, client: AsyncSystemUserClient, caller: Caller
) -> None:
    """The async auth object's repr names the tenant and hides the secret; pickling is refused; its errors name no secret."""
    ticket = await current_ticket(client)
    shown = repr(auth) + str(auth)
    assert CTX in shown and "***" in shown and CLIENT_SECRET not in shown and TOKEN not in shown
    assert shown.startswith("HttpxAsyncTenantAuth(")
    with pytest.raises(ConfigurationError, match="cannot be pickled"):
        pickle.dumps(auth)
    with pytest.raises(ConfigurationError) as caught:
        await caller("aiohttp", auth)("GET", "http://127.0.0.1:9/x")
    assert not [t for t in error_texts(caught.value) if CLIENT_SECRET in t or ticket in t or TOKEN in t]


# --- the aiohttp decision -----------------------------------------------------------------------


class _Payload:
    def __init__(self, consumed: bool) -> None:
        self.consumed = consumed


@pytest.mark.parametrize(("body", "replayable"), [
    (b"", True), (_Payload(False), True), (_Payload(True), False), (object(), False),
])
def test_what_aiohttp_can_send_again(body: object, replayable: bool) -> None:
    """No body, or a payload aiohttp has not consumed (bytes, JSON, a rewound file): yes; a consumed one or an unknown: no."""
    assert _aiohttp.replayable(body) is replayable
